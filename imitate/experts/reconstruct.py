"""Offline reconstruction of a clip: servo targets that make the simulated humanoid perform it.

Raw mocap is not a control: PD servos aimed at it fall within a second or two, and some of what
it asks (sunk feet, take-offs) the humanoid cannot give.  This finds an open-loop sequence of
servo targets, one per control step, that the simulator itself performs from the clip's phase-0
state, by sampling with a set of elite paths (after SAMCON, Liu et al. 2010; our own code).

Time is cut into windows of ``window_steps`` control steps.  Each window starts from the
``elites`` best simulator states of the last one; from each, ``samples / elites`` candidates
draw a new offset of the servo targets from the reference (+ its velocity feed-forward,
kd/kp dq_ref): the elite's last offset x ``offset_carry`` plus Gaussian noise (``noise_rad``),
reached linearly over the window and then held.  All candidates run in one batched rollout for
the window plus ``lookahead_steps`` more (held), scored by a tracking cost summed over both;
a candidate that falls anywhere in them (the env's fall rule) is out.  The best ``elites``, by
that cost, continue from their states at the window's end.  The lookahead is what lets this
through runs, jumps and cartwheels: without it the elites are poses that track well now and
fall a few steps later.  When fewer than a fifth of the elites survive a window, the search
rewinds a few windows and retries them with twice the samples and 1.5x the noise (at most 3
doublings); after ``max_rewinds`` rewinds in all, or ``max_stalled_rewinds`` in a row that got no
further than it had been, it stops, and the trajectory ends there (``reached_steps``).
Deterministic for a seed.  Cost per candidate and step: ``pose_weight`` x the reward's weighted
squared joint angles + ``velocity_weight`` x its squared joint-rate errors +
``end_effector_weight`` x squared end-effector offsets (root-relative, heading frame) +
``root_height_weight`` x squared root-height error + ``root_position_weight`` x squared
horizontal root offset + ``root_velocity_weight`` x squared root linear-velocity error +
``offset_weight`` x the squared offsets themselves (smaller, smoother targets: what a learner
must reproduce from the phase and state alone).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import mujoco
import numpy as np
from mujoco.batch import Batch

from .. import humanoid as hum
from ..config import EnvConfig, fallen
from ..errors import ConfigError
from ..motion import MotionClip
from ..reward import Pose, end_effector_offsets, pose_error, velocity_error
from ..simulation import Simulation


@dataclass(frozen=True)
class ReconstructConfig:
    samples: int = 300  # candidates per window
    elites: int = 20  # paths kept from window to window
    window_steps: int = 3  # control steps per window (0.1 s at 30 Hz)
    lookahead_steps: int = 6  # control steps a candidate is also scored on, its offset held
    noise_rad: float = 0.1  # std of a window's new offset [rad]
    offset_carry: float = 0.5  # the fraction of the last offset a candidate starts from
    pose_weight: float = 1.0
    velocity_weight: float = 0.1
    end_effector_weight: float = 10.0
    root_height_weight: float = 50.0
    root_position_weight: float = 1.0
    root_velocity_weight: float = 1.0
    # x the squared offsets [rad^2]: keeps the targets near the reference, smoother (walk, 5 s:
    # offsets' RMS 0.084 -> 0.052 rad, step-to-step change 0.031 -> 0.019 at 1, tracking as
    # good); but the run's search gave up at 12 of 20 s at 1, and stalled at 9 s at 0.2, where
    # at 0 it got through: off by default
    offset_weight: float = 0.0
    # rewinds before the search gives up, the trajectory ending there (walk and run needed none,
    # the cartwheel 10 on 5 s); bounds the time spent on a clip it cannot perform
    max_rewinds: int = 40
    # rewinds in a row that get no further before it gives up: the clips it performs stalled for
    # at most 2 (punch, both getups), jump for 27 over its last 23 minutes (docs/tracking_expert.md);
    # bounds what a clip it cannot get through costs before the guided rung refuses it
    max_stalled_rewinds: int = 10
    seed: int = 0
    nthread: int = 0  # rollout threads; 0: all cores

    def __post_init__(self):
        if not (self.samples >= self.elites >= 1 and self.window_steps >= 1 and self.lookahead_steps >= 0
                and self.max_rewinds >= 0 and self.max_stalled_rewinds >= 0):
            raise ConfigError(f"ReconstructConfig: samples >= elites >= 1, window_steps >= 1, lookahead_steps "
                              f">= 0, max_rewinds >= 0 and max_stalled_rewinds >= 0; found {self}")
        if not (self.noise_rad >= 0 and 0 <= self.offset_carry <= 1):
            raise ConfigError(f"ReconstructConfig: noise_rad >= 0 and 0 <= offset_carry <= 1; found "
                              f"{self.noise_rad}, {self.offset_carry}")


@dataclass(frozen=True)
class Trajectory:
    """A feasible trajectory: from states[0] (the clip's phase-0 state), the servo targets
    ctrl[k] held for control step k reach states[k + 1], in the simulator itself.

    states: (T + 1, nstate) MuJoCo integration-state rows (mjSTATE_INTEGRATION) at the
    control steps' boundaries; ctrl: (T, 28) servo targets [rad]; T = reached_steps, at most
    horizon_steps (less when the search gave up); cost: (T,) tracking cost per step.
    """

    states: np.ndarray
    ctrl: np.ndarray
    cost: np.ndarray
    horizon_steps: int
    seconds: float  # wall time of the search [s]
    physics_steps: int  # simulated physics steps, all candidates together
    rewinds: int

    @property
    def reached_steps(self) -> int:
        return len(self.ctrl)

    @property
    def complete(self) -> bool:
        return self.reached_steps >= self.horizon_steps


def start_state(clip: MotionClip, env_config: EnvConfig) -> np.ndarray:
    """(nstate,) the integration state an episode of env_config starts in at phase 0 (no noise)."""
    sim = Simulation(env_config, 1, nthread=1, clip=clip)
    sim.reset(np.array([0]), np.array([0.0]))
    return np.array(sim.batch.state[0])


def reconstruct(clip: MotionClip, env_config: EnvConfig, horizon_steps: int,
                config: ReconstructConfig = ReconstructConfig(),
                progress: Callable[[int, int], None] | None = None) -> Trajectory:
    """Search servo targets that perform clip for horizon_steps control steps from phase 0, in
    env_config's simulator (pd_target servos; its control and physics rates, its fall rule).
    progress(steps reached, horizon_steps) after each window, fewer after a rewind."""
    if horizon_steps < 1:
        raise ConfigError(f"reconstruct: horizon_steps must be >= 1; found {horizon_steps}")
    cfg = config
    started = time.perf_counter()
    model = hum.load_model("pd_target", env_config.physics_hz)
    fall_ids = np.array([model.sensor(s).adr[0] for s in hum.fall_sensor_names(env_config.fall_body_names(clip))])
    body_ids = np.array([hum.body_id(b) for b in hum.BODY_NAMES])
    batches: dict[int, Batch] = {}
    rng = np.random.default_rng(cfg.seed)
    dt, w_len = env_config.control_dt, cfg.window_steps
    windows = -(-horizon_steps // w_len)
    # per window: elite states at its end, their offsets, their parents, their targets, costs
    levels: list[tuple | None] = [None] * windows
    boost = np.zeros(windows, int)
    state0 = start_state(clip, env_config)
    w = rewinds = physics_steps = 0
    furthest = stalled = 0  # the most windows completed; rewinds since that grew
    while w < windows:
        elites, elite_off = (state0[None], np.zeros((1, hum.NU))) if w == 0 else levels[w - 1][:2]
        k0 = w * w_len
        steps = min(w_len, horizon_steps - k0)
        n = int(cfg.samples * 2 ** boost[w])
        parent = np.arange(n) % len(elites)
        new_off = cfg.offset_carry * elite_off[parent] + rng.normal(0.0, cfg.noise_rad * 1.5 ** boost[w], (n, hum.NU))
        new_off[:len(elites)] = cfg.offset_carry * elite_off  # each elite's noiseless continuation
        batch = batches.get(n) or batches.setdefault(n, planning_batch(model, n, cfg.nthread))
        batch.state[:] = elites[parent]
        times = dt * (k0 + 1 + np.arange(steps + cfg.lookahead_steps))  # each step's end
        ref_q, ref_v = clip.qpos(times), clip.qvel(times)
        ref_body = hum.body_positions(ref_q)
        feedforward = ref_q[:, hum.HINGE_QPOS] + (hum.KD / hum.KP) * ref_v[:, hum.HINGE_QVEL]
        cost, window_costs = np.zeros(n), np.zeros((n, steps))
        down = np.zeros(n, bool)
        targets = np.zeros((n, steps, hum.NU))
        for s in range(len(times)):
            a = min(1.0, (s + 1) / steps)
            offset = (1 - a) * elite_off[parent] + a * new_off
            target = np.clip(feedforward[s] + offset, hum.HINGE_RANGE[:, 0], hum.HINGE_RANGE[:, 1])
            batch.ctrl[:] = target
            batch.step(nstep=env_config.substeps, stage=mujoco.mjtStage.mjSTAGE_VEL)
            physics_steps += n * env_config.substeps
            c, falls = step_cost(cfg, batch, body_ids, fall_ids, ref_q[s], ref_v[s], ref_body[s],
                                  env_config.max_root_drop_m)
            c = c + cfg.offset_weight * np.sum(offset**2, axis=1)  # the offset asked, not what clipping left
            cost += c
            down |= falls
            if s < steps:
                targets[:, s], window_costs[:, s] = target, c
            if s == steps - 1:
                ends = np.array(batch.state)
        cost[down] = np.inf
        best = np.argsort(cost)[:cfg.elites]
        best = best[np.isfinite(cost[best])]
        if len(best) < max(1, cfg.elites // 5):
            if rewinds >= cfg.max_rewinds or stalled >= cfg.max_stalled_rewinds:
                break
            rewinds += 1
            stalled += 1
            back = min(w, 1 + boost[w])  # rewind further each time a window fails again
            boost[w - back:w + 1] = np.minimum(boost[w - back:w + 1] + 1, 3)
            w -= back
            if progress:  # where it went back to: a log shows the rewinds, not only the advances
                progress(w * w_len, horizon_steps)
            continue
        levels[w] = (ends[best], new_off[best], parent[best], targets[best], window_costs[best])
        w += 1
        if w > furthest:
            furthest, stalled = w, 0
        if progress:
            progress(min(w * w_len, horizon_steps), horizon_steps)
    ctrl, costs, i = [], [], 0  # the best path, traced back from the last completed window
    for j in range(w - 1, -1, -1):  # windows 0..w-1 completed
        ctrl.append(levels[j][3][i])
        costs.append(levels[j][4][i])
        i = levels[j][2][i]
    ctrl = np.concatenate(ctrl[::-1]) if ctrl else np.zeros((0, hum.NU))
    costs = np.concatenate(costs[::-1]) if costs else np.zeros(0)
    states = replay(model, state0, ctrl, env_config.substeps)
    return Trajectory(states, ctrl, costs, horizon_steps, time.perf_counter() - started, physics_steps, rewinds)


def replay(model: mujoco.MjModel, state0: np.ndarray, ctrl: np.ndarray, substeps: int) -> np.ndarray:
    """(T + 1, nstate) integration states of holding each of ctrl (T, nu) for substeps physics
    steps from state0, in one simulator (the same arithmetic as the search's batch rows)."""
    batch = Batch(model, 1, 1)
    batch.state[0] = state0
    states = [state0.copy()]
    for u in ctrl:
        batch.ctrl[0] = u
        batch.step(nstep=substeps, stage=mujoco.mjtStage.mjSTAGE_VEL)
        states.append(np.array(batch.state[0]))
    return np.array(states)


def planning_batch(model: mujoco.MjModel, n: int, nthread: int) -> Batch:
    """A batch of n simulators of model whose body positions and sensors are filled each step."""
    batch = Batch(model, n, nthread)
    for name in ("xpos", "sensordata"):
        batch.bind(name)
    return batch


def step_cost(cfg: ReconstructConfig, batch: Batch, body_ids, fall_ids, ref_q, ref_v, ref_body, max_drop):
    """Tracking cost (n,) of the batch's states against a reference pose (one, or one per row),
    and falls (n,)."""
    n = batch.nsim
    q, v = batch.qpos, batch.qvel
    rq, rv = np.broadcast_to(ref_q, (n, hum.NQ)), np.broadcast_to(ref_v, (n, hum.NV))
    sim = Pose(q, v, batch.xpos[:, body_ids], None)
    ref = Pose(rq, rv, np.broadcast_to(ref_body, (n,) + ref_body.shape[-2:]), None)
    ee = end_effector_offsets(sim) - end_effector_offsets(ref)
    cost = (cfg.pose_weight * pose_error(q, rq) + cfg.velocity_weight * velocity_error(v, rv)
            + cfg.end_effector_weight * np.sum(ee**2, axis=(1, 2))
            + cfg.root_height_weight * (q[:, 2] - rq[:, 2]) ** 2
            + cfg.root_position_weight * np.sum((q[:, :2] - rq[:, :2]) ** 2, axis=1)
            + cfg.root_velocity_weight * np.sum((v[:, :3] - rv[:, :3]) ** 2, axis=1))
    contacts, dropped = fallen(batch.sensordata[:, fall_ids], q[:, 2], rq[:, 2], max_drop)  # the env's own test
    falls = contacts.any(axis=1) | dropped
    falls |= ~(np.isfinite(q).all(axis=1) & np.isfinite(v).all(axis=1))
    return np.nan_to_num(cost, nan=np.inf), falls
