"""The PD-controller expert: simulator state and clip time in, action out, batched.

It aims each hinge at the reference a short lookahead ahead:
- ``pd_target``: the servo target is the reference angle at t + lookahead;
- ``torque``: the PD torque kp (q_ref - q) + kd dq_ref toward that reference, with
  DeepMimic's gains, divided by the joint's torque limit and clipped to [-1, 1]; the
  torque model adds the -kd dq half as passive joint damping (see humanoid.load_model).
Joint-level PD alone tracks joints but cannot balance (the root is unactuated): on walk the
humanoid falls after about a second.
"""

from __future__ import annotations

import numpy as np

from . import humanoid as hum
from .env import targets_to_action
from .errors import ConfigError
from .motion import MotionClip


class PDExpert:
    """Callable expert: ``expert(qpos (N, nq), qvel (N, nv), time_s (N,)) -> action (N, 28)``."""

    def __init__(self, clip: MotionClip, action_space: str = "pd_target", lookahead_s: float = 1.0 / 30.0):
        if action_space not in hum.ACTION_SPACES:
            raise ConfigError(f"action_space must be one of {hum.ACTION_SPACES}; found {action_space!r}")
        self.clip = clip
        self.action_space = action_space
        self.lookahead_s = lookahead_s

    def __call__(self, qpos: np.ndarray, qvel: np.ndarray, time_s: np.ndarray) -> np.ndarray:
        t = np.asarray(time_s, dtype=float) + self.lookahead_s
        ref_q = self.clip.qpos(t)[:, hum.HINGE_QPOS]
        if self.action_space == "pd_target":
            return np.clip(targets_to_action(ref_q), -1.0, 1.0)
        ref_v = self.clip.qvel(t)[:, hum.HINGE_QVEL]
        q = np.asarray(qpos)[:, hum.HINGE_QPOS]
        # the -kd dq half of the PD law is the model's passive (implicit) joint damping
        torque = hum.KP * (ref_q - q) + hum.KD * ref_v
        return np.clip(torque / hum.TORQUE_LIMIT, -1.0, 1.0)
