"""The simulation: N humanoids tracking one clip, stepped together in native code.

``Simulation`` steps them with ``mujoco.batch.Batch`` (the threads run across humanoids) and
computes, after every step, the reference, the reward terms, the observations and whether each
episode ended (``config.fallen``).  The Gym env and vector env (``imitate.env``) are its faces.
``step_async`` / ``step_wait`` split a step around its physics, which then runs on a thread
(without the GIL) while the caller works on something else.
"""

from __future__ import annotations

import copy
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

import mujoco
import numpy as np
from mujoco.batch import Batch, SimulationError

from . import humanoid as hum
from .config import LOOPING_EPISODE_S, EnvConfig, action_to_ctrl, fallen
from .errors import ConfigError
from .motion import MotionClip, load_clip
from .observation import OBS_DIM, observe
from .reward import Pose, RewardTerms, imitation_reward

_LOG = logging.getLogger("imitate.mujoco")


@contextmanager
def warnings_to_log():
    """MuJoCo's warnings (a humanoid gone unstable: "Nan, Inf or huge value in QACC ...") go to
    the logger imitate.mujoco at DEBUG while imitate steps its batches, instead of MuJoCo's print
    to stdout: imitate already counts them (the batch's warning counters end such an episode as
    non-finite; the search scores such a rollout as a fall).  The handler before is restored."""
    before = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(_LOG.debug)
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(before)


_BAD_WARNINGS = [int(w) for w in (mujoco.mjtWarning.mjWARN_BADQPOS, mujoco.mjtWarning.mjWARN_BADQVEL,
                                  mujoco.mjtWarning.mjWARN_BADQACC)]


def model_hash_of(config: EnvConfig) -> str:
    """humanoid.model_hash of the model a Simulation of config runs: what a store records of it."""
    return hum.model_hash_for(config.action_space, config.physics_hz)


class Simulation:
    """N humanoids tracking one clip, stepped together; numpy in, numpy out.

    Attributes after each reset/step: ``obs`` (N, OBS_DIM) float32, ``terms`` (RewardTerms),
    ``sim_pose`` and ``ref_pose`` (reward.Pose), ``elapsed_s`` (N,) episode time,
    ``ref_time_s`` (N,) time in the clip; ``fall_bodies`` the bodies whose floor contact is a
    fall on this clip, and why the last step ended each episode: ``fall_contacts``
    (N, len(fall_bodies)) bool, ``root_dropped`` (N,) bool, ``nonfinite`` (N,) bool, in words
    by ``fall_cause(i)`` (all False after a reset).
    """

    def __init__(self, config: EnvConfig, num_envs: int, nthread: int = 0, clip: MotionClip | None = None,
                 env_ids=None):
        """env_ids (num_envs,): the humanoids' numbers in a larger collection of which this
        Simulation steps a slice (a Ray worker's share of a DAgger round); they name each
        humanoid's plan and random stream, so a slice behaves as in the whole.  Default 0..N-1."""
        if num_envs < 1:
            raise ConfigError(f"num_envs must be >= 1; found {num_envs}")
        self.env_ids = np.arange(num_envs) if env_ids is None else np.asarray(env_ids, dtype=np.int64)
        if self.env_ids.shape != (num_envs,):
            raise ConfigError(f"env_ids: expected shape ({num_envs},), found {self.env_ids.shape}")
        self.config = config
        self.clip = clip if clip is not None else load_clip(config.clip)
        self.model = hum.load_model(config.action_space, config.physics_hz)
        self.num_envs = num_envs
        self.batch = Batch(self.model, num_envs, nthread)
        # forward kinematics of the reference, on a copy of the model that skips collisions
        ref_model = copy.copy(self.model)
        ref_model.opt.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_CONTACT | mujoco.mjtDisableBit.mjDSBL_CONSTRAINT)
        self.ref = Batch(ref_model, num_envs, nthread)
        # Bind the derived fields now: a batch fills only the fields bound before a call.  These
        # and the state fields are live views, kept here because each Batch attribute look-up
        # is a Python call (writes through sim.batch.qpos and self._qpos are one).
        self._xpos, self._subtree_com = self.batch.bind("xpos"), self.batch.bind("subtree_com")
        self._sensordata = self.batch.bind("sensordata")
        self._ref_xpos, self._ref_subtree_com = self.ref.bind("xpos"), self.ref.bind("subtree_com")
        self._qpos, self._qvel, self._ctrl = self.batch.qpos, self.batch.qvel, self.batch.ctrl
        self._ref_qpos = self.ref.qpos
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
        self._physics: Future | None = None  # step_async's physics, until step_wait
        self._physics_worker: ThreadPoolExecutor | None = None  # one thread, made on the first step_async
        # held while this Simulation's Batch.step runs: Simulations that share one take turns
        # at the native threads instead of oversubscribing them (imitate.env.PipelinedVecEnv)
        self.physics_lock = threading.Lock()

    @property
    def qpos(self) -> np.ndarray:
        """(N, nq) the simulators' positions (a live view)."""
        return self._qpos

    @property
    def qvel(self) -> np.ndarray:
        """(N, nv) the simulators' velocities (a live view)."""
        return self._qvel

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
        self._place(ids, start, self.clip.qpos(start), self.clip.qvel(start))
        self._observe_rows(ids)

    def _place(self, ids: np.ndarray, start: np.ndarray, ref_q: np.ndarray, ref_v: np.ndarray) -> None:
        """Put humanoids ids (n,) int32 in the reference's state ref_q (n, nq), ref_v (n, nv) at
        clip times start (n,) [s], servos aimed at its angles, episodes restarted (no observation)."""
        self.batch.reset(ids, stage=mujoco.mjtStage.mjSTAGE_NONE)
        self._qpos[ids] = ref_q
        self._qvel[ids] = ref_v
        self._ctrl[ids] = 0.0 if self.config.action_space == "torque" else np.clip(
            ref_q[:, hum.HINGE_QPOS], hum.HINGE_RANGE[:, 0], hum.HINGE_RANGE[:, 1])
        self.batch.forward(ids, stage=mujoco.mjtStage.mjSTAGE_VEL)
        self.start_time_s[ids] = start
        self.steps[ids] = 0
        self.limit_s[ids] = self._episode_limit(start)
        self._clear_falls(ids)

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

    def step(self, action: np.ndarray, autoreset: np.random.Generator | None = None):
        """Advance every humanoid one control step.

        Args:
          action: (N, 28) normalised actions.
          autoreset: None, or the random stream of a vector env's same-step autoreset: the
            humanoids whose episode ended are reset at once, at start_times(autoreset, n), and
            obs holds their first observations; info then has "_final_obs" (N,) bool, which
            ended, and if any did, "final_obs" (N, OBS_DIM), every humanoid's observation
            after the step.  What step then reset(ended ids, start times) would give, for less
            (one observation call and fewer clip look-ups for both).
        Returns:
          reward (N,), terminated (N,) bool, truncated (N,) bool, info dict of (N,) arrays:
          the reward terms ("reward_pose", ...), "fell", "nonfinite", "time_s", "phase".
        """
        self._begin_step(action)
        self._run_physics()
        self._raise_physics_error()
        return self._end_step(autoreset)

    def step_async(self, action: np.ndarray, autoreset: np.random.Generator | None = None) -> None:
        """Start step(action, autoreset) with its physics (Batch.step) on a thread of its own and
        return at once; step_wait() finishes it.  Between the two the caller may work on
        anything but this Simulation (the native step runs without the GIL): a policy acting on
        another group of humanoids.  The results are step's, bit for bit."""
        if self._physics is not None:
            raise RuntimeError("step_async: a step is already in flight; call step_wait() first")
        self._begin_step(action)
        self._autoreset = autoreset
        if self._physics_worker is None:  # one thread kept for every step: no start and join per step
            self._physics_worker = ThreadPoolExecutor(1, thread_name_prefix="imitate-physics")
        self._physics = self._physics_worker.submit(self._run_physics)

    def step_wait(self):
        """Finish the step step_async started; return what step() returns."""
        if self._physics is None:
            raise RuntimeError("step_wait: no step in flight; call step_async(action) first")
        self._refresh_reference()  # a function of time alone: done while the physics runs
        self._physics.result()
        self._physics = None
        self._raise_physics_error()
        return self._end_step(self._autoreset, reference_done=True)

    def _begin_step(self, action: np.ndarray) -> None:
        """Check action (N, 28), write the controls and count the step."""
        action = np.asarray(action, dtype=float)
        if action.shape != (self.num_envs, hum.NU):
            raise ValueError(f"action: expected shape ({self.num_envs}, {hum.NU}), found {action.shape}")
        bad = ~np.isfinite(action)
        if bad.any():
            env, dim = np.argwhere(bad)[0]
            raise ValueError(f"action: expected finite values, found {action[env, dim]} "
                             f"in env {env} at {hum.HINGE_NAMES[dim]}")
        self._ctrl[:] = action_to_ctrl(action, self.config.action_space)
        self._warnings_before = self.batch.warning[:, _BAD_WARNINGS, 1].sum(axis=1)
        self._failed, self._physics_error = np.zeros(0, dtype=int), None
        self.steps += 1

    def _run_physics(self) -> None:
        """config.substeps physics steps of every humanoid (the only native work of a step)."""
        with self.physics_lock:
            try:
                with warnings_to_log():
                    self.batch.step(nstep=self.config.substeps, stage=mujoco.mjtStage.mjSTAGE_VEL)
            except SimulationError as exc:  # those sims kept their previous state: end them
                self._failed = exc.ids
            except BaseException as exc:  # raised in the caller's thread (_raise_physics_error)
                self._physics_error = exc

    def _raise_physics_error(self) -> None:
        """Raise what the physics raised other than a SimulationError (the step then did not count)."""
        if self._physics_error is not None:
            error, self._physics_error = self._physics_error, None
            self.steps -= 1
            raise error

    def _end_step(self, autoreset: np.random.Generator | None, reference_done: bool = False):
        """Observations, reward, terminations and info after the physics (step's return)."""
        nonfinite = np.zeros(self.num_envs, bool)
        nonfinite[self._failed] = True
        nonfinite |= self.batch.warning[:, _BAD_WARNINGS, 1].sum(axis=1) > self._warnings_before
        nonfinite |= ~np.isfinite(self._qpos).all(axis=1) | ~np.isfinite(self._qvel).all(axis=1)
        if not reference_done:
            self._refresh_reference()
        qpos, qvel, body_pos = self._score_state()
        contacts, dropped = fallen(self._sensordata[:, self._fall_ids], self._qpos[:, 2], self._ref_root_z,
                                   self.config.max_root_drop_m)
        self.fall_contacts = contacts & ~nonfinite[:, None]
        self.root_dropped = dropped & ~nonfinite
        self.nonfinite = nonfinite.copy()  # not the array info returns: a reset clears this one
        fell = self.fall_contacts.any(axis=1) | self.root_dropped
        terminated = fell | nonfinite
        truncated = (self.elapsed_s >= self.limit_s - 1e-9) & ~terminated
        reward = np.where(nonfinite, 0.0, self.terms.total)
        info = {f"reward_{n}": np.where(nonfinite, 0.0, getattr(self.terms, n)) for n in RewardTerms.NAMES}
        info.update(fell=fell, nonfinite=nonfinite, time_s=self.elapsed_s, phase=self._phase.copy())
        ended = np.flatnonzero(terminated | truncated) if autoreset is not None else np.zeros(0, int)
        if autoreset is not None:
            info["_final_obs"] = terminated | truncated
        if not len(ended):
            self.obs[:] = observe(qpos, qvel, body_pos, self._phase, self._ahead_q, self._ahead_v)
            return reward, terminated, truncated, info
        # the ended humanoids' new episodes, observed in one call with everyone's last step
        n = self.num_envs
        qpos, qvel = qpos.copy(), qvel.copy()  # views of the state rows the reset writes
        start = self.start_times(autoreset, len(ended))
        (start_q, ahead_q), (start_v, ahead_v) = self._clip_states(start, start + self.config.lookahead_s)
        self._place(ended.astype(np.int32), start, start_q, start_v)
        new_qpos, new_qvel, new_body_pos, _ = self._state_rows(ended)
        obs = observe(np.concatenate([qpos, new_qpos]), np.concatenate([qvel, new_qvel]),
                      np.concatenate([body_pos, new_body_pos]), np.concatenate([self._phase, self.clip.phase(start)]),
                      np.concatenate([self._ahead_q, ahead_q]), np.concatenate([self._ahead_v, ahead_v]))
        info["final_obs"] = obs[:n]
        self.obs[:] = obs[:n]
        self.obs[ended] = obs[n:]
        return reward, terminated, truncated, info

    def refresh(self) -> None:
        """Recompute the reference, reward terms and observations of every humanoid from the
        current simulator state (after each step, or after setting the state by hand)."""
        self._refresh_reference()
        qpos, qvel, body_pos = self._score_state()
        self.obs[:] = observe(qpos, qvel, body_pos, self._phase, self._ahead_q, self._ahead_v)

    def _score_state(self):
        """sim_pose and the reward terms of the simulator state against the reference; the
        state's qpos, qvel and body positions (for the observation)."""
        qpos, qvel, body_pos, com = self._state_rows(slice(None))
        self.sim_pose = Pose(qpos, qvel, body_pos, com)
        self.terms = imitation_reward(self.sim_pose, self.ref_pose, self.config.reward)
        return qpos, qvel, body_pos

    def _clip_states(self, a: np.ndarray, b: np.ndarray):
        """The clip's ((qpos at a, qpos at b), (qvel at a, qvel at b)) for times a (n,) and b (n,)
        [s], one look-up each for both (a look-up costs mostly its call)."""
        n, times = len(a), np.concatenate([a, b])
        q, v = self.clip.qpos(times), self.clip.qvel(times)
        return (q[:n], q[n:]), (v[:n], v[n:])

    def _refresh_reference(self) -> None:
        """The reference at the current clip times and a lookahead ahead (no simulator state
        needed: step_wait computes it while the physics runs)."""
        t = self.ref_time_s
        (ref_q, self._ahead_q), (ref_v, self._ahead_v) = self._clip_states(t, t + self.config.lookahead_s)
        self._ref_qpos[:] = ref_q
        self.ref.forward(stage=mujoco.mjtStage.mjSTAGE_POS)
        self.ref_pose = Pose(ref_q, ref_v, self._ref_xpos[:, self._body_ids], self._ref_subtree_com[:, 1])
        self._ref_root_z = ref_q[:, 2]
        self._phase = self.clip.phase(t)

    def _observe_rows(self, ids: np.ndarray) -> None:
        """Observations of humanoids ids only (after a reset: no reward is due there)."""
        qpos, qvel, body_pos, _ = self._state_rows(ids)
        t = self.ref_time_s[ids]
        ahead = t + self.config.lookahead_s
        self.obs[ids] = observe(qpos, qvel, body_pos, self.clip.phase(t), self.clip.qpos(ahead), self.clip.qvel(ahead))

    def _state_rows(self, rows):
        """qpos, qvel, body positions and centre of mass of some humanoids, non-finite values
        zeroed (an env flagged non-finite still yields a finite observation)."""
        qpos, qvel = self._qpos[rows], self._qvel[rows]
        body_pos, com = self._xpos[rows][:, self._body_ids], self._subtree_com[rows][:, 1]
        if not (np.isfinite(qpos).all() and np.isfinite(qvel).all() and np.isfinite(body_pos).all()):
            qpos, qvel, body_pos, com = (np.nan_to_num(a) for a in (qpos, qvel, body_pos, com))
        return qpos, qvel, body_pos, com

    def start_times(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Episode start times (n,) [s]: uniform over the clip with random_start (each 0 instead
        with probability zero_start_share), else 0."""
        if not self.config.random_start:
            return np.zeros(n)
        times = rng.uniform(0.0, self.clip.duration_s, size=n)
        if self.config.zero_start_share > 0:  # (no draw at 0: a share of 0 keeps earlier runs' streams)
            times[rng.random(n) < self.config.zero_start_share] = 0.0
        return times
