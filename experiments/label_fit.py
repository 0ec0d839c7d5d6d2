"""How much of an expert's correction to the reference can be predicted from the observation?

The correction is the label minus the reference's servo target at the next control step (what
the expert adds to plain tracking).  For a store, this prints the correction's variance and the
share of it (R²) explained on the train and validation splits by a ridge regression on the
normalised observation and, given a checkpoint, by that policy.  A learner can copy the expert's
balance only as far as this share is high.

    .venv/bin/python experiments/label_fit.py STORE.h5 [CHECKPOINT.pt] [--ridge 1.0] [--rounds 0 1 ...]
"""

import argparse

import numpy as np

from imitate import humanoid as hum
from imitate.config import targets_to_action
from imitate.motion import load_clip
from imitate.policy import load_checkpoint
from imitate.store import DemoStore


def r_squared(truth: np.ndarray, prediction: np.ndarray) -> float:
    """1 - residual / total sum of squares, over all dims together."""
    return float(1.0 - ((truth - prediction) ** 2).sum() / ((truth - truth.mean(axis=0)) ** 2).sum())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("store")
    p.add_argument("checkpoint", nargs="?")
    p.add_argument("--ridge", type=float, default=1.0, help="ridge penalty on the normalised observation")
    p.add_argument("--rounds", type=int, nargs="*", default=None, help="only these rounds (default: all)")
    args = p.parse_args()
    store = DemoStore(args.store)
    clip = load_clip(store.env_config.clip)
    if store.env_config.action_space != "pd_target":
        raise SystemExit("label_fit: needs a pd_target store (the correction is in servo-target space)")
    data = {}
    for split in ("train", "valid"):
        d = store.load(("obs", "expert_actions", "time_s"), split=split, rounds=args.rounds)
        reference = targets_to_action(clip.qpos(d["time_s"] + store.env_config.control_dt)[:, hum.HINGE_QPOS])
        reference = np.clip(reference, -1.0, 1.0)
        data[split] = (d["obs"].astype(float), d["expert_actions"] - reference, reference)
    (x, c, _), (xv, cv, _) = data["train"], data["valid"]
    if len(x) < 2 or len(xv) < 2:
        raise SystemExit(f"label_fit: {args.store} (rounds {args.rounds or 'all'}) has {len(x)} train and {len(xv)} "
                         f"valid states; need at least 2 of each")
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    design = lambda obs: np.c_[(obs - mean) / std, np.ones(len(obs))]  # noqa: E731
    a = design(x)
    penalty = args.ridge * np.eye(a.shape[1])
    penalty[-1, -1] = 0.0  # the intercept is not shrunk
    weights = np.linalg.solve(a.T @ a + penalty, a.T @ c)
    print(f"{args.store}: {len(x)} train / {len(xv)} valid states; correction variance per dim "
          f"{cv.var(axis=0).mean():.4f} (valid)")
    ridge = r_squared(c, a @ weights), r_squared(cv, design(xv) @ weights)
    print(f"ridge regression     R² train {ridge[0]:6.3f}   valid {ridge[1]:6.3f}")
    if args.checkpoint:
        policy, _, _ = load_checkpoint(args.checkpoint, store.env_config)
        predict = lambda obs: policy.act(obs.astype(np.float32))  # noqa: E731  (the executed mean action)
        # the policy predicts the action: its correction is the action minus the reference
        fit = {split: r_squared(correction, predict(obs) - reference) for split, (obs, correction, reference)
               in data.items()}
        print(f"policy {args.checkpoint}  R² train {fit['train']:6.3f}   valid {fit['valid']:6.3f}")


if __name__ == "__main__":
    main()
