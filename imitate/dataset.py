"""Building a demonstration store from mocap: reference states, perturbed copies, expert labels.

Each episode is one pass over the clip (one cycle of a looping clip) at the control rate,
starting at one of ``offsets`` sub-step offsets, so together they sample the clip every
control_dt / offsets seconds.  Beside the clean passes, ``copies`` perturbed passes per noise
level add Gaussian noise to the hinge angles [rad] and rates [rad/s], so the learner sees
states off the reference and how the expert would correct them.  Every state is labelled by
the expert (simulator state + clip time -> action); mocap episodes execute nothing, so their
"actions" are the labels, and their reward is the env's reward of the state.

A slow expert (the search) labels pass by pass, and the passes done are kept beside the store
(``.NAME.partial.npz``, with the settings they were made with): a build that was stopped goes on
from there when the same command runs again, and the file goes when the store is written.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import humanoid as hum
from .atomic import write_bytes
from .config import EnvConfig
from .errors import ConfigError
from .experts import Expert, expert_id, provenance_json
from .experts.pd import PDExpert
from .motion import load_clip
from .options import setting
from .simulation import Simulation, model_hash_of
from .store import DemoStore, Episode


@dataclass(frozen=True)
class BuildConfig:
    """How densely and how far off the reference the mocap round samples."""

    offsets: int = setting(4, "clean passes over the clip, each shifted by control_dt / offsets")
    joint_noise_rad: tuple[float, ...] = setting((0.05, 0.1), "hinge-angle noise std per level [rad]")
    velocity_noise_rad_s: tuple[float, ...] = setting((0.5, 1.0), "hinge-rate noise std per level [rad/s]")
    copies: int = setting(4, "perturbed passes per noise level")
    seed: int = 0
    valid_every: int = setting(10, "every N-th episode goes to the validation split")

    def __post_init__(self):
        object.__setattr__(self, "joint_noise_rad", tuple(self.joint_noise_rad))
        object.__setattr__(self, "velocity_noise_rad_s", tuple(self.velocity_noise_rad_s))
        if len(self.joint_noise_rad) != len(self.velocity_noise_rad_s):
            raise ConfigError(f"joint_noise_rad and velocity_noise_rad_s need one entry per level; found "
                              f"{len(self.joint_noise_rad)} and {len(self.velocity_noise_rad_s)}")
        if self.offsets < 1 or self.copies < 0:
            raise ConfigError(f"offsets must be >= 1 and copies >= 0; found {self.offsets}, {self.copies}")
        if min(self.joint_noise_rad + self.velocity_noise_rad_s, default=0.0) < 0:
            raise ConfigError("noise levels must be >= 0")

    @property
    def num_episodes(self) -> int:
        return self.offsets + self.copies * len(self.joint_noise_rad)


def label_passes(expert, states: np.ndarray, qpos: np.ndarray, qvel: np.ndarray, times: np.ndarray,
                 env_config: EnvConfig, first_pass: int = 0) -> np.ndarray:
    """Expert labels (P, T, 28) of P passes of T states each.

    An expert with ``label_states`` (the search expert) labels the passes in time order, all
    passes at once, each pass's plan warm-starting its next state (pass first_pass + i has a plan
    of its own, so a pass's labels do not depend on which passes were labelled before it in the
    same process: a resumed build labels as an uninterrupted one); a callable expert labels
    every state at once from (qpos, qvel, time); any other ``Expert`` (``label(sim)``: a user's
    own) labels them placed in a simulation of env_config."""
    p, t = times.shape
    if hasattr(expert, "label_states"):
        labels = np.empty((p, t, qpos.shape[-1] - 7))
        keys = first_pass + np.arange(p) + 1_000_000  # not the ids of live humanoids
        for j in range(t):
            labels[:, j] = expert.label_states(states[:, j], times[:, j], keys)
        return labels
    if callable(expert):
        return expert(qpos.reshape(p * t, -1), qvel.reshape(p * t, -1), times.ravel()).reshape(p, t, -1)
    if not isinstance(expert, Expert):
        raise ConfigError(f"expert: expected label(sim) and provenance() (imitate.Expert) or a callable "
                          f"(qpos, qvel, time_s) -> actions; found {type(expert).__name__}")
    sim = Simulation(env_config, p * t, nthread=1)
    sim.set_state(qpos.reshape(p * t, -1), qvel.reshape(p * t, -1), times.ravel())
    return np.asarray(expert.label(sim)).reshape(p, t, -1)


def build_mocap_store(out: str | Path, env_config: EnvConfig, build: BuildConfig = BuildConfig(), *,
                      overwrite: bool = False, expert=None,
                      progress: Callable[[int, int], None] | None = None) -> DemoStore:
    """Write a new store at out holding round 0: the mocap episodes (module docstring).

    expert: a callable (qpos, qvel, time_s) -> actions, or the search expert; default the PD expert.
    progress: called with (episodes done, episodes in all) after each episode.
    """
    DemoStore.check_target(out, overwrite)  # before the labelling, which can take long
    clip = load_clip(env_config.clip)
    expert = expert or PDExpert(clip, env_config.action_space)
    dt = env_config.control_dt
    steps = max(2, int(np.floor(clip.duration_s / dt + 1e-9)))
    sim = Simulation(env_config, steps, clip=clip)
    rng = np.random.default_rng(build.seed)
    plan = [(k * dt / build.offsets, 0.0, 0.0) for k in range(build.offsets)]
    for jn, vn in zip(build.joint_noise_rad, build.velocity_noise_rad_s, strict=True):
        plan += [(rng.uniform(0.0, dt), jn, vn) for _ in range(build.copies)]
    passes = []
    for offset, joint_noise, vel_noise in plan:
        t = offset + dt * np.arange(steps)
        qpos, qvel = clip.qpos(t), clip.qvel(t)
        qpos[:, hum.HINGE_QPOS] += rng.normal(0.0, joint_noise, (steps, hum.NU))
        qvel[:, hum.HINGE_QVEL] += rng.normal(0.0, vel_noise, (steps, hum.NU))
        sim.set_state(qpos, qvel, t)
        passes.append((t, qpos, qvel, sim.obs.copy(), sim.terms.total.copy(), np.array(sim.batch.state)))
    times, qpos_all, qvel_all, obs_all, reward_all, states = (np.stack(x) for x in zip(*passes, strict=True))
    labels = np.empty((len(plan), steps, hum.NU), np.float32)
    labelled_by = provenance_json(expert)
    # pass by pass when slow; an expert with workers (RayExpert) labels as many passes at once
    chunk = max(1, getattr(expert, "workers", 1)) if hasattr(expert, "label_states") else len(plan)
    partial = Path(out).with_name(f".{Path(out).name}.partial.npz")
    key = json.dumps({"build": asdict(build), "env": env_config.to_json(), "expert": labelled_by}, sort_keys=True)
    done = _resume(partial, key, labels) if chunk < len(plan) else 0
    if done and progress:
        progress(done, len(plan))
    for start in range(done, len(plan), chunk):
        sl = slice(start, start + chunk)
        labels[sl] = label_passes(expert, states[sl], qpos_all[sl], qvel_all[sl], times[sl], env_config, start)
        if chunk < len(plan) and sl.stop < len(plan):
            buffer = io.BytesIO()
            np.savez(buffer, labels=labels[:sl.stop], key=np.array(key))
            partial.parent.mkdir(parents=True, exist_ok=True)
            write_bytes(partial, buffer.getvalue())
        if progress:
            progress(min(start + chunk, len(plan)), len(plan))
    episodes = []
    for i, t in enumerate(times):
        episodes.append(Episode(
            obs=obs_all[i], expert_actions=labels[i], actions=labels[i], qpos=qpos_all[i], qvel=qvel_all[i],
            time_s=t, phase=clip.phase(t).astype(np.float32), reward=reward_all[i].astype(np.float32),
            terminated=np.zeros(steps, bool), truncated=np.arange(steps) == steps - 1,
            source="mocap", clip=clip.name, checkpoint_id=expert_id(expert), labelled_by=labelled_by,
            seed=build.seed * 1000 + i,
        ))
    model_hash = model_hash_of(env_config)
    store = DemoStore.create(out, env_config, model_hash=model_hash, valid_every=build.valid_every,
                             overwrite=overwrite, extra_attrs={"build_config": json.dumps(asdict(build))})
    store.append_round(episodes, round=0, env_config=env_config, model_hash=model_hash)
    partial.unlink(missing_ok=True)
    return store


def _resume(partial: Path, key: str, labels: np.ndarray) -> int:
    """Fill labels with the passes an earlier, stopped build of the same settings labelled (kept in
    partial); return how many.  A partial file of other settings, or a damaged one, is ignored."""
    if not partial.exists():
        return 0
    try:
        with np.load(partial, allow_pickle=False) as f:
            if str(f["key"]) != key:
                return 0
            kept = f["labels"]
    except Exception:  # a damaged file: label again
        return 0
    if kept.shape[1:] != labels.shape[1:] or len(kept) > len(labels):
        return 0
    labels[:len(kept)] = kept
    return len(kept)
