"""imitate: DAgger-centred imitation learning of physics-based character motion.

The pipeline: DeepMimic clip -> MotionClip -> ImitationEnv (MuJoCo humanoid) -> expert labels ->
HDF5 store -> SFT -> DAgger -> TRPO -> evaluation.  See README.md.
"""

import os as _os

__version__ = "0.1.0"

# Offscreen rendering on a machine without a display: MuJoCo fixes its GL backend when it is
# first imported, so choose OSMesa (CPU) here unless the user chose one, and only where the
# library exists (otherwise rendering fails later with a clear message, and nothing else does).
if "MUJOCO_GL" not in _os.environ and not _os.environ.get("DISPLAY"):
    import ctypes.util as _ctypes_util

    if _ctypes_util.find_library("OSMesa"):
        _os.environ["MUJOCO_GL"] = "osmesa"

# gymnasium.make("imitate/Track-v0", clip="walk") once imitate is imported (or spelled
# "imitate:imitate/Track-v0", which imports it); make_vec uses the native vector env.
import gymnasium as _gym  # noqa: E402

from .config import EnvConfig  # noqa: E402
from .errors import ClipNotFoundError, ConfigError, ImitateError, MotionFormatError  # noqa: E402
from .motion import MotionClip, list_clips, load_clip  # noqa: E402
from .reward import RewardConfig  # noqa: E402

if "imitate/Track-v0" not in _gym.registry:
    _gym.register(id="imitate/Track-v0", entry_point="imitate.env:make_env",
                  vector_entry_point="imitate.env:make_vec_env")

# The rest of the public API, imported on first use (PEP 562) so that `import imitate` stays
# light: MuJoCo, torch and the trainers load only when a script asks for them (the store and the
# configs never need the simulator).  No module may share a
# name with what it exports: importing imitate.X sets the attribute X to the module.
_LAZY = {
    "ImitationEnv": "env", "ImitationVecEnv": "env", "make_env": "env", "make_vec_env": "env",
    "Expert": "experts", "make_expert": "experts", "EXPERTS": "experts",
    "DemoStore": "store", "Episode": "store",
    "BuildConfig": "dataset", "build_mocap_store": "dataset",
    "SFTConfig": "sft", "sft_on_store": "sft",
    "PolicyConfig": "policy", "GaussianPolicy": "policy", "load_checkpoint": "policy", "save_checkpoint": "policy",
    "DAggerConfig": "dagger", "RoundResult": "dagger", "run_dagger": "dagger", "best_round": "dagger",
    "DAggerTrainer": "dagger",
    "TRPOConfig": "trpo", "TRPO": "trpo",
    "evaluate": "evaluation", "EvalResult": "evaluation", "policy_controller": "evaluation",
    "expert_controller": "evaluation",
    "render_video": "render",
    "PipelineConfig": "pipeline", "run_pipeline": "pipeline", "RECIPES": "pipeline",
    "learn": "learning", "LearnResult": "learning", "zoo": "learning", "ZooRow": "learning",
    "CLASSIC_CLIPS": "learning",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'imitate' has no attribute {name!r}")


__all__ = [
    "EnvConfig", "ClipNotFoundError", "ConfigError", "ImitateError", "MotionFormatError",
    "MotionClip", "list_clips", "load_clip", "RewardConfig", *_LAZY,
]
