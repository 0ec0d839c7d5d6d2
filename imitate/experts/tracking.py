"""The tracking expert (``--expert best``): linear feedback around a reconstructed trajectory.

Prepared once per clip (and cached on disk, keyed by the clip's content, the model and the
settings of the reconstruction): ``reconstruct`` finds servo targets u*_k with which the simulator performs the clip
from phase 0 for the episode's horizon; ``feedback.linearise`` and ``feedback.riccati_gains``
give time-varying gains K_k around it (the cache keeps the linearisation, so other LQR
weights cost only the Riccati recursion).  The label of a humanoid in state x at clip time
t = k / control_hz is then u*_k - K_k (x - x*_k): a smooth function of the state and time (what
a learner can fit), microseconds a label.  Past the end of the reconstructed part (a horizon
longer than the one prepared, or a clip the search could not get through: ``reached_s``) the
labels are the PD expert's, and ``provenance()`` says how far the trajectory reaches.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from .. import humanoid as hum
from ..atomic import write_bytes
from ..config import LOOPING_EPISODE_S, EnvConfig, target_action
from ..errors import ConfigError, ImitateError
from ..motion import MotionClip
from .feedback import linearise, riccati_gains, state_deviation
from .pd import PDExpert
from .reconstruct import ReconstructConfig, reconstruct

CACHE_FORMAT = 1  # bump when what a cache file holds, or how it is computed, changes


class ExpertCacheError(ImitateError):
    """A cache file that is damaged or was made for something else."""


@dataclass(frozen=True)
class TrackingConfig:
    reconstruct: ReconstructConfig = field(default_factory=ReconstructConfig)
    # the horizon prepared [s]; None: the episode's (20 s for looping clips, else the clip's length)
    horizon_s: float | None = None
    # LQR stage cost: squared tangent deviations x these weights, and R x squared target changes
    # [rad^2].  The root's height, rotation and velocities weigh 10x a hinge's (balance); its
    # horizontal position not at all: drifting along is no fall, and the learner does not observe
    # where the trajectory's root is (walk, 20 s, 10 episodes: 10 of 10 whole at 0, 6 of 10 at
    # 0.1).  R 10 (walk 5 of 5 whole, run 4 of 5) against 1 (9 of 10, 2 of 5) and 1000 (0 of 5,
    # 0 of 5); crawl prefers R 100 (2 of 5): docs/tracking_expert.md
    position_weight: float = 1.0
    velocity_weight: float = 0.1
    root_weight: float = 10.0
    root_horizontal_weight: float = 0.0  # x position_weight, for the root's x and y
    control_weight: float = 10.0
    fd_eps: float = 1e-6  # finite-difference step of the linearisation

    def __post_init__(self):
        if isinstance(self.reconstruct, dict):
            object.__setattr__(self, "reconstruct", ReconstructConfig(**self.reconstruct))
        weights = (self.position_weight, self.velocity_weight, self.root_weight, self.root_horizontal_weight)
        if not (min(weights) >= 0 and self.control_weight > 0 and self.fd_eps > 0):
            raise ConfigError(f"TrackingConfig: weights >= 0, control_weight > 0 and fd_eps > 0; found {self}")
        if self.horizon_s is not None and not self.horizon_s > 0:
            raise ConfigError(f"TrackingConfig.horizon_s must be > 0 or None; found {self.horizon_s}")

    def cost_matrices(self) -> tuple[np.ndarray, np.ndarray]:
        """Q (2nv, 2nv) and R (nu, nu) of the LQR (diagonal)."""
        pos = np.full(hum.NV, float(self.position_weight))
        pos[0:2] *= self.root_horizontal_weight
        pos[2:6] *= self.root_weight  # height and rotation
        vel = np.full(hum.NV, float(self.velocity_weight))
        vel[0:6] *= self.root_weight
        return np.diag(np.concatenate([pos, vel])), self.control_weight * np.eye(hum.NU)


def clip_digest(clip: MotionClip) -> str:
    """A hash of what a clip asks for: its frames' times and poses, and whether it loops."""
    h = hashlib.sha256()
    for array in (clip.frame_times, clip.frame_qpos):
        h.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    h.update(b"loop" if clip.loop else b"once")
    return h.hexdigest()[:16]


def cache_dir() -> Path:
    """Where prepared experts are kept: $IMITATE_CACHE, else ~/.cache/imitate."""
    return Path(os.environ.get("IMITATE_CACHE") or Path.home() / ".cache" / "imitate")


class TrackingExpert:
    """``expert.label(sim)`` or ``expert(qpos (N, nq), qvel (N, nv), time_s (N,)) -> (N, 28)``.

    Build it with ``TrackingExpert.prepare(clip, env_config)`` (from the cache when it can);
    attributes: ``states`` (T + 1, nstate), ``ctrl`` (T, 28), ``gains`` (T, 28, 68), the
    linearisation ``a`` (T, 68, 68) and ``b`` (T, 68, 28),
    ``reached_s`` (how far the trajectory performs the clip), ``info`` (the preparation's figures).
    """

    def __init__(self, clip: MotionClip, env_config: EnvConfig, config: TrackingConfig,
                 states: np.ndarray, ctrl: np.ndarray, a: np.ndarray, b: np.ndarray, info: dict):
        if not (len(states) == len(ctrl) + 1 == len(a) + 1 == len(b) + 1):
            raise ConfigError(f"TrackingExpert: expected T + 1 states, T targets and T linearisations; found "
                              f"{len(states)}, {len(ctrl)}, {len(a)}, {len(b)}")
        self.clip, self.env_config, self.config = clip, env_config, config
        self.states, self.ctrl, self.a, self.b, self.info = states, ctrl, a, b, info
        self.gains = riccati_gains(a, b, *config.cost_matrices())
        self._qpos = states[:, 1:1 + hum.NQ]  # integration state: time, qpos, qvel, ...
        self._qvel = states[:, 1 + hum.NQ:1 + hum.NQ + hum.NV]
        self._fallback = PDExpert(clip, env_config.action_space)

    @property
    def reached_s(self) -> float:
        return len(self.ctrl) * self.env_config.control_dt

    # ----- preparation ----------------------------------------------------------------
    @staticmethod
    def horizon_steps(clip: MotionClip, env_config: EnvConfig, config: TrackingConfig) -> int:
        horizon = config.horizon_s or env_config.episode_s or (LOOPING_EPISODE_S if clip.loop else clip.duration_s)
        return max(1, round(horizon * env_config.control_hz))

    @staticmethod
    def cache_key(clip: MotionClip, env_config: EnvConfig, config: TrackingConfig) -> dict:
        """Everything a prepared trajectory and its linearisation depend on (the cache file is
        named by its hash); not the LQR weights, which act only on loading."""
        return {"format": CACHE_FORMAT, "clip": clip_digest(clip),
                "model": hum.model_hash_for("pd_target", env_config.physics_hz),
                "control_hz": env_config.control_hz, "physics_hz": env_config.physics_hz,
                "fall_bodies": list(env_config.fall_body_names(clip)), "max_root_drop_m": env_config.max_root_drop_m,
                "horizon_steps": TrackingExpert.horizon_steps(clip, env_config, config),
                "reconstruct": asdict(config.reconstruct), "fd_eps": config.fd_eps}

    @classmethod
    def prepare(cls, clip: MotionClip, env_config: EnvConfig, config: TrackingConfig = TrackingConfig(), *,
                cache: Path | None = None, progress: Callable[[int, int, str], None] | None = None,
                compute: Callable[..., TrackingExpert] | None = None) -> TrackingExpert:
        """The expert for clip in env_config's simulator: loaded from the cache folder (default
        cache_dir()) if prepared before with the same clip, model and settings, else prepared
        (progress(done, total, what) along the way) and saved there.  compute(clip, env_config,
        config, progress) prepares it (default: ``computed``, here; ``distributed.prepare_on_ray``:
        on a Ray worker); the cache is written here either way."""
        key = cls.cache_key(clip, env_config, config)
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
        path = Path(cache or cache_dir()) / f"tracking-{clip.name}-{digest}.npz"
        if path.exists():
            return cls._load(path, key, clip, env_config, config)
        expert = (compute or cls.computed)(clip, env_config, config, progress)
        expert._save(path, key)
        return expert

    @classmethod
    def computed(cls, clip: MotionClip, env_config: EnvConfig, config: TrackingConfig,
                 progress: Callable[[int, int, str], None] | None = None) -> TrackingExpert:
        """The expert prepared from scratch: the reconstruction, then its linearisation (no cache)."""
        started = time.perf_counter()
        steps = cls.horizon_steps(clip, env_config, config)
        trajectory = reconstruct(clip, env_config, steps, config.reconstruct,
                                 progress=(lambda d, t: progress(d, t, "reconstructing")) if progress else None)
        started_linearise = time.perf_counter()
        a, b = linearise(hum.load_model("pd_target", env_config.physics_hz), trajectory.states, trajectory.ctrl,
                         env_config.substeps, eps=config.fd_eps,
                         progress=(lambda d, t: progress(d, t, "linearising")) if progress else None)
        linearise_s = time.perf_counter() - started_linearise
        info = {"version": __version__, "reached_steps": trajectory.reached_steps, "horizon_steps": steps,
                "reconstruct_s": trajectory.seconds, "linearise_s": linearise_s,
                "prepare_s": time.perf_counter() - started, "physics_steps": trajectory.physics_steps,
                "rewinds": trajectory.rewinds,
                "mean_step_cost": float(trajectory.cost.mean()) if len(trajectory.cost) else None}
        return cls(clip, env_config, config, trajectory.states, trajectory.ctrl, a, b, info)

    def _save(self, path: Path, key: dict) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, states=self.states, ctrl=self.ctrl, a=self.a, b=self.b,
                 meta=np.array(json.dumps({"key": key, "info": self.info}, sort_keys=True)))
        write_bytes(path, buffer.getvalue())  # readers see the whole file or none

    @classmethod
    def _load(cls, path: Path, key: dict, clip, env_config, config) -> TrackingExpert:
        try:
            with np.load(path, allow_pickle=False) as f:
                meta = json.loads(str(f["meta"]))
                states, ctrl, a, b = f["states"], f["ctrl"], f["a"], f["b"]
        except Exception as exc:  # a truncated or foreign file: whatever numpy raises
            raise ExpertCacheError(f"expert cache {path}: expected a prepared tracking expert, found an unreadable "
                                   f"file ({type(exc).__name__}); delete it to prepare again") from None
        if meta.get("key") != json.loads(json.dumps(key)):
            raise ExpertCacheError(f"expert cache {path}: made for another clip, model or settings than asked; "
                                   "delete it to prepare again")
        return cls(clip, env_config, config, states, ctrl, a, b, meta["info"])

    # ----- labels -----------------------------------------------------------------------
    def provenance(self) -> dict:
        return {"kind": "tracking", "action_space": self.env_config.action_space, "clip": clip_digest(self.clip),
                "reached_s": self.reached_s, "config": asdict(self.config)}

    def label(self, sim) -> np.ndarray:
        return self(sim.qpos, sim.qvel, sim.ref_time_s)

    def __call__(self, qpos: np.ndarray, qvel: np.ndarray, time_s: np.ndarray) -> np.ndarray:
        qpos, qvel = np.atleast_2d(qpos), np.atleast_2d(qvel)
        time_s = np.broadcast_to(np.asarray(time_s, dtype=float), (len(qpos),))
        if not (np.isfinite(qpos).all() and np.isfinite(qvel).all() and np.isfinite(time_s).all()):
            row = int(np.flatnonzero(~(np.isfinite(qpos).all(1) & np.isfinite(qvel).all(1) & np.isfinite(time_s)))[0])
            raise ConfigError(f"tracking expert: expected finite states and times, found a non-finite value "
                              f"in row {row}")
        step = np.rint(time_s * self.env_config.control_hz).astype(int)
        inside = (step >= 0) & (step < len(self.ctrl))
        out = self._fallback(qpos, qvel, time_s)
        if inside.any():
            out[inside] = self.to_action(self.targets(qpos[inside], qvel[inside], step[inside]), qpos[inside])
        return out

    def targets(self, qpos: np.ndarray, qvel: np.ndarray, step: np.ndarray) -> np.ndarray:
        """Servo targets (n, 28) [rad] of the feedback law u*_k - K_k (x - x*_k) at control steps
        step (n,) (each < len(ctrl)), clipped to the hinge ranges."""
        dx = state_deviation(self._qpos[step], self._qvel[step], qpos, qvel)
        target = self.ctrl[step] - np.einsum("nuj,nj->nu", self.gains[step], dx)
        return np.clip(target, hum.HINGE_RANGE[:, 0], hum.HINGE_RANGE[:, 1])

    def to_action(self, target: np.ndarray, qpos: np.ndarray) -> np.ndarray:
        """Actions (n, 28) in the env's space for servo targets (n, 28) at positions qpos (n, nq)."""
        return target_action(target, qpos, self.env_config.action_space)
