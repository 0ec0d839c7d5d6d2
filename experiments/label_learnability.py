"""How well can a learner fit an expert's labels, and what does a smoother expert cost?

Takes a sample of a store's states (train and validation splits apart), relabels them with
variants of the DAgger recipe's search (`search.DAGGER_LABELS`: `--search-label mppi
--search-cold --search-knots 4 --search-temperature 0.3`), fits a residual policy (`imitate sft
--residual` defaults) on each variant's training labels and reports, on the validation states:
- R2: the share of the correction's variance (label minus the observed reference's servo
  target, what the search adds) that the fitted policy explains; ridge R2: the same for a ridge
  regression of the correction on the standardised observation (closed form, a linear learner);
- RMSE: the policy's error in action units (what the expert then has to live with);
- the correction's own RMS (how much the expert moves away from the reference);
- vs stored: the RMS difference from the store's labels (0 for the recipe the store was built
  with: relabelling from the stored qpos, qvel and clip time reproduces them);
then (`--seconds` > 0) the expert alone from phase 0: survival and normalised return. With
`--train-fractions`, R2 also from fits on those fractions of the training states (how R2 grows
with labels).
"stored" uses the store's own labels for the same states (no relabelling); "pd" and
"tracking" relabel with the PD expert and the tracking expert (`--expert best`).

    .venv/bin/python experiments/label_learnability.py STORE.h5 [--train 600] [--valid 200] \\
        [--variants stored "temperature 1"] [--seconds 10] [--episodes 2] \\
        [--train-fractions 0.125 0.25 0.5]
"""

import argparse
import time
from dataclasses import replace

import numpy as np
import torch

from imitate.config import targets_to_action
from imitate.evaluation import evaluate, expert_controller
from imitate.experts.pd import PDExpert
from imitate.experts.search import DAGGER_LABELS, SearchExpert
from imitate.experts.tracking import TrackingExpert
from imitate.motion import load_clip
from imitate.policy import REF_Q_COLUMNS, PolicyConfig
from imitate.sft import SFTConfig, fit, new_policy
from imitate.simulation import Simulation
from imitate.store import DemoStore

VARIANTS = {  # name -> SearchConfig overrides of search.DAGGER_LABELS (None: the store's labels)
    "stored": None,
    "temperature 0.1": {"temperature": 0.1},
    "temperature 0.3": {"temperature": 0.3},  # the recipe
    "temperature 0.5": {"temperature": 0.5},
    "temperature 1": {"temperature": 1.0},
    "temperature 3": {"temperature": 3.0},
    "offset weight 1": {"temperature": 0.1, "offset_weight": 1.0},
    "pd": "pd",
    "tracking": "tracking",
}


def ridge_r2(train_obs, train_y, valid_obs, valid_y, lam: float = 1e-2) -> float:
    """R2 on the validation rows of a ridge regression y ~ standardised obs (bias unpenalised)."""
    mean, std = train_obs.mean(0), train_obs.std(0) + 1e-6
    x = np.c_[(train_obs - mean) / std, np.ones(len(train_obs))]
    xv = np.c_[(valid_obs - mean) / std, np.ones(len(valid_obs))]
    penalty = lam * len(x) * np.eye(x.shape[1])
    penalty[-1, -1] = 0.0
    w = np.linalg.solve(x.T @ x + penalty, x.T @ train_y)
    residual = valid_y - xv @ w
    return float(1.0 - np.mean(residual**2) / np.mean((valid_y - valid_y.mean(0)) ** 2))


def sample(store: DemoStore, split: str, n: int, seed: int) -> dict[str, np.ndarray]:
    """n states of a split, in random order."""
    data = store.load(("obs", "expert_actions", "qpos", "qvel", "time_s"), split=split)
    pick = np.random.default_rng(seed).choice(len(data["obs"]), min(n, len(data["obs"])), replace=False)
    return {k: v[pick] for k, v in data.items()}


def relabel(expert: SearchExpert, sim: Simulation, data: dict[str, np.ndarray], chunk: int) -> np.ndarray:
    """The expert's labels for the states (a cold search: each state on its own), in chunks of
    the simulation's size."""
    out = []
    for start in range(0, len(data["obs"]), chunk):
        q, v, t = (data[k][start:start + chunk] for k in ("qpos", "qvel", "time_s"))
        n = len(q)
        if n < chunk:  # pad the last chunk with copies of its first state
            q, v, t = (np.concatenate([a, np.repeat(a[:1], chunk - n, axis=0)]) for a in (q, v, t))
        sim.set_state(q, v, t)
        out.append(expert.label_states(np.array(sim.batch.state), t, np.arange(chunk))[:n])
    return np.concatenate(out)


def fit_r2_rmse(store: DemoStore, train: dict, valid: dict, labels: dict, variance: float, count: int,
                fit_seeds: int) -> tuple[float, float]:
    """R2 (against the correction's variance) and RMSE on the validation states, averaged over fit
    seeds, of residual policies fitted on the first count training states (in random order)."""
    r2, rmse = [], []
    for seed in range(fit_seeds):
        torch.manual_seed(seed)
        policy = new_policy(store, PolicyConfig(residual=True))
        result = fit(policy, {"obs": train["obs"][:count], "expert_actions": labels["train"][:count]},
                     {"obs": valid["obs"], "expert_actions": labels["valid"]}, SFTConfig(seed=seed))
        r2.append(1.0 - result.valid_mse / variance)
        rmse.append(np.sqrt(result.valid_mse))
    return float(np.mean(r2)), float(np.mean(rmse))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("store")
    p.add_argument("--train", type=int, default=600, help="training states sampled")
    p.add_argument("--valid", type=int, default=200, help="validation states sampled")
    p.add_argument("--variants", nargs="*", default=["stored", "temperature 1"], choices=list(VARIANTS))
    p.add_argument("--seconds", type=float, default=10.0, help="expert-alone horizon (0: skip)")
    p.add_argument("--episodes", type=int, default=2)
    p.add_argument("--fit-seeds", type=int, default=2, help="SFT seeds per variant (R2 and RMSE averaged)")
    p.add_argument("--train-fractions", type=float, nargs="*", default=[],
                   help="also fit on these fractions of the training states (a learning curve)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    store = DemoStore(args.store)
    config = store.env_config
    clip = load_clip(config.clip)
    train, valid = sample(store, "train", args.train, args.seed), sample(store, "valid", args.valid, args.seed)
    chunk = 16
    sim = Simulation(config, chunk, clip=clip)
    print(f"{len(train['obs'])} training and {len(valid['obs'])} validation states of {args.store}")
    print(f"{'variant':26s} {'s/label':>7s} {'corr. RMS':>9s} {'vs stored':>9s} {'R2':>6s} {'ridge R2':>8s} "
          f"{'RMSE':>7s} "
          f"{'survival [s]':>13s} {'return':>7s}", flush=True)
    for name in args.variants:
        overrides = VARIANTS[name]
        per_label, vs_stored = float("nan"), float("nan")
        search = None if overrides is None or isinstance(overrides, str) else replace(DAGGER_LABELS, **overrides)
        if overrides is None:
            labels = {"train": train["expert_actions"], "valid": valid["expert_actions"]}
        elif isinstance(overrides, str):  # a state -> label expert: all states in one call
            expert = PDExpert(clip, config.action_space) if overrides == "pd" else TrackingExpert.prepare(clip, config)
            start = time.perf_counter()
            labels = {k: expert(d["qpos"], d["qvel"], d["time_s"]) for k, d in (("train", train), ("valid", valid))}
            per_label = (time.perf_counter() - start) / (len(train["obs"]) + len(valid["obs"]))
            vs_stored = np.sqrt(np.mean((labels["valid"] - valid["expert_actions"]) ** 2))
        else:
            expert = SearchExpert(clip, config, search)
            start = time.perf_counter()
            labels = {"train": relabel(expert, sim, train, chunk), "valid": relabel(expert, sim, valid, chunk)}
            per_label = (time.perf_counter() - start) / (len(train["obs"]) + len(valid["obs"]))
            vs_stored = np.sqrt(np.mean((labels["valid"] - valid["expert_actions"]) ** 2))
        correction = labels["valid"] - targets_to_action(valid["obs"][:, REF_Q_COLUMNS])
        variance = np.mean((correction - correction.mean(0)) ** 2)
        r2, rmse = fit_r2_rmse(store, train, valid, labels, variance, len(train["obs"]), args.fit_seeds)
        train_correction = labels["train"] - targets_to_action(train["obs"][:, REF_Q_COLUMNS])
        ridge = ridge_r2(train["obs"], train_correction, valid["obs"], correction)
        survival, ret = float("nan"), float("nan")
        if args.seconds > 0 and search is not None:  # a fresh expert: no state from the relabelling
            result = evaluate(expert_controller(SearchExpert(clip, config, search)),
                              replace(config, random_start=False), episodes=args.episodes,
                              horizon_s=args.seconds, init_noise_rad=0.01, seed=args.seed)
            survival, ret = result.survival_s.mean, result.normalised_return.mean
        print(f"{name:26s} {per_label:7.3f} {np.sqrt(np.mean(correction ** 2)):9.4f} {vs_stored:9.4f} "
              f"{r2:6.3f} {ridge:8.3f} {rmse:7.4f} {survival:13.2f} {ret:7.3f}", flush=True)
        for fraction in args.train_fractions:
            count = max(1, round(fraction * len(train["obs"])))
            r2, rmse = fit_r2_rmse(store, train, valid, labels, variance, count, args.fit_seeds)
            print(f"  {count:6d} training states: R2 {r2:6.3f}, RMSE {rmse:7.4f}", flush=True)


if __name__ == "__main__":
    main()
