"""The imitation env and vector env: Gymnasium contract, reference playback, seeding,
equivalence of the batch with single envs, termination, truncation, action mapping and the
observation's heading invariance.

Independent references: MuJoCo's compiled model (ranges, gears, dof addresses), MuJoCo's own
kinematics, differentiation and forces, DeepMimic's figures written out here.
"""

import math
import warnings

import mujoco
import numpy as np
import pytest

import imitate
import imitate.env
from imitate import humanoid as hum
from imitate.config import EnvConfig, action_to_ctrl, targets_to_action
from imitate.env import ImitationEnv, ImitationVecEnv
from imitate.errors import ConfigError
from imitate.observation import OBS_NAMES, observe
from imitate.simulation import Simulation

# The 15 classic DeepMimic clips (shared/deepmimic/README.md).
CLASSIC_CLIPS = ("backflip", "cartwheel", "crawl", "dance_a", "dance_b", "getup_facedown",
                 "getup_faceup", "jump", "kick", "punch", "roll", "run", "spin", "spinkick", "walk")
# DeepMimic's torque limits [N m] per joint (shared/deepmimic/README.md).
TORQUE_LIMIT = {"chest": 200.0, "neck": 50.0, "hip": 200.0, "knee": 150.0, "ankle": 90.0,
                "shoulder": 100.0, "elbow": 60.0}
VEL = mujoco.mjtStage.mjSTAGE_VEL

XML_MODEL = mujoco.MjModel.from_xml_path(str(hum.MODEL_PATH))


def limit_of(hinge: str) -> float:
    """Torque limit of a hinge ("left_knee", "chest_x", ...) from DeepMimic's figures."""
    for part, limit in TORQUE_LIMIT.items():
        if part in hinge.split("_"):
            return limit
    raise KeyError(hinge)


def hinge_names(model) -> list[str]:
    """Names of the hinge each actuator drives, in actuator order (from MuJoCo)."""
    return [model.joint(int(model.actuator_trnid[i, 0])).name for i in range(model.nu)]


def reference_action(env) -> np.ndarray:
    """The pd_target action aiming every servo at the reference's current hinge angles."""
    q = env.clip.qpos(env.sim.ref_time_s)[0]
    return targets_to_action(q[7:])


@pytest.fixture(autouse=True)
def _mujoco_log_in_tmp(tmp_path, monkeypatch):
    """MuJoCo appends its warnings to ./MUJOCO_LOG.TXT: keep them out of the project."""
    monkeypatch.chdir(tmp_path)


# -------------------------------------------------------------------------------- contract
def test_gymnasium_check_env_passes():
    from gymnasium.utils.env_checker import check_env

    env = imitate.make_env("walk")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # infinite Box bounds are intended
        check_env(env, skip_render_check=True)
    env.close()


# ------------------------------------------------------------------------- reference playback
def _playback_times(clip, n: int) -> np.ndarray:
    """n start times spread over the clip (over two cycles for a looping clip)."""
    span = 2.0 * clip.duration_s if clip.loop else clip.duration_s - 6.0 / 30.0
    return np.linspace(0.0, span, n, endpoint=False) + 0.0123


@pytest.mark.parametrize("name", CLASSIC_CLIPS)
def test_kinematic_playback_scores_one_every_step(name):
    """Putting the simulator on the clip at every control step scores reward 1 (each term)."""
    pytest.importorskip("pybullet_data")
    n, steps = 6, 6
    sim = Simulation(EnvConfig(clip=name), n, nthread=1)
    ids = np.arange(n)
    sim.reset(ids, _playback_times(sim.clip, n))
    for _ in range(steps):
        sim.steps += 1  # one control step on
        t = sim.ref_time_s
        sim.batch.qpos[:] = sim.clip.qpos(t)
        sim.batch.qvel[:] = sim.clip.qvel(t)
        sim.batch.forward(stage=VEL)
        sim.refresh()
        for term in ("pose", "velocity", "end_effector", "com", "root", "total"):
            np.testing.assert_allclose(getattr(sim.terms, term), 1.0, atol=1e-6, err_msg=f"{name}: {term}")


@pytest.mark.parametrize("name", CLASSIC_CLIPS)
def test_playback_with_mujoco_velocities_scores_one(name):
    """The simulator on the clip's pose with the velocity MuJoCo differentiates from the
    clip's own motion (mj_differentiatePos across a stretch inside one frame interval, where
    the motion is linear in hinge angles and a constant-rate slerp at the root) still scores
    1: the reference velocities (root angular velocity included, sign and frame) are right."""
    pytest.importorskip("pybullet_data")
    clip = imitate.load_clip(name)
    intervals = np.unique(np.linspace(0, clip.num_frames - 2, 30).round().astype(int))
    t0, t1 = clip.frame_times[intervals], clip.frame_times[intervals + 1]
    mid, h = 0.5 * (t0 + t1), 0.25 * (t1 - t0)
    if clip.loop:
        mid = mid + clip.duration_s * (np.arange(len(mid)) % 2)  # every other one a cycle on
    n = len(mid)
    sim = Simulation(EnvConfig(clip=name), n, nthread=1, clip=clip)
    ids = np.arange(n)
    sim.reset(ids, mid)
    qa, qb = clip.qpos(mid - h), clip.qpos(mid + h)
    qvel = np.zeros((n, sim.model.nv))
    for i in range(n):
        mujoco.mj_differentiatePos(sim.model, qvel[i], 2.0 * h[i], qa[i], qb[i])
    sim.batch.qvel[:] = qvel
    sim.batch.forward(stage=VEL)
    sim.refresh()
    np.testing.assert_allclose(sim.terms.velocity, 1.0, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(sim.terms.total, 1.0, atol=1e-6, err_msg=name)


def test_list_clips_finds_the_classic_clips():
    pytest.importorskip("pybullet_data")
    names = {c.name for c in imitate.list_clips()}
    assert set(CLASSIC_CLIPS) <= names


# --------------------------------------------------------------------------------- seeding
def _run_single(env, seed, actions):
    obs, info = env.reset(seed=seed)
    rows = [(obs, 0.0, False, False)]
    for a in actions:
        obs, r, term, trunc, _ = env.step(a)
        rows.append((obs, r, term, trunc))
    return info["start_time_s"], rows


def test_single_env_same_seed_same_episode():
    actions = np.random.default_rng(5).uniform(-1.0, 1.0, size=(30, hum.NU))
    a, b = imitate.make_env("walk"), imitate.make_env("walk")
    start_a, rows_a = _run_single(a, 123, actions)
    start_b, rows_b = _run_single(b, 123, actions)
    start_c, rows_c = _run_single(a, 123, actions)  # the same env, re-seeded
    assert start_a == start_b == start_c
    for ra, rb, rc in zip(rows_a, rows_b, rows_c, strict=True):
        np.testing.assert_array_equal(ra[0], rb[0])
        np.testing.assert_array_equal(ra[0], rc[0])
        assert ra[1:] == rb[1:] == rc[1:]
    # the rollout did something: observations change along it
    assert not np.array_equal(rows_a[0][0], rows_a[-1][0])


def test_single_env_different_seeds_different_start_times():
    env = imitate.make_env("walk")
    starts = {env.reset(seed=s)[1]["start_time_s"] for s in range(8)}
    assert len(starts) == 8
    assert all(0.0 <= t < env.clip.duration_s for t in starts)
    fixed = imitate.make_env("walk", random_start=False)
    assert {fixed.reset(seed=s)[1]["start_time_s"] for s in range(3)} == {0.0}


def test_a_share_of_episodes_starts_at_time_zero_with_zero_start_share():
    """EnvConfig.zero_start_share: each random start is 0 instead with that probability (a
    binomial count of zeros; the rest uniform over the clip); 0 (the default) draws exactly the
    uniform times earlier versions drew from the same generator; out of [0, 1] is refused."""
    from scipy.stats import binomtest

    n = 2000
    plain = Simulation(EnvConfig(), 1).start_times(np.random.default_rng(5), n)
    duration = Simulation(EnvConfig(), 1).clip.duration_s
    assert np.array_equal(plain, np.random.default_rng(5).uniform(0.0, duration, size=n))
    mixed = Simulation(EnvConfig(zero_start_share=0.25), 1).start_times(np.random.default_rng(5), n)
    zeros = int((mixed == 0.0).sum())
    assert binomtest(zeros, n, 0.25).pvalue > 1e-4
    assert np.array_equal(mixed[mixed > 0], plain[mixed > 0])  # the others: the same uniform draws
    assert (Simulation(EnvConfig(zero_start_share=1.0), 1).start_times(np.random.default_rng(5), 50) == 0).all()
    with pytest.raises(ConfigError, match="zero_start_share must be in"):
        EnvConfig(zero_start_share=1.5)


def _run_vec(env, seed, actions):
    obs, info = env.reset(seed=seed)
    rows = [(obs, np.zeros(env.num_envs), np.zeros(env.num_envs, bool), np.zeros(env.num_envs, bool))]
    for a in actions:
        obs, r, term, trunc, _ = env.step(a)
        rows.append((obs, r, term, trunc))
    return info["start_time_s"], rows


def test_vec_env_same_seed_same_episodes_and_different_seed_different_starts():
    n = 3
    actions = np.random.default_rng(9).uniform(-1.0, 1.0, size=(30, n, hum.NU))
    a = imitate.make_vec_env("walk", num_envs=n, nthread=2)
    b = imitate.make_vec_env("walk", num_envs=n, nthread=1)
    start_a, rows_a = _run_vec(a, 77, actions)
    start_b, rows_b = _run_vec(b, 77, actions)
    np.testing.assert_array_equal(start_a, start_b)
    for ra, rb in zip(rows_a, rows_b, strict=True):
        for x, y in zip(ra, rb, strict=True):
            np.testing.assert_array_equal(x, y)
    start_c, _ = _run_vec(a, 78, actions[:1])
    assert not np.array_equal(start_a, start_c)
    assert len(set(np.round(start_a, 12))) == n  # each env its own start


# ------------------------------------------------------------------ vec env == N single envs
def test_vec_env_equals_single_envs():
    starts = np.array([0.0, 0.41, 0.93])
    n = len(starts)
    vec = imitate.make_vec_env("walk", num_envs=n, nthread=2)
    singles = [imitate.make_env("walk") for _ in range(n)]
    vobs, _ = vec.reset(options={"start_time_s": starts})
    sobs = np.stack([env.reset(options={"start_time_s": float(t)})[0] for env, t in zip(singles, starts, strict=True)])
    np.testing.assert_allclose(vobs, sobs, rtol=0, atol=1e-9)
    rng = np.random.default_rng(3)
    steps = 0
    for _ in range(12):
        actions = np.stack([reference_action(env) for env in singles]) + rng.normal(0.0, 0.1, size=(n, hum.NU))
        vobs, vrew, vterm, vtrunc, vinfo = vec.step(actions)
        outs = [env.step(a) for env, a in zip(singles, actions, strict=True)]
        np.testing.assert_allclose(vobs, np.stack([o[0] for o in outs]), rtol=0, atol=1e-9)
        np.testing.assert_allclose(vrew, [o[1] for o in outs], rtol=0, atol=1e-9)
        np.testing.assert_array_equal(vterm, [o[2] for o in outs])
        np.testing.assert_array_equal(vtrunc, [o[3] for o in outs])
        for key in ("reward_pose", "reward_velocity", "reward_end_effector", "reward_com"):
            np.testing.assert_allclose(vinfo[key], [o[4][key] for o in outs], rtol=0, atol=1e-9)
        for i, env in enumerate(singles):
            np.testing.assert_array_equal(vec.sim.batch.qpos[i], env.state()[0])
        steps += 1
        if (vterm | vtrunc).any():
            break  # the vec env autoresets from here on
    assert steps >= 5


# ---------------------------------------------------------------- asynchronous stepping
def _lockstep(vec, pipe, actions):
    """One control step of both envs with the same actions; the pipelined env's groups sent
    in turn and received, its results put back in env order."""
    out = vec.step(actions)
    for g in range(pipe.groups):
        pipe.send(actions[pipe.envs(g)], g)
    parts = [pipe.recv() for _ in range(pipe.groups)]
    assert [p[0] for p in parts] == list(range(pipe.groups))  # received oldest first
    return out, parts


@pytest.mark.parametrize("groups", [1, 2, 3])
def test_pipelined_env_lives_the_vec_envs_episodes_bit_for_bit(groups):
    """Same seed, same actions: the same observations, rewards, endings, infos and simulator
    states in every step, across autoresets (start times drawn from the one stream in order)."""
    n = 7
    vec = imitate.make_vec_env("walk", num_envs=n, nthread=2)
    pipe = imitate.env.make_pipelined_vec_env("walk", num_envs=n, nthread=2, groups=groups)
    assert np.array_equal(np.concatenate([pipe.envs(g) for g in range(groups)]), np.arange(n))
    vobs, vinfo = vec.reset(seed=9)
    pobs, pinfo = pipe.reset(seed=9)
    np.testing.assert_array_equal(pobs, vobs)
    np.testing.assert_array_equal(pinfo["start_time_s"], vinfo["start_time_s"])
    rng = np.random.default_rng(2)
    ended = 0
    for _ in range(40):
        (vobs, vrew, vterm, vtrunc, vinfo), parts = _lockstep(vec, pipe, rng.uniform(-1.0, 1.0, (n, hum.NU)))
        for g, obs, rew, term, trunc, info in parts:
            ids = pipe.envs(g)
            np.testing.assert_array_equal(obs, vobs[ids])
            np.testing.assert_array_equal(rew, vrew[ids])
            np.testing.assert_array_equal(term, vterm[ids])
            np.testing.assert_array_equal(trunc, vtrunc[ids])
            assert info.keys() <= vinfo.keys() and ("final_obs" in info) == bool(vinfo["_final_obs"][ids].any())
            for key, value in info.items():
                np.testing.assert_array_equal(value, vinfo[key][ids], err_msg=key)
            np.testing.assert_array_equal(pipe.sims[g].batch.state, vec.sim.batch.state[ids])
        ended += int((vterm | vtrunc).sum())
    assert ended >= n  # autoresets happened, in several envs


@pytest.mark.parametrize("episode_s", [None, 0.4])
def test_step_with_autoreset_is_step_then_reset(episode_s):
    """Simulation.step(action, autoreset=rng) (the vec env's step: one observation call for the
    last step and the new episodes) gives, bit for bit, what step then reset of the ended
    humanoids at start_times(rng) gives: falls (random actions), truncations and a non-finite
    state among them."""
    config = EnvConfig(episode_s=episode_s)
    fused, plain = Simulation(config, 6, nthread=2), Simulation(config, 6, nthread=2)
    rng_fused, rng_plain = np.random.default_rng(8), np.random.default_rng(8)
    for sim, rng in ((fused, rng_fused), (plain, rng_plain)):
        sim.reset(np.arange(6), sim.start_times(rng, 6))
    actions = np.random.default_rng(1).uniform(-1.0, 1.0, (50, 6, hum.NU))
    ended = 0
    for k, action in enumerate(actions):
        if k == 7:
            for sim in (fused, plain):
                sim.batch.qvel[2, 9] = np.nan
        reward, term, trunc, info = fused.step(action, autoreset=rng_fused)
        expected = plain.step(action)
        done = expected[1] | expected[2]
        final_obs = plain.obs.copy()
        if done.any():
            plain.reset(np.flatnonzero(done), plain.start_times(rng_plain, int(done.sum())))
        for x, y in zip((reward, term, trunc), expected[:3], strict=True):
            np.testing.assert_array_equal(x, y)
        assert list(info) == list(expected[3]) + ["_final_obs"] + (["final_obs"] if done.any() else [])
        for key in expected[3]:
            np.testing.assert_array_equal(info[key], expected[3][key], err_msg=key)
        np.testing.assert_array_equal(info["_final_obs"], done)
        if done.any():
            np.testing.assert_array_equal(info["final_obs"], final_obs)
        np.testing.assert_array_equal(fused.obs, plain.obs)
        np.testing.assert_array_equal(fused.batch.state, plain.batch.state)
        for name in ("steps", "start_time_s", "limit_s", "fall_contacts", "root_dropped", "nonfinite"):
            np.testing.assert_array_equal(getattr(fused, name), getattr(plain, name), err_msg=name)
        ended += int(done.sum())
    assert ended >= 6


def test_step_async_then_step_wait_is_step():
    a = Simulation(EnvConfig(), 3, nthread=2)
    b = Simulation(EnvConfig(), 3, nthread=2)
    starts = np.array([0.1, 0.4, 0.8])
    a.reset(np.arange(3), starts)
    b.reset(np.arange(3), starts)
    for action in np.random.default_rng(4).uniform(-1.0, 1.0, (6, 3, hum.NU)):
        expected = a.step(action)
        b.step_async(action)
        got = b.step_wait()
        for x, y in zip(got[:3], expected[:3], strict=True):
            np.testing.assert_array_equal(x, y)
        for key in expected[3]:
            np.testing.assert_array_equal(got[3][key], expected[3][key], err_msg=key)
        np.testing.assert_array_equal(b.obs, a.obs)
        np.testing.assert_array_equal(b.steps, a.steps)


def test_step_async_misuse_is_refused():
    sim = Simulation(EnvConfig(), 2, nthread=1)
    sim.reset(np.arange(2), np.zeros(2))
    with pytest.raises(RuntimeError, match="no step in flight"):
        sim.step_wait()
    sim.step_async(np.zeros((2, hum.NU)))
    with pytest.raises(RuntimeError, match="already in flight"):
        sim.step_async(np.zeros((2, hum.NU)))
    sim.step_wait()
    with pytest.raises(ValueError, match="expected finite"):
        sim.step_async(np.full((2, hum.NU), np.nan))  # checked before the physics starts
    sim.step_async(np.zeros((2, hum.NU)))  # and nothing was left in flight
    sim.step_wait()


def test_an_error_in_the_physics_thread_is_raised_by_step_wait_and_the_step_does_not_count():
    sim = Simulation(EnvConfig(), 2, nthread=1)
    sim.reset(np.arange(2), np.zeros(2))

    def broken_step(**kwargs):
        raise ValueError("a Python physics callback")

    sim.batch.step = broken_step
    sim.step_async(np.zeros((2, hum.NU)))
    with pytest.raises(ValueError, match="physics callback"):
        sim.step_wait()
    np.testing.assert_array_equal(sim.steps, [0, 0])
    with pytest.raises(ValueError, match="physics callback"):
        sim.step(np.zeros((2, hum.NU)))
    np.testing.assert_array_equal(sim.steps, [0, 0])


def test_pipelined_env_misuse_is_refused():
    pipe = imitate.env.make_pipelined_vec_env("walk", num_envs=4, nthread=1, groups=2)
    obs, _ = pipe.reset(seed=0)
    with pytest.raises(RuntimeError, match="no step in flight"):
        pipe.recv()
    with pytest.raises(ValueError, match="expected group 0"):
        pipe.send(np.zeros((2, hum.NU)), 1)
    pipe.send(np.zeros((2, hum.NU)), 0)
    assert pipe.in_flight == [0]
    with pytest.raises(RuntimeError, match="in flight"):
        pipe.reset(seed=0)
    assert pipe.recv()[0] == 0 and pipe.in_flight == []
    with pytest.raises(ValueError, match="groups must be"):
        imitate.env.make_pipelined_vec_env("walk", num_envs=2, groups=3)


# ------------------------------------------------------------------------------ termination
def _lay_flat(env, index=0):
    """Put the root lying on its side just above the floor (90 degrees about x, 0.15 m up)."""
    q = env.sim.batch.qpos[index]
    q[2] = 0.15
    quat = np.zeros(4)
    mujoco.mju_axisAngle2Quat(quat, np.array([1.0, 0.0, 0.0]), math.pi / 2)
    q[3:7] = quat
    env.sim.batch.qvel[index] = 0.0


@pytest.mark.parametrize("max_root_drop_m", [0.4, 100.0])  # 100: floor contacts alone
def test_humanoid_laid_flat_terminates(max_root_drop_m):
    env = imitate.make_env("walk", max_root_drop_m=max_root_drop_m)
    env.reset(options={"start_time_s": 0.0})
    _lay_flat(env)
    for _ in range(60):  # 2 s
        _, reward, term, trunc, info = env.step(reference_action(env))
        if term or trunc:
            break
    assert term and info["fell"] and not info["nonfinite"]
    assert not trunc


@pytest.mark.parametrize("max_root_drop_m", [0.4, 100.0])
def test_limp_humanoid_falls_and_terminates_within_2s(max_root_drop_m):
    env = imitate.make_env("walk", action_space="torque", max_root_drop_m=max_root_drop_m)
    env.reset(options={"start_time_s": 0.0})
    steps = 0
    while steps < 60:  # 2 s
        _, _, term, trunc, info = env.step(np.zeros(hum.NU))
        steps += 1
        if term or trunc:
            break
    assert term and info["fell"] and not trunc and not info["nonfinite"]
    assert steps >= 2  # it stood at the start


def test_standing_on_the_reference_does_not_terminate():
    env = imitate.make_env("walk")
    env.reset(options={"start_time_s": 0.0})
    model = env.sim.model
    floor = model.geom("floor").id
    foot_geoms = {model.geom("right_ankle").id, model.geom("left_ankle").id}
    data = mujoco.MjData(model)
    feet_touched = False
    for _ in range(5):
        _, reward, term, trunc, info = env.step(reference_action(env))
        assert not term and not trunc and not info["fell"]
        assert reward > 0.5
        env.sim.batch.get_data(0, data)
        mujoco.mj_forward(model, data)
        for c in data.contact[: data.ncon]:
            pair = {int(c.geom1), int(c.geom2)}
            if floor in pair:
                assert pair - {floor} <= foot_geoms  # only the feet touch the floor
                feet_touched = True
    assert feet_touched  # the feet on the floor do not end the episode


def test_time_limit_truncates_after_exactly_15_steps():
    env = imitate.make_env("walk", episode_s=0.5)
    env.reset(options={"start_time_s": 0.0})
    for k in range(1, 16):
        _, _, term, trunc, info = env.step(reference_action(env))
        assert not term, f"fell at step {k}"
        assert trunc == (k == 15), f"step {k}"
    assert info["time_s"] == pytest.approx(0.5)


# ------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_action_raises_naming_env_and_hinge(bad):
    env = imitate.make_env("walk")
    env.reset(seed=0)
    names = hinge_names(env.sim.model)
    i = names.index("left_knee")
    a = np.zeros(hum.NU)
    a[i] = bad
    with pytest.raises(ValueError, match=r"env 0\b.*left_knee"):
        env.step(a)
    vec = imitate.make_vec_env("walk", num_envs=3, nthread=1)
    vec.reset(seed=0)
    actions = np.zeros((3, hum.NU))
    actions[2, names.index("neck_y")] = bad
    with pytest.raises(ValueError, match=r"env 2\b.*neck_y"):
        vec.step(actions)


def test_wrong_action_shape_raises():
    env = imitate.make_env("walk")
    env.reset(seed=0)
    for shape in [(hum.NU - 1,), (hum.NU + 1,), (2, hum.NU)]:
        with pytest.raises(ValueError):
            env.step(np.zeros(shape))
    vec = imitate.make_vec_env("walk", num_envs=2, nthread=1)
    vec.reset(seed=0)
    for shape in [(2, hum.NU - 1), (3, hum.NU), (hum.NU,)]:
        with pytest.raises(ValueError):
            vec.step(np.zeros(shape))


@pytest.mark.parametrize("field, index, value", [
    ("qvel", 10, 1e30), ("qvel", 10, float("nan")), ("qvel", 0, float("inf")), ("qpos", 12, float("nan")),
])
def test_non_finite_state_ends_the_episode_without_exception(field, index, value):
    env = imitate.make_env("walk")
    env.reset(options={"start_time_s": 0.2})
    getattr(env.sim.batch, field)[0, index] = value
    obs, reward, term, trunc, info = env.step(reference_action(env))
    assert info["nonfinite"] and term and not trunc and not info["fell"]
    assert env.sim.fall_cause(0) == "non-finite state"
    assert reward == 0.0
    assert np.all(np.isfinite(obs))
    # the env can go on after a reset
    env.reset(options={"start_time_s": 0.2})
    assert env.sim.fall_cause(0) == ""  # a reset clears the last episode's ending
    _, reward, term, _, info = env.step(reference_action(env))
    assert not info["nonfinite"] and not term and reward > 0.5


def test_non_finite_state_in_one_vec_env_leaves_the_others_alone():
    starts = np.array([0.1, 0.5])
    clean = imitate.make_vec_env("walk", num_envs=2, nthread=1)
    dirty = imitate.make_vec_env("walk", num_envs=2, nthread=2)
    clean.reset(options={"start_time_s": starts})
    dirty.reset(options={"start_time_s": starts})
    dirty.sim.batch.qvel[1, 7] = float("nan")
    actions = np.stack([targets_to_action(q[7:]) for q in clean.sim.clip.qpos(starts)])
    obs_c, rew_c, _, _, _ = clean.step(actions)
    obs_d, rew_d, term_d, trunc_d, info_d = dirty.step(actions)
    np.testing.assert_array_equal(info_d["nonfinite"], [False, True])
    np.testing.assert_array_equal(term_d, [False, True])
    np.testing.assert_array_equal(info_d["_final_obs"], [False, True])
    np.testing.assert_array_equal(obs_d[0], obs_c[0])
    assert rew_d[0] == rew_c[0] and rew_d[1] == 0.0
    assert np.all(np.isfinite(obs_d))


# --------------------------------------------------------------------------- action mapping
def test_the_layout_read_from_the_model_file_is_the_compiled_models():
    """humanoid reads the hinges' names and ranges from the XML without MuJoCo; MuJoCo's own
    compile of the same file is the reference."""
    names = tuple(XML_MODEL.joint(i).name for i in range(1, XML_MODEL.njnt))
    assert hum.HINGE_NAMES == names
    np.testing.assert_array_equal(hum.HINGE_RANGE, XML_MODEL.jnt_range[1:])
    assert XML_MODEL.jnt_type[0] == mujoco.mjtJoint.mjJNT_FREE and len(names) == hum.NU


def test_pd_action_ends_map_onto_the_hinge_ranges():
    env = imitate.make_env("walk")
    model = env.sim.model
    joints = model.actuator_trnid[:, 0]
    # the compiled model's servo bounds are its joints' ranges, as in the XML
    np.testing.assert_array_equal(model.actuator_ctrlrange, model.jnt_range[joints])
    np.testing.assert_array_equal(model.jnt_range, XML_MODEL.jnt_range)
    lo, hi = model.actuator_ctrlrange[:, 0], model.actuator_ctrlrange[:, 1]
    for action, expected in [(-1.0, lo), (1.0, hi), (0.0, 0.5 * (lo + hi)), (5.0, hi), (-3.0, lo)]:
        env.reset(options={"start_time_s": 0.0})
        env.step(np.full(hum.NU, action))
        np.testing.assert_allclose(env.sim.batch.ctrl[0], expected, rtol=0, atol=1e-12)
    # halfway between the middle and the top end
    env.reset(options={"start_time_s": 0.0})
    env.step(np.full(hum.NU, 0.5))
    np.testing.assert_allclose(env.sim.batch.ctrl[0], 0.25 * lo + 0.75 * hi, rtol=0, atol=1e-12)


def test_targets_to_action_inverts_action_to_ctrl():
    rng = np.random.default_rng(2)
    lo, hi = XML_MODEL.actuator_ctrlrange[:, 0], XML_MODEL.actuator_ctrlrange[:, 1]
    a = rng.uniform(-1.0, 1.0, size=(7, hum.NU))
    np.testing.assert_allclose(targets_to_action(action_to_ctrl(a, "pd_target")), a, atol=1e-12)
    x = lo + (hi - lo) * rng.uniform(0.0, 1.0, size=(7, hum.NU))
    np.testing.assert_allclose(action_to_ctrl(targets_to_action(x), "pd_target"), x, atol=1e-12)
    np.testing.assert_allclose(targets_to_action(lo), -1.0, atol=1e-12)
    np.testing.assert_allclose(targets_to_action(hi), 1.0, atol=1e-12)


def test_torque_action_is_action_times_torque_limit():
    env = imitate.make_env("walk", action_space="torque")
    model = env.sim.model
    names = hinge_names(model)
    limits = np.array([limit_of(h) for h in names])
    dofs = model.jnt_dofadr[model.actuator_trnid[:, 0]]
    rng = np.random.default_rng(4)
    a = rng.uniform(-1.0, 1.0, size=hum.NU)
    a[:3] = [1.0, -1.0, 1.7]  # ends, and beyond them (clipped)
    expected = np.clip(a, -1.0, 1.0) * limits
    env.reset(options={"start_time_s": 0.3})
    qfrc_actuator = env.sim.batch.bind("qfrc_actuator")  # bound before the call that fills it
    env.step(a)
    # what the env's own physics steps applied (derived fields of the last substep)
    np.testing.assert_allclose(qfrc_actuator[0, dofs], expected, rtol=1e-12, atol=1e-9)
    # one more physics step by MuJoCo itself from the env's state and controls
    data = env.sim.batch.get_data(0)
    mujoco.mj_step(model, data)
    np.testing.assert_allclose(data.actuator_force * model.actuator_gear[:, 0], expected, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(data.qfrc_actuator[dofs], expected, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(np.delete(data.qfrc_actuator, dofs), 0.0, atol=1e-12)  # root: none


# ----------------------------------------------------------------------------- autoreset
def test_vec_env_autoresets_in_the_same_step():
    starts = np.array([0.2, 0.6, 0.9])
    vec = imitate.make_vec_env("walk", num_envs=3, nthread=2)
    vec.reset(seed=5, options={"start_time_s": starts})
    _lay_flat(vec, 1)
    actions = np.stack([targets_to_action(q[7:]) for q in vec.sim.clip.qpos(starts)])
    obs, reward, term, trunc, info = vec.step(actions)
    np.testing.assert_array_equal(term, [False, True, False])
    np.testing.assert_array_equal(info["_final_obs"], [False, True, False])
    assert info["fell"][1]
    height = OBS_NAMES.index("root_height")
    final = info["final_obs"][1]
    assert final[height] < 0.3  # the last observation of the fallen humanoid
    # the next observation is a fresh reset one, at the start time the env drew
    new_start = vec.sim.start_time_s[1]
    assert vec.sim.elapsed_s[1] == 0.0
    clip = vec.sim.clip
    t = np.array([new_start])
    q = clip.qpos(t)
    ahead = t + vec.config.lookahead_s
    expected = observe(q, clip.qvel(t), _body_pos(q[0])[None], clip.phase(t), clip.qpos(ahead), clip.qvel(ahead))
    np.testing.assert_allclose(obs[1], expected[0], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(vec.sim.batch.qpos[1], q[0])
    assert obs[1][height] == pytest.approx(vec.sim.clip.qpos(new_start)[0, 2], abs=1e-6)
    # the others went on
    np.testing.assert_array_equal(obs[[0, 2]], info["final_obs"][[0, 2]])
    assert np.all(vec.sim.elapsed_s[[0, 2]] > 0.0)


# --------------------------------------------------------------------- observation heading
def _yaw(psi):
    q = np.zeros(4)
    mujoco.mju_axisAngle2Quat(q, np.array([0.0, 0.0, 1.0]), psi)
    return q


def _qmul(a, b):
    out = np.zeros(4)
    mujoco.mju_mulQuat(out, a, b)
    return out


def _rot(q, v):
    out = np.zeros(3)
    mujoco.mju_rotVecQuat(out, np.asarray(v, float), q)
    return out


def _random_qpos(rng):
    q = XML_MODEL.qpos0.copy()
    q[0:3] = rng.uniform(-2, 2, size=3) + [0, 0, 1]
    tilt = np.zeros(4)
    axis = rng.normal(size=3)
    mujoco.mju_axisAngle2Quat(tilt, axis / np.linalg.norm(axis), rng.uniform(0.1, 1.0))
    q[3:7] = _qmul(_yaw(rng.uniform(-3, 3)), tilt)
    lo, hi = XML_MODEL.jnt_range[1:, 0], XML_MODEL.jnt_range[1:, 1]
    q[7:] = lo + (hi - lo) * rng.uniform(0.2, 0.8, size=len(lo))
    return q


def _body_pos(qpos):
    data = mujoco.MjData(XML_MODEL)
    data.qpos[:] = qpos
    mujoco.mj_kinematics(XML_MODEL, data)
    return data.xpos[[XML_MODEL.body(b).id for b in hum.BODY_NAMES]].copy()


def _turn(qpos, qvel, psi):
    """The state turned by psi about the world z axis (through the origin)."""
    spin = _yaw(psi)
    q, v = qpos.copy(), qvel.copy()
    q[0:3] = _rot(spin, qpos[0:3])
    q[3:7] = _qmul(spin, qpos[3:7])
    v[0:3] = _rot(spin, qvel[0:3])  # world-frame linear velocity turns
    return q, v  # the root's angular velocity is in its own frame: it stays


@pytest.mark.parametrize("psi", [0.3, -2.2, math.pi])
def test_observation_is_heading_invariant(psi):
    rng = np.random.default_rng(11)
    qpos, ref_qpos = _random_qpos(rng), _random_qpos(rng)
    qvel, ref_qvel = rng.normal(size=XML_MODEL.nv), rng.normal(size=XML_MODEL.nv)
    phase = np.array([0.37])
    base = observe(qpos[None], qvel[None], _body_pos(qpos)[None], phase, ref_qpos[None], ref_qvel[None])
    tq, tv = _turn(qpos, qvel, psi)
    trq, trv = _turn(ref_qpos, ref_qvel, psi)
    body = _body_pos(tq)
    # MuJoCo agrees the bodies turned with the root
    np.testing.assert_allclose(body, [_rot(_yaw(psi), p) for p in _body_pos(qpos)], atol=1e-12)
    turned = observe(tq[None], tv[None], body[None], phase, trq[None], trv[None])
    np.testing.assert_allclose(turned, base, rtol=0, atol=2e-5)
    # turning the humanoid alone, not its reference, is seen
    alone = observe(tq[None], tv[None], body[None], phase, ref_qpos[None], ref_qvel[None])
    assert np.abs(alone - base).max() > 1e-2
    # and a different heading-frame velocity is seen too (the check can fail)
    spun = tv.copy()
    spun[3:6] += [0.0, 0.0, 1.0]
    assert np.abs(observe(tq[None], spun[None], body[None], phase, trq[None], trv[None]) - base).max() > 0.5


def test_observation_matches_the_env_state():
    """The env's observation is observe() of MuJoCo's state; its named entries say what they
    claim (root height from qpos, hinge angles in actuator order, phase of the clip)."""
    env = imitate.make_env("walk")
    obs, info = env.reset(options={"start_time_s": 0.5})
    qpos, qvel = env.state()
    names = hinge_names(env.sim.model)
    assert obs[OBS_NAMES.index("root_height")] == pytest.approx(qpos[2], abs=1e-6)
    for h in ("right_knee", "chest_y", "left_shoulder_z"):
        adr = env.sim.model.jnt_qposadr[env.sim.model.joint(h).id]
        assert obs[OBS_NAMES.index(f"q_{h}")] == pytest.approx(qpos[adr], abs=1e-6)
        assert names.index(h) == adr - 7
    assert obs[OBS_NAMES.index("phase")] == pytest.approx(0.5 / env.clip.duration_s, abs=1e-6)


# ------------------------------------------------------- derived fields of a fresh Simulation
# A mujoco.batch.Batch fills only the derived fields bound before a call (a field bound between
# calls reads 0 until the next one): a fresh env must already see MuJoCo's kinematics and
# contacts at its first reset and first step, not only a used one.
def _expected_body_features(qpos):
    """The obs's body-position block: MuJoCo's body origins relative to the root, in the
    root's heading frame (yaw of its x axis), for every named body but the root."""
    pos = _body_pos(qpos)
    x_axis = _rot(qpos[3:7], [1.0, 0.0, 0.0])
    inv = _yaw(-math.atan2(x_axis[1], x_axis[0]))
    return np.concatenate([_rot(inv, p - qpos[0:3]) for p in pos[1:]])


def _body_block():
    first = OBS_NAMES.index(f"pos_{hum.BODY_NAMES[1]}_x")
    return slice(first, first + 3 * (len(hum.BODY_NAMES) - 1))


def test_reset_observation_of_a_used_env_matches_mujoco_kinematics():
    env = imitate.make_env("walk")
    env.reset(options={"start_time_s": 0.1})
    env.step(reference_action(env))
    obs, _ = env.reset(options={"start_time_s": 0.7})
    qpos, _ = env.state()
    np.testing.assert_allclose(obs[_body_block()], _expected_body_features(qpos), rtol=0, atol=1e-5)


def test_fresh_env_first_observation_matches_mujoco_kinematics():
    env = imitate.make_env("walk")
    obs, _ = env.reset(options={"start_time_s": 0.7})
    qpos, _ = env.state()
    np.testing.assert_allclose(obs[_body_block()], _expected_body_features(qpos), rtol=0, atol=1e-5)
    vec = imitate.make_vec_env("walk", num_envs=2, nthread=1)
    vobs, _ = vec.reset(options={"start_time_s": np.array([0.2, 0.9])})
    for i in range(2):
        expected = _expected_body_features(vec.sim.batch.qpos[i])
        np.testing.assert_allclose(vobs[i, _body_block()], expected, rtol=0, atol=1e-5)


def test_fresh_env_detects_floor_contact_on_its_first_step():
    """Laid flat on the floor, a fresh env must end the episode at its first step (floor
    contacts alone: the root-drop rule is switched off); a used env does."""
    for used in (True, False):
        env = imitate.make_env("walk", max_root_drop_m=100.0)
        env.reset(options={"start_time_s": 0.0})
        if used:
            env.step(reference_action(env))
            env.reset(options={"start_time_s": 0.0})
        _lay_flat(env)
        _, _, term, trunc, info = env.step(reference_action(env))
        assert term and info["fell"] and not trunc, f"used={used}"


# ------------------------------------------------------------------------------- fall rules
def _lowest_by_closed_form(model, data, body: str) -> float:
    """The lowest point [m] of a body's colliding geoms from their shapes: sphere z - r,
    capsule (local z axis) z - |R_zz| half-length - r, box z - sum_i |R_zi| size_i."""
    lowest = np.inf
    for g in range(model.ngeom):
        if model.geom_bodyid[g] != model.body(body).id or not model.geom_contype[g]:
            continue
        z, rot, size = data.geom_xpos[g][2], data.geom_xmat[g].reshape(3, 3), model.geom_size[g]
        kind = model.geom_type[g]
        if kind == mujoco.mjtGeom.mjGEOM_SPHERE:
            low = z - size[0]
        elif kind == mujoco.mjtGeom.mjGEOM_CAPSULE:
            low = z - abs(rot[2, 2]) * size[1] - size[0]
        elif kind == mujoco.mjtGeom.mjGEOM_BOX:
            low = z - np.abs(rot[2]) @ size
        else:
            raise AssertionError(f"no closed form for geom type {kind}")
        lowest = min(lowest, low)
    return lowest


def test_lowest_point_heights_match_closed_forms_of_the_shapes():
    rng = np.random.default_rng(3)
    model = hum.load_model()
    data = mujoco.MjData(model)
    qpos = np.zeros((6, hum.NQ))
    qpos[:, 2] = rng.uniform(0.3, 1.2, 6)
    qpos[:, 3:7] = rng.normal(size=(6, 4))
    qpos[:, 3:7] /= np.linalg.norm(qpos[:, 3:7], axis=1, keepdims=True)
    qpos[:, 7:] = rng.uniform(hum.HINGE_RANGE[:, 0], hum.HINGE_RANGE[:, 1], (6, hum.NU))
    heights = hum.lowest_point_heights(qpos)
    for i, q in enumerate(qpos):
        data.qpos[:] = q
        mujoco.mj_kinematics(model, data)
        expected = [_lowest_by_closed_form(model, data, b) for b in hum.BODY_NAMES]
        np.testing.assert_allclose(heights[i], expected, atol=1e-6)


def _lowered_clip(tmp_path, drop_m: float):
    """The synthetic clip with its root lowered by drop_m (DeepMimic's Y is up)."""
    from conftest import synthetic_frames, write_clip

    frames = synthetic_frames()
    for frame in frames:
        frame[2] -= drop_m
    return imitate.load_clip(write_clip(tmp_path / f"lowered_{drop_m}.txt", frames))


@pytest.mark.parametrize("drop_m", [0.0, 0.6])
def test_clip_rule_spares_exactly_the_bodies_the_reference_puts_near_the_floor(tmp_path, drop_m):
    from imitate.config import REFERENCE_FLOOR_MARGIN_M, clip_fall_bodies

    clip = _lowered_clip(tmp_path, drop_m)
    model = hum.load_model()
    data = mujoco.MjData(model)
    lowest = dict.fromkeys(hum.BODY_NAMES, np.inf)
    for t in np.arange(0.0, clip.duration_s + 1e-9, 1.0 / 120.0):  # an explicit loop over the poses
        data.qpos[:] = clip.qpos(np.array([t]))[0]
        mujoco.mj_kinematics(model, data)
        for b in hum.BODY_NAMES:
            lowest[b] = min(lowest[b], _lowest_by_closed_form(model, data, b))
    spared = {b for b in hum.NON_FOOT_BODIES if lowest[b] < REFERENCE_FLOOR_MARGIN_M}
    assert bool(spared) == (drop_m > 0)  # standing: nothing spared; lowered 0.6 m: the hips at least
    expected = tuple(b for b in hum.NON_FOOT_BODIES if b not in spared)
    assert clip_fall_bodies(clip) == expected
    sim = Simulation(EnvConfig(clip=str(clip.path)), 1, nthread=1, clip=clip)
    assert sim.fall_bodies == expected
    for rule, bodies in (("all", hum.NON_FOOT_BODIES), ("deepmimic", ("root", "chest", "neck")),
                         (("right_wrist",), ("right_wrist",))):
        assert Simulation(EnvConfig(clip=str(clip.path), fall_bodies=rule), 1, nthread=1).fall_bodies == bodies


def test_clip_rule_on_classic_clips_spares_the_cartwheels_hands_only():
    pytest.importorskip("pybullet_data")
    from imitate.config import clip_fall_bodies

    assert clip_fall_bodies(imitate.load_clip("walk")) == hum.NON_FOOT_BODIES  # only the feet touch
    spared = set(hum.NON_FOOT_BODIES) - set(clip_fall_bodies(imitate.load_clip("cartwheel")))
    assert spared == {"left_wrist", "right_wrist"}


@pytest.mark.parametrize("rule", ["all", "deepmimic", ("neck", "right_wrist")])
def test_a_fall_is_exactly_a_floor_contact_of_the_rules_bodies(rule):
    """Laid flat and stepped, the episode ends by contact exactly when MuJoCo's own contact
    list has a geom of one of the rule's bodies on the floor."""
    env = imitate.make_env("walk", fall_bodies=rule, max_root_drop_m=100.0)
    model = env.sim.model
    data = mujoco.MjData(model)
    floor = model.geom("floor").id
    bodies = {model.body(b).id for b in env.sim.fall_bodies}
    env.reset(options={"start_time_s": 0.0})
    _lay_flat(env)
    seen = set()
    for _ in range(20):
        _, _, term, _, info = env.step(reference_action(env))
        env.sim.batch.get_data(0, data)
        mujoco.mj_forward(model, data)
        touching = any(floor in (c.geom1, c.geom2) and model.geom_bodyid[c.geom1 + c.geom2 - floor] in bodies
                       for c in data.contact[: data.ncon])
        assert bool(info["fell"]) == touching
        seen.add(touching)
        if term:
            break
    env.close()
    assert True in seen  # laid flat, the rule's bodies do reach the floor


@pytest.mark.parametrize("bad", ["feet", "", ("left_ankle",)])
def test_bad_fall_rule_is_refused_clearly(bad):
    from imitate.errors import ConfigError

    with pytest.raises(ConfigError, match="fall"):
        EnvConfig(fall_bodies=bad)


def test_registered_with_gymnasium(synthetic_clip_path):
    """gymnasium.make and make_vec build our envs by id, and gymnasium's own checker passes."""
    import gymnasium
    from gymnasium.utils.env_checker import check_env

    env = gymnasium.make("imitate:imitate/Track-v0", clip=str(synthetic_clip_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its advice on unbounded Boxes: observations are unbounded
        check_env(env.unwrapped, skip_render_check=True)  # rendering needs OpenGL: tests/test_render.py
    assert env.spec.id == "imitate/Track-v0" and isinstance(env.unwrapped, ImitationEnv)
    # the same seed gives the same episode through the registered id
    a, _ = env.reset(seed=3)
    b, _ = gymnasium.make("imitate/Track-v0", clip=str(synthetic_clip_path)).reset(seed=3)
    np.testing.assert_array_equal(a, b)
    native = gymnasium.make_vec("imitate/Track-v0", num_envs=3, vectorization_mode="vector_entry_point",
                                clip=str(synthetic_clip_path))
    assert isinstance(native, ImitationVecEnv) and native.num_envs == 3
    sync = gymnasium.make_vec("imitate/Track-v0", num_envs=2, vectorization_mode="sync", clip=str(synthetic_clip_path))
    for vec in (native, sync):
        obs, _ = vec.reset(seed=0)
        obs, reward, term, trunc, _ = vec.step(np.zeros((vec.num_envs, 28), np.float32))
        assert obs.shape == (vec.num_envs, 179) and reward.shape == (vec.num_envs,)
        assert np.all(reward > 0)
    env.close()


def test_mujocos_instability_warnings_go_to_the_log_not_to_the_terminal(capfd, caplog):
    """A humanoid gone unstable ends its episode as non-finite (counted by the batch); MuJoCo's own
    warning about it goes to the logger imitate.mujoco, not printed, and the handler before is restored."""
    import logging

    import mujoco

    before = mujoco.get_mju_user_warning()
    env = imitate.make_env("walk")
    env.reset(options={"start_time_s": 0.2})
    env.sim.batch.qvel[0, 10] = 1e30
    with caplog.at_level(logging.DEBUG, logger="imitate.mujoco"):
        _, _, term, _, info = env.step(reference_action(env))
    assert info["nonfinite"] and term
    printed = capfd.readouterr()
    assert "QACC" not in printed.out + printed.err and "unstable" not in printed.out + printed.err
    assert any("unstable" in r.getMessage() for r in caplog.records if r.name == "imitate.mujoco")
    assert mujoco.get_mju_user_warning() is before
