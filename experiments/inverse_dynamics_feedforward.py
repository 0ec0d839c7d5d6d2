"""Does an inverse-dynamics feed-forward make the servos perform a clip's dynamic moves open loop?

The servo targets the search and the reconstruction start from are the reference's angles plus a
velocity feed-forward, q_ref + (kv / kp) dq_ref: the torque the servo then gives on the reference
is only the damping's, none for gravity or the clip's accelerations, so a take-off is asked for
with no push (jump: 0.86 m/s against the reference's 1.97).  Here the targets carry the torque the
reference needs: q_ref + (tau + kv dq_ref) / kp, with tau the hinge part of MuJoCo's inverse
dynamics (``mj_inverse``, constraints off) less what the floor's contact forces supply.  The
contact forces are those, at the corners of each foot box (and the lowest point of any other
body) that the reference brings within ``--contact-m`` of the floor, inside a 4-sided friction
pyramid, which best supply the root's 6 components of the inverse dynamics (non-negative least
squares, ``scipy.optimize.nnls``, with a small ridge).

For each clip: the reference's contacts and the root wrench the contacts could not supply (the
reference's infeasibility), then both feed-forwards replayed open loop from phase 0 (or from the
reference's state at ``--start``) in the env's physics: how long until a fall, and the root's
highest upward speed and height in the first ``--seconds``, beside the reference's own.  With
``--search``, the learn recipe's search alone from phase 0 around each (the reference's own
targets, the velocity feed-forward, the inverse dynamics'), one episode.  Answers:
docs/search_expert.md ("Servo targets that ask for the torque").

    python experiments/inverse_dynamics_feedforward.py jump walk [--seconds 2] [--start 0.4] [--search]
"""

from __future__ import annotations

import argparse
import copy

import mujoco
import numpy as np
from scipy.optimize import nnls

from imitate import humanoid as hum
from imitate.config import EnvConfig, fallen
from imitate.motion import load_clip
from imitate.simulation import Simulation


def contact_points(model, data, heights_m: float):
    """World points (m, 3) and their bodies (m,) where the floor may push: each foot box's bottom
    corners and the lowest point of other colliding geoms, if within heights_m of the floor."""
    floor = model.geom("floor").id
    points, bodies = [], []
    for g in range(model.ngeom):
        if g == floor or not model.geom_contype[g] & model.geom_conaffinity[floor]:
            continue
        if model.geom_type[g] == mujoco.mjtGeom.mjGEOM_BOX:
            size = model.geom_size[g]
            corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * size
            world = data.geom_xpos[g] + corners @ data.geom_xmat[g].reshape(3, 3).T
        else:
            fromto = np.zeros(6)
            mujoco.mj_geomDistance(model, data, g, floor, 10.0, fromto)
            world = fromto[None, :3]
        for p in world:
            if p[2] < heights_m:
                points.append(p)
                bodies.append(model.geom_bodyid[g])
    return np.array(points).reshape(-1, 3), np.array(bodies, int)


def feedforward_torques(clip, model, times, contact_m=0.03, friction=0.9, ridge=1e-6):
    """Hinge torques (T, 28) [N m] the reference needs at times (T,) [s] beyond its damping, the
    root wrench residual (T, 6) the contacts could not supply, and contact counts (T,)."""
    model = copy.copy(model)  # constraints off in a copy: the caller's model keeps its contacts
    model.opt.disableflags |= mujoco.mjtDisableBit.mjDSBL_CONSTRAINT
    data = mujoco.MjData(model)
    h = 1.0 / clip.fps  # the clip's velocities are constant between frames: differences across them
    taus, residuals, counts = [], [], []
    dirs = np.array([[friction, 0, 1], [-friction, 0, 1], [0, friction, 1], [0, -friction, 1]], float)
    for t in times:
        data.qpos[:] = clip.qpos(np.array([t]))[0]
        data.qvel[:] = clip.qvel(np.array([t]))[0]
        data.qacc[:] = (clip.qvel(np.array([t + h]))[0] - clip.qvel(np.array([t - h]))[0]) / (2 * h)
        mujoco.mj_inverse(model, data)
        need = data.qfrc_inverse.copy()  # (nv,) generalised force the reference needs
        points, bodies = contact_points(model, data, contact_m)
        if len(points):
            cols = []
            for p, b in zip(points, bodies, strict=True):
                jacp = np.zeros((3, model.nv))
                mujoco.mj_jac(model, data, jacp, None, p, b)
                cols.append(jacp.T @ dirs.T)  # (nv, 4): the pyramid's edges as generalised forces
            basis = np.concatenate(cols, axis=1)  # (nv, 4m)
            a = np.vstack([basis[:6], np.sqrt(ridge) * np.eye(basis.shape[1])])
            b = np.concatenate([need[:6], np.zeros(basis.shape[1])])
            beta, _ = nnls(a, b, maxiter=2000)
            supplied = basis @ beta
        else:
            supplied = np.zeros(model.nv)
        taus.append(need[6:] - supplied[6:])
        residuals.append(need[:6] - supplied[:6])
        counts.append(len(points))
    return np.array(taus), np.array(residuals), np.array(counts)


def replay(clip, config, targets, seconds, start_s=0.0):
    """Open loop from the reference's state at start_s [s] (its control steps' targets from
    there): the time of the first fall [s] (or start_s + seconds), the root's highest upward speed
    [m/s] and height [m]."""
    model = hum.load_model("pd_target", config.physics_hz)
    data = mujoco.MjData(model)
    sim = Simulation(config, 1, nthread=1, clip=clip)
    sim.reset(np.array([0]), np.array([start_s]))
    state = np.array(sim.batch.state[0])
    mujoco.mj_setState(model, data, state, mujoco.mjtState.mjSTATE_INTEGRATION)
    fall_ids = np.array([model.sensor(s).adr[0] for s in hum.fall_sensor_names(config.fall_body_names(clip))])
    top_v = top_z = -np.inf
    for k in range(round(seconds * config.control_hz)):
        data.ctrl[:] = targets[k]
        for _ in range(config.substeps):
            mujoco.mj_step(model, data)
            top_v, top_z = max(top_v, data.qvel[2]), max(top_z, data.qpos[2])
        t = start_s + (k + 1) * config.control_dt
        contact, dropped = fallen(data.sensordata[fall_ids][None], data.qpos[2:3], clip.qpos(np.array([t]))[:, 2],
                                  config.max_root_drop_m)
        if contact.any() or dropped.any():
            return t, top_v, top_z
    return start_s + seconds, top_v, top_z


def servo_targets(clip, model, times, contact_m, with_torques=True):
    """Targets (T, 28) [rad] at times (T,) [s]: q_ref + (tau + kv dq_ref) / kp, tau the inverse
    dynamics' hinge torques (clipped to the limits) or 0; the root wrench the contacts could not
    supply (T, 6); contact points per time (T,)."""
    kp, kv = model.actuator_gainprm[:, 0], -model.actuator_biasprm[:, 2]
    ref_q, ref_v = clip.qpos(times), clip.qvel(times)
    tau, residual, counts = feedforward_torques(clip, model, times, contact_m)
    tau = np.clip(tau, -hum.TORQUE_LIMIT, hum.TORQUE_LIMIT) if with_torques else 0.0 * tau
    targets = ref_q[:, hum.HINGE_QPOS] + (tau + kv * ref_v[:, hum.HINGE_QVEL]) / kp
    return np.clip(targets, hum.HINGE_RANGE[:, 0], hum.HINGE_RANGE[:, 1]), residual, counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clips", nargs="+")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--contact-m", type=float, default=0.05,
                        help="a body this close to the floor in the reference may be pushed by it [m]")
    parser.add_argument("--start", type=float, default=0.0, help="start from the reference's state at this time [s]")
    parser.add_argument("--search", action="store_true",
                        help="also the learn recipe's search alone from phase 0 for --seconds, around the "
                             "reference's targets, the velocity feed-forward's and the inverse dynamics' (1 episode)")
    args = parser.parse_args()
    for name in args.clips:
        clip, config = load_clip(name), EnvConfig(clip=name)
        model = hum.load_model("pd_target", config.physics_hz)
        seconds = clip.episode_horizon_s(args.seconds)  # a clip that does not loop: at most its length
        steps = round(seconds * config.control_hz)
        ends = args.start + config.control_dt * np.arange(1, steps + 1)  # target k: the reference at (k+1) dt
        plain, _, _ = servo_targets(clip, model, ends, args.contact_m, with_torques=False)
        with_id, residual, counts = servo_targets(clip, model, ends, args.contact_m)
        fine = args.start + np.arange(0, seconds, 1e-3)
        ref_top_v, ref_top_z = clip.qvel(fine)[:, 2].max(), clip.qpos(fine)[:, 2].max()
        print(f"{name}: the reference's root: highest upward speed {ref_top_v:.2f} m/s, height {ref_top_z:.2f} m; "
              f"contact points {counts.min()}-{counts.max()}; root force the contacts could not supply: median "
              f"{np.median(np.linalg.norm(residual[:, :3], axis=1)):.0f} N, max "
              f"{np.linalg.norm(residual[:, :3], axis=1).max():.0f} N; offsets from the plain targets "
              f"{np.sqrt(np.mean((with_id - plain) ** 2)):.3f} rad RMS", flush=True)
        for label, targets in (("plain feed-forward", plain), ("inverse dynamics", with_id)):
            t, v, z = replay(clip, config, targets, seconds, args.start)
            print(f"  {label:20s} falls at {t:.2f} s (of {args.start:g}-{args.start + seconds:g}); root's "
                  f"highest upward speed {v:.2f} m/s, height {z:.2f} m", flush=True)
        if args.search:
            from imitate.evaluation import evaluate, expert_controller
            from imitate.experts.search import LEARN_LABELS, SearchExpert

            ends = config.control_dt * np.arange(1, steps + LEARN_LABELS.horizon + 1)
            nominals = {"reference": None,
                        "velocity feed-forward": servo_targets(clip, model, ends, args.contact_m, False)[0],
                        "inverse dynamics": servo_targets(clip, model, ends, args.contact_m)[0]}
            for label, nominal in nominals.items():
                expert = SearchExpert(clip, config, LEARN_LABELS, nominal_targets=nominal)
                result = evaluate(expert_controller(expert), config, episodes=1, horizon_s=seconds,
                                  init_noise_rad=0.01)
                print(f"  the search around {label:22s}: survives {result.survival_s.mean:.2f} s of {seconds:g}, "
                      f"return {result.normalised_return.mean:.3f}", flush=True)


if __name__ == "__main__":
    main()
