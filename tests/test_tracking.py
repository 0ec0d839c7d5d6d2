"""The tracking expert: reconstruction, linearisation, LQR gains, cache and labels, each
against an independent reference (MuJoCo's own functions, explicit finite differences of
mj_step, scipy's Riccati solver, the env itself)."""

import json

import mujoco
import numpy as np
import pytest
import scipy.linalg
from conftest import synthetic_frames, write_clip

from imitate import humanoid as hum
from imitate.config import EnvConfig, targets_to_action
from imitate.errors import ConfigError
from imitate.experts import Expert, expert_id, make_expert
from imitate.experts.feedback import linearise, riccati_gains, state_deviation, tangent_difference
from imitate.experts.pd import PDExpert
from imitate.experts.reconstruct import ReconstructConfig, reconstruct, start_state
from imitate.experts.tracking import ExpertCacheError, TrackingConfig, TrackingExpert
from imitate.motion import load_clip
from imitate.simulation import Simulation

SMALL = ReconstructConfig(samples=12, elites=3, window_steps=2, lookahead_steps=1, seed=1, nthread=1)
SMALL_TRACKING = TrackingConfig(reconstruct=SMALL, horizon_s=0.2)  # 6 control steps


@pytest.fixture
def clip_and_config(synthetic_clip_path):
    return load_clip(synthetic_clip_path), EnvConfig(clip=str(synthetic_clip_path))


def _random_qpos(rng, n):
    q = np.zeros((n, hum.NQ))
    q[:, :3] = rng.normal(0, 0.5, (n, 3))
    quats = rng.normal(size=(n, 4))
    q[:, 3:7] = quats / np.linalg.norm(quats, axis=1, keepdims=True)
    q[:, 7:] = rng.uniform(-1, 1, (n, hum.NU))
    return q


def test_tangent_difference_is_mujocos_differentiate_pos():
    rng = np.random.default_rng(0)
    model = hum.load_model()
    a, b = _random_qpos(rng, 5), _random_qpos(rng, 5)
    b[:, 3:7] = a[:, 3:7] + rng.normal(0, 0.3, (5, 4))  # rotations up to large angles
    b[:, 3:7] /= np.linalg.norm(b[:, 3:7], axis=1, keepdims=True)
    ours = tangent_difference(a, b)
    for i in range(5):
        expected = np.zeros(hum.NV)
        mujoco.mj_differentiatePos(model, expected, 1.0, a[i], b[i])
        np.testing.assert_allclose(ours[i], expected, atol=1e-12)


def _step_state(model, data, x, u, substeps):
    """(qpos, qvel) after holding u for substeps mj_step calls from integration state x."""
    mujoco.mj_setState(model, data, x, mujoco.mjtState.mjSTATE_INTEGRATION)
    data.ctrl[:] = u
    for _ in range(substeps):
        mujoco.mj_step(model, data)
    return data.qpos.copy(), data.qvel.copy()


def test_linearisation_matches_finite_differences_of_mj_step(clip_and_config):
    """A and B of a control step against central differences of whole control steps of
    mj_step, perturbing the state along the tangent space (mj_integratePos)."""
    clip, config = clip_and_config
    model = hum.load_model("pd_target", config.physics_hz)
    x0 = start_state(clip, config)
    u0 = np.clip(clip.qpos([config.control_dt])[0, hum.HINGE_QPOS], hum.HINGE_RANGE[:, 0], hum.HINGE_RANGE[:, 1])
    u0 = u0 - 0.05  # off the reference, so the servos work
    a, b = linearise(model, x0[None].repeat(2, 0), u0[None], config.substeps)
    data = mujoco.MjData(model)
    base_q, base_v = _step_state(model, data, x0, u0, config.substeps)
    qpos0, qvel0 = x0[1:1 + hum.NQ], x0[1 + hum.NQ:1 + hum.NQ + hum.NV]
    eps = 1e-6
    rng = np.random.default_rng(2)
    for _ in range(3):  # random directions in state and control
        dx, du = rng.normal(size=2 * hum.NV), rng.normal(size=hum.NU) * 0.1
        ends = []
        for sign in (1, -1):
            q = qpos0.copy()
            mujoco.mj_integratePos(model, q, sign * eps * dx[:hum.NV], 1.0)
            x = x0.copy()
            x[1:1 + hum.NQ], x[1 + hum.NQ:1 + hum.NQ + hum.NV] = q, qvel0 + sign * eps * dx[hum.NV:]
            ends.append(_step_state(model, data, x, u0 + sign * eps * du, config.substeps))
        fd = (state_deviation(base_q, base_v, *ends[0]) - state_deviation(base_q, base_v, *ends[1]))[0] / (2 * eps)
        predicted = a[0] @ dx + b[0] @ du
        np.testing.assert_allclose(predicted, fd, rtol=1e-3, atol=1e-3 * np.abs(fd).max())


def test_riccati_gains_converge_to_scipys_infinite_horizon_gain():
    rng = np.random.default_rng(3)
    nx, nu, steps = 4, 2, 300
    a = np.eye(nx) + 0.1 * rng.normal(size=(nx, nx))
    b = rng.normal(size=(nx, nu))
    q, r = np.diag(rng.uniform(0.5, 2, nx)), np.diag(rng.uniform(0.5, 2, nu))
    gains = riccati_gains(np.repeat(a[None], steps, 0), np.repeat(b[None], steps, 0), q, r)
    p = scipy.linalg.solve_discrete_are(a, b, q, r)
    expected = np.linalg.solve(r + b.T @ p @ b, b.T @ p @ a)
    np.testing.assert_allclose(gains[0], expected, rtol=1e-8, atol=1e-10)
    # the last step sees only the terminal cost Q: K = (R + B'QB)^-1 B'QA
    np.testing.assert_allclose(gains[-1], np.linalg.solve(r + b.T @ q @ b, b.T @ q @ a), rtol=1e-10)


def test_reconstruction_is_performed_by_the_env_itself(clip_and_config):
    """The env, given the trajectory's targets as actions from phase 0, passes through its
    states; the search is deterministic under its seed."""
    clip, config = clip_and_config
    trajectory = reconstruct(clip, config, 6, SMALL)
    assert trajectory.complete and trajectory.reached_steps == 6 and trajectory.states.shape == (7, 262)
    again = reconstruct(clip, config, 6, SMALL)
    np.testing.assert_array_equal(trajectory.ctrl, again.ctrl)
    sim = Simulation(config, 1, nthread=1, clip=clip)
    sim.reset(np.array([0]), np.array([0.0]))
    np.testing.assert_array_equal(np.array(sim.batch.state[0]), trajectory.states[0])
    for k, u in enumerate(trajectory.ctrl):
        sim.step(targets_to_action(u)[None])
        np.testing.assert_allclose(sim.qpos[0], trajectory.states[k + 1, 1:1 + hum.NQ], atol=1e-8)
    assert np.all(trajectory.cost >= 0)


def test_a_clip_the_search_cannot_get_through_ends_the_trajectory_there(tmp_path):
    """A reference that stands, then flies up at 18 m/s, ends in the root-drop rule for every
    candidate: the search gives up after max_rewinds with a partial trajectory, not a hang."""
    frames = synthetic_frames()
    for k, f in enumerate(frames):
        f[2] = 0.85 + 0.6 * max(k - 2, 0)  # Y-up: the root's height
    path = write_clip(tmp_path / "fly.txt", frames, loop="none")
    clip, config = load_clip(path), EnvConfig(clip=str(path))
    trajectory = reconstruct(clip, config, 6, ReconstructConfig(samples=6, elites=2, window_steps=1,
                                                                 lookahead_steps=0, max_rewinds=2, nthread=1))
    assert not trajectory.complete and trajectory.reached_steps < 6 and trajectory.rewinds == 2
    expert = TrackingExpert(clip, config, SMALL_TRACKING, trajectory.states, trajectory.ctrl,
                            *linearise(hum.load_model(), trajectory.states, trajectory.ctrl, config.substeps)[:2],
                            info={})
    assert expert.reached_s == trajectory.reached_steps / 30
    # it also gives up after max_stalled_rewinds rewinds in a row that get no further, however
    # many rewinds in all it may still make: every try past the furthest window here falls
    for stall in (1, 3):
        stuck = reconstruct(clip, config, 6, ReconstructConfig(samples=6, elites=2, window_steps=1, lookahead_steps=0,
                                                               max_rewinds=40, max_stalled_rewinds=stall, nthread=1))
        assert stuck.rewinds == stall and stuck.reached_steps == trajectory.reached_steps
    with pytest.raises(ConfigError, match="max_stalled_rewinds"):
        ReconstructConfig(max_stalled_rewinds=-1)


@pytest.fixture
def prepared(clip_and_config, tmp_path):
    clip, config = clip_and_config
    return TrackingExpert.prepare(clip, config, SMALL_TRACKING, cache=tmp_path / "cache")


def test_label_on_the_trajectory_is_its_target_and_off_it_linear_feedback(prepared, clip_and_config):
    clip, config = clip_and_config
    expert = prepared
    k = np.arange(len(expert.ctrl))
    qpos, qvel = expert.states[k, 1:1 + hum.NQ], expert.states[k, 1 + hum.NQ:1 + hum.NQ + hum.NV]
    on = expert(qpos, qvel, k / config.control_hz)
    np.testing.assert_allclose(on, np.clip(targets_to_action(expert.ctrl), -1, 1), atol=1e-12)
    # off the trajectory: u* - K dx, dx by MuJoCo's own mj_differentiatePos, then the action map
    rng = np.random.default_rng(4)
    moved_q, moved_v = qpos.copy(), qvel + rng.normal(0, 0.01, qvel.shape)
    moved_q[:, 7:] += rng.normal(0, 0.01, (len(k), hum.NU))
    model = hum.load_model()
    for i in k:
        dq = np.zeros(hum.NV)
        mujoco.mj_differentiatePos(model, dq, 1.0, qpos[i], moved_q[i])
        target = expert.ctrl[i] - expert.gains[i] @ np.concatenate([dq, moved_v[i] - qvel[i]])
        expected = np.clip(targets_to_action(np.clip(target, hum.HINGE_RANGE[:, 0], hum.HINGE_RANGE[:, 1])), -1, 1)
        np.testing.assert_allclose(expert(moved_q[i:i + 1], moved_v[i:i + 1], [i / 30])[0], expected, atol=1e-12)


def test_batched_labels_equal_one_by_one_and_past_the_trajectory_the_pd_expert(prepared, clip_and_config):
    clip, config = clip_and_config
    rng = np.random.default_rng(5)
    n = 12
    times = rng.integers(0, 12, n) / 30.0  # half of them past the 6 steps prepared
    qpos = np.array([clip.qpos([t])[0] for t in times]) + np.r_[np.zeros(7), rng.normal(0, 0.02, 28)]
    qvel = np.array([clip.qvel([t])[0] for t in times])
    batched = prepared(qpos, qvel, times)
    single = np.concatenate([prepared(qpos[i:i + 1], qvel[i:i + 1], times[i:i + 1]) for i in range(n)])
    np.testing.assert_array_equal(batched, single)
    past = times >= 6 / 30 - 1e-9
    assert past.any() and (~past).any()
    np.testing.assert_allclose(batched[past], PDExpert(clip)(qpos[past], qvel[past], times[past]))
    assert not np.allclose(batched[~past], PDExpert(clip)(qpos[~past], qvel[~past], times[~past]))


def test_the_cache_is_reused_and_refuses_a_changed_clip_or_model(prepared, clip_and_config, tmp_path, monkeypatch):
    clip, config = clip_and_config
    from imitate.experts import tracking

    def fail(*args, **kwargs):
        raise AssertionError("reconstructed again")

    monkeypatch.setattr(tracking, "reconstruct", fail)
    again = TrackingExpert.prepare(clip, config, SMALL_TRACKING, cache=tmp_path / "cache")
    np.testing.assert_array_equal(again.gains, prepared.gains)
    # other LQR weights reuse the cached linearisation
    TrackingExpert.prepare(clip, config, TrackingConfig(reconstruct=SMALL, horizon_s=0.2, control_weight=10),
                           cache=tmp_path / "cache")
    # an edited clip, or another physics rate (another model), does not reuse it
    edited = write_clip(tmp_path / "edited.txt", synthetic_frames(seed=1))
    with pytest.raises(AssertionError, match="reconstructed again"):
        TrackingExpert.prepare(load_clip(edited), EnvConfig(clip=str(edited)), SMALL_TRACKING,
                               cache=tmp_path / "cache")
    with pytest.raises(AssertionError, match="reconstructed again"):
        TrackingExpert.prepare(clip, EnvConfig(clip=config.clip, physics_hz=300.0), SMALL_TRACKING,
                               cache=tmp_path / "cache")


def test_a_damaged_or_foreign_cache_file_gets_one_clear_error(prepared, clip_and_config, tmp_path):
    clip, config = clip_and_config
    (path,) = (tmp_path / "cache").glob("tracking-*.npz")
    with np.load(path) as f:
        arrays = dict(f)
    meta = json.loads(str(arrays["meta"]))
    meta["key"]["clip"] = "0" * 16
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)  # np.savez keeps the name: a file whose content is for another clip
    with pytest.raises(ExpertCacheError, match="another clip"):
        TrackingExpert.prepare(clip, config, SMALL_TRACKING, cache=tmp_path / "cache")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ExpertCacheError, match="unreadable"):
        TrackingExpert.prepare(clip, config, SMALL_TRACKING, cache=tmp_path / "cache")


def test_non_finite_states_are_refused(prepared, clip_and_config):
    clip, _ = clip_and_config
    qpos, qvel = clip.qpos([0.0, 0.1]), clip.qvel([0.0, 0.1])
    qvel[1, 4] = np.nan
    with pytest.raises(ConfigError, match="row 1"):
        prepared(qpos, qvel, [0.0, 0.1])


def test_best_is_the_tracking_expert_behind_the_expert_protocol(clip_and_config, tmp_path, monkeypatch):
    clip, config = clip_and_config
    monkeypatch.setenv("IMITATE_CACHE", str(tmp_path / "cache"))
    seen = []
    expert = make_expert("best", clip, config, tracking=SMALL_TRACKING, progress=lambda d, t, what: seen.append(what))
    assert isinstance(expert, TrackingExpert) and isinstance(expert, Expert)
    assert {"reconstructing", "linearising"} <= set(seen)
    assert expert_id(expert).startswith("expert:tracking:")
    assert expert.provenance()["config"]["reconstruct"]["samples"] == SMALL.samples
    with pytest.raises(ConfigError, match="expected one of"):
        make_expert("oracle", clip, config)


def test_torque_labels_exert_the_servo_force(prepared, clip_and_config, synthetic_clip_path):
    """Torque-space labels, with the model's passive damping, exert the pd_target label's
    servo force (MuJoCo's force fields, mj_forward) wherever neither is at its limit."""
    from imitate.config import action_to_ctrl

    clip, config = clip_and_config
    torque_expert = TrackingExpert(clip, EnvConfig(clip=str(synthetic_clip_path), action_space="torque"),
                                   SMALL_TRACKING, prepared.states, prepared.ctrl, prepared.a, prepared.b, {})
    k = np.arange(len(prepared.ctrl))
    qpos = prepared.states[k, 1:1 + hum.NQ]
    qvel = prepared.states[k, 1 + hum.NQ:1 + hum.NQ + hum.NV]
    checked = 0
    for space, expert in (("pd_target", prepared), ("torque", torque_expert)):
        model, data = hum.load_model(space), None
        data = mujoco.MjData(model)
        action = expert(qpos, qvel, k / 30)
        forces = []
        for i in k:
            data.qpos[:], data.qvel[:] = qpos[i], qvel[i]
            data.ctrl[:] = action_to_ctrl(action[i:i + 1], space)[0]
            mujoco.mj_forward(model, data)
            forces.append((data.qfrc_actuator + data.qfrc_passive)[hum.HINGE_QVEL].copy())
        if space == "pd_target":
            servo = np.array(forces)
        else:
            free = (np.abs(action) < 1 - 1e-9) & (np.abs(servo) < hum.TORQUE_LIMIT - 1e-6)
            checked = free.sum()
            np.testing.assert_allclose(np.array(forces)[free], servo[free], atol=1e-6)
    assert checked > 50


def test_config_refusals():
    with pytest.raises(ConfigError):
        ReconstructConfig(samples=2, elites=5)
    with pytest.raises(ConfigError):
        ReconstructConfig(offset_carry=1.5)
    with pytest.raises(ConfigError):
        TrackingConfig(control_weight=0)
    with pytest.raises(ConfigError):
        TrackingConfig(horizon_s=-1)


def test_replanning_without_noise_is_the_tracking_expert_and_batches_like_one_by_one(prepared, clip_and_config):
    from imitate.experts.replan import ReplanConfig, ReplanningExpert

    clip, _ = clip_and_config
    k = np.array([0, 2, 4, 5, 8])  # 8: past the 6 steps prepared
    qpos = prepared.states[np.minimum(k, 6), 1:1 + hum.NQ].copy()
    qpos[:, 7:] += 0.02
    qvel = prepared.states[np.minimum(k, 6), 1 + hum.NQ:1 + hum.NQ + hum.NV]
    times = k / 30.0
    still = ReplanningExpert(prepared, ReplanConfig(candidates=3, horizon=2, noise_rad=0.0, nthread=1))
    np.testing.assert_allclose(still(qpos, qvel, times), prepared(qpos, qvel, times), atol=1e-12)
    noisy = ReplanningExpert(prepared, ReplanConfig(candidates=4, horizon=2, noise_rad=0.2, nthread=1))
    batched = noisy(qpos, qvel, times)
    single = np.concatenate([noisy(qpos[i:i + 1], qvel[i:i + 1], times[i:i + 1]) for i in range(len(k))])
    np.testing.assert_allclose(batched, single, atol=1e-12)
    np.testing.assert_array_equal(batched[-1], PDExpert(clip)(qpos[-1:], qvel[-1:], times[-1:])[0])
    assert not np.allclose(batched[:-1], prepared(qpos, qvel, times)[:-1])
    # the correction is a weighted mean of the candidates' offsets: inside their range
    feedback = np.clip(targets_to_action(prepared.targets(qpos[:-1], qvel[:-1], k[:-1])), -1, 1)
    widest = np.abs(noisy.offsets).max() / (0.5 * np.ptp(hum.HINGE_RANGE, axis=1))  # in action units
    assert np.all(np.abs(batched[:-1] - feedback) <= widest + 1e-9)
    assert noisy.provenance()["kind"] == "tracking+replan"
    with pytest.raises(ConfigError):
        ReplanConfig(candidates=1)


def test_the_guided_search_starts_from_the_trajectory_and_batches_like_one_by_one(prepared, clip_and_config,
                                                                                 monkeypatch, tmp_path):
    from dataclasses import replace

    from imitate.experts.search import DAGGER_LABELS, SearchExpert

    clip, config = clip_and_config
    search = replace(DAGGER_LABELS, candidates=4, horizon=3, knots=2, nthread=1)
    guided = SearchExpert(clip, config, search, nominal_targets=prepared.ctrl)
    steps = np.array([0, 2, 4, 5])  # the horizon of step 5 runs past the 6 steps prepared
    times = steps / 30.0
    expected = np.zeros((len(times), 3, hum.NU))  # the offsets from the reference's targets, by a loop
    for i, t in enumerate(times):
        for j in range(3):
            if steps[i] + j < len(prepared.ctrl):
                reference = np.clip(clip.qpos([t + (j + 1) / 30.0])[0, hum.HINGE_QPOS], hum.HINGE_RANGE[:, 0],
                                    hum.HINGE_RANGE[:, 1])
                expected[i, j] = prepared.ctrl[steps[i] + j] - reference
    np.testing.assert_allclose(guided.nominal(times), expected, atol=1e-12)
    assert np.abs(expected).max() > 1e-3 and not expected[3, 1:].any()
    plain = SearchExpert(clip, config, search)
    assert not plain.nominal(times).any()
    # labels: the same batched and one by one, and not the plain search's
    states, keys = prepared.states[steps], np.arange(len(steps))
    batched = guided.label_states(states, times, keys)
    single = np.concatenate([guided.label_states(states[i:i + 1], times[i:i + 1], keys[i:i + 1])
                             for i in range(len(steps))])
    np.testing.assert_array_equal(batched, single)
    assert not np.allclose(batched, plain.label_states(states, times, keys))
    assert guided.provenance()["nominal"]["steps"] == len(prepared.ctrl) and "nominal" not in plain.provenance()
    with pytest.raises(ConfigError, match=r"expected finite nominal targets of shape \(T, 28\)"):
        SearchExpert(clip, config, search, nominal_targets=np.full((3, hum.NU), np.nan))
    # make_expert("guided"): the search around the tracking expert's trajectory (from its cache)
    monkeypatch.setenv("IMITATE_CACHE", str(tmp_path / "cache"))
    made = make_expert("guided", clip, config, search=search, tracking=SMALL_TRACKING)
    # (the looping clip's 6 prepared steps are less than its 8-step cycle: one step a phase bin, so
    # the periodic targets are the trajectory's own; they go on for a cycle (a random start's
    # episode) and a search horizon past the prepared horizon)
    assert made.reconstructed_s == prepared.reached_s
    per_cycle = 8
    assert len(made.nominal_targets) == prepared.info["horizon_steps"] + per_cycle + search.horizon
    np.testing.assert_allclose(made.nominal_targets[:len(prepared.ctrl)], prepared.ctrl, atol=1e-12)
    # past them, by hand: step k is compared at (k + 1) dt, so steps 0-5 reach phase bins 1-6; bins
    # 7 and 0 lie a third and two thirds of the way from bin 6's offset to bin 1's (around the cycle)
    dt = config.control_dt
    ref = np.clip(clip.qpos(dt * np.arange(1, 11))[:, hum.HINGE_QPOS], hum.HINGE_RANGE[:, 0], hum.HINGE_RANGE[:, 1])
    offset = {k + 1: prepared.ctrl[k] - ref[k] for k in range(6)}
    offset[7] = offset[6] + (offset[1] - offset[6]) / 3
    offset[0] = offset[6] + 2 * (offset[1] - offset[6]) / 3
    for k in range(6, 10):
        np.testing.assert_allclose(made.nominal_targets[k], ref[k] + offset[(k + 1) % per_cycle], atol=1e-9)
    from imitate.experts.search import periodic_targets

    around = SearchExpert(clip, config, search, nominal_targets=periodic_targets(
        clip, config, prepared.ctrl, len(made.nominal_targets)))
    np.testing.assert_array_equal(made.label_states(states, times, keys), around.label_states(states, times, keys))


def test_periodic_targets_keep_the_phase_mean_of_the_offsets_and_drop_the_cycles_own(clip_and_config):
    """A trajectory built as the reference's targets + an offset per phase + a deviation per cycle
    (zero-mean over the cycles at each phase): made periodic, exactly reference + the per-phase
    offset, at every step (the synthetic clip's cycle is 8 control steps; 4 cycles)."""
    from imitate.experts.search import periodic_targets

    clip, config = clip_and_config
    per_cycle, cycles = 8, 4
    assert abs(clip.duration_s - per_cycle * config.control_dt) < 1e-9
    rng = np.random.default_rng(3)
    steps = per_cycle * cycles
    reference = np.clip(clip.qpos(config.control_dt * np.arange(1, steps + 1))[:, hum.HINGE_QPOS],
                        hum.HINGE_RANGE[:, 0], hum.HINGE_RANGE[:, 1])
    phase_offsets = rng.normal(0, 0.2, (per_cycle, hum.NU))
    deviations = rng.normal(0, 0.1, (cycles, per_cycle, hum.NU))
    deviations -= deviations.mean(axis=0)  # zero-mean over the cycles at each phase
    ctrl = np.empty((steps, hum.NU))
    for k in range(steps):
        ctrl[k] = reference[k] + phase_offsets[k % per_cycle] + deviations[k // per_cycle, k % per_cycle]
    periodic = periodic_targets(clip, config, ctrl)
    for k in range(steps):
        np.testing.assert_allclose(periodic[k], reference[k] + phase_offsets[k % per_cycle], atol=1e-12)
    assert np.abs(periodic - ctrl).max() > 0.05  # the cycles' own deviations are gone
    # a trajectory already periodic is left as it is
    np.testing.assert_allclose(periodic_targets(clip, config, periodic), periodic, atol=1e-12)


def test_periodic_targets_go_on_past_a_trajectory_that_ended_part_way(clip_and_config):
    """A reconstruction that gave up after 2.5 cycles (20 steps of the synthetic clip's 8-step
    cycle) still guides 5 cycles: past its end, the reference's targets plus each phase's offset;
    one that gave up within its first cycle (5 steps) fills the phases it never reached by
    interpolating the offsets linearly around the cycle."""
    from imitate.experts.search import periodic_targets

    clip, config = clip_and_config
    per_cycle, steps = 8, 40
    reference = np.clip(clip.qpos(config.control_dt * np.arange(1, steps + 1))[:, hum.HINGE_QPOS],
                        hum.HINGE_RANGE[:, 0], hum.HINGE_RANGE[:, 1])
    phase_offsets = np.random.default_rng(4).normal(0, 0.2, (per_cycle, hum.NU))
    trajectory = np.array([reference[k] + phase_offsets[k % per_cycle] for k in range(steps)])
    longer = periodic_targets(clip, config, trajectory[:20], steps)
    assert longer.shape == (steps, hum.NU)
    for k in range(steps):
        np.testing.assert_allclose(longer[k], reference[k] + phase_offsets[k % per_cycle], atol=1e-12)
    short = periodic_targets(clip, config, trajectory[:5], steps)
    # step k is compared at (k + 1) dt, so its phase bin is (k + 1) mod 8: the 5 steps reach bins
    # 1-5; bins 6, 7 and 0 lie between bin 5 and bin 1 (next cycle), a quarter of the way apart
    by_bin = {(k + 1) % per_cycle: phase_offsets[k % per_cycle] for k in range(5)}
    for gap, b in enumerate((6, 7, 0), start=1):
        by_bin[b] = by_bin[5] + gap / 4 * (by_bin[1] - by_bin[5])
    for k in range(steps):
        np.testing.assert_allclose(short[k], reference[k] + by_bin[(k + 1) % per_cycle], atol=1e-12)
    # fewer steps asked than the trajectory has: all of the trajectory's
    assert periodic_targets(clip, config, trajectory, 10).shape == (steps, hum.NU)
