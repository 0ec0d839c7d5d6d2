"""The imitation environment: the humanoid tracking a clip, as a Gymnasium env and vector env.

Both are thin faces of ``Simulation``, which steps N humanoids together in native code with
``mujoco.batch.Batch`` (the threads run across humanoids); the single env is the N = 1 case.

Actions (28,) in [-1, 1], one per hinge (``imitate.humanoid.HINGE_NAMES``):
- ``pd_target``: the servo target angle, affinely from [-1, 1] onto the hinge's range
  ``[lo, hi]``: ctrl = (lo + hi) / 2 + a (hi - lo) / 2 [rad]; the servos then apply
  clip(kp (ctrl - q) - kd dq, +-torque limit) at every physics step.
- ``torque``: the normalised joint torque: ctrl = a, and the motor's gear (the joint's
  torque limit) makes it a torque of a * limit [N m], held for the whole control step; the
  joints also carry the servos' damping kd as passive damping, integrated implicitly
  (without it no PD law at 30 Hz is stable with DeepMimic's gains).
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.vector import VectorEnv
from gymnasium.vector.utils import batch_space
from mujoco.batch import Batch, SimulationError

from . import humanoid as hum
from .errors import ConfigError
from .motion import MotionClip, load_clip
from .observation import OBS_DIM, observe
from .reward import Pose, RewardConfig, RewardTerms, imitation_reward

try:
    from gymnasium.vector import AutoresetMode

    _SAME_STEP = AutoresetMode.SAME_STEP
except ImportError:  # gymnasium 0.29 (the `imitation` library's): the single env works there
    _SAME_STEP = "SameStep"

LOOPING_EPISODE_S = 20.0  # default time limit for looping clips [s]
_BAD_WARNINGS = [int(w) for w in (mujoco.mjtWarning.mjWARN_BADQPOS, mujoco.mjtWarning.mjWARN_BADQVEL,
                                  mujoco.mjtWarning.mjWARN_BADQACC)]


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


class Simulation:
    """N humanoids tracking one clip, stepped together; numpy in, numpy out.

    Attributes after each reset/step: ``obs`` (N, OBS_DIM) float32, ``terms`` (RewardTerms),
    ``sim_pose`` and ``ref_pose`` (reward.Pose), ``elapsed_s`` (N,) episode time,
    ``ref_time_s`` (N,) time in the clip; ``fall_bodies`` the bodies whose floor contact is a
    fall on this clip, and why the last step ended each episode: ``fall_contacts``
    (N, len(fall_bodies)) bool, ``root_dropped`` (N,) bool, ``nonfinite`` (N,) bool, in words
    by ``fall_cause(i)`` (all False after a reset).
    """

    def __init__(self, config: EnvConfig, num_envs: int, nthread: int = 0, clip: MotionClip | None = None):
        if num_envs < 1:
            raise ConfigError(f"num_envs must be >= 1; found {num_envs}")
        self.config = config
        self.clip = clip if clip is not None else load_clip(config.clip)
        self.model = hum.load_model(config.action_space, config.physics_hz)
        self.num_envs = num_envs
        self.batch = Batch(self.model, num_envs, nthread)
        # forward kinematics of the reference, on a copy of the model that skips collisions
        ref_model = copy.copy(self.model)
        ref_model.opt.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_CONTACT | mujoco.mjtDisableBit.mjDSBL_CONSTRAINT)
        self.ref = Batch(ref_model, num_envs, nthread)
        # Bind the derived fields now: a batch fills only the fields bound before a call.
        for field_name in ("xpos", "subtree_com", "sensordata"):
            self.batch.bind(field_name)
        for field_name in ("xpos", "subtree_com"):
            self.ref.bind(field_name)
        self._body_ids = np.array([hum.body_id(b) for b in hum.BODY_NAMES])
        self.fall_bodies = config.fall_body_names(self.clip)
        fall_sensors = hum.fall_sensor_names(self.fall_bodies)
        self._fall_ids = np.array([self.model.sensor(s).adr[0] for s in fall_sensors], dtype=int)
        # what the last step ended in (fall_cause): (N, len(fall_bodies)) fall bodies on the
        # floor, (N,) root max_root_drop_m below the reference's, (N,) a non-finite state
        self.fall_contacts = np.zeros((num_envs, len(self.fall_bodies)), bool)
        self.root_dropped = np.zeros(num_envs, bool)
        self.nonfinite = np.zeros(num_envs, bool)
        self.start_time_s = np.zeros(num_envs)
        self.steps = np.zeros(num_envs, dtype=np.int64)  # control steps since each reset
        self.limit_s = np.full(num_envs, np.inf)
        self.obs = np.zeros((num_envs, OBS_DIM), np.float32)

    @property
    def qpos(self) -> np.ndarray:
        """(N, nq) the simulators' positions (a live view)."""
        return self.batch.qpos

    @property
    def qvel(self) -> np.ndarray:
        """(N, nv) the simulators' velocities (a live view)."""
        return self.batch.qvel

    @property
    def elapsed_s(self) -> np.ndarray:
        # from an integer count, not a running sum: control times that land on a clip's frame
        # times (30 fps clips) must pick the same frame interval every time
        return self.steps / self.config.control_hz

    @property
    def ref_time_s(self) -> np.ndarray:
        return self.start_time_s + self.elapsed_s

    def _episode_limit(self, start: np.ndarray) -> np.ndarray:
        if self.config.episode_s is not None:
            return np.full(len(start), self.config.episode_s)
        if self.clip.loop:
            return np.full(len(start), LOOPING_EPISODE_S)
        return np.maximum(self.clip.duration_s - start, self.config.control_dt)

    def reset(self, ids: np.ndarray, start_time_s: np.ndarray) -> None:
        """Put humanoids ids (n,) on the reference at clip times start_time_s (n,) [s]."""
        ids = np.asarray(ids, dtype=np.int32)
        start = np.asarray(start_time_s, dtype=float)
        self.batch.reset(ids, stage=mujoco.mjtStage.mjSTAGE_NONE)
        ref_q = self.clip.qpos(start)
        self.batch.qpos[ids] = ref_q
        self.batch.qvel[ids] = self.clip.qvel(start)
        self.batch.ctrl[ids] = 0.0 if self.config.action_space == "torque" else np.clip(
            ref_q[:, hum.HINGE_QPOS], hum.HINGE_RANGE[:, 0], hum.HINGE_RANGE[:, 1])
        self.batch.forward(ids, stage=mujoco.mjtStage.mjSTAGE_VEL)
        self.start_time_s[ids] = start
        self.steps[ids] = 0
        self.limit_s[ids] = self._episode_limit(start)
        self._clear_falls(ids)
        self._observe_rows(ids)

    def set_state(self, qpos: np.ndarray, qvel: np.ndarray, ref_time_s: np.ndarray) -> None:
        """Place all N humanoids in given states (N, nq), (N, nv) at clip times (N,) [s] and
        recompute observations and reward terms (for labelling states off any trajectory)."""
        self.batch.reset(stage=mujoco.mjtStage.mjSTAGE_NONE)
        self.batch.qpos[:] = qpos
        self.batch.qvel[:] = qvel
        self.batch.forward(stage=mujoco.mjtStage.mjSTAGE_VEL)
        self.start_time_s[:] = ref_time_s
        self.steps[:] = 0
        self.limit_s[:] = self._episode_limit(self.start_time_s)
        self._clear_falls(slice(None))
        self.refresh()

    def _clear_falls(self, ids) -> None:
        self.fall_contacts[ids] = False
        self.root_dropped[ids] = False
        self.nonfinite[ids] = False

    def fall_cause(self, i: int) -> str:
        """Why humanoid i's last step ended its episode, in words ("" if it did not)."""
        if self.nonfinite[i]:
            return "non-finite state"
        causes = []
        touching = [b for b, hit in zip(self.fall_bodies, self.fall_contacts[i], strict=True) if hit]
        if touching:
            causes.append(f"{', '.join(touching)} on the floor")
        if self.root_dropped[i]:
            causes.append(f"root {self.config.max_root_drop_m:g} m below the reference's")
        return "; ".join(causes)

    def step(self, action: np.ndarray):
        """Advance every humanoid one control step.

        Args:
          action: (N, 28) normalised actions.
        Returns:
          reward (N,), terminated (N,) bool, truncated (N,) bool, info dict of (N,) arrays:
          the reward terms ("reward_pose", ...), "fell", "nonfinite", "time_s", "phase".
        """
        action = np.asarray(action, dtype=float)
        if action.shape != (self.num_envs, hum.NU):
            raise ValueError(f"action: expected shape ({self.num_envs}, {hum.NU}), found {action.shape}")
        bad = ~np.isfinite(action)
        if bad.any():
            env, dim = np.argwhere(bad)[0]
            raise ValueError(f"action: expected finite values, found {action[env, dim]} "
                             f"in env {env} at {hum.HINGE_NAMES[dim]}")
        self.batch.ctrl[:] = action_to_ctrl(action, self.config.action_space)
        warnings_before = self.batch.warning[:, _BAD_WARNINGS, 1].sum(axis=1)
        nonfinite = np.zeros(self.num_envs, bool)
        try:
            self.batch.step(nstep=self.config.substeps, stage=mujoco.mjtStage.mjSTAGE_VEL)
        except SimulationError as exc:  # those sims kept their previous state: end them
            nonfinite[exc.ids] = True
        nonfinite |= self.batch.warning[:, _BAD_WARNINGS, 1].sum(axis=1) > warnings_before
        nonfinite |= ~np.isfinite(self.batch.qpos).all(axis=1) | ~np.isfinite(self.batch.qvel).all(axis=1)
        self.steps += 1
        self.refresh()
        self.fall_contacts = (self.batch.sensordata[:, self._fall_ids] > 0) & ~nonfinite[:, None]
        self.root_dropped = (self.batch.qpos[:, 2] < self._ref_root_z - self.config.max_root_drop_m) & ~nonfinite
        self.nonfinite = nonfinite.copy()  # not the array info returns: a reset clears this one
        fell = self.fall_contacts.any(axis=1) | self.root_dropped
        terminated = fell | nonfinite
        truncated = (self.elapsed_s >= self.limit_s - 1e-9) & ~terminated
        reward = np.where(nonfinite, 0.0, self.terms.total)
        info = {f"reward_{n}": np.where(nonfinite, 0.0, getattr(self.terms, n)) for n in RewardTerms.NAMES}
        info.update(fell=fell, nonfinite=nonfinite, time_s=self.elapsed_s,
                    phase=self.clip.phase(self.ref_time_s))
        return reward, terminated, truncated, info

    def refresh(self) -> None:
        """Recompute the reference, reward terms and observations of every humanoid from the
        current simulator state (after each step, or after setting the state by hand)."""
        t = self.ref_time_s
        ref_q, ref_v = self.clip.qpos(t), self.clip.qvel(t)
        self.ref.qpos[:] = ref_q
        self.ref.forward(stage=mujoco.mjtStage.mjSTAGE_POS)
        qpos, qvel, body_pos, com = self._state_rows(slice(None))
        sim = Pose(qpos, qvel, body_pos, com)
        ref = Pose(ref_q, ref_v, self.ref.xpos[:, self._body_ids], self.ref.subtree_com[:, 1])
        self.sim_pose, self.ref_pose = sim, ref
        self.terms = imitation_reward(sim, ref, self.config.reward)
        self._ref_root_z = ref_q[:, 2]
        ahead = t + self.config.lookahead_s
        self.obs[:] = observe(qpos, qvel, body_pos, self.clip.phase(t), self.clip.qpos(ahead), self.clip.qvel(ahead))

    def _observe_rows(self, ids: np.ndarray) -> None:
        """Observations of humanoids ids only (after a reset: no reward is due there)."""
        qpos, qvel, body_pos, _ = self._state_rows(ids)
        t = self.ref_time_s[ids]
        ahead = t + self.config.lookahead_s
        self.obs[ids] = observe(qpos, qvel, body_pos, self.clip.phase(t), self.clip.qpos(ahead), self.clip.qvel(ahead))

    def _state_rows(self, rows):
        """qpos, qvel, body positions and centre of mass of some humanoids, non-finite values
        zeroed (an env flagged non-finite still yields a finite observation)."""
        qpos, qvel = self.batch.qpos[rows], self.batch.qvel[rows]
        body_pos, com = self.batch.xpos[rows][:, self._body_ids], self.batch.subtree_com[rows][:, 1]
        if not (np.isfinite(qpos).all() and np.isfinite(qvel).all() and np.isfinite(body_pos).all()):
            qpos, qvel, body_pos, com = (np.nan_to_num(a) for a in (qpos, qvel, body_pos, com))
        return qpos, qvel, body_pos, com

    def start_times(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Episode start times (n,) [s]: uniform over the clip with random_start, else 0."""
        if not self.config.random_start:
            return np.zeros(n)
        return rng.uniform(0.0, self.clip.duration_s, size=n)


def _spaces():
    obs = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
    act = gym.spaces.Box(-1.0, 1.0, (hum.NU,), np.float32)
    return obs, act


class ImitationEnv(gym.Env):
    """One humanoid imitating a clip.  ``reset(options={"start_time_s": t})`` starts at clip
    time t; otherwise at a random time (random_start) or 0."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, config: EnvConfig | None = None, render_mode: str | None = None, nthread: int = 1):
        self.config = config or EnvConfig()
        self.sim = Simulation(self.config, 1, nthread)
        self.observation_space, self.action_space = _spaces()
        self.metadata = {**self.metadata, "render_fps": self.config.control_hz}
        self.render_mode = render_mode
        self._renderer = None

    @property
    def clip(self) -> MotionClip:
        return self.sim.clip

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = options or {}
        if "start_time_s" in options:
            start = np.array([float(options["start_time_s"])])
        else:
            start = self.sim.start_times(self.np_random, 1)
        self.sim.reset(np.array([0]), start)
        return self.sim.obs[0].copy(), {"start_time_s": float(start[0])}

    def step(self, action):
        reward, term, trunc, info = self.sim.step(np.asarray(action, dtype=float).reshape(1, -1))
        return (self.sim.obs[0].copy(), float(reward[0]), bool(term[0]), bool(trunc[0]),
                {k: v[0].item() for k, v in info.items()})

    def state(self) -> tuple[np.ndarray, np.ndarray]:
        """The simulator's qpos (nq,) and qvel (nv,)."""
        return self.sim.batch.qpos[0].copy(), self.sim.batch.qvel[0].copy()

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.sim.model, 240, 320)
            self._data = mujoco.MjData(self.sim.model)
        self.sim.batch.get_data(0, self._data)
        mujoco.mj_forward(self.sim.model, self._data)
        self._renderer.update_scene(self._data, camera="track")
        return self._renderer.render()

    def close(self):
        if self._renderer is not None:
            self._renderer.close()  # its teardown at exit would raise otherwise
            self._renderer = None


class ImitationVecEnv(VectorEnv):
    """num_envs humanoids imitating one clip, stepped in native code on nthread threads.

    Autoreset: same step.  An env that ends is reset at once; its last observation is in
    ``infos["final_obs"]`` (rows where ``infos["_final_obs"]`` is True).
    """

    metadata = {"autoreset_mode": _SAME_STEP, "render_modes": []}

    def __init__(self, config: EnvConfig | None = None, num_envs: int = 8, nthread: int = 0):
        self.config = config or EnvConfig()
        self.sim = Simulation(self.config, num_envs, nthread)
        self.num_envs = num_envs
        self.single_observation_space, self.single_action_space = _spaces()
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._np_random = np.random.default_rng()

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._np_random = np.random.default_rng(seed)
            self.observation_space.seed(seed)
            self.action_space.seed(seed)
        ids = np.arange(self.num_envs)
        options = options or {}
        start = (np.broadcast_to(np.asarray(options["start_time_s"], float), (self.num_envs,))
                 if "start_time_s" in options else self.sim.start_times(self._np_random, self.num_envs))
        self.sim.reset(ids, start)
        return self.sim.obs.copy(), {"start_time_s": start.copy()}

    def step(self, actions):
        reward, term, trunc, info = self.sim.step(np.asarray(actions, dtype=float))
        done = term | trunc
        info["_final_obs"] = done
        if done.any():
            info["final_obs"] = self.sim.obs.copy()
            ids = np.flatnonzero(done)
            self.sim.reset(ids, self.sim.start_times(self._np_random, len(ids)))
        return self.sim.obs.copy(), reward, term, trunc, info


def make_env(clip: str = "walk", *, render_mode: str | None = None, **options) -> ImitationEnv:
    """A Gymnasium env of the humanoid imitating clip; options are EnvConfig fields."""
    return ImitationEnv(EnvConfig(clip=clip, **options), render_mode=render_mode)


def make_vec_env(clip: str = "walk", num_envs: int = 8, *, nthread: int = 0, **options) -> ImitationVecEnv:
    """A vector env of num_envs humanoids stepped natively on nthread threads (0: all cores)."""
    return ImitationVecEnv(EnvConfig(clip=clip, **options), num_envs, nthread)
