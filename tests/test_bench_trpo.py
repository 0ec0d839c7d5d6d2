"""scripts/bench_trpo_vs_sb3.py compares at equal work: one work plan configures both sides
(samples, FVP subsampling, CG iterations, line-search trials, critic updates), and imitate's
TRPO really does the planned work.

Runs without sb3-contrib.  Independent references: the work written out by hand, and imitate's
work counted here by wrapping its functions (not the script's own counters) on a tiny run.
"""

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import imitate.trpo as trpo
from imitate.config import EnvConfig
from imitate.policy import GaussianPolicy, PolicyConfig

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import bench_trpo_vs_sb3 as bench  # noqa: E402 (scripts/ is not a package)


@pytest.mark.parametrize("options, fvp_samples, sb3_samples, critic_updates", [
    ((8, 128, 5, "equal"), 256, 256, 40),  # the documented run: 1024 samples, every 4th (256 kept)
    ((8, 128, 5, "own"), 256, 1024, 40),  # sb3-contrib's default sub_sampling_factor 1
    ((8, 128, 1, "equal"), 1024, 1024, 40),  # all samples on both sides
    ((16, 128, 5, "equal"), 410, 410, 80),  # 2048 samples, every 5th: ceil(2048 / 5)
    ((10, 100, 3, "own"), 334, 1000, 40),  # ceil(1000 / 3); critic 10 epochs x ceil(1000 / 256)
    ((3, 50, 5, "equal"), 150, 150, 10),  # fewer than 256 samples: all of them
])
def test_the_plan_is_the_hand_computed_work(options, fvp_samples, sb3_samples, critic_updates):
    num_envs, steps, subsample, mode = options
    plan = bench.work_plan(num_envs, steps, subsample, mode)
    n = num_envs * steps
    mine, theirs = plan["imitate"], plan["sb3-contrib"]
    assert mine == {"samples": n, "gradient_samples": n, "fvp_samples": fvp_samples, "line_search_samples": n,
                    "cg_iterations": 15, "fvps": 16, "line_search_trials": 10, "critic_updates": critic_updates}
    assert theirs == {"samples": n, "gradient_samples": sb3_samples, "fvp_samples": sb3_samples,
                      "line_search_samples": sb3_samples, "cg_iterations": 15, "fvps": 17, "line_search_trials": 10,
                      "critic_updates": critic_updates}
    assert plan["sub_sampling_factor"] == (math.ceil(n / fvp_samples) if mode == "equal" else 1)


def args_for(*options):
    return bench.parse_args(["--num-envs", "8", "--steps-per-iter", "128", *options])


@pytest.mark.parametrize("options", [(), ("--sb3-subsampling", "own"), ("--fvp-subsample", "1"),
                                     ("--kl-convention", "matched", "--sim-threads", "1")])
def test_both_sides_are_configured_with_the_plan(options):
    args = args_for(*options)
    plan = bench.plan_of(args)
    mine = bench.trpo_config(args, plan)
    theirs = bench.sb3_trpo_kwargs(args, plan, act_dim=28)
    # every sb3-contrib setting that sets the work is given explicitly (a changed default cannot creep in)
    assert {"n_steps", "batch_size", "cg_max_steps", "line_search_max_iter", "n_critic_updates", "sub_sampling_factor",
            "line_search_shrinking_factor", "cg_damping", "target_kl", "gamma", "gae_lambda", "learning_rate",
            "normalize_advantage"} <= set(theirs)
    assert (mine.num_envs, mine.steps_per_env, theirs["n_steps"]) == (8, 128, 128)
    assert mine.cg_iters == theirs["cg_max_steps"] == 15
    assert mine.max_backtracks == theirs["line_search_max_iter"] == 10
    assert mine.shrink == theirs["line_search_shrinking_factor"]
    assert mine.critic_epochs == theirs["n_critic_updates"] == 10
    assert mine.critic_batch == theirs["batch_size"] == 256
    assert mine.critic_lr == theirs["learning_rate"]
    assert (mine.gamma, mine.lam) == (theirs["gamma"], theirs["gae_lambda"])
    expected_stride = 1 if "--fvp-subsample" in options else 4  # 1024 samples: every min(5, 1024 // 256)-th
    assert mine.fvp_subsample == (1 if "--fvp-subsample" in options else 5)
    assert theirs["sub_sampling_factor"] == (1 if "own" in options else expected_stride)
    scale = 1 / 28 if "matched" in options else 1.0
    assert theirs["target_kl"] == pytest.approx(mine.max_kl * scale)
    assert theirs["cg_damping"] == pytest.approx(mine.damping * scale)
    assert mine.sim_threads == (1 if "--sim-threads" in options else 0)
    assert mine.critic_warmup_iters == 0  # sb3-contrib has none


class Drift:
    """N 1-D points drifting by their action, reward -x^2, cut every 40 steps; obs [x, last
    action, 6 noise features] (the noise gives the Fisher many directions: CG does not converge
    early, so every planned iteration runs)."""

    def __init__(self, num_envs: int):
        self.num_envs = num_envs
        self.x, self.t = np.zeros(num_envs), np.zeros(num_envs, int)
        self.obs = np.zeros((num_envs, 8), np.float32)
        self.noise = np.random.default_rng(1)

    def start_times(self, rng, n):
        return rng.uniform(-1.0, 1.0, n)

    def reset(self, ids, start_times):
        self.x[ids], self.t[ids] = start_times, 0
        self.obs[:, 0] = self.x

    def step(self, actions):
        self.x = self.x + 0.1 * np.asarray(actions, float)[:, 0]
        self.t += 1
        self.obs[:, 0], self.obs[:, 1] = self.x, actions[:, 0]
        self.obs[:, 2:] = self.noise.normal(size=(self.num_envs, 6))
        return -self.x ** 2, np.zeros(self.num_envs, bool), self.t >= 40, {}


@pytest.mark.parametrize("options, fvp_rows", [((), 256), (("--fvp-subsample", "2"), 512),
                                              (("--fvp-subsample", "1"), 1024)])
def test_imitate_does_the_planned_work(options, fvp_rows, tmp_path, synthetic_clip_path, monkeypatch):
    """One iteration of the benchmark's TRPOConfig (8 envs x 128 steps) on a toy task: the
    products, CG iterations, line-search trials and critic updates counted by wrappers here."""
    args = args_for(*options)
    config = bench.trpo_config(args, bench.plan_of(args))
    torch.manual_seed(0)
    policy = GaussianPolicy(8, 1, PolicyConfig(hidden=(32, 32)))
    with torch.no_grad():  # a head far from zero: curvature in every layer
        for p in policy.parameters():
            p.normal_(0.0, 0.5)
    trainer = trpo.TRPO(EnvConfig(clip=str(synthetic_clip_path)), config, tmp_path / "run", policy=policy,
                        sim=Drift(8))
    seen = {"gradient_rows": [], "fvp_rows": [], "products": 0, "cg_products": 0, "trials": 0, "critic_steps": 0}
    real_fisher, real_cg, real_search = trpo.gaussian_fisher_product, trpo.conjugate_gradient, trpo.line_search
    real_policy_step, real_opt_step = trainer._policy_step, trainer.critic_opt.step

    def fisher(policy, obs, damping, params=None):
        seen["fvp_rows"].append(len(obs))
        product = real_fisher(policy, obs, damping, params)

        def counted(v):
            seen["products"] += 1
            return product(v)
        return counted

    def cg(matvec, b, iters):
        before = seen["products"]
        out = real_cg(matvec, b, iters)
        seen["cg_products"] += seen["products"] - before
        return out

    def search(trial, *a, **kw):
        def counted(fraction):
            seen["trials"] += 1
            return trial(fraction)
        return real_search(counted, *a, **kw)

    def policy_step(obs, *a):
        seen["gradient_rows"].append(len(obs))
        return real_policy_step(obs, *a)

    def opt_step(*a, **kw):
        seen["critic_steps"] += 1
        return real_opt_step(*a, **kw)

    monkeypatch.setattr(trpo, "gaussian_fisher_product", fisher)
    monkeypatch.setattr(trpo, "conjugate_gradient", cg)
    monkeypatch.setattr(trpo, "line_search", search)
    monkeypatch.setattr(trainer, "_policy_step", policy_step)
    monkeypatch.setattr(trainer.critic_opt, "step", opt_step)
    log = trainer.iterate()
    assert seen["gradient_rows"] == [1024]
    assert seen["fvp_rows"] == [fvp_rows]
    assert seen["cg_products"] == 15  # this system does not converge early: every planned iteration runs
    assert seen["products"] == 16  # and one for the step length
    assert 1 <= seen["trials"] <= 10 and log.step_fraction == pytest.approx(0.8 ** (seen["trials"] - 1))
    assert seen["critic_steps"] == 40  # 10 epochs x 4 minibatches of 256


def test_a_drift_from_the_plan_is_reported():
    plan = bench.work_plan(8, 128, 5, "equal")
    done = dict(plan["imitate"], fvp_samples=1024, cg_iterations=12)  # CG may stop early: not a drift
    rows = [{"side": "imitate", "policy_steps": 3, "work_per_iteration": done},
            {"side": "sb3-contrib", "policy_steps": 3, "work_per_iteration": dict(plan["sb3-contrib"], fvps=18)}]
    assert bench.plan_mismatches(plan, rows) == ["imitate: fvp_samples 1024 per iteration, planned 256",
                                                 "sb3-contrib: fvps 18 per iteration, more than the planned 17"]
    assert bench.plan_mismatches(plan, [dict(rows[0], work_per_iteration=plan["imitate"])]) == []


def test_bad_options_are_refused_in_one_line(capsys):
    for options in (["--sb3-vec", "threads"], ["--fvp-subsample", "0"], ["--sim-threads", "-1"]):
        with pytest.raises(SystemExit) as stop:
            bench.parse_args(options)
        assert stop.value.code == 2
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert "error:" in error and "Traceback" not in error
    with pytest.raises(ValueError, match="sb3_subsampling"):
        bench.work_plan(8, 128, 5, "half")
