"""Does a search that scores its plans under a learner-like systematic error tolerate that error?

Each candidate is rolled out under B fixed constant offsets on its servo targets (antithetic
pairs of std --offset, action units) and scored by the mean cost, so that the plan chosen must
work under such an error; then the expert alone from phase 0 with a constant offset per episode
(std --test-offset) on its actions, as in expert_bias.py.  B = 0: the plain search.

    .venv/bin/python experiments/robust_search.py [--draws 0 2 4] [--offset 0.05] [--test-offset 0.05] \\
        [--episodes 3] [--seconds 10]
"""

import argparse

import numpy as np

from imitate import humanoid as hum
from imitate.config import EnvConfig
from imitate.evaluation import evaluate, expert_controller
from imitate.experts.search import LEARN_LABELS, SearchExpert
from imitate.motion import load_clip


class RobustSearch(SearchExpert):
    """The search, each candidate's cost the mean over fixed constant target offsets (B, 28) [rad]."""

    def __init__(self, clip, config, search, draws: int, std: float, seed: int = 12345):
        super().__init__(clip, config, search)
        half_range = 0.5 * (hum.HINGE_RANGE[:, 1] - hum.HINGE_RANGE[:, 0])  # rad per action unit
        half = np.random.default_rng(seed).normal(0.0, std, (draws // 2, hum.NU)) * half_range
        self.offsets = np.concatenate([half, -half])

    def _costs(self, states, times, candidates):
        n, k, h, m = candidates.shape
        b = len(self.offsets)
        shifted = candidates[:, :, None] + self.offsets[None, None, :, None, :]
        return super()._costs(states, times, shifted.reshape(n, k * b, h, m)).reshape(n, k, b).mean(axis=2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clip", default="walk")
    p.add_argument("--draws", type=int, nargs="+", default=[0, 2, 4], help="offsets per candidate (even; 0: plain)")
    p.add_argument("--offset", type=float, default=0.05, help="std of the planned-for offsets [action units]")
    p.add_argument("--test-offset", type=float, default=0.05, help="std of the per-episode offset executed")
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0)
    args = p.parse_args()
    config, clip = EnvConfig(clip=args.clip), load_clip(args.clip)
    offsets = np.random.default_rng(0).normal(0.0, args.test_offset, (args.episodes, hum.NU))
    for draws in args.draws:
        expert = RobustSearch(clip, config, LEARN_LABELS, draws, args.offset) if draws else \
            SearchExpert(clip, config, LEARN_LABELS)
        act = expert_controller(expert)
        result = evaluate(lambda sim, act=act: np.clip(act(sim) + offsets, -1.0, 1.0), config,
                          episodes=args.episodes, horizon_s=args.seconds, init_noise_rad=0.01, seed=0)
        print(f"B = {draws}: survival {result.survival_s.mean:.2f} ± {result.survival_s.std:.2f} s, "
              f"{result.full_horizon}/{args.episodes} whole, return {result.normalised_return.mean:.3f}", flush=True)


if __name__ == "__main__":
    main()
