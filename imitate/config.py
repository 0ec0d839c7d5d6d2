"""What defines the environment, and the maps between actions and the servos.

``EnvConfig`` (saved with every store and checkpoint), the fall rules, and the action maps.
Actions (28,) in [-1, 1], one per hinge (``imitate.humanoid.HINGE_NAMES``):
- ``pd_target``: the servo target angle, affinely from [-1, 1] onto the hinge's range
  ``[lo, hi]``: ctrl = (lo + hi) / 2 + a (hi - lo) / 2 [rad]; the servos then apply
  clip(kp (ctrl - q) - kd dq, +-torque limit) at every physics step.
- ``torque``: the normalised joint torque: ctrl = a, and the motor's gear (the joint's
  torque limit) makes it a torque of a * limit [N m], held for the whole control step; the
  joints also carry the servos' damping kd as passive damping, integrated implicitly
  (without it no PD law at 30 Hz is stable with DeepMimic's gains).
Nothing here simulates: the simulation is ``imitate.simulation``, the Gym faces ``imitate.env``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from . import humanoid as hum
from .errors import ConfigError
from .motion import MotionClip
from .reward import RewardConfig

LOOPING_EPISODE_S = 20.0  # default time limit for looping clips [s]


@dataclass(frozen=True)
class EnvConfig:
    """Everything that defines the environment; saved with every store and checkpoint."""

    clip: str = "walk"  # clip name or path (see imitate.motion.load_clip)
    action_space: str = "pd_target"  # "pd_target" or "torque" (module docstring)
    control_hz: float = 30.0  # policy rate [Hz]
    physics_hz: float = 600.0  # physics rate [Hz]; a whole multiple of control_hz
    reward: RewardConfig = field(default_factory=RewardConfig)
    lookahead_s: float = 1.0 / 30.0  # how far ahead the observed reference is [s]
    random_start: bool = True  # reference state initialisation at a random time in the clip
    # with random_start, this share of episodes starts at time 0 instead, as the evaluation's do
    # (a policy trained only from random times may not balance from the standing start)
    zero_start_share: float = 0.0
    episode_s: float | None = None  # time limit [s]; None: 20 s looping, else the clip's rest
    fall_bodies: str | tuple[str, ...] = "clip"  # their floor contact ends the episode (FALL_RULES)
    max_root_drop_m: float = 0.4  # ends the episode when the root is this far below the reference's

    def __post_init__(self):
        if self.action_space not in hum.ACTION_SPACES:
            raise ConfigError(f"action_space must be one of {hum.ACTION_SPACES}; found {self.action_space!r}")
        if not (self.control_hz > 0 and self.physics_hz > 0):
            raise ConfigError(f"control_hz and physics_hz must be > 0; found {self.control_hz}, {self.physics_hz}")
        ratio = self.physics_hz / self.control_hz
        if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
            raise ConfigError(
                f"physics_hz must be a whole multiple of control_hz; found {self.physics_hz} / {self.control_hz}")
        if isinstance(self.reward, dict):
            object.__setattr__(self, "reward", RewardConfig(**self.reward))
        if isinstance(self.fall_bodies, str):
            if self.fall_bodies not in FALL_RULES:
                raise ConfigError(f"fall_bodies must be one of {tuple(FALL_RULES)} or a tuple of body names; "
                                  f"found {self.fall_bodies!r}")
        else:
            object.__setattr__(self, "fall_bodies", tuple(self.fall_bodies))
            hum.fall_sensor_names(self.fall_bodies)  # validates the names
        if not 0.0 <= self.zero_start_share <= 1.0:
            raise ConfigError(f"zero_start_share must be in [0, 1]; found {self.zero_start_share}")
        if self.episode_s is not None and not self.episode_s > 0:
            raise ConfigError(f"episode_s must be > 0 or None; found {self.episode_s}")
        if not (self.lookahead_s >= 0 and self.max_root_drop_m > 0):
            raise ConfigError(f"lookahead_s must be >= 0 and max_root_drop_m > 0; "
                              f"found {self.lookahead_s}, {self.max_root_drop_m}")

    @property
    def substeps(self) -> int:
        return round(self.physics_hz / self.control_hz)

    @property
    def control_dt(self) -> float:
        return 1.0 / self.control_hz

    def fall_body_names(self, clip: MotionClip) -> tuple[str, ...]:
        """The bodies whose floor contact ends an episode on clip: fall_bodies's rule resolved."""
        if self.fall_bodies == "clip":
            return clip_fall_bodies(clip)
        if self.fall_bodies == "deepmimic":
            return hum.DEEPMIMIC_FALL_BODIES
        if self.fall_bodies == "all":
            return hum.NON_FOOT_BODIES
        return self.fall_bodies

    def policy_key(self) -> dict:
        """What a policy trained in this env depends on (its observations and actions);
        episode settings such as random_start, episode_s or reward weights are not part of it."""
        return {"clip": self.clip, "action_space": self.action_space, "control_hz": self.control_hz,
                "physics_hz": self.physics_hz, "lookahead_s": self.lookahead_s}

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EnvConfig:
        return cls(**json.loads(text))


# fall_bodies rules (EnvConfig): which bodies' contact with the floor is a fall.
FALL_RULES = {
    "clip": "all but the feet and the bodies the clip's own reference puts on the floor "
            "(a cartwheel's hands); the same as 'all' for clips that touch the floor only with the feet",
    "all": "all but the feet",
    "deepmimic": "root, chest and neck only (DeepMimic's EnableFallContact)",
}
# A body the reference brings this close to the floor may touch it: 3 cm spares what lying
# clips put down (getup_facedown's root at 2.1 cm) and the shins that run and dance_b bring
# within 0.1-2.6 cm (near the ankle), but not walk's, jump's or dance_a's (4.5 cm or more).
REFERENCE_FLOOR_MARGIN_M = 0.03


def clip_fall_bodies(clip: MotionClip) -> tuple[str, ...]:
    """All but the feet, less the bodies whose geoms the clip's reference poses (sampled at
    120 Hz over one pass) bring within REFERENCE_FLOOR_MARGIN_M of the floor: the clip asks
    for those contacts, so they are not falls."""
    key = (clip.frame_times.tobytes(), clip.frame_qpos.tobytes())
    if key not in _CLIP_FALL_BODIES:
        times = np.arange(0.0, clip.duration_s + 1e-9, 1.0 / 120.0)
        heights = hum.lowest_point_heights(clip.qpos(times)).min(axis=0)
        on_floor = {b for b, z in zip(hum.BODY_NAMES, heights, strict=True) if z < REFERENCE_FLOOR_MARGIN_M}
        _CLIP_FALL_BODIES[key] = tuple(b for b in hum.NON_FOOT_BODIES if b not in on_floor)
    return _CLIP_FALL_BODIES[key]


_CLIP_FALL_BODIES: dict = {}


def action_to_ctrl(action: np.ndarray, action_space: str) -> np.ndarray:
    """MuJoCo controls (N, nu) of normalised actions (N, 28) in [-1, 1] (clipped)."""
    a = np.clip(action, -1.0, 1.0)
    if action_space == "torque":
        return a
    lo, hi = hum.HINGE_RANGE[:, 0], hum.HINGE_RANGE[:, 1]
    return 0.5 * (lo + hi) + a * 0.5 * (hi - lo)


def targets_to_action(hinge_targets: np.ndarray) -> np.ndarray:
    """The pd_target action (..., 28) that aims the servos at hinge angles (..., 28) [rad]."""
    lo, hi = hum.HINGE_RANGE[:, 0], hum.HINGE_RANGE[:, 1]
    return (np.asarray(hinge_targets) - 0.5 * (lo + hi)) / (0.5 * (hi - lo))


def with_action_noise(actions: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """actions (N, 28) plus N(0, std^2) noise on every entry, clipped to the action bounds [-1, 1]."""
    return np.clip(actions + rng.normal(0.0, std, np.shape(actions)), -1.0, 1.0)


def target_action(hinge_targets: np.ndarray, qpos: np.ndarray, action_space: str) -> np.ndarray:
    """The action (N, 28) in [-1, 1] that aims the servos at hinge targets (N, 28) [rad] (clipped to
    the hinge ranges) from positions qpos (N, nq): pd_target: the target itself; torque: the
    servo's torque kp (target - q) now, over the torque limit (its damping -kd dq the torque model
    applies itself, as passive joint damping: humanoid.load_model)."""
    target = np.clip(hinge_targets, hum.HINGE_RANGE[:, 0], hum.HINGE_RANGE[:, 1])
    if action_space == "pd_target":
        return np.clip(targets_to_action(target), -1.0, 1.0)
    torque = hum.KP * (target - np.asarray(qpos)[:, hum.HINGE_QPOS])
    return np.clip(torque / hum.TORQUE_LIMIT, -1.0, 1.0)


def fallen(contact: np.ndarray, root_height_m: np.ndarray, ref_root_height_m: np.ndarray,
           max_root_drop_m: float) -> tuple[np.ndarray, np.ndarray]:
    """The fall test, one for the env and the search: (fall bodies touching the floor (N, F)
    bool, root dropped (N,) bool) from fall-contact sensor values (N, F) and root heights (N,)
    [m] of the humanoids and their references."""
    return np.asarray(contact) > 0, np.asarray(root_height_m) < np.asarray(ref_root_height_m) - max_root_drop_m
