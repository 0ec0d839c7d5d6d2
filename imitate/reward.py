"""DeepMimic's imitation reward as pure functions on batched poses.

r = (w_pose r_pose + w_vel r_vel + w_end r_end + w_com r_com + w_root r_root) / sum(w), each
term in [0, 1], so the per-step reward lies in [0, 1] and is 1 exactly on the reference:
- r_pose = exp(-pose_scale * sum_j w_j angle_j^2): angle_j [rad] of the rotation between the
  simulated and reference local rotation of joint j (the root's global orientation included);
- r_vel  = exp(-vel_scale * sum_j w_j |dq_j - dq_ref_j|^2): the joint's hinge rates [rad/s]
  (the root's local angular velocity);
- r_end  = exp(-end_scale * sum_e |p_e - p_e_ref|^2): end-effector positions [m] relative to
  the root, in each one's heading frame (feet and hands);
- r_com  = exp(-com_scale * |c - c_ref|^2): the centre of mass [m] in the world;
- r_root = exp(-root_scale * (|dp|^2 + 0.1 angle^2 + 0.01 |dv|^2 + 0.001 |dw|^2)): the root's
  position, orientation, linear and angular velocity (DeepMimic's released code).
Joint weights w_j are DeepMimic's DiffWeights normalised to sum to 1.  Defaults are the
paper's (0.65, 0.1, 0.15, 0.1, root 0); the released code's are 0.5, 0.05, 0.15, 0.1, 0.2.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from . import humanoid as hum
from . import quat
from .errors import ConfigError


@dataclass(frozen=True)
class RewardConfig:
    """Weights and scales of the imitation reward terms (see the module docstring)."""

    pose_weight: float = 0.65
    velocity_weight: float = 0.1
    end_effector_weight: float = 0.15
    com_weight: float = 0.1
    root_weight: float = 0.0
    pose_scale: float = 2.0
    velocity_scale: float = 0.1
    end_effector_scale: float = 40.0
    com_scale: float = 10.0
    root_scale: float = 5.0

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not (np.isfinite(value) and value >= 0.0):
                raise ConfigError(f"RewardConfig.{name} must be finite and >= 0; found {value}")
        if self.weights.sum() <= 0.0:
            raise ConfigError("RewardConfig: at least one term weight must be > 0; found all 0")

    @property
    def weights(self) -> np.ndarray:
        """(5,) weights of pose, velocity, end_effector, com, root."""
        return np.array([self.pose_weight, self.velocity_weight, self.end_effector_weight,
                         self.com_weight, self.root_weight])

    @classmethod
    def deepmimic_code(cls) -> RewardConfig:
        """The weights of DeepMimic's released code (with its root term)."""
        return cls(pose_weight=0.5, velocity_weight=0.05, end_effector_weight=0.15,
                   com_weight=0.1, root_weight=0.2)


@dataclass(frozen=True)
class Pose:
    """Batched state of N humanoids, as the reward needs it.

    qpos: (N, nq); qvel: (N, nv); body_pos: (N, len(hum.BODY_NAMES), 3) [m]; com: (N, 3) [m].
    """

    qpos: np.ndarray
    qvel: np.ndarray
    body_pos: np.ndarray
    com: np.ndarray


@dataclass(frozen=True)
class RewardTerms:
    """Each term (N,) in [0, 1] and their weighted mean, total (N,)."""

    pose: np.ndarray
    velocity: np.ndarray
    end_effector: np.ndarray
    com: np.ndarray
    root: np.ndarray
    total: np.ndarray

    NAMES = ("pose", "velocity", "end_effector", "com", "root")


_SPHERICAL = np.array([j.hinges for j in hum.SPHERICAL_JOINTS])  # (8, 3)
_REVOLUTE = np.array([j.hinges[0] for j in hum.REVOLUTE_JOINTS])  # (4,)
_W_ROOT, _W_SPH, _W_REV = (
    np.array(w) / (hum.ROOT_DIFF_WEIGHT + sum(j.diff_weight for j in hum.JOINTS))
    for w in (hum.ROOT_DIFF_WEIGHT, [j.diff_weight for j in hum.SPHERICAL_JOINTS],
              [j.diff_weight for j in hum.REVOLUTE_JOINTS])
)
_END = np.array([hum.BODY_NAMES.index(b) for b in hum.END_EFFECTORS])


def heading_frame_offsets(qpos: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points (N, P, 3) relative to the root, rotated into the root's heading frame
    (yaw removed): the root-relative, heading-invariant coordinates."""
    root_quat = qpos[:, hum.ROOT_QUAT]
    inv_yaw = quat.yaw_quat(-quat.heading(root_quat))[:, None, :]
    return quat.rotate(inv_yaw, points - qpos[:, None, hum.ROOT_POS])


def joint_angle_errors(sim_qpos: np.ndarray, ref_qpos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rotation angles [rad] between simulated and reference joints: the root's global
    orientation (N,), the spherical joints' local rotations (N, 8), the revolute joints' (N, 4)."""
    hs, hr = sim_qpos[:, hum.HINGE_QPOS], ref_qpos[:, hum.HINGE_QPOS]
    root = quat.angle(quat.mul(quat.conj(ref_qpos[:, hum.ROOT_QUAT]), sim_qpos[:, hum.ROOT_QUAT]))
    qs = quat.from_euler_xyz(hs[:, _SPHERICAL])
    qr = quat.from_euler_xyz(hr[:, _SPHERICAL])
    sph = quat.angle(quat.mul(quat.conj(qr), qs))
    rev = np.abs(hs[:, _REVOLUTE] - hr[:, _REVOLUTE])
    return root, sph, rev


def pose_error(sim_qpos: np.ndarray, ref_qpos: np.ndarray) -> np.ndarray:
    """Weighted sum (N,) of squared joint rotation angles [rad^2] between two poses."""
    root, sph, rev = joint_angle_errors(sim_qpos, ref_qpos)
    # weighted sums row by row, not a matrix-vector product: BLAS's blocking makes a row's
    # rounding depend on the batch it is in, and a label must not (the search's rollouts)
    return _W_ROOT * root**2 + np.sum(sph**2 * _W_SPH, axis=-1) + np.sum(rev**2 * _W_REV, axis=-1)


def end_effector_offsets(pose: Pose) -> np.ndarray:
    """End-effector positions (N, 4, 3) [m] relative to the root, in its heading frame."""
    return heading_frame_offsets(pose.qpos, pose.body_pos[:, _END])


def velocity_error(sim_qvel: np.ndarray, ref_qvel: np.ndarray) -> np.ndarray:
    """Weighted sum (N,) of squared joint velocity differences [(rad/s)^2]."""
    d = sim_qvel - ref_qvel
    root = np.sum(d[:, hum.ROOT_ANGVEL] ** 2, axis=-1)
    dh = d[:, hum.HINGE_QVEL]
    sph = np.sum(dh[:, _SPHERICAL] ** 2, axis=-1)
    rev = dh[:, _REVOLUTE] ** 2
    return _W_ROOT * root + np.sum(sph * _W_SPH, axis=-1) + np.sum(rev * _W_REV, axis=-1)  # (pose_error: why)


def imitation_reward(sim: Pose, ref: Pose, config: RewardConfig = RewardConfig()) -> RewardTerms:
    """DeepMimic's imitation reward of N simulated poses against N reference poses."""
    pose = np.exp(-config.pose_scale * pose_error(sim.qpos, ref.qpos))
    vel = np.exp(-config.velocity_scale * velocity_error(sim.qvel, ref.qvel))
    end_diff = end_effector_offsets(sim) - end_effector_offsets(ref)
    end = np.exp(-config.end_effector_scale * np.sum(end_diff**2, axis=(-1, -2)))
    com = np.exp(-config.com_scale * np.sum((sim.com - ref.com) ** 2, axis=-1))
    root_angle = quat.angle(quat.mul(quat.conj(ref.qpos[:, hum.ROOT_QUAT]), sim.qpos[:, hum.ROOT_QUAT]))
    root_err = (
        np.sum((sim.qpos[:, hum.ROOT_POS] - ref.qpos[:, hum.ROOT_POS]) ** 2, axis=-1)
        + 0.1 * root_angle**2
        + 0.01 * np.sum((sim.qvel[:, hum.ROOT_LINVEL] - ref.qvel[:, hum.ROOT_LINVEL]) ** 2, axis=-1)
        + 0.001 * np.sum((sim.qvel[:, hum.ROOT_ANGVEL] - ref.qvel[:, hum.ROOT_ANGVEL]) ** 2, axis=-1)
    )
    root = np.exp(-config.root_scale * root_err)
    w = config.weights
    total = (w[0] * pose + w[1] * vel + w[2] * end + w[3] * com + w[4] * root) / w.sum()
    return RewardTerms(pose, vel, end, com, root, total)
