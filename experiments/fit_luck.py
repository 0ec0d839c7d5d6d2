"""How much does a policy's survival hang on the luck of its fit, and what steadies it?

Fits policies from scratch on the same store (SFT, the `imitate sft` defaults) with several
training seeds, for each variant asked for: a single MLP, an ensemble of M MLPs (`--ensemble
M`), either of those without the states just before a learner's fall (`--drop-before-fall S`),
and residual policies (`--residual 0 1`: the networks learn only the correction to the observed
reference's servo targets). Each policy is evaluated from phase 0 (`imitate evaluate`'s metrics,
the same episodes for every policy) and one line is printed per policy, then the mean and spread
over seeds per variant: the spread across seeds is the fit's luck.

    .venv/bin/python experiments/fit_luck.py STORE.h5 [--seeds 0 1 2] [--ensemble 5] \\
        [--drop-before-fall 0.7] [--residual 0 1] [--episodes 10] [--seconds 20] [--save-dir DIR]
"""

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from imitate.evaluation import evaluate, policy_controller
from imitate.policy import PolicyConfig, save_checkpoint
from imitate.sft import SFTConfig, sft_on_store
from imitate.store import DemoStore


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("store")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--ensemble", type=int, nargs="*", default=[1, 5], help="members per policy, one variant each")
    p.add_argument("--drop-before-fall", type=float, nargs="*", default=[0.0], help="seconds, one variant each")
    p.add_argument("--residual", type=int, nargs="*", default=[0], choices=[0, 1],
                   help="0: plain, 1: residual policy, one variant each")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--save-dir", default=None, help="keep each policy as DIR/r{R}_m{M}_drop{S}_seed{seed}.pt")
    args = p.parse_args()
    store = DemoStore(args.store)
    eval_config = replace(store.env_config, random_start=False)
    rows = {}
    print(f"{'res':>3s} {'members':>7s} {'drop [s]':>8s} {'seed':>4s} {'train':>6s} {'valid MSE':>9s} {'return':>7s} "
          f"{'survival [s]':>13s} {'whole':>5s}", flush=True)
    variants = [(res, members, drop) for res in args.residual for members in args.ensemble
                for drop in args.drop_before_fall]
    for res, members, drop in variants:
        for seed in args.seeds:
            policy, fit = sft_on_store(store, SFTConfig(seed=seed, drop_before_fall_s=drop),
                                       policy_config=PolicyConfig(members=members, residual=bool(res)))
            result = evaluate(policy_controller(policy), eval_config, episodes=args.episodes,
                              horizon_s=args.seconds, init_noise_rad=0.01, seed=0)
            if args.save_dir:
                save_checkpoint(Path(args.save_dir) / f"r{res}_m{members}_drop{drop:g}_seed{seed}.pt", policy,
                                store.env_config, store=str(store.path), seed=seed)
            survival, ret = result.survival_s, result.normalised_return.mean
            rows.setdefault((res, members, drop), []).append((survival.mean, ret))
            print(f"{res:3d} {members:7d} {drop:8.2f} {seed:4d} {fit.train_samples:6d} {fit.valid_mse:9.5f} "
                  f"{ret:7.3f} {survival.mean:6.2f} ± {survival.std:4.2f} {result.full_horizon:3d}/{args.episodes}",
                  flush=True)
    print("\nover seeds: survival [s] mean (min-max), return mean")
    for (res, members, drop), values in rows.items():
        s = np.array([v[0] for v in values])
        print(f"{'residual' if res else 'plain'}, members {members}, drop {drop:g} s: "
              f"{s.mean():.2f} ({s.min():.2f}-{s.max():.2f}), {np.mean([v[1] for v in values]):.3f}")


if __name__ == "__main__":
    main()
