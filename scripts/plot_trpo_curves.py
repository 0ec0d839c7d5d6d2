"""Several TRPO runs' learning curves on one plot: mean per-step reward of the training rollouts
(stochastic policy, random clip starts) and mean episode length, against env samples.

    .venv/bin/python scripts/plot_trpo_curves.py RUN_DIR [RUN_DIR ...] --out curves.png [--smooth 10]

Each RUN_DIR is an `imitate trpo --out` folder (its log.csv); the legend uses the folder names.
Needs matplotlib (pip install 'imitate[plot]').
"""

import argparse
import csv
from pathlib import Path

import numpy as np


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """The mean of the last `window` values at each point (fewer at the start)."""
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (cumulative[idx] - cumulative[lo]) / (idx - lo)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="imitate trpo run folders")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--smooth", type=int, default=10, help="moving average over this many iterations")
    args = p.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for run in map(Path, args.runs):
        rows = list(csv.DictReader((run / "log.csv").open()))
        samples = np.array([int(r["samples"]) for r in rows])
        reward = np.array([float(r["mean_step_reward"]) for r in rows])
        length = np.array([float(r["mean_episode_length_s"]) for r in rows])
        length = np.where(np.isfinite(length), length, np.nan)
        top.plot(samples, moving_average(reward, args.smooth), label=run.name)
        bottom.plot(samples, moving_average(np.nan_to_num(length), args.smooth), label=run.name)
    top.set_ylabel("mean per-step reward")
    bottom.set_ylabel("mean episode length [s]")
    bottom.set_xlabel("env samples")
    top.legend()
    top.set_title(f"TRPO on the imitation reward (moving average over {args.smooth} iterations)")
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    plt.close(fig)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
