"""Benchmark: imitate's TRPO against sb3-contrib's TRPO, side by side, from scratch.

One command trains both on the same env, sample budget, architecture and hyperparameters, and
prints one table: env samples per second of training on each side (and the ratio), the mean
per-step training reward of the last iteration, and the normalised return of each final policy
at equal samples.  Target (the issue): imitate >= 2x sb3-contrib's samples/s.

Setup (once; sb3-contrib never goes into the project's .venv, it gets its own venv outside the
repository, with the same torch, mujoco and gymnasium as .venv):

    python3 -m venv /tmp/sb3-venv
    /tmp/sb3-venv/bin/pip install -q torch==2.13.0 sb3-contrib==2.9.2 mujoco==4.0.0 gymnasium==1.4.0 \\
        h5py rich scipy
    /tmp/sb3-venv/bin/pip install -q --no-deps -e .      # imitate itself, from the repo root

(torch must stay pinned to 2.13.0: a bare torch pulls a multi-GB CUDA build.  Check the pins
against ``.venv/bin/pip freeze``; the report lists both sides' versions.)

Run (from the repo root, with the project's own venv; about 3 minutes on 2 cores):

    .venv/bin/python scripts/bench_trpo_vs_sb3.py [--samples 20000] [--num-envs 8] [--steps-per-iter 128]
        [--chunk-iters 5] [--kl-convention nominal|matched] [--critic-warmup 0] [--eval-seconds 5]
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
  imitate: its batched ``Simulation`` inside ``imitate.trpo`` (via ``trpo.start``).  sb3:
  ``DummyVecEnv`` of --num-envs ``imitate.make_env`` envs: imitate's ``make_vec_env`` is a
  gymnasium ``VectorEnv``, not an SB3 ``VecEnv``, so SB3 cannot take it;
- budget: --samples env steps, in iterations of --num-envs x --steps-per-iter (imitate's
  ``steps_per_env``, SB3's ``n_steps``); both sides run the same whole number of iterations;
- policy: MLP 1024-512 ReLU (``PolicyConfig().hidden``) with a linear mean head initialised
  uniform(+-1e-3), bias 0 (imitate's), the hidden layers PyTorch's default init (SB3:
  ``ortho_init=False`` then the head re-initialised), state-independent log-std starting at -1;
  critic MLP 256-256 ReLU (``TRPOConfig().critic_hidden``), separate from the policy;
- observation normaliser: fixed, from the first reset's observations, (obs - mean) / (std + 1)
  (std floored at 1e-3), clipped to +-10, read by policy and critic (imitate's from-scratch
  rule; SB3: a features extractor holding the same statistics);
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
over dims).  Measured on this 2-core host, seed 0: nominal, sb3-contrib's training reward rose
0.28 -> 0.35 in 20 iterations while imitate's stayed at 0.27 (return 0.095 vs 0.059); matched,
both stayed at 0.27 (0.059 vs 0.059): the gap was the trust region's size, not a defect.

Timing: wall and the process's CPU time (all its threads) of the training calls only (imitate:
``TRPO.iterate``; sb3: ``TRPO.learn``), not model construction, checkpoints or evaluation;
"rollout" is the collection part (imitate: ``imitate.trpo._rollout``; sb3: ``collect_rollouts``),
"update" the rest (advantages, natural-gradient step, critic fit).

Known differences (not all in imitate's favour) are listed at the end of the table.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import _sidecar
import numpy as np

DEFAULT_SB3_PYTHON = "/tmp/sb3-venv/bin/python"
SETUP = ("python3 -m venv /tmp/sb3-venv\n"
         "  /tmp/sb3-venv/bin/pip install -q torch==2.13.0 sb3-contrib==2.9.2 mujoco==4.0.0 gymnasium==1.4.0 "
         "h5py rich scipy\n"
         "  /tmp/sb3-venv/bin/pip install -q --no-deps -e .   # from the repo root")
CLIP, ACTION_SPACE = "walk", "pd_target"
# the hyperparameters both libraries have (imitate's TRPOConfig defaults, checked against it in trpo_config())
MAX_KL, CG_ITERS, DAMPING, SHRINK, MAX_BACKTRACKS, LAM = 0.01, 15, 0.1, 0.8, 10, 0.95
CRITIC_EPOCHS, CRITIC_BATCH, CRITIC_LR, LOG_STD_INIT = 10, 256, 1e-3, -1.0
NOTES = [
    "sb3 steps its envs in a DummyVecEnv: one Python env after another, each a 1-humanoid MuJoCo batch on 1 "
    "thread; imitate steps all humanoids in one native batch on MuJoCo's thread pool (all cores: 2 here). "
    "samples/CPU s counts all threads of each process.",
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


def trpo_config(args):
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
                      checkpoint_every=10**9, seed=args.seed, torch_threads=args.torch_threads)


def evaluate_controller(controller, args) -> dict:
    return _sidecar.evaluate_controller(controller, env_config(), args.eval_seconds, args.eval_episodes,
                                        seed=args.seed)


def versions() -> dict:
    import gymnasium
    import mujoco
    import torch

    return {"torch": torch.__version__, "mujoco": mujoco.__version__, "gymnasium": gymnasium.__version__,
            "numpy": np.__version__}


# --------------------------------------------------------------------------------------------
# imitate's side (the project's venv)


class ImitateSide:
    """imitate.trpo from scratch; train(k) runs k more iterations."""

    name = "imitate"

    def __init__(self, run_dir: Path, args):
        import imitate.trpo as trpo_mod

        self.trpo_mod, self.args = trpo_mod, args
        shutil.rmtree(run_dir, ignore_errors=True)  # start() would resume an old run
        self.config = trpo_config(args)
        self.trainer = trpo_mod.start(run_dir, env_config(), self.config)

    def train(self, iterations: int) -> dict:
        import torch

        torch.set_num_threads(self.args.torch_threads)  # iterate() sets it too
        real_rollout = self.trpo_mod._rollout
        rollout_s = []

        def timed_rollout(*a, **kw):  # read-only instrumentation: how long the collection took
            t = time.perf_counter()
            out = real_rollout(*a, **kw)
            rollout_s.append(time.perf_counter() - t)
            return out

        logs = []
        self.trpo_mod._rollout = timed_rollout
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            for _ in range(iterations):
                logs.append(self.trainer.iterate())
        finally:
            self.trpo_mod._rollout = real_rollout
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return {"iterations": iterations, "samples": iterations * self.args.num_envs * self.args.steps_per_iter,
                "seconds": wall, "cpu_s": cpu, "rollout_s": sum(rollout_s),
                "step_rewards": [e.mean_step_reward for e in logs],
                "accepted": [e.step_fraction > 0 for e in logs if not e.warmup],
                "kl": [e.kl for e in logs if not e.warmup]}

    def evaluate(self) -> dict:
        if self.args.workdir:
            self.trainer.save()  # policy.pt for `imitate evaluate`, outside the timing
        policy = self.trainer.policy
        policy.eval()
        return {**evaluate_controller(lambda sim: policy.act(sim.obs), self.args), "versions": versions(),
                "policy_params": sum(p.numel() for p in policy.parameters()),
                "critic_params": sum(p.numel() for p in self.trainer.critic.parameters()),
                "samples_total": self.trainer.samples}


# --------------------------------------------------------------------------------------------
# sb3-contrib's side (run by the sb3 venv's python with --side sb3)


class SB3Side:
    """sb3-contrib's TRPO on a DummyVecEnv of imitate envs; train(k) runs k more iterations."""

    def __init__(self, scratch: Path, args):
        import torch
        from sb3_contrib import TRPO
        from stable_baselines3.common.callbacks import BaseCallback
        from stable_baselines3.common.vec_env import DummyVecEnv
        from torch import nn

        from imitate.env import make_env
        from imitate.policy import PolicyConfig
        from imitate.trpo import TRPOConfig

        self.args, self.scratch = args, scratch
        torch.set_num_threads(args.torch_threads)
        cfg = env_config()
        self.venv = DummyVecEnv([lambda: make_env(cfg.clip, action_space=cfg.action_space)
                                 for _ in range(args.num_envs)])
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

        defaults = TRPOConfig()
        act_dim = int(np.prod(self.venv.action_space.shape))
        # sb3-contrib's KL is a mean over action dims (imitate's a sum): matched rescales its bound and damping
        self.kl_scale = act_dim  # sb3's reported KL x this = imitate's units
        scale = 1.0 / act_dim if args.kl_convention == "matched" else 1.0
        policy_kwargs = dict(
            net_arch=dict(pi=list(PolicyConfig().hidden), vf=list(defaults.critic_hidden)), activation_fn=nn.ReLU,
            log_std_init=LOG_STD_INIT, ortho_init=False, features_extractor_class=_sidecar.fixed_normaliser(),
            features_extractor_kwargs=dict(mean=mean.tolist(), std=std.tolist()), optimizer_kwargs=dict(eps=1e-8))
        self.model = TRPO(
            "MlpPolicy", self.venv, learning_rate=CRITIC_LR, n_steps=args.steps_per_iter, batch_size=CRITIC_BATCH,
            gamma=defaults.gamma, cg_max_steps=CG_ITERS, cg_damping=DAMPING * scale,
            line_search_shrinking_factor=SHRINK, line_search_max_iter=MAX_BACKTRACKS, n_critic_updates=CRITIC_EPOCHS,
            gae_lambda=LAM, normalize_advantage=True, target_kl=MAX_KL * scale, sub_sampling_factor=1,
            policy_kwargs=policy_kwargs, verbose=0, seed=args.seed, device="cpu")
        with torch.no_grad():  # imitate's mean head: near the middle of the action range
            nn.init.uniform_(self.model.policy.action_net.weight, -1e-3, 1e-3)
            nn.init.zeros_(self.model.policy.action_net.bias)
        self.rewards = RewardLog()
        self.rollout_s, self.accepted, self.kl = [], [], []
        model = self.model
        real_collect, real_train = model.collect_rollouts, model.train

        def timed_collect(*a, **kw):  # read-only instrumentation, as on imitate's side
            t = time.perf_counter()
            out = real_collect(*a, **kw)
            self.rollout_s.append(time.perf_counter() - t)
            return out

        def logged_train():
            real_train()
            values = model.logger.name_to_value  # train()'s records; learn() dumps them after the next rollout
            self.accepted.append(bool(values["train/is_line_search_success"] > 0))
            self.kl.append(float(values["train/kl_divergence_loss"]) * self.kl_scale)  # imitate's units

        model.collect_rollouts, model.train = timed_collect, logged_train

    def train(self, iterations: int) -> dict:
        import torch

        torch.set_num_threads(self.args.torch_threads)
        samples = iterations * self.args.num_envs * self.args.steps_per_iter
        n_rollouts, n_rewards, n_updates = len(self.rollout_s), len(self.rewards.means), len(self.accepted)
        wall, cpu = time.perf_counter(), time.process_time()
        self.model.learn(total_timesteps=samples, reset_num_timesteps=False, callback=self.rewards)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return {"iterations": len(self.rollout_s) - n_rollouts, "samples": samples, "seconds": wall, "cpu_s": cpu,
                "rollout_s": sum(self.rollout_s[n_rollouts:]), "step_rewards": self.rewards.means[n_rewards:],
                "accepted": self.accepted[n_updates:], "kl": self.kl[n_updates:]}

    def evaluate(self) -> dict:
        import sb3_contrib
        import stable_baselines3

        policy = self.model.policy
        policy.set_training_mode(False)
        if self.args.workdir:
            # the timing wrappers are instance attributes that reach the envs (not picklable): left out
            self.model.save(self.scratch / "sb3_trpo.zip", exclude=["collect_rollouts", "train"])
        actor = [p for n, p in policy.named_parameters() if "value" not in n]
        return {**evaluate_controller(_sidecar.sb3_controller(policy), self.args),
                "versions": {**versions(), "sb3_contrib": sb3_contrib.__version__,
                             "stable_baselines3": stable_baselines3.__version__},
                "policy_params": sum(p.numel() for p in actor),
                "critic_params": sum(p.numel() for n, p in policy.named_parameters() if "value" in n),
                "target_kl": self.model.target_kl, "cg_damping": self.model.cg_damping,
                "samples_total": int(self.model.num_timesteps)}


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
                                     "seed", "torch_threads", "critic_warmup", "kl_convention")]
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
    say(f"starting the sb3 side ({args.sb3_python})")
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


def summarise(side: dict) -> dict:
    ch = side["chunks"]
    total = lambda key: sum(c[key] for c in ch)
    samples, seconds, cpu, rollout = total("samples"), total("seconds"), total("cpu_s"), total("rollout_s")
    rewards = [r for c in ch for r in c["step_rewards"]]
    accepted = [a for c in ch for a in c["accepted"]]
    ev = {k: v for k, v in side["evaluation"].items() if k != "versions"}
    return {"side": side["side"], "iterations": total("iterations"), "samples": samples, "seconds": seconds,
            "cpu_s": cpu, "samples_per_s": samples / seconds, "samples_per_cpu_s": samples / cpu,
            "rollout_s": rollout, "update_s": seconds - rollout, "rollout_samples_per_s": samples / rollout,
            "policy_steps_accepted": sum(accepted), "policy_steps": len(accepted),
            "mean_kl": float(np.mean([k for c in ch for k in c["kl"] if k > 0] or [0.0])),
            "last_step_reward": rewards[-1] if rewards else float("nan"),
            "first_step_reward": rewards[0] if rewards else float("nan"), **ev}


def print_table(report: dict) -> None:
    console = _sidecar.console(width=200)
    s = report["settings"]
    table = _sidecar.table(f"TRPO from scratch on '{CLIP}' ({ACTION_SPACE}): imitate vs sb3-contrib "
                           f"{report['versions']['sb3-contrib'].get('sb3_contrib', '')}, {s['num_envs']} envs x "
                           f"{s['steps_per_iter']} steps/iter, torch threads {s['torch_threads']}, seed {s['seed']}, "
                           f"KL convention {s['kl_convention']}",
                           ("side", "iters", "samples", "train s", "samples/s", "samples/CPU s", "rollout s",
                            "update s", "steps", "mean KL", "step reward 1st→last", "normalised return", "survival s"),
                           no_wrap=True)
    for row in report["summary"]:
        table.add_row(row["side"], str(row["iterations"]), f"{row['samples']:,}", f"{row['seconds']:.1f}",
                      f"{row['samples_per_s']:,.0f}", f"{row['samples_per_cpu_s']:,.0f}",
                      f"{row['rollout_s']:.1f}", f"{row['update_s']:.1f}",
                      f"{row['policy_steps_accepted']}/{row['policy_steps']}", f"{row['mean_kl']:.4f}",
                      f"{row['first_step_reward']:.3f}→{row['last_step_reward']:.3f}",
                      f"{row['normalised_return']:.4f} ± {row['normalised_return_std']:.4f}",
                      f"{row['survival_s']:.2f} ± {row['survival_s_std']:.2f}")
    console.print(table)
    r = report["ratio"]
    verdict = "met" if r["target_met"] else "NOT met"
    console.print(f"samples/s imitate / sb3-contrib: [bold]{r['samples_per_s']:.2f}x[/] (per CPU second "
                  f"{r['samples_per_cpu_s']:.2f}x; rollout only {r['rollout']:.2f}x; update time sb3 / imitate "
                  f"{r['update']:.2f}x).  Target (>= 2x samples/s): {verdict}.  Normalised return imitate - sb3: "
                  f"{r['return_difference']:+.4f}; last-iteration step reward imitate - sb3: "
                  f"{r['step_reward_difference']:+.4f}.")
    va, vb = report["versions"]["imitate"], report["versions"]["sb3-contrib"]
    shared = ", ".join(f"{k} {v}" for k, v in va.items() if vb.get(k) == v)
    console.print(f"Evaluation: {s['eval_episodes']} episodes, {s['eval_seconds']} s, from phase 0, deterministic "
                  f"mean action, init_noise_rad 0.01.  Both venvs: {shared}; sb3-contrib {vb.get('sb3_contrib')}, "
                  f"stable-baselines3 {vb.get('stable_baselines3')}.  steps: policy steps the line search accepted; "
                  "mean KL: of the accepted steps, summed over action dims (imitate's units).  sb3-contrib "
                  f"ran with target_kl {report['sides']['sb3-contrib']['evaluation']['target_kl']:.4g}, cg_damping "
                  f"{report['sides']['sb3-contrib']['evaluation']['cg_damping']:.4g} (its KL: a mean over action "
                  "dims).  Not like-for-like, to keep in mind:")
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
    if min(args.samples, args.num_envs, args.steps_per_iter, args.chunk_iters, args.eval_episodes,
           args.torch_threads) < 1 or args.critic_warmup < 0 or not args.eval_seconds > 0:
        p.error("samples, num-envs, steps-per-iter, chunk-iters, eval-episodes and torch-threads must be >= 1, "
                "critic-warmup >= 0, eval-seconds > 0")
    if args.num_envs * args.steps_per_iter < 2:
        p.error("num-envs x steps-per-iter must be >= 2 (advantages are normalised over the batch)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.side == "sb3":
        return serve_sb3_side(args)
    _sidecar.check_python(args.sb3_python, "bench_trpo_vs_sb3", "sb3", ("sb3_contrib", "stable_baselines3", "imitate"),
                          "--sb3-python", SETUP)
    with _sidecar.work_folder(args.workdir, "bench-trpo-") as work:
        out = run_both(args, work, _sidecar.progress(args.json))
    mine, theirs = out["imitate"], out["sb3-contrib"]
    a, b = summarise(mine), summarise(theirs)
    ratio = {"samples_per_s": a["samples_per_s"] / b["samples_per_s"],
             "samples_per_cpu_s": a["samples_per_cpu_s"] / b["samples_per_cpu_s"],
             "rollout": a["rollout_samples_per_s"] / b["rollout_samples_per_s"],
             "update": b["update_s"] / a["update_s"],
             "return_difference": a["normalised_return"] - b["normalised_return"],
             "step_reward_difference": a["last_step_reward"] - b["last_step_reward"]}
    ratio["target_met"] = bool(ratio["samples_per_s"] >= 2.0)
    notes = list(NOTES)
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
    report = {"settings": {k: getattr(args, k) for k in ("samples", "num_envs", "steps_per_iter", "chunk_iters",
                                                         "critic_warmup", "kl_convention", "eval_seconds",
                                                         "eval_episodes", "seed", "torch_threads")},
              "versions": {"imitate": va, "sb3-contrib": vb}, "summary": [a, b], "ratio": ratio,
              "sides": {"imitate": mine, "sb3-contrib": theirs}, "notes": notes}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
