"""scripts/bench_env.py compares like with like: its replay of an env's physics does the env's
physics and nothing else (the same Batch.step calls, the same physics steps, the same states),
so its ratio cannot drift into comparing different contact loads.

Independent reference: MuJoCo itself, one MjData per humanoid stepped by mj_step from the
recorded states and controls (mjSTATE_INTEGRATION rows, as the batch stores them).
"""

import sys
from pathlib import Path

import mujoco
import numpy as np
import pytest

from imitate.env import ImitationVecEnv, PipelinedVecEnv

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import bench_env as bench  # noqa: E402 (scripts/ is not a package)

INTEGRATION = mujoco.mjtState.mjSTATE_INTEGRATION


@pytest.fixture(autouse=True)
def _mujoco_log_in_tmp(tmp_path, monkeypatch):
    """MuJoCo appends its warnings to ./MUJOCO_LOG.TXT: keep them out of the project."""
    monkeypatch.chdir(tmp_path)


def mujoco_replay(log: bench.PhysicsLog) -> np.ndarray:
    """The final state rows (N, nstate) of log's calls done by plain mj_step, one MjData per sim."""
    model = log.sim.model
    data = mujoco.MjData(model)
    states = log.start.copy()
    for k, controls in enumerate(log.controls):
        for i in range(len(states)):
            mujoco.mj_setState(model, data, states[i], INTEGRATION)
            data.ctrl[:] = controls[i]
            for _ in range(log.kwargs["nstep"]):
                mujoco.mj_step(model, data)
            mujoco.mj_getState(model, data, states[i], INTEGRATION)
        if log.resets[k] is not None:
            ids, rows = log.resets[k]
            states[ids] = rows
    return states


def small_case(pipelined: bool, policy: bool) -> bench.Case:
    """A case of 5 humanoids (groups of 3 and 2 when pipelined), falling often under a random
    MLP or random actions, so that autoresets are in the record."""
    env = PipelinedVecEnv(num_envs=5, nthread=2, groups=2) if pipelined else ImitationVecEnv(num_envs=5, nthread=2)
    return bench.Case(env, bench.mlp(env.single_observation_space.shape[0], 28) if policy else None)


@pytest.mark.parametrize("pipelined", [False, True], ids=["vec", "pipelined"])
@pytest.mark.parametrize("policy", [False, True], ids=["random", "mlp"])
def test_replay_does_the_envs_physics_steps_to_the_same_states(pipelined, policy):
    case = small_case(pipelined, policy)
    steps = 40
    case.run(float("inf"), steps=steps)
    substeps = case.env.config.substeps
    assert [len(log.controls) for log in case.logs] == [steps] * len(case.logs)  # every group as often
    assert sum(log.physics_steps for log in case.logs) == steps * 5 * substeps
    assert any(reset is not None for log in case.logs for reset in log.resets)  # autoresets recorded
    case.replay()
    assert [r.physics_steps for r in case.replays] == [log.physics_steps for log in case.logs]
    assert case.replay_matches()
    for log, replay in zip(case.logs, case.replays, strict=True):
        env_state = log.sim.batch.state
        np.testing.assert_array_equal(replay.batch.state, env_state)
        np.testing.assert_array_equal(mujoco_replay(log), env_state)  # MuJoCo's own stepping agrees


def test_replay_calls_batch_step_as_the_env_does():
    """The same bound outputs (copied after every call) and the same step arguments."""
    case = small_case(pipelined=False, policy=False)
    case.run(float("inf"), steps=2)
    env_batch, replay_batch = case.env.sim.batch, case.replays[0].batch
    assert set(replay_batch._bound) == set(env_batch._bound) == set(bench.BOUND_FIELDS)
    assert replay_batch.nthread == env_batch.nthread and replay_batch.persistent == env_batch.persistent
    assert case.logs[0].kwargs == {"nstep": case.env.config.substeps, "stage": mujoco.mjtStage.mjSTAGE_VEL}


def test_a_replay_that_differs_from_the_env_is_caught():
    case = small_case(pipelined=False, policy=False)
    case.run(float("inf"), steps=3)
    case.logs[0].controls[1][2, 5] += 0.1  # one control of one sim, as if recorded wrong
    case.replay()
    assert not case.replay_matches()


def test_the_reported_columns_agree_with_each_other():
    report = bench.run(["env_random", "pipelined_mlp"], num_envs=4, threads=1, groups=2, seconds=0.2, rounds=2,
                       warmup_s=0.05, slice_s=0.1)
    for r in report["results"].values():
        assert r["replay_matches_env"] and r["physics_steps"] == r["replay_physics_steps"] > 0
        assert r["ratio_wall"] == pytest.approx(r["env_physics_steps_per_s"] / r["replay_physics_steps_per_s"])
        assert r["ratio_cpu"] == pytest.approx(r["env_physics_steps_per_cpu_s"] / r["replay_physics_steps_per_cpu_s"])
        assert len(r["rounds_ratio_wall"]) == 2 and 0.0 < r["batch_step_share"] <= 1.0
    assert "target" in report["results"]["pipelined_mlp"]
