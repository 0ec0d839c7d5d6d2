"""Does a bigger search per label, or a cleaner reference, carry the search expert further?

    python experiments/search_budget.py [CLIPS ...] [--variants base k128 ...] [--episodes 2]
        [--seconds 5] [--out runs/search-budget] [--threads 1]

The learn recipe's labeller (``pipeline.RECIPES["search"].search``) falls on 12 of the 15
classic clips within 0.5-2.9 s.  Each variant here changes its budget or its neighbourhood
(more candidates, wider noise, a longer horizon, the best candidate instead of the MPPI mean),
or the reference itself ("grounded": each frame's root raised by as much as the frame sinks
its lowest foot below the floor, as mocap cleanup does), and runs the expert alone from phase 0
(0.01 rad starting noise) for ``--seconds`` (or the clip, if shorter).  One JSON file per clip
and variant (OUT/CLIP-VARIANT.json), written as each finishes, so a killed run resumes where it
stopped; the table is printed from those files.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from rich.table import Table

from imitate.config import EnvConfig
from imitate.console import console
from imitate.evaluation import evaluate, expert_controller
from imitate.experts.search import SearchExpert
from imitate.motion import load_clip
from imitate.pipeline import RECIPES

FAILING = ["run", "jump", "cartwheel", "spin", "roll", "backflip", "spinkick", "dance_a", "dance_b",
           "getup_faceup", "getup_facedown", "punch"]
# changes to the recipe's SearchConfig, by name
VARIANTS = {
    "base": {},
    "k128": {"candidates": 128},
    "k128-noise0.25": {"candidates": 128, "noise_rad": 0.25},
    "k128-h30": {"candidates": 128, "horizon": 30},
    "k128-best": {"candidates": 128, "label": "best"},
    "k128-t0.1": {"candidates": 128, "temperature": 0.1},
    "h30": {"horizon": 30},
    "noise0.3": {"noise_rad": 0.3},
    "grounded": {},
}
GROUNDED = {"grounded"}  # variants run on the grounded clip


def grounded_clip(clip_name: str, folder: Path) -> Path:
    """A copy of the clip (DeepMimic's format) with each frame's root raised by how far its
    lowest foot point sinks below the floor (nothing where the feet are above it)."""
    import numpy as np

    from imitate import humanoid as hum
    from imitate.motion import parse_clip, resolve_clip

    source = resolve_clip(clip_name)
    frames, loop = parse_clip(source.read_text(), source)
    clip = load_clip(clip_name)
    feet = [hum.BODY_NAMES.index(f) for f in hum.FEET]
    sink = np.maximum(0.0, -hum.lowest_point_heights(clip.frame_qpos)[:, feet].min(axis=1))  # (F,) [m]
    frames = frames.copy()
    frames[:, 2] += sink  # DeepMimic's root position is y-up
    path = folder / f"{clip_name}.txt"
    path.write_text(json.dumps({"Loop": "wrap" if loop else "none", "Frames": frames.tolist()}))
    return path


def run_one(clip_name: str, variant: str, episodes: int, seconds: float, threads: int, out: Path) -> dict:
    source = str(grounded_clip(clip_name, out)) if variant in GROUNDED else clip_name
    clip = load_clip(source)
    config = EnvConfig(clip=source)
    search = replace(RECIPES["search"].search, nthread=threads, **VARIANTS[variant])
    expert = SearchExpert(clip, config, search)
    horizon = seconds if clip.loop else min(seconds, clip.duration_s)
    started = time.perf_counter()
    result = evaluate(expert_controller(expert), config, episodes=episodes, horizon_s=horizon,
                      init_noise_rad=0.01, nthread=threads)
    return {"clip": clip_name, "variant": variant, "changes": VARIANTS[variant], "horizon_s": horizon,
            "seconds": time.perf_counter() - started, "result": result.to_dict()}


def save(path: Path, data: dict) -> None:
    """One run's figures, written whole (a killed run leaves no half file)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def finished(out: Path, clips: list[str], variants: list[str]):
    """(clip, variant, figures, episodes whole, how the others ended) of each finished run."""
    for name in clips:
        for variant in variants:
            path = out / f"{name}-{variant}.json"
            if path.exists():
                data = json.loads(path.read_text())
                endings = data["result"]["endings"]
                yield (name, variant, data, sum(e["cause"] == "survived" for e in endings),
                       "; ".join(sorted({e["cause"] for e in endings if e["cause"] != "survived"}))[:50])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clips", nargs="*", default=FAILING, help="clip names (default: the 12 the recipe falls on)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0, help="episode horizon [s] (or the clip, if shorter)")
    parser.add_argument("--threads", type=int, default=1, help="rollout and simulation threads")
    parser.add_argument("--out", default="runs/search-budget")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = Table("clip", "variant", "horizon [s]", "survival [s]", "whole", "return", "minutes", "endings",
                  title="the search expert alone, from phase 0")
    for variant in args.variants:  # every clip at one variant before the next: a partial run compares clips
        for name in args.clips:
            path = out / f"{name}-{variant}.json"
            if not path.exists():
                console.print(f"{name} {variant} ...", highlight=False)
                data = run_one(name, variant, args.episodes, args.seconds, args.threads, out)
                save(path, data)
                r = data["result"]
                console.print(f"  {name} {variant}: {r['survival_s']['mean']:.2f} s of {data['horizon_s']:.2f}, "
                              f"{data['seconds'] / 60:.1f} min", highlight=False)
    for name, variant, data, whole, causes in finished(out, args.clips, args.variants):
        r = data["result"]
        table.add_row(name, variant, f"{data['horizon_s']:.2f}", f"{r['survival_s']['mean']:.2f}",
                      f"{whole} of {r['episodes']}", f"{r['normalised_return']['mean']:.3f}",
                      f"{data['seconds'] / 60:.1f}", causes)
    console.print(table)


if __name__ == "__main__":
    main()
