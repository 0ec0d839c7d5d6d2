"""Can the search expert recover from the states a learner visits on its way to a fall?

Runs a policy from phase 0 (episodes with 0.01 rad of starting noise) until each episode falls,
then hands every episode over to the search expert at several lead times before its fall (the
learner's state then, set in a fresh simulation) and lets the expert drive for --seconds.
Prints, per lead time, how many handovers the expert carried through without a fall. If the
expert recovers only close to the reference, the learner's labels on its own failing states
teach little; if it recovers from states well into the learner's failure, the labels hold the
answer and the learner has not yet fitted it.

    .venv/bin/python experiments/expert_recovery.py CHECKPOINT [--episodes 3] [--leads 0.3 0.6 1.0]
        [--seconds 2] [--knots 4] [--warm]
"""

import argparse
import time
from dataclasses import replace

import numpy as np

from imitate import humanoid as hum
from imitate.experts import label
from imitate.experts.search import SearchConfig, SearchExpert
from imitate.motion import load_clip
from imitate.policy import load_checkpoint
from imitate.simulation import Simulation


def run_learner(policy, config, episodes: int, horizon_s: float, seed: int):
    """States (steps, episodes, nq), (steps, episodes, nv), clip times (steps, episodes) and the
    step each episode fell at (its horizon if it did not)."""
    sim = Simulation(config, episodes)
    sim.reset(np.arange(episodes), np.zeros(episodes))
    qpos = sim.qpos.copy()
    qpos[:, hum.HINGE_QPOS] += np.random.default_rng(seed).normal(0.0, 0.01, (episodes, hum.NU))
    sim.set_state(qpos, sim.qvel.copy(), np.zeros(episodes))
    steps = round(horizon_s * config.control_hz)
    fell_at = np.full(episodes, steps)
    record = []
    for step in range(steps):
        record.append((sim.qpos.copy(), sim.qvel.copy(), sim.ref_time_s.copy()))
        _, terminated, _, _ = sim.step(policy.act(sim.obs))
        fell_at = np.where(terminated & (fell_at == steps), step, fell_at)
        if (fell_at < steps).all():
            break
    qpos, qvel, times = (np.stack(x) for x in zip(*record, strict=True))
    return qpos, qvel, times, fell_at


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--leads", type=float, nargs="+", default=[0.3, 0.6, 1.0], help="seconds before the fall")
    p.add_argument("--seconds", type=float, default=2.0, help="how long the expert must keep its feet")
    p.add_argument("--knots", type=int, default=4, help="the search's knots (0: noise at every step)")
    p.add_argument("--warm", action="store_true", help="the warm-started search (default: cold, mppi)")
    p.add_argument("--horizon", type=float, default=20.0, help="the learner's horizon [s]")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    policy, env_config, _ = load_checkpoint(args.checkpoint)
    config = replace(env_config, random_start=False, episode_s=args.horizon + args.seconds + 1.0)
    clip = load_clip(config.clip)
    qpos, qvel, times, fell_at = run_learner(policy, config, args.episodes, args.horizon, args.seed)
    print(f"learner {args.checkpoint}: falls at {np.round(fell_at / config.control_hz, 2).tolist()} s")
    handovers = []  # (lead, episode, step)
    for lead in args.leads:
        for e in range(args.episodes):
            step = fell_at[e] - round(lead * config.control_hz)
            if fell_at[e] < len(times) and step >= 0:
                handovers.append((lead, e, step))
    if not handovers:
        raise SystemExit("expert_recovery: no handover (no episode fell, or the leads are longer than the episodes)")
    search = SearchConfig(warm_start=args.warm, label="best" if args.warm else "mppi", knots=args.knots)
    expert = SearchExpert(clip, env_config, search)
    sim = Simulation(config, len(handovers))
    sim.set_state(np.stack([qpos[s, e] for _, e, s in handovers]), np.stack([qvel[s, e] for _, e, s in handovers]),
                  np.array([times[s, e] for _, e, s in handovers]))
    steps = round(args.seconds * config.control_hz)
    alive = np.ones(len(handovers), bool)
    survived = np.zeros(len(handovers), int)
    start = time.perf_counter()
    for _ in range(steps):
        _, terminated, _, _ = sim.step(label(expert, sim))
        survived += alive & ~terminated
        alive &= ~terminated
    print(f"search expert ({search.knots} knots, {'warm' if args.warm else 'cold mppi'}), {args.seconds:g} s after "
          f"each handover; {time.perf_counter() - start:.0f} s")
    print(f"{'lead [s]':>9s} {'handovers':>10s} {'carried through':>16s} {'mean survival [s]':>18s}")
    leads = np.array([h[0] for h in handovers])
    for lead in args.leads:
        rows = leads == lead
        if rows.any():
            print(f"{lead:9.2f} {rows.sum():10d} {int(alive[rows].sum()):16d} "
                  f"{survived[rows].mean() / config.control_hz:18.2f}")


if __name__ == "__main__":
    main()
