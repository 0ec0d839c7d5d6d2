"""Benchmark: imitate's DAgger against the `imitation` library's SimpleDAggerTrainer, at equal work.

One command runs both sides on the same env, expert, start data, policy architecture and planned
work, and prints the work each side did beside its time: samples collected, Adam steps, processes
and threads, each round split into collection, labelling, training and evaluation, as wall-clock
and CPU seconds (all processes, SubprocVecEnv workers included).  Target (issue #21): an imitate
DAgger round >= 5x faster than imitation's at equal work, per CPU second, at equal or better return.

Setup (once; `imitation` 1.0.1 pins gymnasium 0.29.1 and stable-baselines3 2.2.1, so it gets
its own venv, outside the repository; never install it into .venv):

    python3 -m venv /tmp/imitation-venv
    /tmp/imitation-venv/bin/pip install -c constraints.txt torch==2.13.0 imitation==1.0.1 mujoco h5py rich scipy
    /tmp/imitation-venv/bin/pip install --no-deps -e .      # imitate itself, from the repo root

(torch must stay pinned to 2.13.0: a bare torch pulls a multi-GB CUDA build.)

Run (from the repo root, with the project's own venv):

    .venv/bin/python scripts/bench_dagger_vs_imitation.py [--rounds 3] [--samples-per-round 1200]
        [--epochs 30] [--epoch-samples 512] [--num-envs 8] [--imitation-vec subproc|dummy|batched]
        [--imitation-fused-adam 0|1] [--imitate-sim-threads 0] [--torch-threads 1] [--json] [--workdir DIR]
        [--imitation-python /tmp/imitation-venv/bin/python]

The script runs imitate's side in this interpreter and the imitation side in a subprocess (this
same file with ``--side imitation``, run by --imitation-python), which answers one JSON line per
command on stdout ("round0 STEPS", "round K", "evaluate"; the libraries' own chatter goes to a
log file).  The sides never run at once: round 0 is imitate's then imitation's, DAgger rounds
alternate ABBA, so that the host's drifting load hits both alike.  Both ends' plumbing is in
scripts/_sidecar.py.

The work plan (`work_plan`, computed by both processes from the same options)
- Adam steps: every DAgger round is --epochs x (--epoch-samples / batch 256) Adam steps of full
  256-sample minibatches on both sides.  imitate: ``SFTConfig(epochs, epoch_samples,
  patience=epochs)`` (early stopping off, so it runs every planned epoch; --epoch-samples must be
  a multiple of 256, so no epoch ends in a partial batch).  imitation: ``BC.train(n_batches=...)``
  through ``SimpleDAggerTrainer.train(bc_train_kwargs=...)`` (its loader drops partial batches).
  Round 0 too: imitate's SFT (100 epochs, patience 15) runs first, and imitation's BC then gets as
  many Adam steps as imitate's took.  Both sides count their optimiser's steps (a global
  optimizer-step hook) and the script stops if a side's count differs from the plan.
- samples: imitate collects exactly --samples-per-round (--num-envs envs x samples/num_envs steps);
  imitation's collector finishes whole episodes past ``rollout_round_min_timesteps`` and keeps
  those other envs finish meanwhile, so it collects more (samples column).  The equal-work
  figures scale imitation's collection and labelling by imitate's samples / its own (both are
  linear in samples); training is the same number of steps however many samples there are.
  imitate holds every 10th episode out for validation (the store's split; one forward pass over
  it per epoch, counted in its training time), so of the round's samples it trains on about 90%,
  imitation on all (the "train samples" column; an advantage to imitation's return, none to its
  cost);
- evaluation: imitate's round ends with its 1-episode evaluation (run_dagger's), imitation's with
  none: the equal-work figures leave it out; the "as run" ones keep it.

What is the same on both sides
- env: ``EnvConfig(clip="walk", action_space="pd_target")`` (imitate's ``make_env`` on the
  imitation side: it imports under gymnasium 0.29), random start times while collecting;
- expert: ``PDExpert(load_clip("walk"), "pd_target")``, a callable on the simulator state
  (qpos, qvel) and the clip time.  imitation wants an expert *policy on observations*, and the
  observation does not carry the exact clip time, so the imitation side wraps the PD expert in an
  SB3 ``BasePolicy`` whose ``_predict`` reads every sub-env's state through
  ``venv.env_method("sim_state")`` (a gymnasium wrapper's method, answered in the worker
  processes of a SubprocVecEnv, in-process in a DummyVecEnv), and checks it against the
  observations it was handed;
- vec env: imitation's at its users' best (--imitation-vec subproc, default: one process per env
  on all cores; dummy: all envs in its process, one after another); imitate's batched native env
  (all humanoids in one ``mujoco.batch`` step, --imitate-sim-threads threads, 0: all cores).
  --imitation-vec batched gives imitation that same batched env through an SB3 VecEnv adapter
  (`batched_vec_env`): the share of the lead that is the env, which any library could use;
- start: one mocap store, ``build_mocap_store(..., BuildConfig(offsets=8, copies=8))``, copied so
  that each side starts from the same file.  imitation's round 0 is BC on the store's train-split
  (obs, expert action) pairs, passed as ``expert_trajs``, so every later round trains on mocap +
  all DAgger data, as imitate's does;
- DAgger rounds: --rounds rounds, beta = 0.5^(k-1) for round k = 1, 2, ...
  (``ExponentialBetaSchedule(0.5)``), mixing per env and step;
- training: policy MLP 1024-512 ReLU, linear head, fixed observation normaliser from the store's
  statistics (std floored at 1e-3, clipped to +-10), Adam lr 1e-3, batch 256, --torch-threads
  torch threads on both sides; imitation gets an SB3 ``ActorCriticPolicy`` with
  ``net_arch=dict(pi=[1024, 512], vf=[])`` and a features extractor holding that normaliser,
  log-std initialised to -1 as imitate's; each round warm-starts from the last;
- evaluation of the final policies (not timed): ``imitate.evaluation.evaluate`` (deterministic
  mean action), from phase 0, --eval-horizon seconds, --eval-episodes episodes, init_noise_rad 0.01.

Timing: wall (``perf_counter``) and CPU seconds (``process_time`` of the side's process, all its
threads, plus the SubprocVecEnv workers' user+system time from /proc, charged to collection).
imitate: each round is one ``run_dagger`` call on the same run folder with ``rounds=k`` (it
resumes), from the call (round 1: from round 0's ``on_round``) to round k's ``on_round``, split by
its ``on_progress`` messages: collection (simulation, learner, HDF5 append), labelling (the
expert's calls, timed by a wrapper), training (``fit``), evaluation, other (loading the training
arrays, checkpoint, state.json, resuming).  imitation: each ``SimpleDAggerTrainer.train`` call
runs exactly one round: labelling (the expert's ``_predict``), training (``BC.train``), other
(loading its npz demos), collection (the rest: stepping the envs, the learner, npz writes).
Round 0 is timed but not in the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import _sidecar
import numpy as np

DEFAULT_IMITATION_PYTHON = "/tmp/imitation-venv/bin/python"
SETUP = ("python3 -m venv /tmp/imitation-venv\n"
         "  /tmp/imitation-venv/bin/pip install -c constraints.txt torch==2.13.0 imitation==1.0.1 mujoco h5py rich "
         "scipy\n"
         "  /tmp/imitation-venv/bin/pip install --no-deps -e .   # from the repo root")
CLIP, ACTION_SPACE = "walk", "pd_target"
SFT_EPOCHS, SFT_PATIENCE = 100, 15  # imitate's pipeline settings for round 0
BATCH_SIZE, LR, LOG_STD_INIT = 256, 1e-3, -1.0
STAGES = ("collect", "label", "train", "eval", "other")
NOTES = [
    "imitation's BC minimises the Gaussian NLL (+1e-3 entropy bonus) of the expert action; imitate's SFT the MSE "
    "of the mean (both one forward and backward pass of the same MLP per step).",
    "imitate's SFT steps torch's fused Adam (one kernel for all parameters: 16% less CPU per step here); "
    "imitation's BC its default Adam unless --imitation-fused-adam 1.",
    "imitate validates on its held-out split after every epoch (counted in its training time); imitation has no "
    "validation.",
    "imitate's round ends with a 1-episode evaluation and a checkpoint; imitation's logger writes CSV only and its "
    "per-round logging rollouts are off.",
]


# --------------------------------------------------------------------------------------------
# the work plan (both interpreters)


@dataclass(frozen=True)
class WorkPlan:
    """What each side does in a DAgger round.

    num_envs x steps_per_env = samples_per_round env steps collected by imitate (imitation: at
    least that many, in whole episodes); adam_steps optimiser steps on minibatches of batch_size
    samples, which imitate takes as `epochs` epochs of `epoch_samples` samples each (a multiple of
    batch_size) and imitation as ``BC.train(n_batches=adam_steps)``."""

    num_envs: int
    steps_per_env: int
    samples_per_round: int
    batch_size: int
    epochs: int
    epoch_samples: int
    adam_steps: int


def work_plan(samples_per_round: int, num_envs: int, epochs: int, epoch_samples: int,
              batch_size: int = BATCH_SIZE) -> WorkPlan:
    """The plan for these options; ValueError (one line) where they cannot give equal work."""
    if min(samples_per_round, num_envs, epochs, epoch_samples, batch_size) < 1:
        raise ValueError("samples per round, envs, epochs, epoch samples and batch size must be >= 1")
    if samples_per_round % num_envs:
        raise ValueError(f"samples per round ({samples_per_round}) must be a multiple of the envs ({num_envs}): "
                         "imitate collects envs x steps")
    if epoch_samples % batch_size:
        raise ValueError(f"epoch samples ({epoch_samples}) must be a multiple of the batch size ({batch_size}): "
                         "imitation's loader drops partial batches, imitate's does not")
    return WorkPlan(num_envs=num_envs, steps_per_env=samples_per_round // num_envs,
                    samples_per_round=samples_per_round, batch_size=batch_size, epochs=epochs,
                    epoch_samples=epoch_samples, adam_steps=epochs * (epoch_samples // batch_size))


def imitate_retrain_config(plan: WorkPlan, threads: int):
    """imitate's SFTConfig for a DAgger round of the plan: every planned epoch (no early stop)."""
    from imitate.sft import SFTConfig

    return SFTConfig(epochs=plan.epochs, patience=plan.epochs, batch_size=plan.batch_size, lr=LR, threads=threads,
                     epoch_samples=plan.epoch_samples)


def imitation_bc_train_kwargs(plan: WorkPlan, adam_steps: int | None = None) -> dict:
    """``BC.train``'s keyword arguments for a round of the plan (or for `adam_steps` steps)."""
    return dict(n_batches=plan.adam_steps if adam_steps is None else adam_steps, log_rollouts_venv=None,
                progress_bar=False)


@contextmanager
def counting_optimiser_steps():
    """Yields a one-item list: the number of optimiser steps (any torch optimiser) taken inside."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    count = [0]
    handle = register_optimizer_step_post_hook(lambda *_: count.__setitem__(0, count[0] + 1))
    try:
        yield count
    finally:
        handle.remove()


# --------------------------------------------------------------------------------------------
# shared helpers (both interpreters)


def env_config():
    from imitate.config import EnvConfig

    return EnvConfig(clip=CLIP, action_space=ACTION_SPACE)


def evaluate_controller(controller, args) -> dict:
    return _sidecar.evaluate_controller(controller, env_config(), args.eval_horizon, args.eval_episodes)


def mocap_trajectories(store) -> list[tuple[np.ndarray, np.ndarray]]:
    """The store's train-split episodes as (obs (T, D), expert_actions (T, A)) pairs, in the
    order DemoStore.load concatenates them."""
    lengths = [e["length"] for e in store.episode_index() if e["split"] == "train"]
    data = store.load(("obs", "expert_actions"), split="train")
    bounds = np.cumsum([0, *lengths])
    return [(data["obs"][a:b], data["expert_actions"][a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


# --------------------------------------------------------------------------------------------
# imitate's side (the project's venv)


class TimedExpert:
    """An expert (label(sim) and provenance()) whose labelling time goes to a _sidecar.Clock."""

    def __init__(self, expert, watch: _sidecar.Clock):
        self.expert, self.watch = expert, watch

    def label(self, sim) -> np.ndarray:
        with self.watch("label", extra=False):
            return self.expert.label(sim)

    def provenance(self) -> dict:
        return self.expert.provenance()


class ImitateSide:
    """imitate's DAgger, one round per call: run_dagger resumes its run folder each time."""

    name = "imitate"

    def __init__(self, store_path: Path, run_dir: Path, args):
        import torch

        from imitate.dagger import DAggerConfig
        from imitate.sft import SFTConfig

        self.store_path, self.run_dir, self.args = store_path, run_dir, args
        self.plan = work_plan(args.samples_per_round, args.num_envs, args.epochs, args.epoch_samples)
        torch.set_num_threads(args.torch_threads or os.cpu_count() or 1)  # fit() sets it too, for its rounds
        self.config = DAggerConfig(
            rounds=1, num_envs=self.plan.num_envs, steps_per_env=self.plan.steps_per_env,
            beta="exponential:0.5", mixing="step", eval_episodes=1, eval_horizon_s=args.eval_horizon,
            sft=SFTConfig(epochs=SFT_EPOCHS, patience=SFT_PATIENCE, batch_size=BATCH_SIZE, lr=LR,
                          threads=args.torch_threads),
            retrain=imitate_retrain_config(self.plan, args.torch_threads), seed=args.seed)
        self.init_checkpoint = run_dir.parent / "imitate-round0.pt"

    def work(self) -> dict:
        threads = self.args.imitate_sim_threads or os.cpu_count() or 1
        return {"vec_env": f"batched ({threads} sim threads)", "processes": 1, "sim_threads": threads,
                "torch_threads": self.args.torch_threads or os.cpu_count() or 1}

    def round0(self) -> dict:
        """run_dagger's own round 0 (sft_on_store with config.sft), done by hand so that it can be
        timed apart; run_dagger then starts from its checkpoint (init_checkpoint)."""
        from imitate.policy import save_checkpoint
        from imitate.sft import sft_on_store
        from imitate.store import DemoStore

        store = DemoStore(self.store_path)
        t = time.perf_counter()
        with counting_optimiser_steps() as steps:
            policy, sft = sft_on_store(store, self.config.sft)
        save_checkpoint(self.init_checkpoint, policy, store.env_config, round=0)
        return {"seconds": time.perf_counter() - t, "epochs": sft.epochs_run, "adam_steps": steps[0],
                "train_samples": sft.train_samples}

    def round(self, k: int) -> dict:
        import imitate.sft as sft_mod
        from imitate.dagger import run_dagger
        from imitate.experts.pd import PDExpert
        from imitate.motion import load_clip
        from imitate.store import DemoStore

        watch = _sidecar.Clock(phases=STAGES)
        marks, ends, epochs = {}, {}, []
        real_fit = sft_mod.fit

        def timed_fit(*a, **kw):  # read-only instrumentation: the fit's time and epochs
            with watch("train"):
                result = real_fit(*a, **kw)
            epochs.append(result.epochs_run)
            return result

        def on_round(result):
            ends[result.round] = watch.now()

        def on_progress(message):
            if message.startswith(f"round {k}:"):
                marks.setdefault(message.split(":")[1].split()[0], watch.now())

        expert = TimedExpert(PDExpert(load_clip(CLIP), ACTION_SPACE), watch)
        sft_mod.fit = timed_fit
        start = watch.now()
        try:
            with counting_optimiser_steps() as steps:
                results = run_dagger(self.run_dir, self.store_path, replace(self.config, rounds=k),
                                     init_checkpoint=self.init_checkpoint, expert=expert, on_round=on_round,
                                     on_progress=on_progress, sim_threads=self.args.imitate_sim_threads)
        finally:
            sft_mod.fit = real_fit
        # round 1's call also finishes round 0 (its checkpoint and evaluation): time from there
        begin, end = ends.get(0, start), ends[k]
        result = results[k]
        watch.add("collect", marks["collecting"], marks["retraining"])
        for kind in ("wall", "cpu"):  # the expert's calls happen inside the collection
            getattr(watch, kind)["collect"] -= getattr(watch, kind)["label"]
        watch.add("eval", marks["evaluating"], end)
        self.final_checkpoint = self.run_dir / result.checkpoint  # a name in the run folder (or a path)
        index = DemoStore(self.store_path).episode_index()
        newest = max(e["round"] for e in index)  # the round just collected
        train_samples = sum(e["length"] for e in index if e["round"] == newest and e["split"] == "train")
        return {"round": k, "beta": result.beta, "samples": result.new_steps, "train_samples": train_samples,
                "adam_steps": steps[0], "epochs": epochs[0],
                **watch.split((end[0] - begin[0], end[1] - begin[1]), rest="other")}

    def evaluate(self) -> dict:
        from imitate.policy import load_checkpoint

        policy, _, _ = load_checkpoint(self.final_checkpoint, env_config())
        return evaluate_controller(lambda sim: policy.act(sim.obs), self.args)


def expert_reference(args) -> dict:
    from imitate.evaluation import expert_controller
    from imitate.experts.pd import PDExpert
    from imitate.motion import load_clip

    return evaluate_controller(expert_controller(PDExpert(load_clip(CLIP), ACTION_SPACE)), args)


# --------------------------------------------------------------------------------------------
# the imitation library's side (run by the imitation venv's python with --side imitation)


def state_reading_env_factory():
    """A function making imitate's env wrapped so that a VecEnv's ``env_method("sim_state")``
    returns its simulator state: (obs (1, D), qpos (1, nq), qvel (1, nv), clip time (1,)), copies.
    Built on call: the wrapper subclasses gymnasium's, imported only in the side's venv."""
    import gymnasium

    import imitate

    class StateReading(gymnasium.Wrapper):
        def sim_state(self):
            sim = self.env.unwrapped.sim
            return sim.obs.copy(), sim.qpos.copy(), sim.qvel.copy(), sim.ref_time_s.copy()

    return lambda: StateReading(imitate.make_env(CLIP, action_space=ACTION_SPACE))


def batched_vec_env(num_envs: int):
    """imitate's batched env (all humanoids in one native step, on all cores) as an SB3 VecEnv:
    the adapter any library's users could write, so that imitation collects on the same
    simulation as imitate (the --imitation-vec batched figure).  SB3's conventions: auto-reset
    with the last observation in infos[i]["terminal_observation"], done = terminated or
    truncated; ``env_method("sim_state")`` answers as the wrapped single envs do.  Built on
    call: only the side's venv has stable-baselines3."""
    from stable_baselines3.common.vec_env import VecEnv

    import imitate

    class BatchedVecEnv(VecEnv):
        def __init__(self):
            self.env = imitate.make_vec_env(CLIP, num_envs, action_space=ACTION_SPACE)
            super().__init__(num_envs, self.env.single_observation_space, self.env.single_action_space)
            self._seed, self._actions = None, None

        def seed(self, seed=None):
            self._seed = seed
            return [seed] * num_envs

        def reset(self):
            obs, _ = self.env.reset(seed=self._seed)
            self._seed = None  # seeded once, as SB3's envs are
            return obs

        def step_async(self, actions):
            self._actions = actions

        def step_wait(self):
            obs, reward, terminated, truncated, info = self.env.step(self._actions)
            done = terminated | truncated
            infos = [{} for _ in range(num_envs)]
            for i in np.flatnonzero(done):
                infos[i] = {"terminal_observation": info["final_obs"][i],
                            "TimeLimit.truncated": bool(truncated[i] and not terminated[i])}
            return obs, reward.astype(np.float32), done, infos

        def close(self):
            pass

        def get_attr(self, attr_name, indices=None):
            if attr_name == "render_mode":  # VecEnv's constructor asks
                return [None] * num_envs
            raise NotImplementedError(f"BatchedVecEnv: no per-env attribute {attr_name!r}")

        def set_attr(self, attr_name, value, indices=None):
            raise NotImplementedError("BatchedVecEnv: no per-env attributes")

        def env_method(self, method_name, *args, indices=None, **kwargs):
            if method_name != "sim_state" or indices is not None:
                raise NotImplementedError(f"BatchedVecEnv: env_method({method_name!r}) on all envs only")
            sim = self.env.sim
            return [(sim.obs[i:i + 1].copy(), sim.qpos[i:i + 1].copy(), sim.qvel[i:i + 1].copy(),
                     sim.ref_time_s[i:i + 1].copy()) for i in range(num_envs)]

        def env_is_wrapped(self, wrapper_class, indices=None):
            return [False] * num_envs

    return BatchedVecEnv()


class ImitationLibrarySide:
    """imitation's BC + SimpleDAggerTrainer on imitate's env and PD expert, one round per call."""

    def __init__(self, store_path: Path, scratch: Path, args):
        import torch
        from imitation.algorithms import bc
        from imitation.algorithms.dagger import ExponentialBetaSchedule, SimpleDAggerTrainer
        from imitation.data import types
        from imitation.util import logger as imit_logger
        from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
        from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv
        from torch import nn

        from imitate.experts.pd import PDExpert
        from imitate.motion import load_clip
        from imitate.store import DemoStore

        self.args = args
        self.plan = work_plan(args.samples_per_round, args.num_envs, args.epochs, args.epoch_samples)
        torch.manual_seed(args.seed)
        torch.set_num_threads(args.torch_threads or os.cpu_count() or 1)  # as imitate's SFTConfig.threads
        rng = np.random.default_rng(args.seed)
        store = DemoStore(store_path)
        stats = store.normalisation("obs")
        if args.imitation_vec == "batched":
            self.venv = venv = batched_vec_env(args.num_envs)
        else:
            vec = SubprocVecEnv if args.imitation_vec == "subproc" else DummyVecEnv
            self.venv = venv = vec([state_reading_env_factory()] * args.num_envs)
        venv.seed(args.seed)
        self.worker_pids = [proc.pid for proc in getattr(venv, "processes", [])]
        expert = PDExpert(load_clip(CLIP), ACTION_SPACE)
        self.watch = watch = _sidecar.Clock(lambda: _sidecar.cpu_seconds_of(self.worker_pids), STAGES)

        class SimStateExpert(BasePolicy):
            """The PD expert as an SB3 policy.  It reads every sub-env's simulator state and clip
            time (the obs lacks the exact clip time) with env_method, and checks that the
            observations it was asked about are those envs' current ones."""

            def __init__(self):
                super().__init__(venv.observation_space, venv.action_space)

            def forward(self, *a, **kw):
                raise NotImplementedError

            def _predict(self, observation, deterministic: bool = False):
                with watch("label", extra=False):
                    obs, qpos, qvel, t = (np.concatenate(part) for part in zip(*venv.env_method("sim_state"),
                                                                               strict=True))
                    if len(observation) != len(obs) or not np.allclose(observation.cpu().numpy(), obs, atol=1e-5):
                        raise RuntimeError("expert: asked about observations that are not the envs' current ones")
                    return torch.as_tensor(expert(qpos, qvel, t), dtype=torch.float32)

        policy = ActorCriticPolicy(venv.observation_space, venv.action_space, lr_schedule=lambda _: LR,
                                   net_arch=dict(pi=[1024, 512], vf=[]), activation_fn=nn.ReLU,
                                   log_std_init=LOG_STD_INIT, features_extractor_class=_sidecar.fixed_normaliser(),
                                   features_extractor_kwargs=dict(mean=stats["mean"], std=stats["std"]))
        log = imit_logger.configure(folder=str(scratch / "log"), format_strs=["csv"])
        self.bc_trainer = bc.BC(observation_space=venv.observation_space, action_space=venv.action_space, rng=rng,
                                policy=policy, batch_size=self.plan.batch_size,
                                optimizer_kwargs=dict(lr=LR, fused=True) if args.imitation_fused_adam else dict(lr=LR),
                                device="cpu", custom_logger=log)
        self.trajs = [types.Trajectory(obs=np.concatenate([o, o[-1:]]), acts=a.astype(np.float32), infos=None,
                                       terminal=True) for o, a in mocap_trajectories(store)]
        self.trainer = SimpleDAggerTrainer(venv=venv, scratch_dir=scratch / "dagger", expert_policy=SimStateExpert(),
                                           rng=rng, expert_trajs=self.trajs,
                                           beta_schedule=ExponentialBetaSchedule(0.5), bc_trainer=self.bc_trainer,
                                           custom_logger=log)
        self.seen = sum(len(t) for t in self.trajs)

    def work(self) -> dict:
        n, cores = self.args.num_envs, os.cpu_count() or 1
        vec_env = {"subproc": f"SubprocVecEnv ({n} envs)", "dummy": f"DummyVecEnv ({n} envs)",
                   "batched": f"imitate's batched ({cores} sim threads), adapted"}[self.args.imitation_vec]
        return {"vec_env": vec_env, "processes": 1 + len(self.worker_pids),
                "sim_threads": cores if self.args.imitation_vec == "batched" else 1,
                "torch_threads": self.args.torch_threads or cores}

    def round0(self, adam_steps: int) -> dict:
        """BC on the store's train-split mocap pairs for `adam_steps` steps (imitate's round 0 is
        its SFT on them; this many steps is what it took)."""
        from imitation.data import rollout

        t = time.perf_counter()
        self.bc_trainer.set_demonstrations(rollout.flatten_trajectories(self.trajs))
        with counting_optimiser_steps() as steps:
            self.bc_trainer.train(**imitation_bc_train_kwargs(self.plan, adam_steps))
        seconds = time.perf_counter() - t

        def timed(name, fn):  # from now on, time the parts of each round
            def wrapper(*a, **kw):
                with self.watch(name, extra=False):  # as before: this process only
                    return fn(*a, **kw)
            return wrapper

        self.bc_trainer.train = timed("train", self.bc_trainer.train)
        self.trainer._try_load_demos = timed("other", self.trainer._try_load_demos)
        return {"seconds": seconds, "adam_steps": steps[0], "train_samples": self.seen, "work": self.work()}

    def round(self, k: int) -> dict:
        """One SimpleDAggerTrainer round: train() stops after the round whose samples reach
        total_timesteps."""
        n = self.plan.samples_per_round
        beta = float(self.trainer.beta_schedule(self.trainer.round_num))
        watch = self.watch
        watch.wall, watch.cpu = dict.fromkeys(STAGES, 0.0), dict.fromkeys(STAGES, 0.0)
        begin = watch.now()
        with counting_optimiser_steps() as steps:
            self.trainer.train(total_timesteps=n, rollout_round_min_timesteps=n, rollout_round_min_episodes=1,
                               bc_train_kwargs=imitation_bc_train_kwargs(self.plan))
        end = watch.now()
        total = sum(len(tr) for tr in self.trainer._all_demos)  # everything it trains on now
        samples, self.seen = total - self.seen, total
        return {"round": k, "beta": beta, "samples": samples, "train_samples": samples, "adam_steps": steps[0],
                "epochs": None, **watch.split((end[0] - begin[0], end[1] - begin[1]), rest="collect")}

    def evaluate(self) -> dict:
        import imitation
        import stable_baselines3

        final = self.trainer.policy
        final.set_training_mode(False)
        out = {**evaluate_controller(_sidecar.sb3_controller(final), self.args),
               "versions": {"imitation": imitation.__version__, "stable_baselines3": stable_baselines3.__version__}}
        self.venv.close()
        return out


def serve_imitation_side(args) -> int:
    """The subprocess: answer commands from stdin ("round0 STEPS", "round K", "evaluate", "quit"),
    one JSON line each on stdout; everything the libraries print goes to stderr."""
    return _sidecar.serve(lambda: ImitationLibrarySide(Path(args.store), Path(args.workdir), args),
                          ("round0", "round", "evaluate"))


class ImitationSubprocess(_sidecar.Sidecar):
    """The driver's handle on the imitation side: the same calls as ImitateSide, run by the
    imitation venv's python."""

    name = "imitation"

    def __init__(self, python: str, store_path: Path, work: Path, args):
        scratch = work / "imitation"
        scratch.mkdir(parents=True, exist_ok=True)
        cmd = [python, str(Path(__file__).resolve()), "--side", "imitation", "--store", str(store_path),
               "--workdir", str(scratch), *_sidecar.cli_options(args, "samples_per_round", "epochs", "epoch_samples",
                                                                "num_envs", "imitation_vec", "imitation_fused_adam",
                                                                "eval_horizon",
                                                                "eval_episodes", "seed", "torch_threads")]
        super().__init__(cmd, work / "imitation-side.log", CLIP, "bench_dagger_vs_imitation: the imitation side")

    def round0(self, adam_steps: int) -> dict:
        return self.ask(f"round0 {adam_steps}")

    def round(self, k: int) -> dict:
        return self.ask(f"round {k}")

    def evaluate(self) -> dict:
        return self.ask("evaluate")


# --------------------------------------------------------------------------------------------
# driver


def equal_work(r: dict, samples: int, kind: str, stages=("collect", "label", "train", "other")) -> float:
    """A round's seconds (kind "wall" or "cpu") in these stages at the plan's work: collection and
    labelling scaled to `samples` collected (imitate's count), evaluation left out (imitation does
    none)."""
    scale = samples / r["samples"]
    return sum(r[kind][stage] * (scale if stage in ("collect", "label") else 1.0) for stage in stages)


def summarise(side: dict, samples: int) -> dict:
    """Medians over a side's DAgger rounds (round 0 left out)."""
    rounds, med = side["rounds"], statistics.median
    out = {"side": side["side"], **side["work"], "rounds": len(rounds),
           "samples": med(r["samples"] for r in rounds), "train_samples": med(r["train_samples"] for r in rounds),
           "adam_steps": med(r["adam_steps"] for r in rounds)}
    for kind in ("wall", "cpu"):
        out[kind] = {stage: med(r[kind][stage] for r in rounds) for stage in STAGES}
        out[f"{kind}_round"] = med(sum(r[kind].values()) for r in rounds)
        out[f"{kind}_equal_work"] = med(equal_work(r, samples, kind) for r in rounds)
        out[f"{kind}_rest_equal_work"] = med(equal_work(r, samples, kind, ("label", "train", "other")) for r in rounds)
        out[f"{kind}_per_1k_collect"] = med(1000 * (r[kind]["collect"] + r[kind]["label"]) / r["samples"]
                                            for r in rounds)
        out[f"{kind}_per_step_train"] = med(r[kind]["train"] / r["adam_steps"] for r in rounds)
    return out | {k: v for k, v in side["evaluation"].items() if k != "versions"}


def check_work(out: dict, plan: WorkPlan) -> None:
    """Stop (one line) if a side took other than the planned Adam steps in a DAgger round, or
    round 0's steps differ between the sides."""
    for name in ("imitate", "imitation"):
        for r in out[name]["rounds"]:
            if r["adam_steps"] != plan.adam_steps:
                sys.exit(f"bench_dagger_vs_imitation: {name} took {r['adam_steps']} Adam steps in round "
                         f"{r['round']}, not the planned {plan.adam_steps}: the comparison is not at equal work")
    if out["imitate"]["round0"]["adam_steps"] != out["imitation"]["round0"]["adam_steps"]:
        sys.exit("bench_dagger_vs_imitation: round 0's Adam steps differ between the sides "
                 f"({out['imitate']['round0']['adam_steps']} and {out['imitation']['round0']['adam_steps']})")


def run_both(args, work: Path, say) -> dict:
    from imitate.dataset import BuildConfig, build_mocap_store

    say(f"building the mocap store in {work}")
    mocap = work / "mocap.h5"
    build_mocap_store(mocap, env_config(), BuildConfig(offsets=8, copies=8), overwrite=True)
    stores = {}
    for name in ("imitate", "imitation"):
        stores[name] = work / f"{name}-store.h5"
        shutil.copyfile(mocap, stores[name])
    shutil.rmtree(work / "imitate-run", ignore_errors=True)
    shutil.rmtree(work / "imitation", ignore_errors=True)
    say(f"starting the imitation side ({args.imitation_python}, {args.imitation_vec})")
    theirs = ImitationSubprocess(args.imitation_python, stores["imitation"], work, args)
    try:
        mine = ImitateSide(stores["imitate"], work / "imitate-run", args)
        out = {side.name: {"side": side.name, "rounds": []} for side in (mine, theirs)}
        say("imitate: round 0 (SFT on the mocap store)")
        out["imitate"]["round0"] = mine.round0()
        say(f"imitation: round 0 (BC on the mocap store, {out['imitate']['round0']['adam_steps']} Adam steps)")
        out["imitation"]["round0"] = theirs.round0(out["imitate"]["round0"]["adam_steps"])
        out["imitate"]["work"], out["imitation"]["work"] = mine.work(), out["imitation"]["round0"].pop("work")
        for k in range(1, args.rounds + 1):  # interleaved, ABBA, so that the host's drift hits both alike
            for side in ((mine, theirs) if k % 2 else (theirs, mine)):
                say(f"{side.name}: DAgger round {k}")
                out[side.name]["rounds"].append(side.round(k))
        for side in (mine, theirs):
            say(f"{side.name}: evaluating the final policy")
            out[side.name]["evaluation"] = side.evaluate()
    finally:
        theirs.close()
    out["expert"] = expert_reference(args)
    return out


def ratios(a: dict, b: dict) -> dict:
    """imitation's seconds over imitate's (> 1: imitate faster), wall and per CPU second."""
    return {kind: {"equal_work": b[f"{kind}_equal_work"] / a[f"{kind}_equal_work"],
                   "as_run": b[f"{kind}_round"] / a[f"{kind}_round"],
                   "collect_per_sample": b[f"{kind}_per_1k_collect"] / a[f"{kind}_per_1k_collect"],
                   "train_per_step": b[f"{kind}_per_step_train"] / a[f"{kind}_per_step_train"],
                   "rest_equal_work": b[f"{kind}_rest_equal_work"] / a[f"{kind}_rest_equal_work"]}
            for kind in ("wall", "cpu")} | {"return_difference": a["normalised_return"] - b["normalised_return"]}


def print_table(report: dict) -> None:
    console = _sidecar.console(width=160)
    s, plan = report["settings"], report["plan"]
    work = _sidecar.table(
        f"DAgger on '{CLIP}' ({ACTION_SPACE}): imitate vs imitation {report.get('imitation_version', '')}, the work "
        f"per round (median of {s['rounds']} rounds; planned: {plan['samples_per_round']} samples, "
        f"{plan['adam_steps']} Adam steps of {plan['batch_size']})",
        ("side", "vec env", "processes", "torch threads", "samples", "train samples", "Adam steps",
         "normalised return", "survival [s]"))
    for row in report["summary"]:
        ret = f"{row['normalised_return']:.4f} ± {row['normalised_return_std']:.4f}"
        surv = f"{row['survival_s']:.2f} ± {row['survival_s_std']:.2f}"
        if row["side"] == "PD expert":
            work.add_row("PD expert (reference)", "", "", "", "", "", "", ret, surv)
            continue
        work.add_row(row["side"], row["vec_env"], str(row["processes"]), str(row["torch_threads"]),
                     f"{row['samples']:.0f}", f"{row['train_samples']:.0f}", f"{row['adam_steps']:.0f}", ret, surv)
    console.print(work)
    for kind, what in (("wall", "wall seconds"), ("cpu", "CPU seconds (all processes)")):
        stages = _sidecar.table(f"per round, {what} (median)",
                                ("side", *STAGES, "round (as run)", "equal work", f"{kind} per 1k collected",
                                 f"{kind} per Adam step"))
        for row in report["summary"][:2]:
            stages.add_row(row["side"], *(f"{row[kind][st]:.2f}" for st in STAGES), f"{row[f'{kind}_round']:.2f}",
                           f"{row[f'{kind}_equal_work']:.2f}", f"{row[f'{kind}_per_1k_collect']:.2f}",
                           f"{1000 * row[f'{kind}_per_step_train']:.1f} ms")
        console.print(stages)
    rounds = _sidecar.table("each round (wall s; samples collected, Adam steps counted)",
                            ("side", "round", "beta", "samples", "Adam steps", *STAGES, "CPU s"))
    for name, side in report["sides"].items():
        r0 = side["round0"]
        rounds.add_row(name, "0 (SFT/BC)", "", str(r0["train_samples"]), str(r0["adam_steps"]), "", "",
                       f"{r0['seconds']:.2f}", "", "", "")
        for r in side["rounds"]:
            rounds.add_row(name, str(r["round"]), f"{r['beta']:.3f}", str(r["samples"]), str(r["adam_steps"]),
                           *(f"{r['wall'][st]:.2f}" for st in STAGES), f"{sum(r['cpu'].values()):.2f}")
    console.print(rounds)
    r = report["ratio"]
    verdict = "met" if r["target_met"] else "NOT met"
    console.print(
        f"imitation / imitate at equal work: [bold]{r['cpu']['equal_work']:.2f}x per CPU second[/], "
        f"{r['wall']['equal_work']:.2f}x wall (as run, with imitate's evaluation: {r['cpu']['as_run']:.2f}x CPU, "
        f"{r['wall']['as_run']:.2f}x wall).  By stage: collection + labelling per sample "
        f"{r['cpu']['collect_per_sample']:.2f}x "
        f"CPU ({r['wall']['collect_per_sample']:.2f}x wall; mostly the batched env, which a VecEnv adapter would give "
        f"any library); the round without its collection {r['cpu']['rest_equal_work']:.2f}x CPU "
        f"({r['wall']['rest_equal_work']:.2f}x wall); training per Adam step {r['cpu']['train_per_step']:.2f}x CPU.  "
        f"Normalised return imitate - imitation: {r['return_difference']:+.4f}.  Target (>= 5x per CPU second at "
        f"equal work, equal or better return): {verdict}.")
    console.print("Equal work: the same Adam steps (counted on both sides), collection and labelling scaled to "
                  f"imitate's {plan['samples_per_round']} samples, imitate's evaluation left out.  Evaluation: "
                  f"{s['eval_episodes']} episodes, {s['eval_horizon']} s, from phase 0, deterministic, init_noise_rad "
                  "0.01.  Also different:")
    for note in NOTES:
        console.print(f"  - {note}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="DAgger rounds after round 0 (default 3)")
    p.add_argument("--samples-per-round", type=int, default=1200,
                   help="env steps imitate collects per round, imitation at least (default 1200)")
    p.add_argument("--num-envs", type=int, default=8, help="envs collecting in parallel (default 8)")
    p.add_argument("--epochs", type=int, default=30, help="training epochs per round (default 30)")
    p.add_argument("--epoch-samples", type=int, default=512,
                   help=f"samples per epoch, a multiple of {BATCH_SIZE} (default 512): a round trains "
                        f"epochs x epoch-samples / {BATCH_SIZE} Adam steps on both sides")
    p.add_argument("--imitation-vec", choices=["subproc", "dummy", "batched"], default="subproc",
                   help="imitation's vec env: SubprocVecEnv (one process per env, default), DummyVecEnv, or "
                        "batched: imitate's batched env through an SB3 VecEnv adapter (what a library gains from it)")
    p.add_argument("--imitation-fused-adam", type=int, choices=[0, 1], default=0,
                   help="1: give imitation's BC torch's fused Adam (optimizer_kwargs fused=True), as imitate's SFT "
                        "uses; default 0, its default Adam")
    p.add_argument("--imitate-sim-threads", type=int, default=0,
                   help="threads of imitate's batched simulation (0: all cores, its default)")
    p.add_argument("--eval-horizon", type=float, default=10.0, help="evaluation horizon [s] (default 10)")
    p.add_argument("--eval-episodes", type=int, default=3, help="evaluation episodes (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--torch-threads", type=int, default=1,
                   help="torch threads on both sides (imitate's SFTConfig.threads; 0: all cores). Default 1: on a "
                        "loaded 2-core host 2 threads made SFT epochs over 10x slower")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of the tables")
    p.add_argument("--imitation-python", default=DEFAULT_IMITATION_PYTHON,
                   help=f"python of the venv with imitation 1.0.1 (default {DEFAULT_IMITATION_PYTHON})")
    p.add_argument("--workdir", default=None,
                   help="keep the stores, runs and logs here (default: a temporary folder, removed at the end)")
    p.add_argument("--side", choices=["both", "imitation"], default="both", help=argparse.SUPPRESS)
    p.add_argument("--store", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if min(args.rounds, args.eval_episodes) < 1:
        p.error("rounds and eval-episodes must be >= 1")
    if args.torch_threads < 0 or args.imitate_sim_threads < 0:
        p.error("torch-threads and imitate-sim-threads must be >= 0 (0: all cores)")
    try:
        work_plan(args.samples_per_round, args.num_envs, args.epochs, args.epoch_samples)
    except ValueError as exc:
        p.error(str(exc))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.side == "imitation":
        return serve_imitation_side(args)
    _sidecar.check_python(args.imitation_python, "bench_dagger_vs_imitation", "imitation",
                          ("imitation", "stable_baselines3", "imitate"), "--imitation-python", SETUP)
    plan = work_plan(args.samples_per_round, args.num_envs, args.epochs, args.epoch_samples)
    with _sidecar.work_folder(args.workdir, "bench-dagger-") as work:
        out = run_both(args, work, _sidecar.progress(args.json))
    check_work(out, plan)
    mine, theirs = out["imitate"], out["imitation"]
    summary = [summarise(mine, plan.samples_per_round), summarise(theirs, plan.samples_per_round),
               {"side": "PD expert", **out["expert"]}]
    ratio = ratios(summary[0], summary[1])
    ratio["target_met"] = bool(ratio["cpu"]["equal_work"] >= 5.0 and ratio["return_difference"] >= 0.0)
    report = {"settings": {k: getattr(args, k) for k in (
                  "rounds", "samples_per_round", "num_envs", "epochs", "epoch_samples", "imitation_vec",
                  "imitation_fused_adam",
                  "imitate_sim_threads", "eval_horizon", "eval_episodes", "seed", "torch_threads")},
              "plan": plan.__dict__, "imitation_version": theirs["evaluation"].get("versions", {}).get("imitation", ""),
              "summary": summary, "ratio": ratio, "sides": {"imitate": mine, "imitation": theirs}, "notes": NOTES}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
