"""The imitation environment as Gymnasium sees it: ``ImitationEnv`` and ``ImitationVecEnv``.

Both are thin faces of ``imitate.simulation.Simulation`` (the single env is its N = 1 case);
what defines them is ``imitate.config.EnvConfig``, and the actions are described there.
``gymnasium.make("imitate/Track-v0", clip="walk")`` makes one once imitate is imported.
``PipelinedVecEnv`` steps the vector env's humanoids in groups, asynchronously (send / recv),
so that a policy's inference overlaps the physics where spare cores allow it.
"""

from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.vector import VectorEnv
from gymnasium.vector.utils import batch_space

from . import humanoid as hum
from .config import EnvConfig
from .motion import MotionClip, load_clip
from .observation import OBS_DIM
from .simulation import Simulation

try:
    from gymnasium.vector import AutoresetMode

    _SAME_STEP = AutoresetMode.SAME_STEP
except ImportError:  # gymnasium 0.29 (the `imitation` library's): the single env works there
    _SAME_STEP = "SameStep"


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
        reward, term, trunc, info = self.sim.step(np.asarray(actions, dtype=float), autoreset=self._np_random)
        return self.sim.obs.copy(), reward, term, trunc, info


class PipelinedVecEnv:
    """num_envs humanoids in `groups` groups of consecutive envs, each stepped by its own
    Simulation, so that a policy loop acts on one group while the others' physics runs
    (asynchronous stepping, as EnvPool's send/recv): the native step (Batch.step) runs without
    the GIL, and what a control step does in Python (the policy, observations, reward,
    autoresets) hides behind it.

      obs, _ = env.reset(seed=0)
      for g in range(env.groups):
          env.send(policy(obs[env.envs(g)]), g)
      while ...:
          g, obs_g, reward, terminated, truncated, info = env.recv()
          env.send(policy(obs_g), g)

    send(actions, g) takes the group's actions (n_g, 28) and returns at once; recv() finishes the
    oldest step sent and returns that group's results, rows in env order (the envs(g) of
    ImitationVecEnv's), with its same-step autoreset and final_obs.  Groups are sent in turn
    (0, 1, ..., groups - 1, 0, ...) and their physics runs one group at a time (the groups share
    one physics lock): each env then lives exactly ImitationVecEnv's episode for the same seed
    and actions, bit for bit (the batch's results do not depend on which sims share a call,
    and start times are drawn from the one random stream in ImitationVecEnv's order).

    It pays only where cores are left over from the physics's nthread threads: at tens of
    humanoids the observations and reward cost mostly per call, not per humanoid, so G groups
    make about G times the Python work of a control step, and on a host whose cores the physics
    fills that work competes with the physics (scripts/bench_env.py measures both envs).
    """

    def __init__(self, config: EnvConfig | None = None, num_envs: int = 8, nthread: int = 0, groups: int = 2):
        if not 1 <= groups <= num_envs:
            raise ValueError(f"groups must be in [1, num_envs={num_envs}]; found {groups}")
        self.config = config or EnvConfig()
        self.num_envs, self.groups = num_envs, groups
        bounds = np.linspace(0, num_envs, groups + 1).round().astype(int)
        self._envs = [np.arange(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
        clip = load_clip(self.config.clip)
        self.sims = [Simulation(self.config, len(ids), nthread, clip=clip, env_ids=ids) for ids in self._envs]
        for sim in self.sims[1:]:
            sim.physics_lock = self.sims[0].physics_lock
        self.single_observation_space, self.single_action_space = _spaces()
        self._np_random = np.random.default_rng()
        self._in_flight: list[int] = []  # groups sent and not yet received, oldest first
        self._next_send = 0

    @property
    def in_flight(self) -> list[int]:
        """The groups sent and not yet received, oldest first (the order recv returns them)."""
        return list(self._in_flight)

    def envs(self, group: int) -> np.ndarray:
        """The env ids (n_g,) of group (consecutive)."""
        return self._envs[group]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Reset every env (as ImitationVecEnv.reset); obs (num_envs, OBS_DIM), info."""
        if self._in_flight:
            raise RuntimeError(f"reset: groups {self._in_flight} are in flight; recv() them first")
        if seed is not None:
            self._np_random = np.random.default_rng(seed)
        options = options or {}
        start = (np.broadcast_to(np.asarray(options["start_time_s"], float), (self.num_envs,))
                 if "start_time_s" in options else self.sims[0].start_times(self._np_random, self.num_envs))
        for sim, ids in zip(self.sims, self._envs, strict=True):
            sim.reset(np.arange(len(ids)), start[ids])
        self._next_send = 0
        return np.concatenate([sim.obs for sim in self.sims]), {"start_time_s": start.copy()}

    def send(self, actions, group: int) -> None:
        """Start group's control step with actions (n_g, 28); return at once."""
        if group != self._next_send:
            raise ValueError(f"send: groups go in turn; expected group {self._next_send}, found {group}")
        self.sims[group].step_async(np.asarray(actions, dtype=float), autoreset=self._np_random)
        self._in_flight.append(group)
        self._next_send = (group + 1) % self.groups

    def recv(self):
        """Finish the oldest step sent: (group, obs (n_g, OBS_DIM), reward, terminated,
        truncated, info), as ImitationVecEnv.step returns for those envs."""
        if not self._in_flight:
            raise RuntimeError("recv: no step in flight; send(actions, group) first")
        group = self._in_flight.pop(0)
        reward, term, trunc, info = self.sims[group].step_wait()
        return group, self.sims[group].obs.copy(), reward, term, trunc, info


def make_env(clip: str = "walk", *, render_mode: str | None = None, **options) -> ImitationEnv:
    """A Gymnasium env of the humanoid imitating clip; options are EnvConfig fields."""
    return ImitationEnv(EnvConfig(clip=clip, **options), render_mode=render_mode)


def make_vec_env(clip: str = "walk", num_envs: int = 8, *, nthread: int = 0, **options) -> ImitationVecEnv:
    """A vector env of num_envs humanoids stepped natively on nthread threads (0: all cores)."""
    return ImitationVecEnv(EnvConfig(clip=clip, **options), num_envs, nthread)


def make_pipelined_vec_env(clip: str = "walk", num_envs: int = 8, *, nthread: int = 0, groups: int = 2,
                           **options) -> PipelinedVecEnv:
    """make_vec_env's envs in groups stepped asynchronously (PipelinedVecEnv: send / recv)."""
    return PipelinedVecEnv(EnvConfig(clip=clip, **options), num_envs, nthread, groups)
