"""From a clip to a policy that performs it, in one call: ``learn(clip, out)`` (``imitate learn``).

The recipe is the pipeline's ``"search"`` (``pipeline.RECIPES``): a mocap store labelled by the
search expert, SFT, then DAgger rounds with a residual learner until a round's own evaluation
keeps every episode up for the whole horizon, or the rounds (the label budget) run out; an
optional TRPO stage; then the evaluation from phase 0.  No per-clip settings: the defaults are
the recipe.  Into ``out`` (default ``runs/learn-CLIP``; the same call resumes a stopped run):
- ``policy.pt``: the final policy (TRPO's if it ran, else the best DAgger round's);
- ``summary.json``: every stage's evaluation, the labels, env samples, wall time and settings;
- ``learning_curve.csv`` / ``.png``: per DAgger round (TRPO's own, in ``trpo/``);
- ``best.mp4`` (and ``best.png``): the final policy beside its reference (where rendering works);
plus the store, the round checkpoints and state the stages keep.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from . import __version__
from .atomic import replaced_on_success, write_text
from .errors import ConfigError
from .motion import load_clip
from .pipeline import RECIPES, PipelineConfig, PipelineResult, is_whole, run_pipeline
from .trpo import TRPOConfig, logged_iterations


@dataclass(frozen=True)
class LearnResult:
    policy: Path  # out/policy.pt
    summary: dict  # what out/summary.json holds
    pipeline: PipelineResult


def learn(clip: str, out: str | Path | None = None, *, config: PipelineConfig | None = None,
          trpo_samples: int = 0, video_seconds: float = 10.0, on_stage: Callable | None = None,
          on_round: Callable | None = None, on_iteration: Callable | None = None,
          on_progress: Callable[[str], None] | None = None) -> LearnResult:
    """Learn clip (a name or a path) into out (module docstring).  config: the recipe (default
    ``RECIPES["search"]``, its clip replaced by clip, stopping at the first whole round);
    trpo_samples > 0 adds a TRPO stage of that many samples from the DAgger policy."""
    started = time.perf_counter()
    name = load_clip(clip).name
    out = Path(out if out is not None else f"runs/learn-{name}")
    if trpo_samples < 0:
        raise ConfigError(f"learn: trpo_samples must be >= 0; found {trpo_samples}")
    recipe = replace(config or RECIPES["search"], clip=str(clip), stop_when_whole=True)
    if trpo_samples > 0:
        recipe = replace(recipe, trpo=replace(recipe.trpo or TRPOConfig(), samples=trpo_samples))
    result = run_pipeline(recipe, out, on_stage=on_stage, on_round=on_round, on_iteration=on_iteration,
                          on_progress=on_progress)
    final = result.checkpoints.get("+ TRPO") or result.best
    policy = out / "policy.pt"
    with replaced_on_success(policy) as tmp:
        shutil.copyfile(final, tmp)
    labels = sum(r.new_steps for r in result.rounds)
    mocap = result.rounds[0].total_steps
    logged = logged_iterations(out / "trpo")
    trpo_samples_done = logged[-1].samples if logged else 0
    summary = {
        "clip": name, "imitate_version": __version__, "policy": str(policy), "final": str(final.relative_to(out)),
        "labels": {"mocap": mocap, "dagger": labels, "total": mocap + labels},
        "env_samples": {"dagger": labels, "trpo": trpo_samples_done, "total": labels + trpo_samples_done},
        "rounds": [asdict(r) for r in result.rounds],
        "stopped": "every episode whole" if is_whole(result.rounds[-1]) else "label budget spent",
        "evaluation": {label: ev.to_dict() for label, ev in result.evaluation.items()},
        "wall_s_this_call": time.perf_counter() - started,
        "settings": json.loads(json.dumps(asdict(recipe), default=str)),
    }
    write_text(out / "summary.json", json.dumps(summary, indent=2))
    if video_seconds > 0:
        from .evaluation import policy_controller
        from .policy import load_checkpoint
        from .render import render_video

        try:
            net, env_config, _ = load_checkpoint(policy)
            render_video(policy_controller(net), env_config, out / "best.mp4", seconds=video_seconds)
        except ConfigError as exc:  # no offscreen OpenGL or no imageio here
            if on_progress:
                on_progress(f"no video: {exc}")
    return LearnResult(policy=policy, summary=summary, pipeline=result)
