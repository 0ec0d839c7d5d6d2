"""Quaternion math, (w, x, y, z) order, batched over leading axes; inputs are never mutated.

All functions take arrays of shape (..., 4) for quaternions and (..., 3) for vectors and
broadcast over the leading axes.  Rotation vectors are axis * angle [rad].
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-12


def normalize(q: np.ndarray) -> np.ndarray:
    """Unit quaternion(s) along q: (..., 4)."""
    q = np.asarray(q, dtype=float)
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def conj(q: np.ndarray) -> np.ndarray:
    """Conjugate (the inverse of a unit quaternion): (..., 4)."""
    q = np.asarray(q, dtype=float)
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a * b (apply b first, then a): (..., 4)."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    aw, ax, ay, az = a[..., 0], a[..., 1], a[..., 2], a[..., 3]
    bw, bx, by, bz = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    out = np.empty(np.broadcast_shapes(a.shape, b.shape))
    out[..., 0] = aw * bw - ax * bx - ay * by - az * bz
    out[..., 1] = aw * bx + ax * bw + ay * bz - az * by
    out[..., 2] = aw * by - ax * bz + ay * bw + az * bx
    out[..., 3] = aw * bz + ax * by - ay * bx + az * bw
    return out


def rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vector(s) v (..., 3) by unit quaternion(s) q (..., 4)."""
    q = np.asarray(q, dtype=float)
    v = np.asarray(v, dtype=float)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    vx, vy, vz = v[..., 0], v[..., 1], v[..., 2]
    # v + w t + u x t with t = 2 u x v (written out: np.cross is slow on small arrays)
    tx, ty, tz = 2.0 * (y * vz - z * vy), 2.0 * (z * vx - x * vz), 2.0 * (x * vy - y * vx)
    out = np.empty(np.broadcast_shapes(q.shape[:-1], v.shape[:-1]) + (3,))
    out[..., 0] = vx + w * tx + y * tz - z * ty
    out[..., 1] = vy + w * ty + z * tx - x * tz
    out[..., 2] = vz + w * tz + x * ty - y * tx
    return out


def to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) of unit quaternions (..., 4)."""
    w, x, y, z = np.moveaxis(np.asarray(q, dtype=float), -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=-2,
    )


def from_axis_angle(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Quaternion of a rotation by angle [rad] (...,) about unit axis (..., 3)."""
    axis = np.asarray(axis, dtype=float)
    half = 0.5 * np.asarray(angle, dtype=float)[..., None]
    return np.concatenate([np.cos(half), np.sin(half) * axis], axis=-1)


def from_rotvec(r: np.ndarray) -> np.ndarray:
    """Quaternion(s) of rotation vector(s) r (..., 3) [rad]."""
    r = np.asarray(r, dtype=float)
    angle = np.linalg.norm(r, axis=-1)
    # sin(angle/2)/angle, continuous at 0
    scale = np.where(angle > _EPS, np.sin(0.5 * angle) / np.maximum(angle, _EPS), 0.5)
    return np.concatenate([np.cos(0.5 * angle)[..., None], scale[..., None] * r], axis=-1)


def to_rotvec(q: np.ndarray) -> np.ndarray:
    """Rotation vector(s) (..., 3) of unit quaternion(s), taking the short way (angle <= pi)."""
    q = np.asarray(q, dtype=float)
    q = np.where(q[..., :1] < 0.0, -q, q)
    sin_half = np.linalg.norm(q[..., 1:], axis=-1)
    angle = 2.0 * np.arctan2(sin_half, q[..., 0])
    scale = np.where(sin_half > _EPS, angle / np.maximum(sin_half, _EPS), 2.0)
    return scale[..., None] * q[..., 1:]


def angle(q: np.ndarray) -> np.ndarray:
    """Rotation angle [rad] in [0, pi] of unit quaternion(s): (...,)."""
    q = np.asarray(q, dtype=float)
    return 2.0 * np.arctan2(np.linalg.norm(q[..., 1:], axis=-1), np.abs(q[..., 0]))


def same_hemisphere(q: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """q or -q, whichever lies on the same hemisphere as reference (q and -q are one rotation)."""
    q = np.asarray(q, dtype=float)
    dot = np.sum(q * np.asarray(reference, dtype=float), axis=-1, keepdims=True)
    return np.where(dot < 0.0, -q, q)


def slerp(q0: np.ndarray, q1: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical interpolation from q0 (t=0) to q1 (t=1) the short way: (..., 4)."""
    q0 = normalize(q0)
    q1 = same_hemisphere(normalize(q1), q0)
    t = np.asarray(t, dtype=float)[..., None]
    dot = np.clip(np.sum(q0 * q1, axis=-1, keepdims=True), -1.0, 1.0)
    theta = np.arccos(dot)
    sin_theta = np.sin(theta)
    small = sin_theta < 1e-8
    safe = np.where(small, 1.0, sin_theta)
    w0 = np.where(small, 1.0 - t, np.sin((1.0 - t) * theta) / safe)
    w1 = np.where(small, t, np.sin(t * theta) / safe)
    return normalize(w0 * q0 + w1 * q1)


def from_euler_xyz(angles: np.ndarray) -> np.ndarray:
    """Quaternion of intrinsic x-y-z Euler angles (..., 3) [rad]: R = Rx(a) Ry(b) Rz(c).

    This is the rotation of three hinges x, y, z listed in that order in one MuJoCo body.
    """
    half = 0.5 * np.asarray(angles, dtype=float)
    c, s = np.cos(half), np.sin(half)
    cx, cy, cz = c[..., 0], c[..., 1], c[..., 2]
    sx, sy, sz = s[..., 0], s[..., 1], s[..., 2]
    # qx * qy * qz written out
    out = np.empty(half.shape[:-1] + (4,))
    out[..., 0] = cx * cy * cz - sx * sy * sz
    out[..., 1] = sx * cy * cz + cx * sy * sz
    out[..., 2] = cx * sy * cz - sx * cy * sz
    out[..., 3] = cx * cy * sz + sx * sy * cz
    return out


def to_euler_xyz(q: np.ndarray) -> np.ndarray:
    """Intrinsic x-y-z Euler angles (..., 3) [rad] of unit quaternion(s): the inverse of
    from_euler_xyz, with the middle angle in [-pi/2, pi/2] and the others in (-pi, pi]."""
    m = to_matrix(normalize(q))
    # R = Rx Ry Rz: R[0,2] = sin b, R[1,2] = -sin a cos b, R[2,2] = cos a cos b,
    # R[0,1] = -cos b sin c, R[0,0] = cos b cos c
    b = np.arcsin(np.clip(m[..., 0, 2], -1.0, 1.0))
    a = np.arctan2(-m[..., 1, 2], m[..., 2, 2])
    c = np.arctan2(-m[..., 0, 1], m[..., 0, 0])
    return np.stack([a, b, c], axis=-1)


def heading(q: np.ndarray) -> np.ndarray:
    """Heading (yaw about +z) [rad] of the body x axis projected on the ground: (...,)."""
    q = np.asarray(q, dtype=float)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    # the rotated x axis is (1 - 2(y^2 + z^2), 2(xy + wz), 2(xz - wy))
    return np.arctan2(2.0 * (x * y + w * z), 1.0 - 2.0 * (y * y + z * z))


def yaw_quat(yaw: np.ndarray) -> np.ndarray:
    """Quaternion(s) of a rotation by yaw [rad] about +z: (..., 4)."""
    return from_axis_angle(np.array([0.0, 0.0, 1.0]), yaw)
