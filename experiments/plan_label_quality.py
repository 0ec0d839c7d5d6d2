"""How good a label is a search plan's step j for the state that plan reaches after j steps?

Samples states a DAgger learner visited (a store round), labels them with the learn recipe's
search, follows each label's plan open loop in the env's physics, and at each step j compares the
plan's action with the search's own label at the state reached (RMS over states and joints,
action units), beside how much the search's label changes from one step to the next.
``--noise``: instead, how far apart the same states' labels are with another noise seed, and
with other candidate counts (the labels' sampling noise); ``--expert guided`` for the guided
expert's labels (its trajectory cached under $IMITATE_CACHE).

    .venv/bin/python experiments/plan_label_quality.py STORE [--round 8] [--states 64] [--steps 5]
    .venv/bin/python experiments/plan_label_quality.py STORE --noise [--expert guided]
"""

import argparse
from dataclasses import replace

import numpy as np

from imitate.experts import make_expert
from imitate.experts.search import GUIDED_LABELS, LEARN_LABELS, SearchExpert
from imitate.motion import load_clip
from imitate.simulation import Simulation
from imitate.store import DemoStore


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("store", help="a store with DAgger rounds (e.g. a learn run's)")
    p.add_argument("--round", type=int, default=8, help="the store round whose visited states are sampled")
    p.add_argument("--states", type=int, default=64)
    p.add_argument("--steps", type=int, default=5, help="plan steps to follow (below the search's horizon)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise", action="store_true", help="compare labels across noise seeds and candidate counts")
    p.add_argument("--expert", default="search", choices=["search", "guided"],
                   help="--noise: the learn recipe's search (default) or the guided expert")
    args = p.parse_args()
    store = DemoStore(args.store)
    config = store.env_config
    data = store.load(("qpos", "qvel", "time_s"), split=None, rounds=[args.round], sources=["dagger"])
    rows = np.random.default_rng(args.seed).choice(len(data["qpos"]), args.states, replace=False)
    clip = load_clip(config.clip)
    sim = Simulation(config, args.states, clip=clip)
    if args.noise:
        base = GUIDED_LABELS if args.expert == "guided" else LEARN_LABELS
        variants = {"seed 0": base, "seed 1": replace(base, seed=1), "16 candidates": replace(base, candidates=16),
                    "32 candidates": replace(base, candidates=32), "64 candidates": replace(base, candidates=64)}
        labels = {}
        for name, search in variants.items():
            sim.set_state(data["qpos"][rows], data["qvel"][rows], data["time_s"][rows])
            labels[name] = make_expert(args.expert, clip, config, search=search).label(sim)
        for a, b in (("seed 0", "seed 1"), ("16 candidates", "32 candidates"), ("32 candidates", "64 candidates")):
            print(f"{args.expert} ({base.candidates} candidates), {a} vs {b}: "
                  f"{np.sqrt(np.mean((labels[a] - labels[b]) ** 2)):.4f}", flush=True)
        return
    expert = SearchExpert(clip, config, LEARN_LABELS)
    sim.set_state(data["qpos"][rows], data["qvel"][rows], data["time_s"][rows])
    labels = expert.label(sim)
    plans = expert.last_plans.copy()
    sim.step(labels)
    previous = labels
    for j in range(1, args.steps + 1):
        expert.last_plans = plans  # the plans of the sampled states, not of the labels just below
        planned = expert.planned_actions(j, sim.qpos, sim.ref_time_s)
        own = expert.label(sim)
        print(f"step {j}: plan's action vs the search's label there {np.sqrt(np.mean((planned - own) ** 2)):.4f}; "
              f"the search's label vs its label a step earlier {np.sqrt(np.mean((own - previous) ** 2)):.4f}",
              flush=True)
        previous = own
        sim.step(planned)


if __name__ == "__main__":
    main()
