"""How learnable are a search expert's labels, and does that expert still walk?

For each expert: label N states near the reference (hinges off by 0.05 rad, random clip times),
then the same states nudged by a tiny amount, then the first states again, and compare
- roughness: mean |label change| per action dim for the nudge (a smooth expert barely moves);
- again: the same for the same states labelled again after two more decisions (the
  warm-started search's label also depends on its plan's history, which no observation shows);
- signal: mean |label correction - its mean| per dim across the states, where the correction is
  the label minus the reference target (what the search adds; a learner must fit it);
- vs exact: for a planner on a coarser timestep (planning_hz), mean |label change| per dim from
  the same search planned at the env's own rate ("cold mppi, knots 4", when it runs too);
- then run the expert alone from phase 0 (its episodes batched): survival and return.
A learner that sees only the state can fit the correction only as far as signal >> roughness.

    .venv/bin/python experiments/search_label_quality.py [--states 16] [--seconds 10] [--episodes 2]
"""

import argparse
import time

import numpy as np

from imitate import humanoid as hum
from imitate.config import EnvConfig, targets_to_action
from imitate.evaluation import evaluate, expert_controller
from imitate.experts import label
from imitate.experts.pd import PDExpert
from imitate.experts.search import SearchConfig, SearchExpert
from imitate.motion import load_clip
from imitate.simulation import Simulation

CONFIGS = {  # name -> SearchConfig overrides of the cold mppi search
    "search, warm start (default)": {"warm_start": True, "label": "best"},
    "cold mppi (K32, per-step noise)": {},
    "cold mppi, knots 4": {"knots": 4},
    "cold mppi, knots 4, decay 0.5": {"knots": 4, "noise_decay": 0.5},
    "cold mppi, knots 4, temp 0.5": {"knots": 4, "temperature": 0.5},
    "cold mppi, knots 2": {"knots": 2},
    "cold mppi, knots 1": {"knots": 1},
    "cold mppi, knots 4, K64": {"knots": 4, "candidates": 64},
    "cold mppi, knots 2, K64": {"knots": 2, "candidates": 64},
    "cold mppi, knots 4, plan 300 Hz": {"knots": 4, "planning_hz": 300.0},
    "cold mppi, knots 4, plan 150 Hz": {"knots": 4, "planning_hz": 150.0},
}
EXACT = "cold mppi, knots 4"  # the planning_hz configs' label is compared with this one's


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clip", default="walk")
    p.add_argument("--states", type=int, default=16)
    p.add_argument("--nudge", type=float, default=0.005, help="std of the tiny change of the hinge angles [rad]")
    p.add_argument("--seconds", type=float, default=10.0, help="expert-alone horizon (0: skip)")
    p.add_argument("--episodes", type=int, default=2)
    p.add_argument("--only", nargs="*", default=None, help="names of the configs to run (exact, or substrings)")
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
    reference = np.clip(targets_to_action(clip.qpos(times + config.control_dt)[:, hum.HINGE_QPOS]), -1, 1)

    def labels(expert, offset):
        q = qpos.copy()
        q[:, hum.HINGE_QPOS] += offset
        sim.set_state(q, qvel, times)
        if hasattr(expert, "label_states"):  # keyed by humanoid: a warm start keeps each one's plan
            return expert.label_states(np.array(sim.batch.state), times, np.arange(args.states))
        return label(expert, sim)

    experts = {"PD expert": lambda: PDExpert(clip, config.action_space)}
    for name, overrides in CONFIGS.items():
        cfg = SearchConfig(**{"warm_start": False, "label": "mppi", **overrides})  # (cold: --search-cold)
        experts[name] = lambda cfg=cfg: SearchExpert(clip, config, cfg)
    chosen = {n: f for n, f in experts.items()  # an exact name picks that config alone, else substrings
              if not args.only or any(o == n or (o not in experts and o in n) for o in args.only)}
    print(f"{'expert':34s} {'roughness':>9s} {'again':>6s} {'signal':>7s} {'ratio':>6s} {'vs exact':>8s} "
          f"{'s/label':>8s} {'survival [s]':>13s} {'return':>7s}", flush=True)
    firsts = {}
    for name, make in chosen.items():
        expert = make()
        first = firsts[name] = labels(expert, 0.0)
        start = time.perf_counter()  # the second call: the planner is allocated by now
        rough = np.abs(labels(expert, nudge) - first).mean()
        per_label = (time.perf_counter() - start) / args.states
        again = np.abs(labels(expert, 0.0) - first).mean()
        correction = first - reference
        signal = np.abs(correction - correction.mean(axis=0)).mean()
        survival, ret = float("nan"), float("nan")
        if args.seconds > 0:
            result = evaluate(expert_controller(make()), config, episodes=args.episodes, horizon_s=args.seconds,
                              init_noise_rad=0.01, seed=args.seed)
            survival, ret = result.survival_s.mean, result.normalised_return.mean
        exact = np.abs(first - firsts[EXACT]).mean() if EXACT in firsts and name != EXACT else float("nan")
        print(f"{name:34s} {rough:9.4f} {again:6.4f} {signal:7.4f} {rough / signal:6.2f} {exact:8.4f} "
              f"{per_label:8.3f} {survival:13.2f} {ret:7.3f}", flush=True)


if __name__ == "__main__":
    main()
