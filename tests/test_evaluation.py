"""Evaluation metrics against an explicit loop over the single Gymnasium env."""

import numpy as np
import pytest

from imitate import make_env
from imitate.config import EnvConfig
from imitate.evaluation import evaluate, expert_controller
from imitate.experts.pd import PDExpert
from imitate.motion import load_clip


@pytest.mark.parametrize("action_space", ["pd_target", "torque"])
def test_metrics_equal_an_explicit_rollout(synthetic_clip_path, action_space):
    clip = load_clip(synthetic_clip_path)
    expert = PDExpert(clip, action_space)
    horizon = 2.0
    result = evaluate(expert_controller(expert), EnvConfig(clip=str(synthetic_clip_path), action_space=action_space),
                      episodes=2, horizon_s=horizon)

    env = make_env(str(synthetic_clip_path), action_space=action_space, random_start=False, episode_s=horizon)
    env.reset(seed=0)
    rewards, steps_alive = [], 0
    for k in range(60):
        qpos, qvel = env.state()
        action = expert(qpos[None], qvel[None], np.array([k / 30.0]))[0]
        _, r, terminated, truncated, _ = env.step(action)
        rewards.append(r)
        if terminated:
            break
        steps_alive += 1
        if truncated:
            break
    assert result.episodes == 2 and result.horizon_s == horizon
    assert result.normalised_return.mean == pytest.approx(sum(rewards) / 60, abs=1e-9)
    assert result.survival_s.mean == pytest.approx(steps_alive / 30.0, abs=1e-9)
    assert result.full_horizon == (2 if steps_alive == 60 else 0)
    assert result.normalised_return.std == pytest.approx(0.0, abs=1e-12)  # deterministic physics
    assert 0.0 <= result.joint_error_deg.mean < 90.0


def test_full_horizon_counts_the_episodes_that_never_fell(synthetic_clip_path):
    """Limp servos (zero torque) fall within the horizon; PD servos on a short horizon do not."""
    config = EnvConfig(clip=str(synthetic_clip_path), action_space="torque")
    limp = evaluate(lambda sim: np.zeros((sim.num_envs, 28)), config, episodes=3, horizon_s=3.0)
    assert limp.survival_s.mean < 3.0 and limp.full_horizon == 0
    expert = PDExpert(load_clip(synthetic_clip_path), "torque")
    short = evaluate(expert_controller(expert), config, episodes=3, horizon_s=0.2)
    assert short.survival_s.mean == pytest.approx(0.2) and short.full_horizon == 3


def _floor_bodies(env) -> list[str]:
    """The fall bodies that MuJoCo's own contact list has on the floor (an independent check)."""
    import mujoco

    model = env.sim.model
    data = mujoco.MjData(model)
    env.sim.batch.get_data(0, data)
    mujoco.mj_forward(model, data)
    floor = model.geom("floor").id
    on = {model.body(int(model.geom_bodyid[c.geom1 + c.geom2 - floor])).name
          for c in data.contact[: data.ncon] if floor in (c.geom1, c.geom2)}
    return [b for b in env.sim.fall_bodies if b in on]


@pytest.mark.parametrize("max_root_drop_m", [0.4, 100.0])  # 100: only floor contacts end it
def test_endings_say_when_and_why_each_episode_ended(max_root_drop_m):
    """A limp humanoid's ending names the bodies MuJoCo has on the floor (or the root drop) at
    the time and phase an explicit loop over the single env sees; a short horizon survives."""
    pytest.importorskip("pybullet_data")
    config = EnvConfig(clip="walk", action_space="torque", max_root_drop_m=max_root_drop_m)
    limp = evaluate(lambda sim: np.zeros((sim.num_envs, 28)), config, episodes=1, horizon_s=3.0, init_noise_rad=0.0)
    env = make_env("walk", action_space="torque", random_start=False, episode_s=3.0, max_root_drop_m=max_root_drop_m)
    env.reset(seed=0)
    steps_survived = 0
    while True:
        _, _, terminated, _, info = env.step(np.zeros(28))
        if terminated or steps_survived == 90:
            break
        steps_survived += 1
    assert terminated
    ending = limp.endings[0]
    assert ending["time_s"] == pytest.approx(steps_survived / 30.0) == pytest.approx(limp.survival_s.mean)
    duration = load_clip("walk").frame_times[-1]
    assert ending["phase"] == pytest.approx((ending["time_s"] / duration) % 1.0)  # the phase at that time
    ref_z, sim_z = env.sim._ref_root_z[0], env.sim.qpos[0, 2]
    touching = _floor_bodies(env)
    expected = [f"{', '.join(touching)} on the floor"] if touching else []
    if sim_z < ref_z - max_root_drop_m:
        expected.append(f"root {max_root_drop_m:g} m below the reference's")
    assert ending["cause"] == "; ".join(expected) and expected
    env.close()

    expert = PDExpert(load_clip("walk"))
    short = evaluate(expert_controller(expert), EnvConfig(clip="walk"), episodes=2, horizon_s=0.5)
    assert short.endings == ({"time_s": pytest.approx(0.5), "phase": pytest.approx(0.5 / duration),
                              "cause": "survived"},) * 2
    from imitate.evaluation import summarize_endings

    assert summarize_endings(short.endings) == "2 survived"
    assert summarize_endings(limp.endings + short.endings).startswith("2 survived; 1 ")


def test_summary_of_endings_averages_phases_around_the_cycle():
    from imitate.evaluation import summarize_endings

    wrapped = ({"time_s": 1.0, "phase": 0.98, "cause": "neck on the floor"},
               {"time_s": 2.0, "phase": 0.04, "cause": "neck on the floor"})
    assert summarize_endings(wrapped) == "2 neck on the floor (at 1.50 s, phase 0.01)"
