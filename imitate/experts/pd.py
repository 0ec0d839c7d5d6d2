"""The PD-controller expert: simulator state and clip time in, action out, batched.

With r, dr the reference hinge angles and rates a short lookahead ahead, and q the hinges now:
- ``pd_target``: the servo target r + g (r - q) + (kd / kp) dr.  The servo then applies
  kp (1 + g) (r - q) + kd (dr - dq): stiffer than the servo alone (g = position_gain) and with
  velocity feed-forward, so the label depends on the state, not only on time;
- ``torque``: kp (r - q) + kd dr with DeepMimic's gains, divided by the joint's torque limit;
  the torque model adds the -kd dq half as passive joint damping (humanoid.load_model).
Actions are clipped to [-1, 1].  Defaults measured on walk from phase 0 (pd_target, 5 s):
g = 1 with feed-forward survives 1.40 s at 2.5 deg joint error, against 0.97 s and 5.5 deg for
servos aimed at the reference alone (g = 0, no feed-forward).  Joint-level PD tracks joints but
cannot balance the unactuated root: on walk it falls after about a second whatever the gains.
"""

from __future__ import annotations

import numpy as np

from .. import humanoid as hum
from ..config import targets_to_action
from ..errors import ConfigError
from ..motion import MotionClip


class PDExpert:
    """Callable expert: ``expert(qpos (N, nq), qvel (N, nv), time_s (N,)) -> action (N, 28)``."""

    def __init__(self, clip: MotionClip, action_space: str = "pd_target", *, lookahead_s: float = 1.0 / 30.0,
                 position_gain: float = 1.0, velocity_feedforward: bool = True):
        if action_space not in hum.ACTION_SPACES:
            raise ConfigError(f"action_space must be one of {hum.ACTION_SPACES}; found {action_space!r}")
        if not (lookahead_s >= 0 and position_gain >= 0):
            raise ConfigError(f"lookahead_s and position_gain must be >= 0; found {lookahead_s}, {position_gain}")
        self.clip = clip
        self.action_space = action_space
        self.lookahead_s = lookahead_s
        self.position_gain = position_gain
        self.velocity_feedforward = velocity_feedforward

    def label(self, sim) -> np.ndarray:
        return self(sim.qpos, sim.qvel, sim.ref_time_s)

    def provenance(self) -> dict:
        return {"kind": "pd", "action_space": self.action_space, "lookahead_s": self.lookahead_s,
                "position_gain": self.position_gain, "velocity_feedforward": self.velocity_feedforward}

    def __call__(self, qpos: np.ndarray, qvel: np.ndarray, time_s: np.ndarray) -> np.ndarray:
        t = np.asarray(time_s, dtype=float) + self.lookahead_s
        ref_q = self.clip.qpos(t)[:, hum.HINGE_QPOS]
        ref_v = self.clip.qvel(t)[:, hum.HINGE_QVEL] if self.velocity_feedforward else 0.0
        q = np.asarray(qpos)[:, hum.HINGE_QPOS]
        if self.action_space == "pd_target":
            target = ref_q + self.position_gain * (ref_q - q) + (hum.KD / hum.KP) * ref_v
            return np.clip(targets_to_action(target), -1.0, 1.0)
        torque = hum.KP * (ref_q - q) + hum.KD * ref_v
        return np.clip(torque / hum.TORQUE_LIMIT, -1.0, 1.0)
