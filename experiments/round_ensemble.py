"""Does averaging DAgger rounds steady a learner whose survival jumps from round to round?

Loads several checkpoints of one env configuration (say a DAgger run's last rounds), evaluates
each alone and then the controller that executes the mean of their deterministic actions, all
from phase 0 with `imitate evaluate`'s metrics and the same episodes (seeded start noise).

    .venv/bin/python experiments/round_ensemble.py runs/t03/run/round_00{6,7,8}.pt [--episodes 10] \\
        [--seconds 20] [--skip-single]
"""

import argparse
from dataclasses import replace

import numpy as np

from imitate.evaluation import evaluate, policy_controller
from imitate.policy import load_checkpoint


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--init-noise", type=float, default=0.01, help="as imitate evaluate's")
    p.add_argument("--skip-single", action="store_true", help="evaluate only the average")
    args = p.parse_args()
    policies, config = [], None
    for path in args.checkpoints:
        policy, env_config, _ = load_checkpoint(path, config)  # the first fixes the configuration
        config = config or env_config
        policies.append(policy)
    config = replace(config, random_start=False)

    def average(sim):
        obs = sim.obs
        return np.mean([policy.act(obs) for policy in policies], axis=0)

    runs = [] if args.skip_single else [(path, policy_controller(policy))
                                        for path, policy in zip(args.checkpoints, policies, strict=True)]
    runs.append((f"mean of {len(policies)}", average))
    print(f"{'policy':<40} {'survival [s]':>14} {'whole':>6} {'return':>7} {'joint [deg]':>11}")
    for name, controller in runs:
        r = evaluate(controller, config, episodes=args.episodes, horizon_s=args.seconds, init_noise_rad=args.init_noise)
        print(f"{name:<40} {r.survival_s.mean:6.2f} ± {r.survival_s.std:5.2f} {r.full_horizon:3d}/{r.episodes:<2d} "
              f"{r.normalised_return.mean:7.3f} {r.joint_error_deg.mean:11.1f}", flush=True)


if __name__ == "__main__":
    main()
