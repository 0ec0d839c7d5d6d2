"""The imitation reward against closed forms and MuJoCo's own kinematics.

Body positions and centres of mass come from MuJoCo (mj_kinematics + mj_comPos), joint
weights from DeepMimic's character file (written out here, not imported from imitate).
"""

import math

import mujoco
import numpy as np
import pytest

from imitate import humanoid as hum
from imitate.errors import ConfigError
from imitate.reward import Pose, RewardConfig, imitation_reward

# DeepMimic's DiffWeights (shared/deepmimic/humanoid3d_character.txt); the root's is 1.
DIFF_WEIGHT = {
    "root": 1.0, "chest": 0.5, "neck": 0.3,
    "right_hip": 0.5, "right_knee": 0.3, "right_ankle": 0.2,
    "right_shoulder": 0.3, "right_elbow": 0.2,
    "left_hip": 0.5, "left_knee": 0.3, "left_ankle": 0.2,
    "left_shoulder": 0.3, "left_elbow": 0.2,
}
WEIGHT_SUM = sum(DIFF_WEIGHT.values())  # 4.8
TERMS = ("pose", "velocity", "end_effector", "com", "root")

MODEL = mujoco.MjModel.from_xml_path(str(hum.MODEL_PATH))
DATA = mujoco.MjData(MODEL)
BODY_IDS = [MODEL.body(b).id for b in hum.BODY_NAMES]
ROOT_BODY = MODEL.body("root").id


def qadr(hinge: str) -> int:
    """qpos address of a hinge, from MuJoCo."""
    return int(MODEL.jnt_qposadr[MODEL.joint(hinge).id])


def dadr(hinge: str) -> int:
    """qvel address of a hinge, from MuJoCo."""
    return int(MODEL.jnt_dofadr[MODEL.joint(hinge).id])


HINGES = [MODEL.joint(i).name for i in range(MODEL.njnt) if MODEL.jnt_type[i] == mujoco.mjtJoint.mjJNT_HINGE]
HINGE_Q = np.array([qadr(h) for h in HINGES])
HINGE_V = np.array([dadr(h) for h in HINGES])


def quat_mul(a, b):
    out = np.zeros(4)
    mujoco.mju_mulQuat(out, np.asarray(a, float), np.asarray(b, float))
    return out


def axis_angle(axis, angle):
    out = np.zeros(4)
    axis = np.asarray(axis, float)
    mujoco.mju_axisAngle2Quat(out, axis / np.linalg.norm(axis), float(angle))
    return out


def rot_vec(q, v):
    out = np.zeros(3)
    mujoco.mju_rotVecQuat(out, np.asarray(v, float), np.asarray(q, float))
    return out


def pose_of(qpos, qvel) -> Pose:
    """A one-row Pose with body positions and centre of mass by MuJoCo's kinematics."""
    DATA.qpos[:] = qpos
    mujoco.mj_kinematics(MODEL, DATA)
    mujoco.mj_comPos(MODEL, DATA)
    return Pose(np.array(qpos, float)[None], np.array(qvel, float)[None],
                DATA.xpos[BODY_IDS].copy()[None], DATA.subtree_com[ROOT_BODY].copy()[None])


def random_state(rng):
    """A plausible standing state: root up high, tilted a little, hinges inside their ranges."""
    qpos = MODEL.qpos0.copy()
    qpos[0:3] = [0.3, -0.2, 0.9]
    qpos[3:7] = quat_mul(axis_angle([0, 0, 1], rng.uniform(-3, 3)), axis_angle(rng.normal(size=3), 0.2))
    lo, hi = MODEL.jnt_range[1:, 0], MODEL.jnt_range[1:, 1]
    mid, half = 0.5 * (lo + hi), 0.5 * (hi - lo)
    qpos[HINGE_Q] = mid + 0.5 * half * rng.uniform(-1, 1, size=len(HINGES))
    qvel = rng.normal(size=MODEL.nv)
    return qpos, qvel


@pytest.fixture
def rng():
    return np.random.default_rng(1)


def test_reward_is_one_on_the_reference(rng):
    for _ in range(5):
        qpos, qvel = random_state(rng)
        ref = pose_of(qpos, qvel)
        sim = pose_of(qpos.copy(), qvel.copy())
        terms = imitation_reward(sim, ref, RewardConfig.deepmimic_code())
        for name in TERMS + ("total",):
            assert abs(getattr(terms, name)[0] - 1.0) < 1e-9, name


def test_hinge_perturbations_lower_pose_end_com_and_total_monotonically(rng):
    qpos, qvel = random_state(rng)
    ref = pose_of(qpos, qvel)
    direction = rng.choice([-1.0, 1.0], size=len(HINGES)) * rng.uniform(0.5, 1.0, size=len(HINGES))
    config = RewardConfig()
    rows = []
    for s in (0.0, 0.02, 0.05, 0.1, 0.2, 0.35):
        q = qpos.copy()
        q[HINGE_Q] += s * direction
        rows.append(imitation_reward(pose_of(q, qvel), ref, config))
    for name in ("pose", "end_effector", "com", "total"):
        values = np.array([getattr(t, name)[0] for t in rows])
        assert abs(values[0] - 1.0) < 1e-9
        assert np.all(np.diff(values) < 0), (name, values)
    # the velocity and root terms do not see the hinge angles
    for name in ("velocity", "root"):
        np.testing.assert_allclose([getattr(t, name)[0] for t in rows], 1.0, atol=1e-12)


def test_whole_state_perturbations_lower_every_term_monotonically(rng):
    qpos, qvel = random_state(rng)
    ref = pose_of(qpos, qvel)
    dq = rng.uniform(0.5, 1.0, size=len(HINGES)) * rng.choice([-1.0, 1.0], size=len(HINGES))
    dv = rng.normal(size=MODEL.nv)
    config = RewardConfig.deepmimic_code()
    rows = []
    for s in (0.0, 0.02, 0.05, 0.1, 0.2, 0.35):
        q, v = qpos.copy(), qvel + s * 3.0 * dv
        q[HINGE_Q] += s * dq
        q[0:3] += s * np.array([0.2, -0.1, 0.1])
        q[3:7] = quat_mul(q[3:7], axis_angle([0.3, 1.0, -0.2], s))
        rows.append(imitation_reward(pose_of(q, v), ref, config))
    for name in TERMS + ("total",):
        values = np.array([getattr(t, name)[0] for t in rows])
        assert abs(values[0] - 1.0) < 1e-9
        assert np.all(np.diff(values) < 0), (name, values)


# one hinge of each kind of joint: revolute, and first/middle/last hinge of a spherical one
@pytest.mark.parametrize("hinge, joint", [
    ("right_knee", "right_knee"), ("left_knee", "left_knee"), ("left_elbow", "left_elbow"),
    ("chest_x", "chest"), ("neck_y", "neck"), ("left_hip_z", "left_hip"),
    ("right_ankle_y", "right_ankle"), ("right_shoulder_x", "right_shoulder"),
])
@pytest.mark.parametrize("d", [0.05, -0.3, 0.9])
def test_pose_term_of_one_hinge_is_closed_form(rng, hinge, joint, d):
    """Turning one hinge by d rotates its joint by |d| (any hinge of an XYZ triple: the
    others conjugate it), so r_pose = exp(-pose_scale * w_joint * d^2)."""
    qpos, qvel = random_state(rng)
    q = qpos.copy()
    q[qadr(hinge)] += d
    config = RewardConfig(pose_scale=2.0)
    terms = imitation_reward(pose_of(q, qvel), pose_of(qpos, qvel), config)
    w = DIFF_WEIGHT[joint] / WEIGHT_SUM
    expected = math.exp(-2.0 * w * d * d)
    assert terms.pose[0] == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_knee_weight_figure():
    """The knee's normalised weight is 0.3 / 4.8: the pose term says so at d = 1 rad."""
    qpos, qvel = MODEL.qpos0.copy(), np.zeros(MODEL.nv)
    q = qpos.copy()
    q[qadr("right_knee")] -= 1.0
    terms = imitation_reward(pose_of(q, qvel), pose_of(qpos, qvel), RewardConfig(pose_scale=1.0))
    assert -math.log(terms.pose[0]) == pytest.approx(0.0625, rel=1e-12)


@pytest.mark.parametrize("d", [0.1, 0.7, 2.0])
def test_pose_term_of_the_root_orientation_is_closed_form(rng, d):
    qpos, qvel = random_state(rng)
    q = qpos.copy()
    q[3:7] = quat_mul(q[3:7], axis_angle(rng.normal(size=3), d))
    terms = imitation_reward(pose_of(q, qvel), pose_of(qpos, qvel), RewardConfig(pose_scale=2.0))
    assert terms.pose[0] == pytest.approx(math.exp(-2.0 * (1.0 / WEIGHT_SUM) * d * d), rel=1e-9)


def test_velocity_term_of_one_hinge_rate_is_closed_form(rng):
    qpos, qvel = random_state(rng)
    v = qvel.copy()
    v[dadr("left_knee")] += 2.0
    terms = imitation_reward(pose_of(qpos, v), pose_of(qpos, qvel), RewardConfig(velocity_scale=0.1))
    assert terms.velocity[0] == pytest.approx(math.exp(-0.1 * (0.3 / WEIGHT_SUM) * 4.0), rel=1e-9)


def test_total_is_the_weighted_mean_of_the_terms(rng):
    qpos, qvel = random_state(rng)
    q = qpos.copy()
    q[HINGE_Q] += 0.2
    q[0:3] += [0.05, 0.0, -0.03]
    config = RewardConfig(pose_weight=3.0, velocity_weight=0.0, end_effector_weight=1.0,
                          com_weight=0.5, root_weight=0.5)
    t = imitation_reward(pose_of(q, qvel + 0.5), pose_of(qpos, qvel), config)
    expected = (3.0 * t.pose + 1.0 * t.end_effector + 0.5 * t.com + 0.5 * t.root) / 5.0
    np.testing.assert_allclose(t.total, expected, rtol=1e-12)
    only_pose = imitation_reward(pose_of(q, qvel + 0.5), pose_of(qpos, qvel), RewardConfig(
        pose_weight=1.0, velocity_weight=0.0, end_effector_weight=0.0, com_weight=0.0, root_weight=0.0))
    np.testing.assert_allclose(only_pose.total, only_pose.pose, rtol=1e-12)
    assert 0.0 < t.total[0] < 1.0


@pytest.mark.parametrize("yaw", [0.4, -1.9, math.pi])
def test_end_effector_term_is_heading_invariant(rng, yaw):
    """Turning the whole simulated humanoid about the vertical (root position, orientation and
    so every body) leaves r_end unchanged; r_pose sees the root's new orientation."""
    qpos, qvel = random_state(rng)
    ref = pose_of(qpos, qvel)
    q = qpos.copy()
    q[HINGE_Q] += 0.15  # so that r_end < 1 and the invariance is not trivial
    spin = axis_angle([0, 0, 1], yaw)
    q_turned = q.copy()
    q_turned[0:3] = rot_vec(spin, q[0:3])
    q_turned[3:7] = quat_mul(spin, q[3:7])
    straight = pose_of(q, qvel)
    turned = pose_of(q_turned, qvel)
    # MuJoCo agrees every body turned with the root
    for b in range(len(BODY_IDS)):
        np.testing.assert_allclose(turned.body_pos[0, b], rot_vec(spin, straight.body_pos[0, b]), atol=1e-12)
    a = imitation_reward(straight, ref)
    b = imitation_reward(turned, ref)
    assert a.end_effector[0] < 0.99
    assert b.end_effector[0] == pytest.approx(a.end_effector[0], rel=1e-9)
    assert b.pose[0] < a.pose[0] - 1e-3


@pytest.mark.parametrize("field", [
    "pose_weight", "velocity_weight", "end_effector_weight", "com_weight", "root_weight",
    "pose_scale", "velocity_scale", "end_effector_scale", "com_scale", "root_scale",
])
@pytest.mark.parametrize("value", [-0.1, -1e-12, float("nan"), float("inf"), -float("inf")])
def test_reward_config_refuses_negative_and_non_finite(field, value):
    with pytest.raises(ConfigError, match=field):
        RewardConfig(**{field: value})


def test_reward_config_refuses_all_zero_weights_and_accepts_one_nonzero():
    zeros = dict(pose_weight=0.0, velocity_weight=0.0, end_effector_weight=0.0, com_weight=0.0, root_weight=0.0)
    with pytest.raises(ConfigError):
        RewardConfig(**zeros)
    for name in zeros:
        config = RewardConfig(**{**zeros, name: 0.5})  # one term alone is a valid reward
        assert float(np.sum(config.weights)) == 0.5
    RewardConfig(pose_scale=0.0)  # a zero scale is allowed (that term is then always 1)
