"""The policy's observation: what it needs to act without a clock outside it.

One row per humanoid, float32, named per dimension in ``OBS_NAMES`` (stores keep the names):
- phase: the clip phase p in [0, 1] and sin/cos(2 pi p);
- root height [m]; root orientation with the heading removed (its x and y axes in the
  heading frame, 6 numbers: continuous, unlike Euler angles);
- root linear [m/s] and angular [rad/s] velocity in the heading frame;
- the 28 hinge angles [rad] and rates [rad/s];
- the other bodies' origins relative to the root, in the heading frame [m];
- the reference a short time ahead (what the expert aims at): its hinge angles and rates,
  its root position relative to the current root and its root x and y axes, both in the
  current heading frame.
"""

from __future__ import annotations

import numpy as np

from . import humanoid as hum
from . import quat
from .reward import heading_frame_offsets

_AXES = ("x", "y", "z")


def _names() -> tuple[str, ...]:
    names = ["phase", "phase_sin", "phase_cos", "root_height"]
    names += [f"root_{a}axis_{c}" for a in ("x", "y") for c in _AXES]
    names += [f"root_linvel_{c}" for c in _AXES] + [f"root_angvel_{c}" for c in _AXES]
    names += [f"q_{h}" for h in hum.HINGE_NAMES] + [f"dq_{h}" for h in hum.HINGE_NAMES]
    names += [f"pos_{b}_{c}" for b in hum.BODY_NAMES[1:] for c in _AXES]
    names += [f"ref_q_{h}" for h in hum.HINGE_NAMES] + [f"ref_dq_{h}" for h in hum.HINGE_NAMES]
    names += [f"ref_root_pos_{c}" for c in _AXES]
    names += [f"ref_root_{a}axis_{c}" for a in ("x", "y") for c in _AXES]
    return tuple(names)


OBS_NAMES: tuple[str, ...] = _names()
OBS_DIM = len(OBS_NAMES)


def _groups() -> dict[str, slice]:
    prefixes = {"phase": ("phase",), "root": ("root_",), "joint angles": ("q_",), "joint rates": ("dq_",),
                "body positions": ("pos_",), "reference ahead": ("ref_",)}
    out = {}
    for group, starts in prefixes.items():
        idx = [i for i, n in enumerate(OBS_NAMES) if n.startswith(starts)]
        out[group] = slice(idx[0], idx[-1] + 1)
    return out


# Contiguous groups of the observation, for inspection tables.
OBS_GROUPS: dict[str, slice] = _groups()


def _axes_in_heading_frame(inv_yaw: np.ndarray, root_quat: np.ndarray) -> np.ndarray:
    """The root's x and y axes (N, 6) expressed in a heading frame given by inv_yaw (N, 4)."""
    rel = quat.mul(inv_yaw, root_quat)
    m = quat.to_matrix(rel)
    return np.concatenate([m[:, :, 0], m[:, :, 1]], axis=-1)


def observe(qpos: np.ndarray, qvel: np.ndarray, body_pos: np.ndarray, phase: np.ndarray,
            ref_qpos: np.ndarray, ref_qvel: np.ndarray) -> np.ndarray:
    """Observations (N, OBS_DIM) float32.

    Args:
      qpos: (N, nq), qvel: (N, nv): the simulated state.
      body_pos: (N, len(hum.BODY_NAMES), 3) [m] world positions of the named bodies.
      phase: (N,) clip phase in [0, 1].
      ref_qpos: (N, nq), ref_qvel: (N, nv): the reference a short time ahead.
    """
    n = len(qpos)
    root_quat = qpos[:, hum.ROOT_QUAT]
    inv_yaw = quat.yaw_quat(-quat.heading(root_quat))
    angvel_world = quat.rotate(root_quat, qvel[:, hum.ROOT_ANGVEL])
    two_pi_phase = 2.0 * np.pi * phase
    parts = [
        phase[:, None], np.sin(two_pi_phase)[:, None], np.cos(two_pi_phase)[:, None],
        qpos[:, 2:3],
        _axes_in_heading_frame(inv_yaw, root_quat),
        quat.rotate(inv_yaw, qvel[:, hum.ROOT_LINVEL]),
        quat.rotate(inv_yaw, angvel_world),
        qpos[:, hum.HINGE_QPOS], qvel[:, hum.HINGE_QVEL],
        heading_frame_offsets(qpos, body_pos[:, 1:]).reshape(n, -1),
        ref_qpos[:, hum.HINGE_QPOS], ref_qvel[:, hum.HINGE_QVEL],
        quat.rotate(inv_yaw, ref_qpos[:, hum.ROOT_POS] - qpos[:, hum.ROOT_POS]),
        _axes_in_heading_frame(inv_yaw, ref_qpos[:, hum.ROOT_QUAT]),
    ]
    return np.concatenate(parts, axis=-1).astype(np.float32)
