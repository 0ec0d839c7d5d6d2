"""Evaluation metrics against an explicit loop over the single Gymnasium env."""

import numpy as np
import pytest

from imitate import make_env
from imitate.env import EnvConfig
from imitate.evaluate import evaluate, expert_controller
from imitate.expert import PDExpert
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
