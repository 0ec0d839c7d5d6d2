"""How much does the learn recipe's search label vary with its noise draws, and what lowers that
at what cost: more candidates, antithetic (mirrored) draws, or fewer search iterations?

Samples states from a store round (a DAgger round's learner-visited states by default), labels
them with each variant of the learn recipe's search under several noise seeds, and prints per
variant: the RMS distance between two seeds' labels (the sampling noise a learner cannot tell
from feedback), the RMS distance of its labels from a reference label (the mean over seeds of a
search with many candidates: noise and bias together), the RMS size of its correction (the
label's distance from the reference's own servo targets: the feedback a learner is taught), and
its seconds per label.

    .venv/bin/python experiments/label_noise.py STORE [--round 1] [--states 48] [--seeds 3]
"""

import argparse
import time
from dataclasses import replace
from itertools import combinations

import numpy as np

from imitate.experts.search import LEARN_LABELS, SearchExpert
from imitate.motion import load_clip
from imitate.simulation import Simulation
from imitate.store import DemoStore

VARIANTS = {
    "32 candidates": replace(LEARN_LABELS, candidates=32),
    "32 antithetic": replace(LEARN_LABELS, candidates=32, antithetic=True),
    "64 candidates (recipe)": LEARN_LABELS,
    "64 antithetic": replace(LEARN_LABELS, antithetic=True),
    "128 candidates": replace(LEARN_LABELS, candidates=128),
    # fewer cold iterations: the physics of a label is candidates x cold_iterations
    "64 x 2 iterations": replace(LEARN_LABELS, cold_iterations=2),
    "96 x 2 iterations": replace(LEARN_LABELS, candidates=96, cold_iterations=2),
    "64 x 1 iteration": replace(LEARN_LABELS, cold_iterations=1),
    "192 x 1 iteration": replace(LEARN_LABELS, candidates=192, cold_iterations=1),
    "32 x 2 iterations": replace(LEARN_LABELS, candidates=32, cold_iterations=2),
    "48 x 2 iterations": replace(LEARN_LABELS, candidates=48, cold_iterations=2),
    "64 x 2, decay 0.5": replace(LEARN_LABELS, cold_iterations=2, noise_decay=0.5),
    "64 x 2 antithetic": replace(LEARN_LABELS, cold_iterations=2, antithetic=True),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("store", help="a store with DAgger rounds (e.g. a learn run's)")
    p.add_argument("--round", type=int, default=1, help="the store round whose states are sampled")
    p.add_argument("--source", default="dagger", help="the episodes' source in that round (dagger, mocap)")
    p.add_argument("--states", type=int, default=48)
    p.add_argument("--seeds", type=int, default=3, help="noise seeds per variant")
    p.add_argument("--reference-candidates", type=int, default=256,
                   help="the reference label: the mean over the seeds of a search with this many candidates")
    p.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    args = p.parse_args()
    store = DemoStore(args.store)
    config = store.env_config
    data = store.load(("qpos", "qvel", "time_s"), split=None, rounds=[args.round], sources=[args.source])
    rows = np.random.default_rng(0).choice(len(data["qpos"]), args.states, replace=False)
    clip = load_clip(config.clip)
    sim = Simulation(config, args.states, clip=clip)

    def labels(search, seed):
        sim.set_state(data["qpos"][rows], data["qvel"][rows], data["time_s"][rows])
        start = time.perf_counter()
        out = SearchExpert(clip, config, replace(search, seed=seed)).label(sim)
        return out, (time.perf_counter() - start) / args.states

    reference = np.mean([labels(replace(LEARN_LABELS, candidates=args.reference_candidates), 100 + s)[0]
                         for s in range(args.seeds)], axis=0)
    print(f"{args.states} states of round {args.round} ({args.source}), {args.seeds} seeds; reference: mean of "
          f"{args.seeds} seeds at {args.reference_candidates} candidates", flush=True)
    # the search's correction: how far its label moves from the reference's own servo targets (a
    # search with no noise, whose every candidate is the reference): the feedback a learner is taught
    unsearched = labels(replace(LEARN_LABELS, noise_rad=0.0, candidates=2, cold_iterations=1), 0)[0]
    print(f"reference label's correction: {np.sqrt(np.mean((reference - unsearched) ** 2)):.4f}")
    print(f"{'variant':<24} {'seed to seed':>13} {'to reference':>13} {'correction':>11} {'s / label':>10}")
    for name in args.variants:
        runs = [labels(VARIANTS[name], s) for s in range(args.seeds)]
        pairs = [np.sqrt(np.mean((a[0] - b[0]) ** 2)) for a, b in combinations(runs, 2)]
        to_ref = [np.sqrt(np.mean((a[0] - reference) ** 2)) for a in runs]
        correction = [np.sqrt(np.mean((a[0] - unsearched) ** 2)) for a in runs]
        cost = np.mean([a[1] for a in runs])
        print(f"{name:<24} {np.mean(pairs):>13.4f} {np.mean(to_ref):>13.4f} {np.mean(correction):>11.4f} "
              f"{cost:>10.3f}", flush=True)


if __name__ == "__main__":
    main()
