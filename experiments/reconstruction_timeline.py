"""Where a reconstruction spends its time: the tracking expert's offline search (its default
settings, the clip's episode horizon) run on each clip, logging after every completed window the
wall time and how far the trajectory reaches, so that the rewinds between advances show.

For each clip it prints the horizon, the steps reached, the rewinds, the physics steps and the
seconds, and the largest number of rewinds the search made without getting further than it had
been (a "stall"); the whole timeline goes to OUT/recon-CLIP.json.  The question it answered: how
long must a search that will not get through be allowed to stall, when the clips it performs
never stall long (docs/tracking_expert.md)?

Usage: python experiments/reconstruction_timeline.py CLIP [CLIP ...] [--out runs]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from imitate.config import EnvConfig
from imitate.experts.reconstruct import reconstruct
from imitate.experts.tracking import TrackingConfig, TrackingExpert
from imitate.motion import load_clip


def stalls(log: list[tuple[float, int]]) -> list[int]:
    """Rewinds between successive new furthest points (the last entry: since the last one), from
    (seconds, steps reached) after each completed window: a window that does not reach further
    than the one before it follows a rewind."""
    furthest = previous = 0
    counts, current = [], 0
    for _, reached in log:
        if reached <= previous:
            current += 1
        if reached > furthest:
            furthest, counts, current = reached, counts + [current], 0
        previous = reached
    return counts + [current]


def _logger(log: list):
    """A progress callback that appends (seconds since it was made, steps reached) to log."""
    started = time.perf_counter()
    return lambda reached, horizon: log.append((round(time.perf_counter() - started, 2), int(reached)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("clips", nargs="+")
    p.add_argument("--out", default="runs", help="folder for recon-CLIP.json")
    args = p.parse_args()
    for name in args.clips:
        clip, env_config, config = load_clip(name), EnvConfig(clip=name), TrackingConfig()
        steps = TrackingExpert.horizon_steps(clip, env_config, config)
        log: list[tuple[float, int]] = []
        trajectory = reconstruct(clip, env_config, steps, config.reconstruct, progress=_logger(log))
        record = {"clip": name, "horizon_steps": steps, "reached": trajectory.reached_steps,
                  "rewinds": trajectory.rewinds, "physics_steps": trajectory.physics_steps,
                  "seconds": trajectory.seconds, "longest_stall": max(stalls(log)), "log": log}
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / f"recon-{name}.json").write_text(json.dumps(record))
        print(f"{name}: reached {trajectory.reached_steps} of {steps} steps, {trajectory.rewinds} rewinds, "
              f"longest stall {record['longest_stall']} rewinds, {trajectory.seconds:.0f} s", flush=True)


if __name__ == "__main__":
    main()
