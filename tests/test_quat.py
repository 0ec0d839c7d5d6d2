"""Quaternion helpers against MuJoCo's own functions (w, x, y, z order)."""

import mujoco
import numpy as np
import pytest

from imitate import quat


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def random_quats(rng, n):
    q = rng.normal(size=(n, 4))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def test_mul_rotate_matrix_match_mujoco(rng):
    a, b = random_quats(rng, 20), random_quats(rng, 20)
    v = rng.normal(size=(20, 3))
    ours_mul, ours_rot, ours_mat = quat.mul(a, b), quat.rotate(a, v), quat.to_matrix(a)
    for i in range(20):
        ref = np.zeros(4)
        mujoco.mju_mulQuat(ref, a[i], b[i])
        np.testing.assert_allclose(ours_mul[i], ref, atol=1e-12)
        rv = np.zeros(3)
        mujoco.mju_rotVecQuat(rv, v[i], a[i])
        np.testing.assert_allclose(ours_rot[i], rv, atol=1e-12)
        mat = np.zeros(9)
        mujoco.mju_quat2Mat(mat, a[i])
        np.testing.assert_allclose(ours_mat[i], mat.reshape(3, 3), atol=1e-12)


def test_axis_angle_and_rotvec_match_mujoco(rng):
    axes = rng.normal(size=(10, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = rng.uniform(-3.0, 3.0, size=10)
    q = quat.from_axis_angle(axes, angles)
    for i in range(10):
        ref = np.zeros(4)
        mujoco.mju_axisAngle2Quat(ref, axes[i], angles[i])
        np.testing.assert_allclose(q[i], ref, atol=1e-12)
        vel = np.zeros(3)
        mujoco.mju_quat2Vel(vel, q[i], 1.0)  # rotation vector of q (dt = 1)
        np.testing.assert_allclose(quat.to_rotvec(q[i]), vel, atol=1e-9)
    np.testing.assert_allclose(quat.from_rotvec(quat.to_rotvec(q)), q * np.sign(q[:, :1]), atol=1e-12)
    np.testing.assert_allclose(quat.angle(q), np.abs(angles), atol=1e-12)


def test_euler_xyz_equals_three_hinges_in_one_mujoco_body(rng):
    """Three hinges x, y, z listed in one body rotate it by from_euler_xyz (MuJoCo's kinematics)."""
    xml = """<mujoco><worldbody><body name="b">
      <joint type="hinge" axis="1 0 0"/><joint type="hinge" axis="0 1 0"/><joint type="hinge" axis="0 0 1"/>
      <geom size="0.1"/></body></worldbody></mujoco>"""
    m = mujoco.MjModel.from_xml_string(xml)
    d = mujoco.MjData(m)
    for angles in rng.uniform(-3.0, 3.0, size=(20, 3)):
        d.qpos[:] = angles
        mujoco.mj_kinematics(m, d)
        ours = quat.from_euler_xyz(angles)
        np.testing.assert_allclose(quat.same_hemisphere(ours, d.xquat[1]), d.xquat[1], atol=1e-12)


def test_to_euler_inverts_from_euler(rng):
    q = random_quats(rng, 50)
    back = quat.from_euler_xyz(quat.to_euler_xyz(q))
    np.testing.assert_allclose(quat.same_hemisphere(back, q), q, atol=1e-10)


def test_slerp_ends_midpoint_and_short_way(rng):
    a, b = random_quats(rng, 5), random_quats(rng, 5)
    np.testing.assert_allclose(quat.slerp(a, b, np.zeros(5)), a, atol=1e-12)
    np.testing.assert_allclose(quat.slerp(a, b, np.ones(5)), quat.same_hemisphere(b, a), atol=1e-12)
    # midpoint: the half rotation, the short way even when b is given on the far hemisphere
    mid = quat.slerp(a, -b, np.full(5, 0.5))
    rel = quat.mul(quat.conj(a), quat.same_hemisphere(b, a))
    half = quat.from_rotvec(0.5 * quat.to_rotvec(rel))
    np.testing.assert_allclose(mid, quat.mul(a, half), atol=1e-10)


def test_heading_and_inputs_not_mutated():
    yaw = np.array([0.3, -2.0, 3.0])
    q = quat.mul(quat.yaw_quat(yaw), quat.from_axis_angle(np.array([1.0, 0, 0]), np.full(3, 0.4)))
    before = q.copy()
    np.testing.assert_allclose(quat.heading(q), yaw, atol=1e-12)
    quat.normalize(q), quat.conj(q), quat.to_euler_xyz(q)
    np.testing.assert_array_equal(q, before)
