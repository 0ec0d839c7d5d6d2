"""The PD expert against closed forms and MuJoCo's own actuator forces."""

import mujoco
import numpy as np
import pytest

from imitate import humanoid as hum
from imitate.config import action_to_ctrl
from imitate.errors import ConfigError
from imitate.experts.pd import PDExpert
from imitate.motion import load_clip

# DeepMimic's gains per hinge are kp = 10 kd for every joint (humanoid3d_ctrl.txt).
KD_OVER_KP = 0.1


@pytest.fixture
def clip(synthetic_clip_path):
    return load_clip(synthetic_clip_path)


def states(clip, n=6, seed=0, noise=0.1):
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, clip.duration_s, n)
    qpos, qvel = clip.qpos(t), clip.qvel(t)
    qpos[:, 7:] += rng.normal(0, noise, (n, 28))
    qvel[:, 6:] += rng.normal(0, 10 * noise, (n, 28))
    return qpos, qvel, t


def test_pd_target_servo_applies_the_stiffened_pd_law(clip):
    """After the label is sent to the servos, MuJoCo's actuator force equals
    kp (1 + g) (r - q) + kd (dr - dq) wherever neither the target range nor the torque limit clips."""
    g = 1.0
    expert = PDExpert(clip, "pd_target", position_gain=g)
    qpos, qvel, t = states(clip, noise=0.02)
    label = expert(qpos, qvel, t)
    model = hum.load_model("pd_target")
    data = mujoco.MjData(model)
    r = clip.qpos(t + 1 / 30)[:, 7:]
    dr = clip.qvel(t + 1 / 30)[:, 6:]
    checked = 0
    for i in range(len(t)):
        data.qpos[:], data.qvel[:] = qpos[i], qvel[i]
        data.ctrl[:] = action_to_ctrl(label[i:i + 1], "pd_target")[0]
        mujoco.mj_forward(model, data)
        kp = model.actuator_gainprm[:, 0]
        expected = kp * (1 + g) * (r[i] - qpos[i, 7:]) + kp * KD_OVER_KP * (dr[i] - qvel[i, 6:])
        lo, hi = model.actuator_ctrlrange.T
        target = r[i] + g * (r[i] - qpos[i, 7:]) + KD_OVER_KP * dr[i]
        unclipped = np.abs(expected) < model.actuator_forcerange[:, 1]
        free = (np.abs(label[i]) < 1) & (target > lo) & (target < hi) & unclipped
        np.testing.assert_allclose(data.actuator_force[free], expected[free], rtol=1e-9, atol=1e-6)
        checked += free.sum()
    assert checked > 0.3 * label.size  # the synthetic clip puts some hinges outside their ranges


def test_pd_target_label_depends_on_the_state(clip):
    expert = PDExpert(clip, "pd_target")
    qpos, qvel, t = states(clip, noise=0.0)
    moved = qpos.copy()
    moved[:, 7:] += 0.05
    assert np.abs(expert(qpos, qvel, t) - expert(moved, qvel, t)).max() > 0.01


def test_torque_label_is_the_pd_torque_over_the_limit(clip):
    expert = PDExpert(clip, "torque")
    qpos, qvel, t = states(clip, noise=0.01)
    r = clip.qpos(t + 1 / 30)[:, 7:]
    dr = clip.qvel(t + 1 / 30)[:, 6:]
    # figures from DeepMimic: kp per hinge (chest 1000, neck 100, shoulder 400, elbow 300, hip 500,
    # knee 500, ankle 400) in the model's hinge order, and torque limits
    kp = np.array([1000] * 3 + [100] * 3 + [400] * 3 + [300] + [400] * 3 + [300] + ([500] * 4 + [400] * 3) * 2, float)
    limit = np.array([200] * 3 + [50] * 3 + [100] * 3 + [60] + [100] * 3 + [60] + ([200] * 3 + [150] + [90] * 3) * 2,
                     float)
    expected = np.clip((kp * (r - qpos[:, 7:]) + KD_OVER_KP * kp * dr) / limit, -1, 1)
    np.testing.assert_allclose(expert(qpos, qvel, t), expected, atol=1e-12)


def test_expert_is_batched_and_refuses_bad_settings(clip):
    expert = PDExpert(clip, "pd_target")
    qpos, qvel, t = states(clip, n=5)
    batch = expert(qpos, qvel, t)
    one_by_one = np.concatenate([expert(qpos[i:i + 1], qvel[i:i + 1], t[i:i + 1]) for i in range(5)])
    np.testing.assert_array_equal(batch, one_by_one)
    with pytest.raises(ConfigError):
        PDExpert(clip, "velocity")
    with pytest.raises(ConfigError):
        PDExpert(clip, position_gain=-1.0)
