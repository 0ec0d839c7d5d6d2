"""Are an expert's labels a function of the state?  Label N states, the same states moved by a
tiny amount, then the first states again, and print the mean |change| per action dimension.

A learner that sees only the state can fit a label only as far as it is a function of the
state: the PD expert's is (and smooth); the warm-started search expert's also depends on its
plan's history, which no observation shows; the cold search (``--search-cold``) is again a
function of the state.

    .venv/bin/python scripts/label_smoothness.py [--clip walk] [--states 6] [--nudge 0.005]
"""

import argparse

import numpy as np

from imitate import humanoid as hum
from imitate.env import EnvConfig, Simulation
from imitate.expert import PDExpert, label
from imitate.motion import load_clip
from imitate.search import SearchConfig, SearchExpert


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clip", default="walk")
    p.add_argument("--states", type=int, default=6, help="states at random clip times, hinges off by 0.05 rad")
    p.add_argument("--nudge", type=float, default=0.005, help="std of the tiny change of the hinge angles [rad]")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    config, clip = EnvConfig(clip=args.clip), load_clip(args.clip)
    sim = Simulation(config, args.states, clip=clip)
    rng = np.random.default_rng(args.seed)
    times = rng.uniform(0.0, clip.duration_s, args.states)
    sim.reset(np.arange(args.states), times)
    qpos, qvel = sim.qpos.copy(), sim.qvel.copy()
    qpos[:, hum.HINGE_QPOS] += rng.normal(0.0, 0.05, (args.states, hum.NU))
    nudge = rng.normal(0.0, args.nudge, (args.states, hum.NU))

    def labels(expert, offset):
        q = qpos.copy()
        q[:, hum.HINGE_QPOS] += offset
        sim.set_state(q, qvel, times)
        return label(expert, sim)

    experts = {"PD expert": PDExpert(clip, config.action_space),
               "search, warm start (default)": SearchExpert(clip, config, SearchConfig()),
               "search, cold (--search-cold, mppi)": SearchExpert(clip, config,
                                                                  SearchConfig(warm_start=False, label="mppi"))}
    print(f"{'expert':36s} {'nearby state':>14s} {'same state again':>18s}   (mean |label change| per dim)")
    for name, expert in experts.items():
        first = labels(expert, 0.0)
        nearby = labels(expert, nudge)
        again = labels(expert, 0.0)  # after two more decisions of history
        print(f"{name:36s} {np.abs(nearby - first).mean():14.4f} {np.abs(again - first).mean():18.4f}")


if __name__ == "__main__":
    main()
