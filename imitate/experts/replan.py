"""Replanning around the tracking expert: a short sampled search whose rollouts run its feedback law.

The tracking expert's linear feedback holds the humanoid only near its trajectory.  This adds,
at every label, a small search (after model predictive path integral control): ``candidates``
constant offsets of the servo targets (candidate 0: none; the rest Gaussian, ``noise_rad``, the
same draws for every state, so the label is a function of the state and time), each rolled out
for ``horizon`` control steps from the humanoid's qpos and qvel with the feedback law plus the
offset, all in one batched call.  Each is scored with the reconstruction's tracking cost plus
``fall_penalty`` x (1 + the share of the horizon left) at its first fall; the label is the
feedback law's target now plus the cost-weighted mean offset (weights
exp(-(cost - min) / (temperature (median - min)))).  Rollouts start from qpos and qvel alone (the
solver's warm start is not carried over), so they follow the simulator closely, not bit for bit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import mujoco
import numpy as np
from mujoco.batch import Batch

from .. import humanoid as hum
from ..errors import ConfigError
from .reconstruct import planning_batch, step_cost
from .tracking import TrackingExpert


@dataclass(frozen=True)
class ReplanConfig:
    candidates: int = 16
    horizon: int = 10  # control steps per rollout
    noise_rad: float = 0.1
    temperature: float = 0.3
    fall_penalty: float = 1000.0
    seed: int = 0
    nthread: int = 0

    def __post_init__(self):
        if not (self.candidates >= 2 and self.horizon >= 1 and self.noise_rad >= 0 and self.temperature > 0):
            raise ConfigError(f"ReplanConfig: candidates >= 2, horizon >= 1, noise_rad >= 0, temperature > 0; "
                              f"found {self}")


class ReplanningExpert:
    """``expert.label(sim)`` or ``expert(qpos, qvel, time_s) -> (N, 28)``: the tracking
    expert's labels corrected by a short search (module docstring)."""

    def __init__(self, tracking: TrackingExpert, config: ReplanConfig = ReplanConfig()):
        self.tracking, self.config = tracking, config
        self.env_config, self.clip = tracking.env_config, tracking.clip
        self.model = hum.load_model("pd_target", self.env_config.physics_hz)
        self._fall_ids = np.array([self.model.sensor(s).adr[0]
                                   for s in hum.fall_sensor_names(self.env_config.fall_body_names(self.clip))])
        self._body_ids = np.array([hum.body_id(b) for b in hum.BODY_NAMES])
        offsets = np.random.default_rng(config.seed).normal(0.0, config.noise_rad, (config.candidates, hum.NU))
        offsets[0] = 0.0
        self.offsets = offsets  # (K, 28) [rad], shared by every state
        self._batches: dict[int, Batch] = {}

    def provenance(self) -> dict:
        return {**self.tracking.provenance(), "kind": "tracking+replan", "replan": asdict(self.config)}

    def label(self, sim) -> np.ndarray:
        return self(sim.qpos, sim.qvel, sim.ref_time_s)

    def __call__(self, qpos: np.ndarray, qvel: np.ndarray, time_s: np.ndarray) -> np.ndarray:
        out = self.tracking(qpos, qvel, time_s)  # checks the input; the PD expert's past the trajectory
        qpos, qvel = np.atleast_2d(qpos), np.atleast_2d(qvel)
        time_s = np.broadcast_to(np.asarray(time_s, dtype=float), (len(qpos),))
        step = np.rint(time_s * self.env_config.control_hz).astype(int)
        inside = np.flatnonzero((step >= 0) & (step < len(self.tracking.ctrl)))
        if len(inside):
            q, v, k = qpos[inside], qvel[inside], step[inside]
            target = self.tracking.targets(q, v, k) + self._best_offsets(q, v, k)
            target = np.clip(target, hum.HINGE_RANGE[:, 0], hum.HINGE_RANGE[:, 1])
            out[inside] = self.tracking.to_action(target, q)
        return out

    def _best_offsets(self, qpos: np.ndarray, qvel: np.ndarray, step: np.ndarray) -> np.ndarray:
        """The cost-weighted mean offsets (n, 28) of rollouts of every candidate from each state."""
        cfg, env = self.config, self.env_config
        n, c = len(qpos), cfg.candidates
        batch = self._batch(n * c)
        batch.reset(stage=mujoco.mjtStage.mjSTAGE_NONE)
        batch.qpos[:], batch.qvel[:] = np.repeat(qpos, c, axis=0), np.repeat(qvel, c, axis=0)
        batch.forward(stage=mujoco.mjtStage.mjSTAGE_VEL)
        offsets = np.tile(self.offsets, (n, 1))
        last = len(self.tracking.ctrl) - 1
        times = env.control_dt * (np.minimum(step[:, None] + np.arange(1, cfg.horizon + 1), last + 1))
        ref_q = self.clip.qpos(times.ravel()).reshape(n, cfg.horizon, -1)
        ref_v = self.clip.qvel(times.ravel()).reshape(n, cfg.horizon, -1)
        ref_body = hum.body_positions(ref_q.reshape(-1, hum.NQ)).reshape(n, cfg.horizon, -1, 3)
        cost, fallen = np.zeros(n * c), np.zeros(n * c, bool)
        rows = np.repeat(np.minimum(step, last), c)
        for h in range(cfg.horizon):
            k = np.minimum(rows + h, last)
            batch.ctrl[:] = np.clip(self.tracking.targets(batch.qpos, batch.qvel, k) + offsets,
                                    hum.HINGE_RANGE[:, 0], hum.HINGE_RANGE[:, 1])
            batch.step(nstep=env.substeps, stage=mujoco.mjtStage.mjSTAGE_VEL)
            stage_cost, falls = step_cost(self.tracking.config.reconstruct, batch, self._body_ids,
                                               self._fall_ids, np.repeat(ref_q[:, h], c, 0),
                                               np.repeat(ref_v[:, h], c, 0), np.repeat(ref_body[:, h], c, 0),
                                               env.max_root_drop_m)
            new = falls & ~fallen
            cost += np.where(fallen, 0.0, np.nan_to_num(stage_cost, nan=0.0, posinf=0.0))
            cost += new * cfg.fall_penalty * (1.0 + (cfg.horizon - h) / cfg.horizon)
            fallen |= falls
        cost = cost.reshape(n, c)
        lo = cost.min(axis=1, keepdims=True)
        weights = np.exp(-(cost - lo) / (cfg.temperature * (np.median(cost, axis=1, keepdims=True) - lo) + 1e-9))
        weights /= weights.sum(axis=1, keepdims=True)
        return weights @ self.offsets

    def _batch(self, nsim: int) -> Batch:
        if nsim not in self._batches:  # one size at a time: batches hold native memory
            self._batches = {nsim: planning_batch(self.model, nsim, self.config.nthread)}
        return self._batches[nsim]

