"""Shared fixtures: small synthetic DeepMimic clips written to tmp_path."""

import json

import numpy as np
import pytest


def synthetic_frames(num_frames: int = 9, dt: float = 1.0 / 30.0, seed: int = 0) -> list[list[float]]:
    """A small clip in DeepMimic's format (Y-up): the root walks forward along +x while the
    joints swing smoothly; quaternions deliberately not of unit length (as in real clips)."""
    rng = np.random.default_rng(seed)
    frames = []
    axes = rng.normal(size=(8, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    for k in range(num_frames):
        s = np.sin(2 * np.pi * k / (num_frames - 1))
        frame = [dt if k < num_frames - 1 else 0.0, 0.1 * k, 0.85 + 0.01 * s, 0.0]
        root_angle = 0.2 * s
        frame += list(1.1 * np.array([np.cos(root_angle / 2), 0.0, np.sin(root_angle / 2), 0.0]))
        sph = iter(range(8))
        for dof in (4, 4, 4, 1, 4, 4, 1, 4, 1, 4, 4, 1):
            if dof == 1:
                frame.append(-0.3 + 0.2 * s)
            else:
                axis = axes[next(sph)]
                half = 0.25 * s + 0.1
                frame += list(0.9 * np.concatenate([[np.cos(half)], np.sin(half) * axis]))
        frames.append([float(x) for x in frame])
    return frames


def write_clip(path, frames, loop="wrap"):
    path.write_text(json.dumps({"Loop": loop, "Frames": frames}))
    return path


@pytest.fixture
def synthetic_clip_path(tmp_path):
    return write_clip(tmp_path / "synthetic.txt", synthetic_frames())


def _tiny(recipe):
    """A learn recipe made small for a test: one pass, short rounds, short evaluations."""
    from dataclasses import replace

    from imitate.dataset import BuildConfig
    from imitate.sft import SFTConfig

    return replace(recipe, build=BuildConfig(offsets=1, copies=1, joint_noise_rad=(0.05,), velocity_noise_rad_s=(0.5,)),
                   search=replace(recipe.search, candidates=4, horizon=4),
                   dagger=replace(recipe.dagger, rounds=3, num_envs=2, steps_per_env=5, eval_episodes=1,
                                  eval_horizon_s=0.3, sft=SFTConfig(epochs=2, threads=1),
                                  retrain=SFTConfig(epochs=1, threads=1)),
                   eval_episodes=1, eval_horizon_s=0.3)


@pytest.fixture
def tiny():
    """recipe -> the recipe made small for a test (learn, zoo)."""
    return _tiny
