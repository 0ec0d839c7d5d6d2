"""How far is a learner from its search expert along its own trajectory, and when does it grow?

Runs a policy from phase 0 (start hinges noised by 0.01 rad, as `imitate evaluate` does) and, at
every step, labels the visited state with the 4-knot cold MPPI search (the DAgger recipe, at the
given temperature) without acting on it; prints, per episode, the RMSE between the learner's
action and that label (action units), averaged over windows of time before the episode's fall.

    .venv/bin/python experiments/learner_error_before_fall.py CKPT [--temperature 0.3] [--episodes 3]
"""

import argparse
from dataclasses import replace

import numpy as np

from imitate.evaluation import start_at_phase_zero
from imitate.experts.search import DAGGER_LABELS, SearchExpert
from imitate.motion import load_clip
from imitate.policy import load_checkpoint
from imitate.simulation import Simulation

WINDOWS_S = ((0.0, 0.2), (0.2, 0.4), (0.4, 0.7), (0.7, 1.0), (1.0, 1.5), (1.5, 60.0))  # before the fall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--temperature", type=float, default=DAGGER_LABELS.temperature,
                   help="the search's MPPI temperature (default: the DAgger recipe's)")
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    policy, config, _ = load_checkpoint(args.checkpoint)
    config = replace(config, random_start=False)
    clip = load_clip(config.clip)
    expert = SearchExpert(clip, config, replace(DAGGER_LABELS, temperature=args.temperature))
    n = args.episodes
    sim = Simulation(config, n, clip=clip)
    start_at_phase_zero(sim, 0.01, args.seed)
    alive, fell_at, errors = np.ones(n, bool), np.full(n, -1), []
    for step in range(round(args.seconds * config.control_hz)):
        action = policy.act(sim.obs)
        label = expert.label_states(np.array(sim.batch.state), sim.ref_time_s.copy(), np.arange(n))
        errors.append(np.sqrt(np.mean((action - label) ** 2, axis=1)))
        _, terminated, _, _ = sim.step(action)
        fell_at = np.where(terminated & alive, step, fell_at)
        alive &= ~terminated
        if not alive.any():
            break
    errors = np.array(errors)  # (steps, episodes)
    dt = config.control_dt
    for ep in range(n):
        if fell_at[ep] < 0:
            print(f"episode {ep}: no fall in {len(errors) * dt:.1f} s; RMSE {errors[:, ep].mean():.4f}")
            continue
        own = errors[:fell_at[ep] + 1, ep][::-1]  # from the fall backwards
        parts = [f"{lo:.1f}-{min(hi, len(own) * dt):.1f} s: {own[round(lo / dt):round(hi / dt)].mean():.4f}"
                 for lo, hi in WINDOWS_S if round(lo / dt) < len(own)]
        print(f"episode {ep}: fell at {(fell_at[ep] + 1) * dt:.2f} s; RMSE by time before the fall: "
              + "; ".join(parts), flush=True)


if __name__ == "__main__":
    main()
