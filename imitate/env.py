"""The imitation environment as Gymnasium sees it: ``ImitationEnv`` and ``ImitationVecEnv``.

Both are thin faces of ``imitate.simulation.Simulation`` (the single env is its N = 1 case);
what defines them is ``imitate.config.EnvConfig``, and the actions are described there.
``gymnasium.make("imitate/Track-v0", clip="walk")`` makes one once imitate is imported.
"""

from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.vector import VectorEnv
from gymnasium.vector.utils import batch_space

from . import humanoid as hum
from .config import EnvConfig
from .motion import MotionClip
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
