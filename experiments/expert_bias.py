"""Does the search expert survive a systematic error on its actions, as a learner's fit makes?

A learner's fit error is not white noise: it is a function of the state, so it repeats step after
step. This runs the 4-knot cold mppi search (the DAgger recipe's expert) from phase 0 with, on
every executed action, a constant offset drawn once per episode (std --bias, in action units),
beside the same expert with white noise of the same std drawn at every step, and prints
survival and return for each.

    .venv/bin/python experiments/expert_bias.py [--bias 0.05] [--episodes 3] [--seconds 10] \\
        [--temperature 0.3] [--kinds constant white]
"""

import argparse
from dataclasses import replace

import numpy as np

from imitate.config import EnvConfig
from imitate.evaluation import evaluate, expert_controller
from imitate.experts.search import DAGGER_LABELS, SearchExpert
from imitate.motion import load_clip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clip", default="walk")
    p.add_argument("--bias", type=float, default=0.05, help="std of the per-episode offset [action units]")
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--temperature", type=float, default=DAGGER_LABELS.temperature,
                   help="the search's MPPI temperature (default: the DAgger recipe's)")
    p.add_argument("--kinds", nargs="+", default=["constant", "white"], choices=["constant", "white"])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    config, clip = EnvConfig(clip=args.clip), load_clip(args.clip)
    search = replace(DAGGER_LABELS, temperature=args.temperature)
    offsets = np.random.default_rng(args.seed).normal(0.0, args.bias, (args.episodes, 28))
    names = {"constant": "constant offset per episode", "white": "white noise per step"}
    for kind in args.kinds:
        name = names[kind]
        act = expert_controller(SearchExpert(clip, config, search))  # a new expert each: no shared state
        constant = kind == "constant"
        controller = (lambda sim, act=act: np.clip(act(sim) + offsets, -1.0, 1.0)) if constant else act
        noise = 0.0 if constant else args.bias
        result = evaluate(controller, config, episodes=args.episodes, horizon_s=args.seconds,
                          init_noise_rad=0.01, seed=args.seed, action_noise=noise)
        print(f"{name:28s} std {args.bias}: survival {result.survival_s.mean:.2f} ± {result.survival_s.std:.2f} s, "
              f"{result.full_horizon}/{args.episodes} whole, return {result.normalised_return.mean:.3f}", flush=True)


if __name__ == "__main__":
    main()
