"""Does the search expert perform the clips it falls on when it searches around a feasible trajectory?

    IMITATE_CACHE=runs/cache python experiments/search_on_trajectory.py [CLIPS ...]
        [--variants nominal ...] [--episodes 2] [--seconds 5] [--trajectory-s 6]
        [--out runs/search-on-trajectory] [--threads 1] [--action-noise 0.05]

The learn recipe's search (``pipeline.RECIPES["search"].search``) samples servo-target offsets
around the reference's own targets, and falls on 12 of the 15 classic clips within 0.5-2.9 s,
whatever its budget (``experiments/search_budget.py``).  The tracking expert's reconstruction
(``imitate.experts.reconstruct``) finds servo targets u*(t) that the simulator performs from
phase 0.  Here the search's cold start (its candidate 0, and the centre of its noise) is that
trajectory's offsets u*(t) - reference(t) instead of none (the library's guided expert,
``SearchExpert(..., nominal_targets=...)``), and the expert runs alone from phase 0 (0.01 rad
starting noise) for ``--seconds`` (or the clip, if shorter), optionally with Gaussian noise on
every executed action (``--action-noise``, the kind of error a learner makes).  Variants: the
planner's physics rate and iterations; "tracking" is the tracking expert's own feedback law on
the same trajectory, for comparison.  The trajectory is prepared for ``--trajectory-s`` (cached
under IMITATE_CACHE).  One JSON file per clip and variant, written as each finishes (a killed run
resumes); the table is printed from those files.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.table import Table
from search_budget import finished, save  # the neighbouring experiment's files and table rows

from imitate import humanoid as hum
from imitate.config import EnvConfig
from imitate.console import console
from imitate.evaluation import evaluate, expert_controller
from imitate.experts.search import SearchExpert, periodic_targets
from imitate.experts.tracking import TrackingConfig, TrackingExpert
from imitate.motion import load_clip
from imitate.pipeline import RECIPES

CLASSIC = ["run", "jump", "cartwheel", "spin", "roll", "backflip", "spinkick", "dance_a", "dance_b",
           "getup_faceup", "getup_facedown", "punch", "kick", "crawl", "walk"]
# changes to the recipe's SearchConfig, by name ("tracking": the tracking expert instead)
VARIANTS = {
    "nominal": {"planning_hz": None},  # the env's 600 Hz: the trajectory is feasible on that model only
    "nominal-1it": {"planning_hz": None, "cold_iterations": 1},
    "nominal-300hz": {"planning_hz": 300.0},
    "nominal-150hz": {},
    # the trajectory's offsets averaged over its cycles at each phase (a looping clip): labels that
    # depend on the phase, not on which cycle of the trajectory the clip time falls in
    "nominal-periodic": {"planning_hz": None},
    # the search's cost on the trajectory's own states instead of the clip's (``TrajectoryClip``):
    # it tracks what the simulator can do, not the mocap the trajectory had to depart from
    "trajectory-cost": {"planning_hz": None},
    "tracking": None,
}


class TrajectoryClip:
    """A reconstructed trajectory as the search's reference: qpos and qvel (T, nq / nv) of its
    state at the control step nearest each time (the clip's own past the trajectory's end);
    everything else (its length, loop, fall rule) the clip's."""

    def __init__(self, clip, tracking: TrackingExpert, config: EnvConfig):
        self._clip, self._dt = clip, config.control_dt
        states = np.asarray(tracking.states)  # (T + 1, nstate): time, qpos, qvel, ...
        self._q, self._v = states[:, 1:1 + hum.NQ], states[:, 1 + hum.NQ:1 + hum.NQ + hum.NV]

    def __getattr__(self, name):
        return getattr(self._clip, name)

    def _at(self, times, table, clip_values):
        steps = np.rint(np.asarray(times, float) / self._dt).astype(int)
        inside = (steps >= 0) & (steps < len(table))
        out = clip_values(times).copy()
        out[inside] = table[steps[inside]]
        return out

    def qpos(self, times):
        return self._at(times, self._q, self._clip.qpos)

    def qvel(self, times):
        return self._at(times, self._v, self._clip.qvel)


def run_one(clip_name: str, variant: str, episodes: int, seconds: float, trajectory_s: float, threads: int,
            action_noise: float = 0.0) -> dict:
    clip, config = load_clip(clip_name), EnvConfig(clip=clip_name)
    started = time.perf_counter()
    horizon = seconds if clip.loop else min(seconds, clip.duration_s)
    tracking = TrackingExpert.prepare(clip, config, TrackingConfig(horizon_s=min(trajectory_s, horizon + 1.0)
                                                                   if clip.loop else None))
    prepare_s = time.perf_counter() - started
    if VARIANTS[variant] is None:
        expert = tracking
    else:
        search = replace(RECIPES["search"].search, nthread=threads, **VARIANTS[variant])
        targets = periodic_targets(clip, config, tracking.ctrl) if variant == "nominal-periodic" else tracking.ctrl
        reference, search_env = clip, config
        if variant == "trajectory-cost":  # (the clip's fall rule, resolved on the clip itself)
            reference = TrajectoryClip(clip, tracking, config)
            search_env = replace(config, fall_bodies=config.fall_body_names(clip))
        expert = SearchExpert(reference, search_env, search, nominal_targets=targets)  # the guided expert
    started = time.perf_counter()
    result = evaluate(expert_controller(expert), config, episodes=episodes, horizon_s=horizon,
                      init_noise_rad=0.01, nthread=threads, action_noise=action_noise)
    return {"clip": clip_name, "variant": variant, "changes": VARIANTS[variant], "horizon_s": horizon,
            "action_noise": action_noise,
            "reached_s": tracking.reached_s, "prepare_s": prepare_s, "seconds": time.perf_counter() - started,
            "result": result.to_dict()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clips", nargs="*", default=CLASSIC, help="clip names (default: the classic 15)")
    parser.add_argument("--variants", nargs="+", default=["nominal"], choices=list(VARIANTS))
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0, help="episode horizon [s] (or the clip, if shorter)")
    parser.add_argument("--trajectory-s", type=float, default=6.0,
                        help="the trajectory prepared for a looping clip [s] (a cached longer one is not reused)")
    parser.add_argument("--threads", type=int, default=1, help="rollout and simulation threads")
    parser.add_argument("--action-noise", type=float, default=0.0, help="std of noise on every executed action")
    parser.add_argument("--out", default="runs/search-on-trajectory")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    variants = [v + (f"-noise{args.action_noise:g}" if args.action_noise else "") for v in args.variants]
    for name in args.clips:  # every variant of one clip before the next
        for variant, named in zip(args.variants, variants, strict=True):
            path = out / f"{name}-{named}.json"
            if not path.exists():
                console.print(f"{name} {variant} ...", highlight=False)
                data = run_one(name, variant, args.episodes, args.seconds, args.trajectory_s, args.threads,
                               args.action_noise)
                save(path, data)
                r = data["result"]
                console.print(f"  {name} {variant}: trajectory {data['reached_s']:.2f} s ({data['prepare_s'] / 60:.1f} "
                              f"min), survival {r['survival_s']['mean']:.2f} s of {data['horizon_s']:.2f}, "
                              f"{data['seconds'] / 60:.1f} min", highlight=False)
    table = Table("clip", "variant", "trajectory [s]", "horizon [s]", "survival [s]", "whole", "return",
                  "prep [min]", "minutes", "endings", title="the search around a reconstructed trajectory, alone")
    for name, variant, data, whole, causes in finished(out, args.clips, variants):
        r = data["result"]
        table.add_row(name, variant, f"{data['reached_s']:.2f}", f"{data['horizon_s']:.2f}",
                      f"{r['survival_s']['mean']:.2f}", f"{whole} of {r['episodes']}",
                      f"{r['normalised_return']['mean']:.3f}", f"{data['prepare_s'] / 60:.1f}",
                      f"{data['seconds'] / 60:.1f}", causes)
    console.print(table)


if __name__ == "__main__":
    main()
