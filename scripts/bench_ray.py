"""Benchmark: the search expert's labels in-process and on Ray workers, side by side.

    python scripts/bench_ray.py [--clip walk] [--states 64] [--workers 1 2] [--repeats 3]

In one run, on the same states (humanoids a few random steps from spread clip times) and the
DAgger recipe's search (`search.DAGGER_LABELS`, cold: a label is a function of the state):
- labels per second in-process (the search's rollouts on all cores, `nthread 0`), then on a
  local Ray instance with each number of workers (one thread each), and the ratio to in-process;
- whether Ray's labels equal the in-process ones bit for bit;
- the per-task overhead (a round trip to an actor that does nothing) and the payload per label
  (a state row and its time sent, a label returned);
- a DAgger round's collection (``--round ENVS STEPS``, beta 0.5, an untrained policy): in-process
  against each worker collecting its slice of the envs (``RayExpert.collect``), and whether the
  episodes are the same bit for bit.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np

from imitate.config import EnvConfig
from imitate.experts.search import DAGGER_LABELS, SearchExpert
from imitate.motion import load_clip
from imitate.simulation import Simulation


def states_of(config: EnvConfig, n: int, seed: int = 0):
    clip = load_clip(config.clip)
    sim = Simulation(config, n, clip=clip)
    sim.reset(np.arange(n), np.linspace(0.0, 0.95 * clip.duration_s, n))
    rng = np.random.default_rng(seed)
    for _ in range(3):
        sim.step(rng.uniform(-0.3, 0.3, (n, 28)))
    return np.array(sim.batch.state), sim.ref_time_s.copy()


def best_of(repeats: int, fn) -> tuple[float, np.ndarray]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clip", default="walk")
    p.add_argument("--states", type=int, default=64, help="states labelled per measurement")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=3, help="the best of this many measurements")
    p.add_argument("--planning-hz", type=float, default=None, help="the search's planning rate (default: exact)")
    p.add_argument("--round", type=int, nargs=2, default=[4, 10], metavar=("ENVS", "STEPS"),
                   help="the DAgger round collected in-process and as slices on the workers")
    args = p.parse_args()

    import ray

    from imitate.distributed import RayExpert, _Worker

    config = EnvConfig(clip=args.clip)
    clip = load_clip(args.clip)
    search = replace(DAGGER_LABELS, planning_hz=args.planning_hz)
    states, times = states_of(config, args.states)
    keys = np.arange(args.states)
    local = SearchExpert(clip, config, search)
    local_s, expected = best_of(args.repeats, lambda: local.label_states(states, times, keys))
    rows = [("in-process (nthread 0)", local_s, True)]
    ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        for workers in args.workers:
            remote = RayExpert(clip, config, search, workers=workers)
            remote.label_states(states[:workers], times[:workers], keys[:workers])  # warm the actors up
            seconds, got = best_of(args.repeats, lambda remote=remote: remote.label_states(states, times, keys))
            rows.append((f"Ray, {workers} worker{'s' if workers > 1 else ''}", seconds, np.array_equal(got, expected)))
            remote.close()
        envs, steps = args.round
        round_rows = collection(config, clip, search, envs, steps, args.workers)
        idle = ray.remote(_Worker).remote(clip, config, replace(search, candidates=2, horizon=4))
        ray.get(idle.identity.remote())
        n = 50
        start = time.perf_counter()
        for _ in range(n):
            ray.get(idle.identity.remote())
        overhead = (time.perf_counter() - start) / n
    finally:
        ray.shutdown()
    print(f"{args.states} states of {args.clip}, the DAgger recipe's search (planning at "
          f"{args.planning_hz or config.physics_hz:g} Hz), best of {args.repeats}:")
    print(f"{'':28s} {'labels/s':>9s} {'ratio':>6s}  same labels")
    for name, seconds, same in rows:
        print(f"{name:28s} {args.states / seconds:9.2f} {local_s / seconds:6.2f}  {same}")
    sent = states.itemsize * states.shape[1] + 8 + 8  # a state row, its time and key
    print(f"per-task overhead (an empty round trip to an actor): {1000 * overhead:.1f} ms")
    print(f"payload per label: {sent} bytes sent (state row of {states.shape[1]} float64, time, key), "
          f"{28 * 8} bytes returned")
    print(f"a DAgger round of {envs} envs x {steps} steps ({envs * steps} labels):")
    print(f"{'':28s} {'seconds':>9s} {'ratio':>6s}  same episodes")
    for name, seconds, same in round_rows:
        print(f"{name:28s} {seconds:9.2f} {round_rows[0][1] / seconds:6.2f}  {same}")


def collection(config: EnvConfig, clip, search, envs: int, steps: int, workers: list[int]) -> list:
    """Seconds to collect one DAgger round in-process, then as slices on each number of workers."""
    import torch

    from imitate.dagger import collect
    from imitate.distributed import RayExpert
    from imitate.observation import OBS_DIM
    from imitate.policy import GaussianPolicy

    torch.manual_seed(0)
    policy, collecting = GaussianPolicy(OBS_DIM, 28), replace(config, random_start=True)
    start = time.perf_counter()
    expected = collect(Simulation(collecting, envs, clip=clip), policy.act, SearchExpert(clip, config, search), 0.5,
                       steps, (0, 1))
    rows = [("in-process (nthread 0)", time.perf_counter() - start, True)]
    for n in workers:
        remote = RayExpert(clip, config, search, workers=n)
        start = time.perf_counter()
        got = remote.collect(policy, collecting, envs, 0.5, steps, (0, 1), "step", 15, 0.0)
        same = len(got) == len(expected) and all(np.array_equal(a[f], b[f])
                                                 for a, b in zip(got, expected, strict=True)
                                                 for f in ("obs", "expert_actions", "actions", "qpos"))
        rows.append((f"Ray, {n} worker{'s' if n > 1 else ''}, slices", time.perf_counter() - start, same))
        remote.close()
    return rows


if __name__ == "__main__":
    main()
