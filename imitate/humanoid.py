"""Named layout of imitate's humanoid: joints, qpos/qvel slices, end effectors, gains.

No other module indexes raw qpos/qvel numbers: they ask here by name.  The model itself is
``assets/humanoid.xml`` (see its header for frames and conventions).  The layout is read from
that file without MuJoCo; only the functions that compile or run the model import it.

Layout (MuJoCo's sizes: nq = 35, nv = 34, nu = 28):
- qpos[0:3] root position [m] (world, Z-up); qpos[3:7] root orientation (w, x, y, z);
  qpos[7:35] the 28 hinge angles [rad] in ``HINGE_NAMES`` order.
- qvel[0:3] root linear velocity [m/s] in the world frame; qvel[3:6] root angular velocity
  [rad/s] in the root's own (local) frame, as MuJoCo defines a free joint's velocity;
  qvel[6:34] hinge rates [rad/s].
- Actuator i drives hinge i.
"""

from __future__ import annotations

import functools
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np

from .errors import ConfigError

if TYPE_CHECKING:
    import mujoco

ACTION_SPACES = ("pd_target", "torque")

ROOT_POS = slice(0, 3)
ROOT_QUAT = slice(3, 7)
ROOT_LINVEL = slice(0, 3)
ROOT_ANGVEL = slice(3, 6)
HINGE_QPOS = slice(7, 35)
HINGE_QVEL = slice(6, 34)
NQ, NV, NU = 35, 34, 28


@dataclass(frozen=True)
class Joint:
    """One DeepMimic joint of the humanoid (the body of the same name sits at it)."""

    name: str
    dof: int  # 3 for a spherical joint (hinges x, y, z), 1 for knee and elbow
    kp: float  # servo stiffness [N m / rad]
    kd: float  # servo damping [N m s / rad]
    torque_limit: float  # [N m], per hinge
    diff_weight: float  # DeepMimic's DiffWeight, the joint's weight in the reward
    hinges: tuple[int, ...]  # indices into the 28 hinges (HINGE_NAMES)

    @property
    def hinge_names(self) -> tuple[str, ...]:
        return tuple(HINGE_NAMES[i] for i in self.hinges)


# DeepMimic's joints in its clip order, with its gains (humanoid3d_ctrl.txt), torque limits
# and DiffWeights (humanoid3d_character.txt).
_JOINT_FIGURES = (
    # name, dof, kp, kd, torque limit, diff weight
    ("chest", 3, 1000.0, 100.0, 200.0, 0.5),
    ("neck", 3, 100.0, 10.0, 50.0, 0.3),
    ("right_hip", 3, 500.0, 50.0, 200.0, 0.5),
    ("right_knee", 1, 500.0, 50.0, 150.0, 0.3),
    ("right_ankle", 3, 400.0, 40.0, 90.0, 0.2),
    ("right_shoulder", 3, 400.0, 40.0, 100.0, 0.3),
    ("right_elbow", 1, 300.0, 30.0, 60.0, 0.2),
    ("left_hip", 3, 500.0, 50.0, 200.0, 0.5),
    ("left_knee", 1, 500.0, 50.0, 150.0, 0.3),
    ("left_ankle", 3, 400.0, 40.0, 90.0, 0.2),
    ("left_shoulder", 3, 400.0, 40.0, 100.0, 0.3),
    ("left_elbow", 1, 300.0, 30.0, 60.0, 0.2),
)
ROOT_DIFF_WEIGHT = 1.0  # DeepMimic's DiffWeight of the root

MODEL_PATH = resources.files("imitate") / "assets" / "humanoid.xml"


def _hinge_names_of(name: str, dof: int) -> tuple[str, ...]:
    return (name,) if dof == 1 else (f"{name}_x", f"{name}_y", f"{name}_z")


@functools.cache
def _base_model() -> mujoco.MjModel:
    import mujoco  # here, not at the top: the layout (names, ranges, gains) is read without MuJoCo

    return mujoco.MjModel.from_xml_path(str(MODEL_PATH))


def _hinges_in_model_file() -> tuple[tuple[str, ...], np.ndarray]:
    """The hinges' names and ranges (28, 2) [rad] in the model file's order, which is MuJoCo's
    joint order (depth first): read from the XML itself, so that the store and the configs,
    which need only the layout, do not compile a model (load_model checks the two agree)."""
    hinges = [j for j in ET.fromstring(MODEL_PATH.read_text()).iter("joint") if "name" in j.attrib]
    names = tuple(j.attrib["name"] for j in hinges)
    ranges = np.array([[float(v) for v in j.attrib["range"].split()] for j in hinges])
    return names, ranges


HINGE_NAMES, HINGE_RANGE = _hinges_in_model_file()  # (28,), (28, 2) [rad]
JOINTS: tuple[Joint, ...] = tuple(
    Joint(name, dof, kp, kd, tl, w, tuple(HINGE_NAMES.index(h) for h in _hinge_names_of(name, dof)))
    for name, dof, kp, kd, tl, w in _JOINT_FIGURES
)
JOINT_NAMES: tuple[str, ...] = tuple(j.name for j in JOINTS)
SPHERICAL_JOINTS: tuple[Joint, ...] = tuple(j for j in JOINTS if j.dof == 3)
REVOLUTE_JOINTS: tuple[Joint, ...] = tuple(j for j in JOINTS if j.dof == 1)

BODY_NAMES: tuple[str, ...] = ("root",) + JOINT_NAMES + ("right_wrist", "left_wrist")
END_EFFECTORS: tuple[str, ...] = ("right_ankle", "left_ankle", "right_wrist", "left_wrist")
FEET: tuple[str, ...] = ("right_ankle", "left_ankle")
# Bodies whose contact with the floor DeepMimic counts as a fall (EnableFallContact).
DEEPMIMIC_FALL_BODIES: tuple[str, ...] = ("root", "chest", "neck")
NON_FOOT_BODIES: tuple[str, ...] = tuple(b for b in BODY_NAMES if b not in FEET)


def body_id(name: str) -> int:
    """MuJoCo body id of a named body (index into data.xpos)."""
    return _base_model().body(name).id


# Per-hinge arrays, in HINGE_NAMES (= actuator) order.
def _per_hinge(attr: str) -> np.ndarray:
    out = np.zeros(NU)
    for j in JOINTS:
        out[list(j.hinges)] = getattr(j, attr)
    return out


KP: np.ndarray = _per_hinge("kp")
KD: np.ndarray = _per_hinge("kd")
TORQUE_LIMIT: np.ndarray = _per_hinge("torque_limit")


def fall_sensor_names(bodies: tuple[str, ...]) -> tuple[str, ...]:
    """Names of the floor-contact sensors of the given bodies (feet have none)."""
    missing = [b for b in bodies if b not in NON_FOOT_BODIES]
    if missing:
        raise ConfigError(
            f"fall bodies must be among {NON_FOOT_BODIES}; found {missing}"
        )
    return tuple(f"fall_{b}" for b in bodies)


def load_model(action_space: str = "pd_target", physics_hz: float = 600.0) -> mujoco.MjModel:
    """The MjModel the env simulates.

    Args:
      action_space: "pd_target": position servos, ctrl = target hinge angle [rad], bounded by
        the hinge's range; "torque": motors with gear = the joint's torque limit, so
        ctrl in [-1, 1] is the normalised torque, plus passive joint damping = the servo's kd.
      physics_hz: physics rate [Hz] (timestep = 1 / physics_hz).
    """
    if action_space not in ACTION_SPACES:
        raise ConfigError(f"action_space must be one of {ACTION_SPACES}; found {action_space!r}")
    if not physics_hz > 0:
        raise ConfigError(f"physics_hz must be > 0; found {physics_hz}")
    import mujoco

    spec = mujoco.MjSpec.from_file(str(MODEL_PATH))
    spec.option.timestep = 1.0 / physics_hz
    if action_space == "torque":
        # The servos' damping stays as passive joint damping, integrated implicitly: a PD
        # torque held for a whole 30 Hz control step is unstable with DeepMimic's gains,
        # while kp (q* - q) on top of implicit damping kd is stable (kp / kd * dt = 1/3).
        for name, kd in zip(HINGE_NAMES, KD, strict=True):
            spec.joint(name).damping = [kd, 0.0, 0.0]
        for act, limit in zip(spec.actuators, TORQUE_LIMIT, strict=True):
            act.set_to_motor()
            act.gear[0] = limit
            act.ctrlrange = [-1.0, 1.0]
            act.forcelimited = mujoco.mjtLimited.mjLIMITED_FALSE
    model = spec.compile()
    _check_layout(model)
    return model


def _check_layout(model: mujoco.MjModel) -> None:
    """Refuse a model whose layout differs from the one this module names."""
    found = (model.nq, model.nv, model.nu)
    if found != (NQ, NV, NU):
        raise ConfigError(f"humanoid model: expected (nq, nv, nu) = {(NQ, NV, NU)}, found {found}")
    names = tuple(model.joint(i).name for i in range(1, model.njnt))
    if names != HINGE_NAMES or not np.array_equal(model.jnt_range[1:], HINGE_RANGE):
        raise ConfigError(f"humanoid model: expected hinges {HINGE_NAMES} with ranges read from {MODEL_PATH.name}, "
                          f"found {names}")
    for i, name in enumerate(HINGE_NAMES):
        act = model.actuator(i)
        if model.actuator_trnid[i, 0] != model.joint(name).id:
            raise ConfigError(f"humanoid model: actuator {act.name} does not drive hinge {name}")


def model_hash(model: mujoco.MjModel) -> str:
    """A short hash of the model's physical figures (bodies, geoms, joints, actuators, timestep).

    Two models with the same hash simulate the same humanoid the same way.
    """
    import hashlib

    h = hashlib.sha256()
    for name in ("body_pos", "body_quat", "body_mass", "body_inertia", "geom_size", "geom_pos",
                 "geom_friction", "jnt_axis", "jnt_range", "actuator_gear", "actuator_gainprm",
                 "actuator_biasprm", "actuator_ctrlrange", "actuator_forcerange", "dof_armature"):
        h.update(np.ascontiguousarray(getattr(model, name), dtype=np.float64).tobytes())
    h.update(np.float64(model.opt.timestep).tobytes())
    return h.hexdigest()[:16]


@functools.cache
def model_hash_for(action_space: str, physics_hz: float) -> str:
    """model_hash of load_model(action_space, physics_hz), compiled once per process."""
    return model_hash(load_model(action_space, physics_hz))


@functools.lru_cache(maxsize=1)
def _kinematics_data() -> mujoco.MjData:
    import mujoco

    return mujoco.MjData(_base_model())


def body_positions(qpos: np.ndarray) -> np.ndarray:
    """Positions (T, len(BODY_NAMES), 3) [m] of the named bodies' origins for qpos (T, nq),
    by MuJoCo's forward kinematics."""
    import mujoco

    qpos = np.atleast_2d(np.asarray(qpos, dtype=float))
    model, data = _base_model(), _kinematics_data()
    ids = [body_id(b) for b in BODY_NAMES]
    out = np.empty((len(qpos), len(ids), 3))
    for i, q in enumerate(qpos):
        data.qpos[:] = q
        mujoco.mj_kinematics(model, data)
        out[i] = data.xpos[ids]
    return out


def lowest_point_heights(qpos: np.ndarray) -> np.ndarray:
    """Heights (T, len(BODY_NAMES)) [m] above the floor (z = 0) of each named body's lowest
    colliding geom point in each pose of qpos (T, nq), by MuJoCo's kinematics and geom
    distances (negative: the pose sinks the body into the floor; capped at 10 m)."""
    import mujoco

    qpos = np.atleast_2d(np.asarray(qpos, dtype=float))
    model, data = _base_model(), _kinematics_data()
    floor = model.geom("floor").id
    geoms = [[g for g in range(model.ngeom) if model.geom_bodyid[g] == body_id(b)
              and model.geom_contype[g] & model.geom_conaffinity[floor]] for b in BODY_NAMES]
    out = np.empty((len(qpos), len(BODY_NAMES)))
    for i, q in enumerate(qpos):
        data.qpos[:] = q
        mujoco.mj_kinematics(model, data)
        for j, body_geoms in enumerate(geoms):
            out[i, j] = min(mujoco.mj_geomDistance(model, data, g, floor, 10.0, None) for g in body_geoms)
    return out
