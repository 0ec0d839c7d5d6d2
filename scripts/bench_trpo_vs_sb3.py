"""Benchmark: imitate's TRPO against sb3-contrib's TRPO, side by side, from scratch.

One command trains both on the same env, sample budget, architecture, hyperparameters and work
plan (``work_plan``: samples, Fisher-vector-product samples, CG iterations, line-search trials,
critic updates per iteration, each side's settings made from it), and prints two tables: the time
of each side, wall and CPU (all threads of all its processes), in all and per phase (rollout,
policy step, critic fit), with samples/s and samples per CPU second; and the work each side did
per iteration, counted by wrappers, beside the plan's (a drift from the plan is flagged above the
notes).  Then the ratios (wall and per CPU second, per phase), the mean per-step training reward
and the normalised return of each final policy at equal samples.  Target (issue #21): imitate >=
3x sb3-contrib's samples per CPU second at equal work.

Setup (once; sb3-contrib never goes into the project's .venv, it gets its own venv outside the
repository, with the same torch, mujoco and gymnasium as .venv):

    python3 -m venv /tmp/sb3-venv
    /tmp/sb3-venv/bin/pip install -q -c constraints.txt torch==2.13.0 sb3-contrib==2.9.2 mujoco==4.0.0 \\
        gymnasium==1.4.0 numpy==2.4.6 h5py rich scipy
    /tmp/sb3-venv/bin/pip install -q --no-deps -e .      # imitate itself, from the repo root

(torch must stay pinned to 2.13.0: a bare torch pulls a multi-GB CUDA build.  Check the pins
against ``.venv/bin/pip freeze``; the report lists both sides' versions.)

Run (from the repo root, with the project's own venv; about 3 minutes on 2 cores):

    .venv/bin/python scripts/bench_trpo_vs_sb3.py [--samples 20000] [--num-envs 8] [--steps-per-iter 128]
        [--chunk-iters 5] [--kl-convention nominal|matched] [--critic-warmup 0] [--eval-seconds 5]
        [--fvp-subsample 5] [--sb3-subsampling equal|own] [--sb3-vec dummy|subproc] [--sim-threads 0]
        [--eval-episodes 2] [--torch-threads 1] [--seed 0] [--json] [--workdir DIR]
        [--sb3-python /tmp/sb3-venv/bin/python]

imitate's side runs in this interpreter; sb3-contrib's in a subprocess (this same file with
``--side sb3``, run by --sb3-python) that answers one JSON line per command on stdout ("train K",
"evaluate"; the libraries' own chatter goes to a log file).  The sides never run at once (2
shared cores): training goes in chunks of --chunk-iters iterations, ABBA (imitate, sb3, sb3,
imitate, ...), so that the host's drifting load hits both alike.  A missing or broken sb3 venv
stops the script at once with the setup commands.  Both ends' plumbing is in scripts/_sidecar.py.

What is the same on both sides
- env: ``EnvConfig(clip="walk", action_space="pd_target")``, random start times, 20 s time limit.
  imitate: its batched ``Simulation`` inside ``imitate.trpo`` (via ``trpo.start``), on
  --sim-threads MuJoCo threads (0: all cores).  sb3: a ``DummyVecEnv`` (--sb3-vec dummy: the envs
  one after another in its process) or ``SubprocVecEnv`` (subproc: one worker process per env,
  what SB3's users take for more cores) of --num-envs ``imitate.make_env`` envs, each a
  1-humanoid MuJoCo batch on 1 thread: imitate's ``make_vec_env`` is a gymnasium ``VectorEnv``,
  not an SB3 ``VecEnv``, so SB3 cannot take it;
- budget: --samples env steps, in iterations of --num-envs x --steps-per-iter (imitate's
  ``steps_per_env``, SB3's ``n_steps``); both sides run the same whole number of iterations;
- policy: MLP 1024-512 ReLU (``PolicyConfig().hidden``) with a linear mean head initialised
  uniform(+-1e-3), bias 0 (imitate's), the hidden layers PyTorch's default init (SB3:
  ``ortho_init=False`` then the head re-initialised), state-independent log-std starting at -1;
  critic MLP 256-256 ReLU (``TRPOConfig().critic_hidden``), separate from the policy;
- observation normaliser: fixed, from the first reset's observations, (obs - mean) / (std + 1)
  (std floored at 1e-3), clipped to +-10, read by policy and critic (imitate's from-scratch
  rule; SB3: a features extractor holding the same statistics);
- Fisher-vector products (FVPs): imitate's on every ``fvp_stride``-th sample (--fvp-subsample,
  TRPOConfig's 5, keeping at least 256: every 4th of 1,024), its gradient and line search on all;
  sb3-contrib's ``sub_sampling_factor`` subsamples all three: --sb3-subsampling equal (default)
  sets it to imitate's stride (the same FVP samples, and fewer gradient and line-search samples
  than imitate's), own to sb3-contrib's default 1 (all samples).  --fvp-subsample 1 with equal:
  all samples everywhere on both sides.  CG from x = 0 costs imitate 15 + 1 FVPs a step, CG from
  sb3-contrib's random start 15 + 2;
- TRPO: gamma 0.95 (``TRPOConfig().gamma``), GAE lambda 0.95, advantages normalised, max KL 0.01,
  CG 15 iterations, damping 0.1, backtracking line search shrink 0.8 (at most 10 tries; a step
  only if KL within bound and the surrogate improves; but see --kl-convention below), critic:
  10 epochs of minibatches of 256, Adam lr 1e-3 (eps 1e-8 on both: SB3's default is 1e-5),
  bootstrapping from the critic where the time limit or the iteration cut an episode, not where
  it fell.  imitate's critic warm-up
  (policy steps only from iteration 3) has no SB3 counterpart: it is 0 here (--critic-warmup);
- torch threads: --torch-threads on both sides (default 1: a 2-core shared host; imitate's
  ``TRPOConfig.torch_threads`` default is 1 as well); seeds --seed on both;
- evaluation: ``imitate.evaluation.evaluate`` of each final policy, deterministic mean action,
  from phase 0, --eval-seconds, --eval-episodes, init_noise_rad 0.01.

The KL is not the same quantity: imitate's is the Gaussian policy's KL summed over the 28 action
dimensions (averaged over samples), sb3-contrib's (``stable_baselines3.common.distributions.
kl_divergence`` then ``.mean()``) is averaged over samples *and* action dimensions, 1/28 of it.
With the same numbers (--kl-convention nominal, the default: target KL 0.01, damping 0.1 on both
sides) sb3-contrib's trust region is therefore 28x wider in imitate's terms and its damping 28x
stronger relative to its Fisher: it takes larger steps.  --kl-convention matched gives sb3-contrib
target_kl 0.01/28 and cg_damping 0.1/28, which make its natural-gradient step the same as
imitate's (up to CG's random start and the KL's direction, old||new vs new||old, which agree to
second order).  The "mean KL" column shows each side's accepted KL in imitate's units (the sum
over dims).  Measured on this 2-core host, seed 0, nominal: sb3-contrib's training reward rose
0.28 -> 0.36 in 20 iterations with its own subsampling (return 0.101), 0.28 -> 0.31 with
imitate's (0.080), imitate's 0.27 -> 0.28 (0.056); earlier, matched, both stayed at 0.27 (0.059
vs 0.059): the gap was the trust region's size, not a defect.

Timing: wall and CPU time of the training calls only (imitate: ``TRPO.iterate``; sb3:
``TRPO.learn``), not model construction, checkpoints or evaluation.  CPU: the process's (all its
threads: MuJoCo's pool, torch's) plus, with --sb3-vec subproc, the workers' (/proc).  Phases:
"rollout" the collection (imitate: ``imitate.trpo._rollout``; sb3: ``collect_rollouts``),
"policy step" (imitate: ``TRPO._policy_step``; sb3: ``train`` up to its first value prediction),
"critic" (imitate: ``TRPO._fit_critic``; sb3: the rest of ``train``), "other" the remainder
(advantages, SB3's logging).  Work: FVPs, CG iterations, line-search trials and critic optimiser
steps counted by wrapping the functions that do them, on both sides.

Known differences (not all in imitate's favour) are listed at the end of the table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import _sidecar
import numpy as np

DEFAULT_SB3_PYTHON = "/tmp/sb3-venv/bin/python"
SETUP = ("python3 -m venv /tmp/sb3-venv\n"
         "  /tmp/sb3-venv/bin/pip install -q -c constraints.txt torch==2.13.0 sb3-contrib==2.9.2 mujoco==4.0.0 "
         "gymnasium==1.4.0 numpy==2.4.6 h5py rich scipy\n"
         "  /tmp/sb3-venv/bin/pip install -q --no-deps -e .   # from the repo root")
CLIP, ACTION_SPACE = "walk", "pd_target"
# the hyperparameters both libraries have (imitate's TRPOConfig defaults, checked against it in trpo_config())
MAX_KL, CG_ITERS, DAMPING, SHRINK, MAX_BACKTRACKS, LAM = 0.01, 15, 0.1, 0.8, 10, 0.95
CRITIC_EPOCHS, CRITIC_BATCH, CRITIC_LR, LOG_STD_INIT = 10, 256, 1e-3, -1.0
CPU_TARGET = 3.0  # the target: imitate >= 3x sb3-contrib's samples per CPU second, at equal work
NOTES = [
    "sb3 steps its envs in a DummyVecEnv (one Python env after another) or SubprocVecEnv (a worker process each), "
    "each a 1-humanoid MuJoCo batch on 1 thread; imitate steps all humanoids in one native batch on MuJoCo's "
    "thread pool (--sim-threads). samples/CPU s counts all threads of all processes of each side.",
    "KL: imitate's trust region and Fisher use KL(old || new), sb3-contrib's KL(new || old) (the same to second "
    "order).",
    "imitate takes gamma from TRPOConfig (0.95, DeepMimic's); sb3-contrib's default would be 0.99.",
    "sb3 collects through its RolloutBuffer (float32 copies, per-step Python callbacks) and bootstraps time-limit "
    "ends inside the reward; imitate bootstraps in its GAE. The returns they fit are the same quantity.",
    "Each training chunk is one learn() call on the sb3 side (reset_num_timesteps=False, the env not reset): "
    "its per-call setup (logger, callbacks) is counted, a few ms per chunk.",
    "From scratch, a budget of 20k samples is a short run: the normalised returns say whether training ran "
    "comparably, not which learner is better (one seed, no confidence interval).",
]


# --------------------------------------------------------------------------------------------
# shared helpers (both interpreters)


def env_config():
    from imitate.config import EnvConfig

    return EnvConfig(clip=CLIP, action_space=ACTION_SPACE)


# --------------------------------------------------------------------------------------------
# the work plan: what each side is configured to do per iteration (pure; tested without sb3)


def work_plan(num_envs: int, steps_per_iter: int, fvp_subsample: int, sb3_subsampling: str) -> dict:
    """The work of one iteration on each side, as configured, and the subsampling that gives it.

    imitate's policy step takes the gradient and runs the line search on all N = num_envs x
    steps_per_iter samples and the Fisher-vector products (FVPs) on every ``fvp_stride``-th;
    sb3-contrib's ``sub_sampling_factor`` f subsamples all three.  sb3_subsampling "equal" sets f
    to imitate's stride (the same FVP samples; sb3 then also takes its gradient and line search on
    N / f samples, less work than imitate's), "own" to sb3-contrib's default 1.  FVPs per
    iteration at most: imitate cg_iters + 1 (CG from x = 0, then the step length); sb3-contrib
    cg_max_steps + 2 (CG from a random x costs one more).  Critic updates: epochs x minibatches."""
    from imitate.trpo import fvp_stride

    if sb3_subsampling not in ("equal", "own"):
        raise ValueError(f"sb3_subsampling must be 'equal' or 'own'; found {sb3_subsampling!r}")
    n = num_envs * steps_per_iter
    stride = fvp_stride(n, fvp_subsample)
    factor = stride if sb3_subsampling == "equal" else 1
    critic_updates = CRITIC_EPOCHS * math.ceil(n / CRITIC_BATCH)
    imitate = {"samples": n, "gradient_samples": n, "fvp_samples": math.ceil(n / stride), "line_search_samples": n,
               "cg_iterations": CG_ITERS, "fvps": CG_ITERS + 1, "line_search_trials": MAX_BACKTRACKS,
               "critic_updates": critic_updates}
    sub = math.ceil(n / factor)
    sb3 = {"samples": n, "gradient_samples": sub, "fvp_samples": sub, "line_search_samples": sub,
           "cg_iterations": CG_ITERS, "fvps": CG_ITERS + 2, "line_search_trials": MAX_BACKTRACKS,
           "critic_updates": critic_updates}
    return {"imitate": imitate, "sb3-contrib": sb3, "fvp_subsample": fvp_subsample, "fvp_stride": stride,
            "sub_sampling_factor": factor, "sb3_subsampling": sb3_subsampling}


def trpo_config(args, plan: dict):
    """imitate's TRPOConfig for this benchmark; the shared hyperparameters are asserted to be
    the defaults (so a change of imitate's defaults shows up here rather than silently)."""
    from imitate.trpo import TRPOConfig

    default = TRPOConfig()
    for name, value in (("max_kl", MAX_KL), ("cg_iters", CG_ITERS), ("damping", DAMPING), ("shrink", SHRINK),
                        ("max_backtracks", MAX_BACKTRACKS), ("lam", LAM), ("critic_epochs", CRITIC_EPOCHS),
                        ("critic_batch", CRITIC_BATCH), ("critic_lr", CRITIC_LR), ("init_log_std", LOG_STD_INIT)):
        if getattr(default, name) != value:
            print(f"bench_trpo_vs_sb3: note: imitate's TRPOConfig.{name} default is now {getattr(default, name)}, "
                  f"the benchmark uses {value} on both sides", file=sys.stderr)
    return TRPOConfig(samples=args.samples, num_envs=args.num_envs, steps_per_env=args.steps_per_iter,
                      lam=LAM, max_kl=MAX_KL, cg_iters=CG_ITERS, damping=DAMPING, shrink=SHRINK,
                      max_backtracks=MAX_BACKTRACKS, critic_epochs=CRITIC_EPOCHS, critic_batch=CRITIC_BATCH,
                      critic_lr=CRITIC_LR, init_log_std=LOG_STD_INIT, critic_warmup_iters=args.critic_warmup,
                      fvp_subsample=plan["fvp_subsample"], checkpoint_every=10**9, seed=args.seed,
                      torch_threads=args.torch_threads, sim_threads=args.sim_threads)


def sb3_trpo_kwargs(args, plan: dict, act_dim: int) -> dict:
    """sb3-contrib's TRPO keyword arguments for this benchmark (all but the policy's), the plan's
    work and imitate's hyperparameters; a plain dict, so it is checked without sb3-contrib."""
    from imitate.trpo import TRPOConfig

    # sb3-contrib's KL is a mean over action dims (imitate's a sum): matched rescales its bound and damping
    scale = 1.0 / act_dim if args.kl_convention == "matched" else 1.0
    return dict(learning_rate=CRITIC_LR, n_steps=args.steps_per_iter, batch_size=CRITIC_BATCH,
                gamma=TRPOConfig().gamma, cg_max_steps=CG_ITERS, cg_damping=DAMPING * scale,
                line_search_shrinking_factor=SHRINK, line_search_max_iter=MAX_BACKTRACKS,
                n_critic_updates=CRITIC_EPOCHS, gae_lambda=LAM, normalize_advantage=True, target_kl=MAX_KL * scale,
                sub_sampling_factor=plan["sub_sampling_factor"], verbose=0, seed=args.seed, device="cpu")


def plan_of(args) -> dict:
    return work_plan(args.num_envs, args.steps_per_iter, args.fvp_subsample, args.sb3_subsampling)


# --------------------------------------------------------------------------------------------
# instrumentation (both interpreters): read-only wrappers that time phases and count work


def counted_product(product, clock: _sidecar.Clock):
    """A Fisher-vector product that tallies its calls ("fvps")."""
    def counted(*a, **kw):
        clock.tally("fvps")
        return product(*a, **kw)
    return counted


def counted_solver(solver, clock: _sidecar.Clock, extra_products: int):
    """A CG solver (matvec, b, ...) that tallies its iterations: the products it asks for, less
    `extra_products` (sb3-contrib's first, at its random start)."""
    def counted(matvec, *a, **kw):
        calls = [0]

        def inner(*va, **vkw):
            calls[0] += 1
            return matvec(*va, **vkw)
        try:
            return solver(inner, *a, **kw)
        finally:
            clock.tally("cg_iterations", calls[0] - extra_products)
    return counted


def evaluate_controller(controller, args) -> dict:
    return _sidecar.evaluate_controller(controller, env_config(), args.eval_seconds, args.eval_episodes,
                                        seed=args.seed)


def versions() -> dict:
    import gymnasium
    import mujoco
    import torch

    return {"torch": torch.__version__, "mujoco": mujoco.__version__, "gymnasium": gymnasium.__version__,
            "numpy": np.__version__}


def chunk_report(clock: _sidecar.Clock, before: dict, iterations: int, args, wall: float, cpu: float, **more) -> dict:
    """One training chunk's figures: time in all and per phase, and the work counted."""
    phases = clock.since(before)
    return {"iterations": iterations, "samples": iterations * args.num_envs * args.steps_per_iter, "seconds": wall,
            "cpu_s": cpu, "phase_s": phases["wall"], "phase_cpu_s": phases["cpu"], "work": phases["count"], **more}


# --------------------------------------------------------------------------------------------
# imitate's side (the project's venv)


class ImitateSide:
    """imitate.trpo from scratch; train(k) runs k more iterations."""

    name = "imitate"

    def __init__(self, run_dir: Path, args):
        import imitate.trpo as trpo_mod

        self.trpo_mod, self.args = trpo_mod, args
        shutil.rmtree(run_dir, ignore_errors=True)  # start() would resume an old run
        self.config = trpo_config(args, plan_of(args))
        self.trainer = trpo_mod.start(run_dir, env_config(), self.config)
        self.clock = _sidecar.Clock()

    def _instrumented(self):
        """(name, replacement) of the module's functions and the trainer's methods, wrapped."""
        mod, trainer, clock = self.trpo_mod, self.trainer, self.clock

        def fisher(policy, obs, damping, params=None):
            clock.tally("fvp_samples", len(obs))
            return counted_product(real_fisher(policy, obs, damping, params), clock)

        def opt_step(*a, **kw):
            clock.tally("critic_updates")
            return real_opt_step(*a, **kw)

        def line_search(trial, *a, **kw):
            def counted(fraction):
                clock.tally("line_search_trials")
                return trial(fraction)
            return real_line_search(counted, *a, **kw)

        def policy_step(obs, *a, **kw):
            clock.tally("gradient_samples", len(obs))
            return real_policy_step(obs, *a, **kw)

        real_fisher, real_line_search = mod.gaussian_fisher_product, mod.line_search
        real_opt_step, real_policy_step = trainer.critic_opt.step, trainer._policy_step
        return [(mod, "_rollout", clock.timed(mod._rollout, "rollout")),
                (mod, "gaussian_fisher_product", fisher), (mod, "line_search", line_search),
                (mod, "conjugate_gradient", counted_solver(mod.conjugate_gradient, clock, 0)),
                (trainer, "_policy_step", clock.timed(policy_step, "policy")),
                (trainer, "_fit_critic", clock.timed(trainer._fit_critic, "critic")),
                (trainer.critic_opt, "step", opt_step)]

    def train(self, iterations: int) -> dict:
        import torch

        torch.set_num_threads(self.args.torch_threads)  # iterate() sets it too
        wrapped = self._instrumented()
        saved = [(obj, name, getattr(obj, name)) for obj, name, _ in wrapped]
        before, logs = self.clock.snapshot(), []
        for obj, name, fn in wrapped:
            setattr(obj, name, fn)
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            for _ in range(iterations):
                logs.append(self.trainer.iterate())
        finally:
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            for obj, name, fn in saved:
                if obj is self.trainer or obj is self.trainer.critic_opt:
                    delattr(obj, name)  # the instance attribute goes; the class's method shows again
                else:
                    setattr(obj, name, fn)
        return chunk_report(self.clock, before, iterations, self.args, wall, cpu,
                            step_rewards=[e.mean_step_reward for e in logs],
                            accepted=[e.step_fraction > 0 for e in logs if not e.warmup],
                            kl=[e.kl for e in logs if not e.warmup])

    def evaluate(self) -> dict:
        if self.args.workdir:
            self.trainer.save()  # policy.pt for `imitate evaluate`, outside the timing
        policy = self.trainer.policy
        policy.eval()
        return {**evaluate_controller(lambda sim: policy.act(sim.obs), self.args), "versions": versions(),
                "policy_params": sum(p.numel() for p in policy.parameters()),
                "critic_params": sum(p.numel() for p in self.trainer.critic.parameters()),
                "samples_total": self.trainer.samples,
                "processes": f"1 (torch {self.args.torch_threads} thread(s), MuJoCo "
                             f"{self.args.sim_threads or os.cpu_count()} thread(s))"}


# --------------------------------------------------------------------------------------------
# sb3-contrib's side (run by the sb3 venv's python with --side sb3)


class SB3Side:
    """sb3-contrib's TRPO on a Dummy- or SubprocVecEnv of imitate envs; train(k) runs k more iterations."""

    def __init__(self, scratch: Path, args):
        import sb3_contrib.trpo.trpo as sb3_trpo
        import torch
        from sb3_contrib import TRPO
        from stable_baselines3.common.callbacks import BaseCallback
        from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv
        from torch import nn

        from imitate.env import make_env
        from imitate.policy import PolicyConfig
        from imitate.trpo import TRPOConfig

        self.args, self.scratch = args, scratch
        torch.set_num_threads(args.torch_threads)
        cfg = env_config()
        make = [lambda: make_env(cfg.clip, action_space=cfg.action_space) for _ in range(args.num_envs)]
        self.venv = SubprocVecEnv(make) if args.sb3_vec == "subproc" else DummyVecEnv(make)
        pids = [proc.pid for proc in self.venv.processes] if args.sb3_vec == "subproc" else []
        self.venv.seed(args.seed)
        first = self.venv.reset()  # TRPO(seed=) reseeds the same way: learn()'s first reset sees these states
        mean, std = first.mean(0), first.std(0) + 1.0  # imitate's from-scratch normaliser

        class RewardLog(BaseCallback):
            """The raw per-step rewards of each rollout (read before SB3 adds time-limit bootstraps)."""

            def __init__(self):
                super().__init__()
                self.total, self.count, self.means = 0.0, 0, []

            def _on_rollout_start(self) -> None:
                self.total, self.count = 0.0, 0

            def _on_step(self) -> bool:
                rewards = self.locals["rewards"]
                self.total += float(np.sum(rewards))
                self.count += len(rewards)
                return True

            def _on_rollout_end(self) -> None:
                self.means.append(self.total / max(self.count, 1))

        act_dim = int(np.prod(self.venv.action_space.shape))
        self.kl_scale = act_dim  # sb3's reported KL x this = imitate's units
        policy_kwargs = dict(
            net_arch=dict(pi=list(PolicyConfig().hidden), vf=list(TRPOConfig().critic_hidden)),
            activation_fn=nn.ReLU, log_std_init=LOG_STD_INIT, ortho_init=False,
            features_extractor_class=_sidecar.fixed_normaliser(),
            features_extractor_kwargs=dict(mean=mean.tolist(), std=std.tolist()), optimizer_kwargs=dict(eps=1e-8))
        self.model = TRPO("MlpPolicy", self.venv, policy_kwargs=policy_kwargs,
                          **sb3_trpo_kwargs(args, plan_of(args), act_dim))
        with torch.no_grad():  # imitate's mean head: near the middle of the action range
            nn.init.uniform_(self.model.policy.action_net.weight, -1e-3, 1e-3)
            nn.init.zeros_(self.model.policy.action_net.bias)
        self.rewards = RewardLog()
        self.accepted, self.kl, self.iterations = [], [], 0
        self.clock = clock = _sidecar.Clock(lambda: _sidecar.cpu_seconds_of(pids))
        self.pids = pids
        model, policy = self.model, self.model.policy
        real_train, real_hvp, real_dist = model.train, model.hessian_vector_product, policy.get_distribution
        real_values, real_opt_step = policy.predict_values, policy.optimizer.step
        # train() is the policy step, then the critic's fit: that starts at its first value prediction
        state = {"train_since": None, "critic_since": None, "calls": 0}

        def timed_train():
            state.update(train_since=clock.now(), critic_since=None, calls=0)
            try:
                real_train()
            finally:
                end = clock.now()
                mark = state["critic_since"] or end
                clock.add("policy", state["train_since"], mark)
                clock.add("critic", mark, end)
                state["train_since"] = None
            values = model.logger.name_to_value  # train()'s records; learn() dumps them after the next rollout
            self.accepted.append(bool(values["train/is_line_search_success"] > 0))
            self.kl.append(float(values["train/kl_divergence_loss"]) * self.kl_scale)  # imitate's units
            self.iterations += 1

        def predict_values(*a, **kw):
            if state["train_since"] is not None and state["critic_since"] is None:
                state["critic_since"] = clock.now()
            return real_values(*a, **kw)

        def get_distribution(obs):
            if state["train_since"] is not None and state["critic_since"] is None:
                state["calls"] += 1  # the policy step: the old distribution, its batch's, one per line-search trial
                if state["calls"] == 2:  # the graph the gradient and the FVPs differentiate
                    clock.tally("gradient_samples", len(obs))
                    clock.tally("fvp_samples", len(obs))
                elif state["calls"] > 2:
                    clock.tally("line_search_trials")
            return real_dist(obs)

        def opt_step(*a, **kw):
            clock.tally("critic_updates")
            return real_opt_step(*a, **kw)

        model.collect_rollouts = clock.timed(model.collect_rollouts, "rollout")
        model.train = timed_train
        model.hessian_vector_product = counted_product(real_hvp, clock)
        policy.get_distribution, policy.predict_values = get_distribution, predict_values
        policy.optimizer.step = opt_step
        sb3_trpo.conjugate_gradient_solver = counted_solver(sb3_trpo.conjugate_gradient_solver, clock, 1)

    def train(self, iterations: int) -> dict:
        import torch

        torch.set_num_threads(self.args.torch_threads)
        samples = iterations * self.args.num_envs * self.args.steps_per_iter
        n_rewards, n_updates, n_iterations = len(self.rewards.means), len(self.accepted), self.iterations
        before = self.clock.snapshot()
        wall, cpu = time.perf_counter(), time.process_time() + _sidecar.cpu_seconds_of(self.pids)
        self.model.learn(total_timesteps=samples, reset_num_timesteps=False, callback=self.rewards)
        wall, cpu = time.perf_counter() - wall, time.process_time() + _sidecar.cpu_seconds_of(self.pids) - cpu
        return chunk_report(self.clock, before, self.iterations - n_iterations, self.args, wall, cpu,
                            step_rewards=self.rewards.means[n_rewards:], accepted=self.accepted[n_updates:],
                            kl=self.kl[n_updates:])

    def evaluate(self) -> dict:
        import sb3_contrib
        import stable_baselines3

        policy = self.model.policy
        policy.set_training_mode(False)
        if self.args.workdir:
            # the instrumentation's wrappers are instance attributes that reach the envs (not picklable): left out
            self.model.save(self.scratch / "sb3_trpo.zip",
                            exclude=["collect_rollouts", "train", "hessian_vector_product"])
        actor = [p for n, p in policy.named_parameters() if "value" not in n]
        workers = f" + {len(self.pids)} SubprocVecEnv workers" if self.pids else ""
        return {**evaluate_controller(_sidecar.sb3_controller(policy), self.args),
                "versions": {**versions(), "sb3_contrib": sb3_contrib.__version__,
                             "stable_baselines3": stable_baselines3.__version__},
                "policy_params": sum(p.numel() for p in actor),
                "critic_params": sum(p.numel() for n, p in policy.named_parameters() if "value" in n),
                "target_kl": self.model.target_kl, "cg_damping": self.model.cg_damping,
                "sub_sampling_factor": self.model.sub_sampling_factor, "samples_total": int(self.model.num_timesteps),
                "processes": f"1{workers} (torch {self.args.torch_threads} thread(s), MuJoCo 1 thread per env)"}


def serve_sb3_side(args) -> int:
    """The subprocess: answer commands from stdin ("train K", "evaluate", "quit"), one JSON line
    each on stdout; everything the libraries print goes to stderr."""
    return _sidecar.serve(lambda: SB3Side(Path(args.workdir), args), ("train", "evaluate"))


class SB3Subprocess(_sidecar.Sidecar):
    """The driver's handle on the sb3 side: the same calls as ImitateSide, run by the sb3 venv's python."""

    name = "sb3-contrib"

    def __init__(self, python: str, work: Path, args):
        scratch = work / "sb3"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        cmd = [python, str(Path(__file__).resolve()), "--side", "sb3", "--workdir", str(scratch),
               *_sidecar.cli_options(args, "samples", "num_envs", "steps_per_iter", "eval_seconds", "eval_episodes",
                                     "seed", "torch_threads", "critic_warmup", "kl_convention", "fvp_subsample",
                                     "sb3_subsampling", "sb3_vec", "sim_threads")]
        super().__init__(cmd, work / "sb3-side.log", CLIP, "bench_trpo_vs_sb3: the sb3 side")

    def train(self, iterations: int) -> dict:
        return self.ask(f"train {iterations}")

    def evaluate(self) -> dict:
        return self.ask("evaluate")


# --------------------------------------------------------------------------------------------
# driver


def chunks(total: int, size: int) -> list[int]:
    return [min(size, total - i) for i in range(0, total, size)]


def run_both(args, work: Path, say) -> dict:
    iterations = math.ceil(args.samples / (args.num_envs * args.steps_per_iter))
    say(f"starting the sb3 side ({args.sb3_python}, {args.sb3_vec} vec env)")
    theirs = SB3Subprocess(args.sb3_python, work, args)
    try:
        mine = ImitateSide(work / "imitate-run", args)
        out = {side.name: {"side": side.name, "chunks": []} for side in (mine, theirs)}
        done = 0
        for c, n in enumerate(chunks(iterations, args.chunk_iters)):  # ABBA: the host's drift hits both alike
            for side in ((mine, theirs) if c % 2 == 0 else (theirs, mine)):
                say(f"{side.name}: iterations {done + 1}-{done + n} of {iterations}")
                out[side.name]["chunks"].append(side.train(n))
            done += n
        for side in (mine, theirs):
            say(f"{side.name}: evaluating the final policy")
            out[side.name]["evaluation"] = side.evaluate()
    finally:
        theirs.close()
    return out


PHASES = ("rollout", "policy", "critic")
WORK = ("gradient_samples", "fvp_samples", "fvps", "cg_iterations", "line_search_trials", "critic_updates")
AT_MOST = ("fvps", "cg_iterations", "line_search_trials")  # CG and the line search may stop early


def summarise(side: dict) -> dict:
    ch = side["chunks"]
    total = lambda key: sum(c[key] for c in ch)
    samples, seconds, cpu, iterations = total("samples"), total("seconds"), total("cpu_s"), total("iterations")
    phase = {p: sum(c["phase_s"].get(p, 0.0) for c in ch) for p in PHASES}
    phase_cpu = {p: sum(c["phase_cpu_s"].get(p, 0.0) for c in ch) for p in PHASES}
    steps = max(1, iterations - side.get("warmup_iterations", 0))  # iterations with a policy step
    work = {k: sum(c["work"].get(k, 0) for c in ch) for k in WORK}
    per_iter = {k: work[k] / (max(iterations, 1) if k == "critic_updates" else steps) for k in WORK}
    rewards = [r for c in ch for r in c["step_rewards"]]
    accepted = [a for c in ch for a in c["accepted"]]
    ev = {k: v for k, v in side["evaluation"].items() if k != "versions"}
    return {"side": side["side"], "iterations": iterations, "samples": samples, "seconds": seconds,
            "cpu_s": cpu, "samples_per_s": samples / seconds, "samples_per_cpu_s": samples / cpu,
            "phase_s": phase, "phase_cpu_s": phase_cpu,
            "other_s": seconds - sum(phase.values()), "other_cpu_s": cpu - sum(phase_cpu.values()),
            "work_per_iteration": per_iter, "policy_steps_accepted": sum(accepted), "policy_steps": len(accepted),
            "mean_kl": float(np.mean([k for c in ch for k in c["kl"] if k > 0] or [0.0])),
            "last_step_reward": rewards[-1] if rewards else float("nan"),
            "first_step_reward": rewards[0] if rewards else float("nan"), **ev}


def ratios(a: dict, b: dict) -> dict:
    """sb3-contrib's time / imitate's (so > 1: imitate faster), overall and per phase, wall and CPU."""
    out = {"samples_per_s": a["samples_per_s"] / b["samples_per_s"],
           "samples_per_cpu_s": a["samples_per_cpu_s"] / b["samples_per_cpu_s"]}
    for p in PHASES:
        out[f"{p}_wall"] = b["phase_s"][p] / max(a["phase_s"][p], 1e-12)
        out[f"{p}_cpu"] = b["phase_cpu_s"][p] / max(a["phase_cpu_s"][p], 1e-12)
    for kind, key in (("wall", "phase_s"), ("cpu", "phase_cpu_s")):
        out[f"update_{kind}"] = (b[key]["policy"] + b[key]["critic"]) / max(a[key]["policy"] + a[key]["critic"], 1e-12)
    out["return_difference"] = a["normalised_return"] - b["normalised_return"]
    out["step_reward_difference"] = a["last_step_reward"] - b["last_step_reward"]
    return out


def plan_mismatches(plan: dict, rows: list[dict]) -> list[str]:
    """Where a side's measured work per policy step differs from the plan's (CG iterations and
    FVPs and line-search trials may stop early: only more than planned is a mismatch)."""
    out = []
    for row in rows:
        planned, done = plan[row["side"]], row["work_per_iteration"]
        for key in ("gradient_samples", "fvp_samples", "critic_updates"):
            if row["policy_steps"] and abs(done[key] - planned[key]) > 1e-9:
                out.append(f"{row['side']}: {key} {done[key]:g} per iteration, planned {planned[key]}")
        for key in AT_MOST:
            if done[key] > planned[key] + 1e-9:
                out.append(f"{row['side']}: {key} {done[key]:g} per iteration, more than the planned {planned[key]}")
    return out


def print_table(report: dict) -> None:
    console = _sidecar.console(width=220)
    s, plan = report["settings"], report["plan"]
    title = (f"TRPO from scratch on '{CLIP}' ({ACTION_SPACE}): imitate vs sb3-contrib "
             f"{report['versions']['sb3-contrib'].get('sb3_contrib', '')}, {s['num_envs']} envs x "
             f"{s['steps_per_iter']} steps/iter, torch threads {s['torch_threads']}, imitate sim threads "
             f"{s['sim_threads'] or 'all'}, sb3 {s['sb3_vec']} vec env, seed {s['seed']}, KL convention "
             f"{s['kl_convention']}, FVP subsampling: imitate every {plan['fvp_stride']}th sample, sb3-contrib "
             f"sub_sampling_factor {plan['sub_sampling_factor']} ({s['sb3_subsampling']})")
    time_table = _sidecar.table(title, ("side", "iters", "samples", "train s", "CPU s", "samples/s", "samples/CPU s",
                                        "rollout s (CPU)", "policy step s (CPU)", "critic s (CPU)", "other s (CPU)",
                                        "processes"), no_wrap=True)
    for row in report["summary"]:
        w, c = row["phase_s"], row["phase_cpu_s"]
        time_table.add_row(row["side"], str(row["iterations"]), f"{row['samples']:,}", f"{row['seconds']:.1f}",
                           f"{row['cpu_s']:.1f}", f"{row['samples_per_s']:,.0f}", f"{row['samples_per_cpu_s']:,.0f}",
                           *(f"{w[p]:.1f} ({c[p]:.1f})" for p in PHASES),
                           f"{row['other_s']:.1f} ({row['other_cpu_s']:.1f})", row["processes"])
    console.print(time_table)
    work_table = _sidecar.table("Work per iteration, measured (planned)",
                                ("side", "samples", "gradient samples", "FVP samples", "FVPs", "CG iterations",
                                 "line-search trials", "critic updates", "policy steps", "mean KL",
                                 "step reward 1st→last", "normalised return"), no_wrap=True)
    for row in report["summary"]:
        done, planned = row["work_per_iteration"], plan[row["side"]]
        work_table.add_row(row["side"], f"{planned['samples']:,}",
                           *(f"{done[k]:.4g} ({planned[k]}{' max' if k in AT_MOST else ''})" for k in WORK),
                           f"{row['policy_steps_accepted']}/{row['policy_steps']}", f"{row['mean_kl']:.4f}",
                           f"{row['first_step_reward']:.3f}→{row['last_step_reward']:.3f}",
                           f"{row['normalised_return']:.4f} ± {row['normalised_return_std']:.4f}")
    console.print(work_table)
    r = report["ratio"]
    verdict = "met" if r["target_met"] else "NOT met"
    console.print(f"imitate / sb3-contrib: samples/s [bold]{r['samples_per_s']:.2f}x[/], per CPU second "
                  f"[bold]{r['samples_per_cpu_s']:.2f}x[/] (target >= {CPU_TARGET:g}x per CPU s: {verdict}).  "
                  f"Time sb3 / imitate, wall (CPU): rollout {r['rollout_wall']:.2f}x ({r['rollout_cpu']:.2f}x), "
                  f"update {r['update_wall']:.2f}x ({r['update_cpu']:.2f}x): policy step {r['policy_wall']:.2f}x "
                  f"({r['policy_cpu']:.2f}x), critic {r['critic_wall']:.2f}x ({r['critic_cpu']:.2f}x).  Normalised "
                  f"return imitate - sb3: {r['return_difference']:+.4f}; last-iteration step reward imitate - sb3: "
                  f"{r['step_reward_difference']:+.4f}.")
    va, vb = report["versions"]["imitate"], report["versions"]["sb3-contrib"]
    shared = ", ".join(f"{k} {v}" for k, v in va.items() if vb.get(k) == v)
    ev = report["sides"]["sb3-contrib"]["evaluation"]
    console.print(f"Evaluation: {s['eval_episodes']} episodes, {s['eval_seconds']} s, from phase 0, deterministic "
                  f"mean action, init_noise_rad 0.01.  Both venvs: {shared}; sb3-contrib {vb.get('sb3_contrib')}, "
                  f"stable-baselines3 {vb.get('stable_baselines3')}.  CPU: all threads of each process, and the "
                  "SubprocVecEnv workers'.  policy steps: those the line search accepted; mean KL: of the accepted "
                  f"steps, summed over action dims (imitate's units).  sb3-contrib ran with target_kl "
                  f"{ev['target_kl']:.4g}, cg_damping {ev['cg_damping']:.4g}, sub_sampling_factor "
                  f"{ev['sub_sampling_factor']} (its KL: a mean over action dims).  Not like-for-like:")
    for note in report["notes"]:
        console.print(f"  - {note}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=20_000,
                   help="env steps of training per side, rounded up to whole iterations (default 20000)")
    p.add_argument("--num-envs", type=int, default=8, help="envs collecting in parallel (default 8)")
    p.add_argument("--steps-per-iter", type=int, default=128,
                   help="steps per env per iteration: imitate's steps_per_env, SB3's n_steps (default 128)")
    p.add_argument("--chunk-iters", type=int, default=5,
                   help="iterations per side before switching to the other side (ABBA; default 5)")
    p.add_argument("--critic-warmup", type=int, default=0,
                   help="imitate's critic_warmup_iters (SB3 has none; default 0, imitate's own default is 2)")
    p.add_argument("--kl-convention", choices=["nominal", "matched"], default="nominal",
                   help="nominal (default): target KL 0.01 and damping 0.1 on both sides, so sb3-contrib's trust "
                        "region (its KL a mean over the 28 action dims) is 28x imitate's (a sum); matched: "
                        "sb3-contrib gets both divided by 28, the same step as imitate's")
    p.add_argument("--fvp-subsample", type=int, default=None,
                   help="imitate's TRPOConfig.fvp_subsample (default: its default, 5; the products then use every "
                        "min(5, N // 256)-th of the N samples); 1: all samples")
    p.add_argument("--sb3-subsampling", choices=["equal", "own"], default="equal",
                   help="equal (default): sb3-contrib's sub_sampling_factor = imitate's FVP stride (the same FVP "
                        "samples; sb3 then takes its gradient and line search on as few); own: its default 1")
    p.add_argument("--sb3-vec", choices=["dummy", "subproc"], default="dummy",
                   help="sb3-contrib's vec env: dummy (default; its envs one after another in its process) or "
                        "subproc (one worker process per env, what its users take for more cores)")
    p.add_argument("--sim-threads", type=int, default=0,
                   help="imitate's TRPOConfig.sim_threads: MuJoCo threads stepping its batch (default 0: all cores)")
    p.add_argument("--eval-seconds", type=float, default=5.0, help="evaluation horizon [s] (default 5)")
    p.add_argument("--eval-episodes", type=int, default=2, help="evaluation episodes (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--torch-threads", type=int, default=1,
                   help="torch threads on both sides (default 1: a 2-core shared host; imitate's TRPO default)")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of the table")
    p.add_argument("--sb3-python", default=DEFAULT_SB3_PYTHON,
                   help=f"python of the venv with sb3-contrib (default {DEFAULT_SB3_PYTHON})")
    p.add_argument("--workdir", default=None,
                   help="keep the runs, models and the sb3 log here (default: a temporary folder, removed at the end)")
    p.add_argument("--side", choices=["both", "sb3"], default="both", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.fvp_subsample is None:
        from imitate.settings import TRPOConfig

        args.fvp_subsample = TRPOConfig().fvp_subsample
    if min(args.samples, args.num_envs, args.steps_per_iter, args.chunk_iters, args.eval_episodes,
           args.torch_threads, args.fvp_subsample) < 1 or min(args.critic_warmup, args.sim_threads) < 0 \
            or not args.eval_seconds > 0:
        p.error("samples, num-envs, steps-per-iter, chunk-iters, eval-episodes, torch-threads and fvp-subsample "
                "must be >= 1, critic-warmup and sim-threads >= 0, eval-seconds > 0")
    if args.num_envs * args.steps_per_iter < 2:
        p.error("num-envs x steps-per-iter must be >= 2 (advantages are normalised over the batch)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.side == "sb3":
        return serve_sb3_side(args)
    _sidecar.check_python(args.sb3_python, "bench_trpo_vs_sb3", "sb3", ("sb3_contrib", "stable_baselines3", "imitate"),
                          "--sb3-python", SETUP)
    plan = plan_of(args)
    with _sidecar.work_folder(args.workdir, "bench-trpo-") as work:
        out = run_both(args, work, _sidecar.progress(args.json))
    mine, theirs = out["imitate"], out["sb3-contrib"]
    mine["warmup_iterations"] = args.critic_warmup
    a, b = summarise(mine), summarise(theirs)
    ratio = ratios(a, b)
    ratio["target_met"] = bool(ratio["samples_per_cpu_s"] >= CPU_TARGET)
    notes = list(NOTES)
    if plan["sub_sampling_factor"] > 1:
        notes.insert(0, f"sb3-contrib's sub_sampling_factor {plan['sub_sampling_factor']} subsamples its gradient and "
                        "line search as well as its FVPs; imitate takes those on all samples (more work on its side).")
    elif plan["fvp_stride"] > 1:
        notes.insert(0, f"UNEQUAL FVP WORK: imitate's products use every {plan['fvp_stride']}th sample, sb3-contrib's "
                        "all (--sb3-subsampling own: each side's default).")
    if args.kl_convention == "nominal":
        notes.insert(0, "TRUST REGION: sb3-contrib's KL is a mean over the 28 action dims, imitate's a sum: with the "
                        "same target 0.01 sb3-contrib's region is 28x wider in imitate's terms (its steps larger, its "
                        "damping 28x stronger relative to its Fisher). --kl-convention matched equalises the steps.")
    else:
        notes.insert(0, "sb3-contrib ran with target_kl and cg_damping divided by 28 (--kl-convention matched): the "
                        "same trust region and natural-gradient step as imitate's.")
    va, vb = mine["evaluation"]["versions"], theirs["evaluation"]["versions"]
    differ = [k for k in ("torch", "mujoco", "gymnasium", "numpy") if va.get(k) != vb.get(k)]
    if differ:
        notes.insert(0, "VERSIONS DIFFER between the venvs: " + ", ".join(f"{k} {va.get(k)} vs {vb.get(k)}"
                                                                          for k in differ))
    if a["samples"] != b["samples"] or a["iterations"] != b["iterations"]:
        notes.insert(0, f"UNEQUAL BUDGETS: imitate {a['samples']} samples in {a['iterations']} iterations, "
                        f"sb3 {b['samples']} in {b['iterations']}")
    notes[:0] = [f"WORK DIFFERS FROM THE PLAN: {m}" for m in plan_mismatches(plan, [a, b])]
    a["processes"], b["processes"] = mine["evaluation"]["processes"], theirs["evaluation"]["processes"]
    report = {"settings": {k: getattr(args, k) for k in ("samples", "num_envs", "steps_per_iter", "chunk_iters",
                                                         "critic_warmup", "kl_convention", "fvp_subsample",
                                                         "sb3_subsampling", "sb3_vec", "sim_threads", "eval_seconds",
                                                         "eval_episodes", "seed", "torch_threads")},
              "plan": plan, "versions": {"imitate": va, "sb3-contrib": vb}, "summary": [a, b], "ratio": ratio,
              "sides": {"imitate": mine, "sb3-contrib": theirs}, "notes": notes}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
