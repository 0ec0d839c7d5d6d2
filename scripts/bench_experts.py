"""Benchmark of the experts alone: coverage, robustness and cost per label.

    python scripts/bench_experts.py [CLIPS ...] [--out runs/bench_experts] [--episodes 5] [--expert tracking|search]
    python scripts/bench_experts.py --robust walk run cartwheel
    python scripts/bench_experts.py --cost walk

Coverage: for each clip, prepare the expert (the tracking expert, ``--expert best``: timed; cached,
see imitate.experts.tracking; or with ``--expert search`` the search that labels the learn
recipe's DAgger rounds, ``pipeline.RECIPES["search"].search``, which needs no preparation) and run
it alone from phase 0, `--episodes` episodes with 0.01 rad of starting noise, for the episode's
horizon (20 s looping, the clip otherwise).  `--robust` adds 0.05 action noise and 150 N pushes
every 2 s.  `--cost` times labels of 1,000 states a drifting PD-servo humanoid visits, batched
and one by one, beside the search expert (DAgger's recipe) on 20 of them.  Each clip's figures
go to OUT/CLIP[-robust].json as they finish, so a killed run goes on where it stopped; the table
is printed from those files.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from imitate.config import EnvConfig
from imitate.console import console
from imitate.evaluation import evaluate, expert_controller
from imitate.experts.pd import PDExpert
from imitate.experts.search import DAGGER_LABELS, SearchExpert
from imitate.experts.tracking import TrackingConfig, TrackingExpert
from imitate.motion import list_clips, load_clip
from imitate.simulation import Simulation

CONDITIONS = {"clean": {}, "noise 0.05": {"action_noise": 0.05}, "push 150 N": {"push_force_n": 150.0}}


def coverage(clip_name: str, episodes: int, conditions: list[str], kind: str = "tracking") -> dict:
    clip, config = load_clip(clip_name), EnvConfig(clip=clip_name)
    started = time.perf_counter()
    if kind == "search":  # the learn recipe's labeller: nothing to prepare
        from imitate.pipeline import RECIPES

        expert = SearchExpert(clip, config, RECIPES["search"].search)
        out = {"clip": clip_name, "loop": clip.loop, "prepare_s": 0.0, "expert": "search",
               "settings": expert.provenance(), "reached_s": None}
        for name in conditions:
            t0 = time.perf_counter()
            out[name] = evaluate(expert_controller(expert), config, episodes=episodes, init_noise_rad=0.01,
                                 **CONDITIONS[name]).to_dict()
            out[name]["seconds"] = time.perf_counter() - t0
        return out
    shown = [0.0]

    def progress(done, total, what):  # a line every 30 s: a log shows how far the preparation is
        if time.perf_counter() - shown[0] > 30 or done == total:
            shown[0] = time.perf_counter()
            console.print(f"  {clip_name}: {what} {done}/{total} control steps, "
                          f"{time.perf_counter() - started:.0f} s", highlight=False)

    expert = TrackingExpert.prepare(clip, config, TrackingConfig(), progress=progress)
    out = {"clip": clip_name, "loop": clip.loop, "prepare_s": time.perf_counter() - started, "info": expert.info,
           "reached_s": expert.reached_s}
    for name in conditions:
        result = evaluate(expert_controller(expert), config, episodes=episodes, init_noise_rad=0.01,
                          **CONDITIONS[name])
        out[name] = result.to_dict()
    return out


def label_cost(clip_name: str) -> dict:
    """Seconds per label on 1,000 states of PD servos drifting off the clip (10 humanoids x 100 steps)."""
    clip, config = load_clip(clip_name), EnvConfig(clip=clip_name, random_start=False)
    sim = Simulation(config, 10, clip=clip)
    rng = np.random.default_rng(0)
    sim.reset(np.arange(10), np.zeros(10))
    pd = PDExpert(clip)
    states, qpos, qvel, times = [], [], [], []
    while len(times) < 1000:
        states.append(np.array(sim.batch.state))
        qpos.append(sim.qpos.copy())
        qvel.append(sim.qvel.copy())
        times.append(sim.ref_time_s.copy())
        _, term, trunc, _ = sim.step(np.clip(pd.label(sim) + rng.normal(0, 0.05, (10, 28)), -1, 1))
        done = np.flatnonzero(term | trunc)
        if len(done):
            sim.reset(done, np.zeros(len(done)))
    qpos, qvel, times = (np.concatenate(a)[:1000] for a in (qpos, qvel, times))
    states = np.concatenate(states)[:1000]
    expert = TrackingExpert.prepare(clip, config, TrackingConfig())
    started = time.perf_counter()
    batched = expert(qpos, qvel, times)
    batched_s = (time.perf_counter() - started) / 1000
    started = time.perf_counter()
    single = np.concatenate([expert(qpos[i:i + 1], qvel[i:i + 1], times[i:i + 1]) for i in range(1000)])
    single_s = (time.perf_counter() - started) / 1000
    search = SearchExpert(clip, config, DAGGER_LABELS)
    started = time.perf_counter()
    search.label_states(states[:20], times[:20], np.arange(20))
    search_s = (time.perf_counter() - started) / 20
    return {"clip": clip_name, "tracking_batched_s": batched_s, "tracking_single_s": single_s,
            "batched_equals_single": bool(np.array_equal(batched, single)), "search_s": search_s,
            "prepare_s": expert.info["prepare_s"]}


def _row(data: dict, condition: str) -> list[str]:
    r = data[condition]
    whole = sum(e["cause"] == "survived" for e in r["endings"])
    causes = sorted({e["cause"] for e in r["endings"] if e["cause"] != "survived"})
    reached = "-" if data["reached_s"] is None else f"{data['reached_s']:.1f}"
    return [data["clip"], condition, f"{reached} / {r['horizon_s']:.1f}",
            f"{r['survival_s']['mean']:.2f}", f"{whole} of {r['episodes']}", f"{r['normalised_return']['mean']:.3f}",
            f"{r['joint_error_deg']['mean']:.1f}", f"{r['end_effector_error_cm']['mean']:.1f}",
            f"{data['prepare_s'] / 60:.1f}", "; ".join(causes)[:60]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clips", nargs="*", help="clip names (default: every clip imitate finds)")
    parser.add_argument("--out", default="runs/bench_experts", help="folder of the per-clip JSON files")
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--robust", action="store_true", help="also under 0.05 action noise and 150 N pushes")
    parser.add_argument("--cost", action="store_true", help="seconds per label instead of coverage")
    parser.add_argument("--expert", default="tracking", choices=["tracking", "search"],
                        help="coverage of the tracking expert, or of the learn recipe's search")
    args = parser.parse_args()
    clips = args.clips or [c.name for c in list_clips()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from rich.table import Table

    if args.cost:
        table = Table("clip", "tracking, batched [s/label]", "one by one", "same labels", "search [s/label]",
                      "ratio", title="cost per label (1,000 drifting states)")
        for name in clips:
            c = label_cost(name)
            (out / f"{name}-cost.json").write_text(json.dumps(c, indent=1))
            table.add_row(name, f"{c['tracking_batched_s']:.2e}", f"{c['tracking_single_s']:.2e}",
                          str(c["batched_equals_single"]), f"{c['search_s']:.3f}",
                          f"{c['search_s'] / c['tracking_single_s']:,.0f}x")
        console.print(table)
        return
    conditions = list(CONDITIONS) if args.robust else ["clean"]
    suffix = ("-robust" if args.robust else "") + ("-search" if args.expert == "search" else "")
    table = Table("clip", "condition", "reached / horizon [s]", "survival [s]", "whole", "return", "joint [deg]",
                  "end eff. [cm]", "prep [min]", "endings", title=f"the {args.expert} expert alone, from phase 0")
    for name in clips:
        path = out / f"{name}{suffix}.json"
        if not path.exists():
            console.print(f"{name}: preparing and evaluating ...")
            data = coverage(name, args.episodes, conditions, args.expert)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=1))
            tmp.replace(path)
        data = json.loads(path.read_text())
        for condition in conditions:
            table.add_row(*_row(data, condition))
    console.print(table)


if __name__ == "__main__":
    main()
