"""Benchmark: imitate's DAgger against the `imitation` library's SimpleDAggerTrainer, side by side.

One command runs both sides on the same env, expert, data, policy architecture and sample
budget, and prints one table (and a per-round one): wall time per DAgger round and the normalised return of each
final policy.  Target (the issue): imitate at least 5x faster per round at equal or better return.

Setup (once; `imitation` 1.0.1 pins gymnasium 0.29.1 and stable-baselines3 2.2.1, so it gets
its own venv, outside the repository; never install it into .venv):

    python3 -m venv /tmp/imitation-venv
    /tmp/imitation-venv/bin/pip install torch==2.13.0 imitation==1.0.1 mujoco h5py rich scipy
    /tmp/imitation-venv/bin/pip install --no-deps -e .      # imitate itself, from the repo root

(torch must stay pinned to 2.13.0: a bare torch pulls a multi-GB CUDA build.)

Run (from the repo root, with the project's own venv):

    .venv/bin/python scripts/bench_dagger_vs_imitation.py [--rounds 3] [--samples-per-round 1200]
        [--epochs 30] [--num-envs 8] [--torch-threads 1] [--json] [--workdir DIR]
        [--imitation-python /tmp/imitation-venv/bin/python]

The script runs imitate's side in this interpreter and the imitation side in a subprocess (this
same file with ``--side imitation``, run by --imitation-python), which answers one JSON line per
command on stdout ("round0", "round K", "evaluate"; the libraries' own chatter goes to a log
file).  The sides never run at once (2 shared cores): round 0 is imitate's then imitation's,
DAgger rounds alternate ABBA (round 1 imitate first, round 2 imitation first, ...), so that the
host's drifting load hits both alike.  A missing or broken imitation venv stops the script at
once with the setup commands.  Both ends' plumbing is in scripts/_sidecar.py.

What is the same on both sides
- env: ``EnvConfig(clip="walk", action_space="pd_target")`` (imitate's ``make_env`` on the
  imitation side: it imports under gymnasium 0.29), random start times while collecting;
- expert: ``PDExpert(load_clip("walk"), "pd_target")``, a callable on the simulator state
  (qpos, qvel) and the clip time.  imitation wants an expert *policy on observations*, and the
  observation does not carry the exact clip time, so the imitation side wraps the PD expert
  in an SB3 ``BasePolicy`` whose ``_predict`` ignores the observations it is given and reads
  the state of every sub-env of the DummyVecEnv (``env.unwrapped.sim.qpos/.qvel/.ref_time_s``).
  It works only because DummyVecEnv keeps the envs in this process and steps them in order;
  with SubprocVecEnv (imitation's way to use more cores) the expert could not see the state at
  all.  That is one of the complaints about imitation that motivated imitate's own DAgger;
- start: one mocap store, ``build_mocap_store(..., BuildConfig(offsets=8, copies=8))`` (the
  pipeline's), built once and copied so that each side starts from the same file.  imitate:
  round 0 is its SFT on the store (``run_dagger``'s own, 100 epochs, patience 15).  imitation:
  round 0 is BC on the same store's train-split (obs, expert action) pairs for the same 100
  epochs (no early stopping exists there), and the same mocap episodes are passed as
  ``expert_trajs``, so every later round trains on mocap + all DAgger data, as imitate's does;
- DAgger rounds: --rounds rounds of --samples-per-round env steps (imitate: --num-envs envs x
  samples/num_envs steps each; imitation: ``rollout_round_min_timesteps`` on a DummyVecEnv of
  --num-envs envs), beta = 0.5^(k-1) for round k = 1, 2, ... (imitation:
  ``ExponentialBetaSchedule(0.5)``, its round_num counting from 0), mixing per env and step;
- training: policy MLP 1024-512 ReLU with a linear head and a fixed observation normaliser
  from the store's statistics (std floored at 1e-3, clipped to +-10), Adam lr 1e-3, batch 256,
  --torch-threads torch threads (default 1: on this 2-core shared host, with other jobs running,
  imitate's default of all cores made 5 SFT epochs take 8.8 s against 0.5 s on one thread);
  imitation gets an SB3 ``ActorCriticPolicy`` with ``net_arch=dict(pi=[1024, 512], vf=[])``
  and a features extractor holding that normaliser, log-std initialised to -1 as imitate's;
  each round retrains, warm-started, for --epochs epochs (imitate: at most --epochs, patience 8
  on its validation split; imitation: exactly --epochs, ``bc_train_kwargs["n_epochs"]``);
- evaluation: ``imitate.evaluation.evaluate`` of each final policy (deterministic mean action),
  from phase 0, --eval-horizon seconds, --eval-episodes episodes with init_noise_rad 0.01.

Timing (wall, and the process's CPU time over all its threads): imitate: each round is one
``run_dagger`` call on the same run folder with ``rounds=k`` (it resumes), from the call (round 1:
from round 0's ``on_round``) to round k's ``on_round``: collect, label, append to the HDF5 store,
retrain, save the checkpoint, its own 1-episode evaluation, plus resuming; split by its
``on_progress`` messages.  Round 0 is run_dagger's SFT (``sft_on_store(store, config.sft)``) run
by hand and passed as ``init_checkpoint``, so that it is timed apart.  imitation: each
``SimpleDAggerTrainer.train(total_timesteps=samples_per_round, ...)`` call runs exactly one round
and is timed whole, split into BC training, demo loading (its npz files) and the rest (collection
and writing one npz per episode).  Round 0 is timed but not in the medians.

Known differences (not all in imitate's favour) are listed at the end of the table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import _sidecar
import numpy as np

DEFAULT_IMITATION_PYTHON = "/tmp/imitation-venv/bin/python"
SETUP = ("python3 -m venv /tmp/imitation-venv\n"
         "  /tmp/imitation-venv/bin/pip install torch==2.13.0 imitation==1.0.1 mujoco h5py rich scipy\n"
         "  /tmp/imitation-venv/bin/pip install --no-deps -e .   # from the repo root")
CLIP, ACTION_SPACE = "walk", "pd_target"
SFT_EPOCHS, SFT_PATIENCE, RETRAIN_PATIENCE = 100, 15, 8  # imitate's pipeline settings
BATCH_SIZE, LR, LOG_STD_INIT = 256, 1e-3, -1.0
NOTES = [
    "imitation runs its 8 envs in a DummyVecEnv, one after another on 1 thread (SubprocVecEnv "
    "would hide the simulator state from the state-reading expert); imitate steps them in one "
    "native batch on all cores.",
    "imitation's BC minimises the Gaussian NLL (+1e-3 entropy bonus) of the expert action; "
    "imitate's SFT the MSE of the mean. imitation has no validation split nor early stopping: it "
    "always runs --epochs epochs on all its data; imitate may stop early (epochs column).",
    "imitation collects whole episodes until at least samples-per-round steps are done, and its "
    "collector also saves the episodes that other envs finish meanwhile: it gets more samples per "
    "round (samples column; s/1k samples normalises for that).",
    "imitate's round time includes its own 1-episode evaluation and checkpoint save; imitation's "
    "per-round logging rollouts (BC's log_rollouts_venv) are switched off, its logger writes CSV only.",
    "imitate trains on the store's train split (valid split held out); imitation on the same "
    "train-split mocap episodes plus everything it collected (no split).",
]


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


class ImitateSide:
    """imitate's DAgger, one round per call: run_dagger resumes its run folder each time."""

    name = "imitate"

    def __init__(self, store_path: Path, run_dir: Path, args):
        import torch

        import imitate.dagger as dagger_mod
        from imitate.dagger import DAggerConfig
        from imitate.sft import SFTConfig

        self.dagger_mod, self.store_path, self.run_dir, self.args = dagger_mod, store_path, run_dir, args
        torch.set_num_threads(args.torch_threads or os.cpu_count() or 1)  # fit() sets it too, for its rounds
        self.config = DAggerConfig(
            rounds=1, num_envs=args.num_envs, steps_per_env=args.samples_per_round // args.num_envs,
            beta="exponential:0.5", mixing="step", eval_episodes=1, eval_horizon_s=args.eval_horizon,
            sft=SFTConfig(epochs=SFT_EPOCHS, patience=SFT_PATIENCE, batch_size=BATCH_SIZE, lr=LR,
                          threads=args.torch_threads),
            retrain=SFTConfig(epochs=args.epochs, patience=RETRAIN_PATIENCE, batch_size=BATCH_SIZE, lr=LR,
                              threads=args.torch_threads, epoch_samples=args.epoch_samples),
            seed=args.seed)
        self.init_checkpoint = run_dir.parent / "imitate-round0.pt"
        self.last_round_end: tuple[float, float] | None = None  # (wall, cpu) of round 0's on_round

    def round0(self) -> dict:
        """run_dagger's own round 0 (sft_on_store with config.sft), done by hand so that it can be
        timed apart; run_dagger then starts from its checkpoint (init_checkpoint)."""
        from imitate.policy import save_checkpoint
        from imitate.sft import sft_on_store
        from imitate.store import DemoStore

        store = DemoStore(self.store_path)
        t = time.perf_counter()
        policy, sft = sft_on_store(store, self.config.sft)
        save_checkpoint(self.init_checkpoint, policy, store.env_config, round=0)
        return {"seconds": time.perf_counter() - t, "epochs": sft.epochs_run}

    def round(self, k: int) -> dict:
        from imitate.dagger import run_dagger

        epochs, marks, ends = [], {}, {}
        real_sft = self.dagger_mod.sft_on_store

        def counting_sft(*a, **kw):  # read-only instrumentation: how many epochs the fit ran
            policy, result = real_sft(*a, **kw)
            epochs.append(result.epochs_run)
            return policy, result

        def on_round(result):
            ends[result.round] = (time.perf_counter(), time.process_time())

        def on_progress(message):
            if message.startswith(f"round {k}:"):
                marks[message.split(":")[1].split()[0]] = time.perf_counter()

        self.dagger_mod.sft_on_store = counting_sft
        start = (time.perf_counter(), time.process_time())
        try:
            results = run_dagger(self.run_dir, self.store_path, replace(self.config, rounds=k),
                                 init_checkpoint=self.init_checkpoint, on_round=on_round, on_progress=on_progress)
        finally:
            self.dagger_mod.sft_on_store = real_sft
        # round 1's call also finishes round 0 (its checkpoint and evaluation): time from there
        t0, c0 = ends.get(0, start)
        t1, c1 = ends[k]
        result = results[k]
        collect = marks["retraining"] - marks["collecting"]
        self.final_checkpoint = self.run_dir / result.checkpoint  # a name in the run folder (or a path)
        return {"round": k, "beta": result.beta, "samples": result.new_steps, "seconds": t1 - t0, "cpu_s": c1 - c0,
                "collect_s": collect, "train_s": result.sft_seconds,
                "other_s": (t1 - t0) - collect - result.sft_seconds, "epochs": epochs[0]}

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


class ImitationLibrarySide:
    """imitation's BC + SimpleDAggerTrainer on imitate's env and PD expert, one round per call."""

    def __init__(self, store_path: Path, scratch: Path, args):
        import torch
        from imitation.algorithms import bc
        from imitation.algorithms.dagger import ExponentialBetaSchedule, SimpleDAggerTrainer
        from imitation.data import types
        from imitation.util import logger as imit_logger
        from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
        from stable_baselines3.common.vec_env import DummyVecEnv
        from torch import nn

        import imitate
        from imitate.experts.pd import PDExpert
        from imitate.motion import load_clip
        from imitate.store import DemoStore

        self.args = args
        torch.manual_seed(args.seed)
        torch.set_num_threads(args.torch_threads or os.cpu_count() or 1)  # as imitate's SFTConfig.threads
        rng = np.random.default_rng(args.seed)
        store = DemoStore(store_path)
        stats = store.normalisation("obs")

        def make():
            return imitate.make_env(CLIP, action_space=ACTION_SPACE)

        venv = DummyVecEnv([make] * args.num_envs)
        venv.seed(args.seed)
        expert = PDExpert(load_clip(CLIP), ACTION_SPACE)

        class SimStateExpert(BasePolicy):
            """The PD expert as an SB3 policy.  It ignores the observations it is handed and reads
            every sub-env's simulator state and clip time (the obs lacks the exact clip time):
            correct only while it is asked about all envs' current observations, in order."""

            def __init__(self):
                super().__init__(venv.observation_space, venv.action_space)
                self.checks_left = 50

            def forward(self, *a, **kw):
                raise NotImplementedError

            def _predict(self, observation, deterministic: bool = False):
                sims = [e.unwrapped.sim for e in venv.envs]
                if len(observation) != len(sims):
                    raise RuntimeError(f"expert: asked about {len(observation)} observations, not the {len(sims)} "
                                       f"envs' current ones: it cannot know their states")
                if self.checks_left > 0:  # the observations must be the envs' current ones
                    self.checks_left -= 1
                    if not np.allclose(observation.cpu().numpy(), np.concatenate([s.obs for s in sims]), atol=1e-5):
                        raise RuntimeError("expert: the observations are not the envs' current states")
                qpos = np.concatenate([s.qpos for s in sims])
                qvel = np.concatenate([s.qvel for s in sims])
                t = np.concatenate([s.ref_time_s for s in sims])
                return torch.as_tensor(expert(qpos, qvel, t), dtype=torch.float32)

        policy = ActorCriticPolicy(venv.observation_space, venv.action_space, lr_schedule=lambda _: LR,
                                   net_arch=dict(pi=[1024, 512], vf=[]), activation_fn=nn.ReLU,
                                   log_std_init=LOG_STD_INIT, features_extractor_class=_sidecar.fixed_normaliser(),
                                   features_extractor_kwargs=dict(mean=stats["mean"], std=stats["std"]))
        log = imit_logger.configure(folder=str(scratch / "log"), format_strs=["csv"])
        self.bc_trainer = bc.BC(observation_space=venv.observation_space, action_space=venv.action_space, rng=rng,
                                policy=policy, batch_size=BATCH_SIZE, optimizer_kwargs=dict(lr=LR), device="cpu",
                                custom_logger=log)
        self.trajs = [types.Trajectory(obs=np.concatenate([o, o[-1:]]), acts=a.astype(np.float32), infos=None,
                                       terminal=True) for o, a in mocap_trajectories(store)]
        self.trainer = SimpleDAggerTrainer(venv=venv, scratch_dir=scratch / "dagger", expert_policy=SimStateExpert(),
                                           rng=rng, expert_trajs=self.trajs,
                                           beta_schedule=ExponentialBetaSchedule(0.5), bc_trainer=self.bc_trainer,
                                           custom_logger=log)
        self.phase = {"train_s": 0.0, "load_s": 0.0}
        self.seen = sum(len(t) for t in self.trajs)

    def round0(self) -> dict:
        """BC on the store's train-split mocap pairs (imitate's round 0 is its SFT on them)."""
        from imitation.data import rollout

        t = time.perf_counter()
        self.bc_trainer.set_demonstrations(rollout.flatten_trajectories(self.trajs))
        self.bc_trainer.train(n_epochs=SFT_EPOCHS, progress_bar=False)
        seconds = time.perf_counter() - t

        def timed(name, fn):  # from now on, time the parts of each round
            def wrapper(*a, **kw):
                t = time.perf_counter()
                try:
                    return fn(*a, **kw)
                finally:
                    self.phase[name] += time.perf_counter() - t
            return wrapper

        self.bc_trainer.train = timed("train_s", self.bc_trainer.train)
        self.trainer._try_load_demos = timed("load_s", self.trainer._try_load_demos)
        return {"seconds": seconds, "epochs": SFT_EPOCHS}

    def round(self, k: int) -> dict:
        """One SimpleDAggerTrainer round: train() stops after the round whose samples reach
        total_timesteps."""
        n = self.args.samples_per_round
        beta = float(self.trainer.beta_schedule(self.trainer.round_num))
        self.phase.update(train_s=0.0, load_s=0.0)
        t, cpu = time.perf_counter(), time.process_time()
        self.trainer.train(total_timesteps=n, rollout_round_min_timesteps=n, rollout_round_min_episodes=1,
                           bc_train_kwargs=dict(n_epochs=self.args.epochs, log_rollouts_venv=None, progress_bar=False))
        seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
        total = sum(len(tr) for tr in self.trainer._all_demos)  # everything it trains on now
        samples, self.seen = total - self.seen, total
        return {"round": k, "beta": beta, "samples": samples, "seconds": seconds, "cpu_s": cpu,
                "collect_s": seconds - self.phase["train_s"] - self.phase["load_s"], "train_s": self.phase["train_s"],
                "other_s": self.phase["load_s"], "epochs": self.args.epochs}

    def evaluate(self) -> dict:
        import imitation
        import stable_baselines3

        final = self.trainer.policy
        final.set_training_mode(False)
        return {**evaluate_controller(_sidecar.sb3_controller(final), self.args),
                "versions": {"imitation": imitation.__version__, "stable_baselines3": stable_baselines3.__version__}}


def serve_imitation_side(args) -> int:
    """The subprocess: answer commands from stdin ("round0", "round K", "evaluate", "quit"), one
    JSON line each on stdout; everything the libraries print goes to stderr."""
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
               "--workdir", str(scratch), *_sidecar.cli_options(args, "samples_per_round", "epochs", "num_envs",
                                                                "eval_horizon", "eval_episodes", "seed",
                                                                "torch_threads")]
        super().__init__(cmd, work / "imitation-side.log", CLIP, "bench_dagger_vs_imitation: the imitation side")

    def round0(self) -> dict:
        return self.ask("round0")

    def round(self, k: int) -> dict:
        return self.ask(f"round {k}")

    def evaluate(self) -> dict:
        return self.ask("evaluate")


# --------------------------------------------------------------------------------------------
# driver


def summarise(side: dict) -> dict:
    rounds = side["rounds"]
    med = statistics.median
    return {"side": side["side"], "rounds": len(rounds), "samples_per_round": med(r["samples"] for r in rounds),
            "seconds_per_round": med(r["seconds"] for r in rounds),
            "cpu_seconds_per_round": med(r["cpu_s"] for r in rounds),
            "seconds_per_1k_samples": med(1000.0 * r["seconds"] / r["samples"] for r in rounds),
            "collect_s": med(r["collect_s"] for r in rounds), "train_s": med(r["train_s"] for r in rounds),
            "other_s": med(r["other_s"] for r in rounds), "epochs": med(r["epochs"] for r in rounds),
            "round0_seconds": side["round0"]["seconds"],
            **{k: v for k, v in side["evaluation"].items() if k != "versions"}}


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
    say(f"starting the imitation side ({args.imitation_python})")
    theirs = ImitationSubprocess(args.imitation_python, stores["imitation"], work, args)
    try:
        mine = ImitateSide(stores["imitate"], work / "imitate-run", args)
        out = {side.name: {"side": side.name, "rounds": []} for side in (mine, theirs)}
        for side in (mine, theirs):
            say(f"{side.name}: round 0 ({'SFT' if side is mine else 'BC'} on the mocap store)")
            out[side.name]["round0"] = side.round0()
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


def print_table(report: dict) -> None:
    console = _sidecar.console(width=140)
    s = report["settings"]
    table = _sidecar.table(f"DAgger on '{CLIP}' ({ACTION_SPACE}): imitate vs imitation "
                           f"{report.get('imitation_version', '')}, {s['num_envs']} envs, --epochs {s['epochs']}, "
                           f"imitate --epoch-samples {s.get('epoch_samples') or 'all'}, "
                           f"torch threads {s['torch_threads'] or 'all'}",
                           ("side", "rounds", "samples/round", "s/round (median)", "CPU s/round", "s/1k samples",
                            "epochs/round", "normalised return", "survival [s]"))
    for row in report["summary"]:
        ret = f"{row['normalised_return']:.4f} ± {row['normalised_return_std']:.4f}"
        surv = f"{row['survival_s']:.2f} ± {row['survival_s_std']:.2f}"
        if row["side"] == "PD expert":
            table.add_row("PD expert (reference)", "", "", "", "", "", "", ret, surv)
            continue
        table.add_row(row["side"], str(row["rounds"]), f"{row['samples_per_round']:.0f}",
                      f"{row['seconds_per_round']:.2f}", f"{row['cpu_seconds_per_round']:.2f}",
                      f"{row['seconds_per_1k_samples']:.2f}", f"{row['epochs']:.0f}", ret, surv)
    console.print(table)
    rounds = _sidecar.table("per round, wall seconds (collect: imitate collect+label+HDF5 append, imitation "
                            "rollouts+npz writes; other: imitate checkpoint+its evaluation, imitation loading its npz "
                            "demos)", ("side", "round", "beta", "samples", "s", "CPU s", "collect s", "train s",
                                       "other s", "epochs"))
    for name, side in report["sides"].items():
        rounds.add_row(name, "0 (SFT/BC)", "", "", f"{side['round0']['seconds']:.2f}", "", "", "", "",
                       str(side["round0"]["epochs"]))
        for r in side["rounds"]:
            rounds.add_row(name, str(r["round"]), f"{r['beta']:.3f}", str(r["samples"]), f"{r['seconds']:.2f}",
                           f"{r['cpu_s']:.2f}", f"{r['collect_s']:.2f}", f"{r['train_s']:.2f}", f"{r['other_s']:.2f}",
                           str(r["epochs"]))
    console.print(rounds)
    r = report["ratio"]
    verdict = "met" if r["target_met"] else "NOT met"
    console.print(f"speed ratio imitation/imitate, median s/round: [bold]{r['per_round']:.1f}x[/] (CPU s/round "
                  f"{r['cpu_per_round']:.1f}x, s per 1k samples {r['per_1k_samples']:.1f}x); normalised return "
                  f"imitate - imitation: {r['return_difference']:+.4f}.  Target (>= 5x per round at equal or better "
                  f"return): {verdict}.")
    console.print(f"Evaluation: {s['eval_episodes']} episodes, {s['eval_horizon']} s, from phase 0, deterministic, "
                  "init_noise_rad 0.01.  Unfair or different, to keep in mind:")
    for note in NOTES:
        console.print(f"  - {note}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="DAgger rounds after round 0 (default 3)")
    p.add_argument("--samples-per-round", type=int, default=1200, help="env steps collected per round (default 1200)")
    p.add_argument("--num-envs", type=int, default=8, help="envs collecting in parallel (default 8)")
    p.add_argument("--epochs", type=int, default=30, help="training epochs per round (imitate: at most; default 30)")
    p.add_argument("--epoch-samples", type=int, default=None,
                   help="imitate only: samples drawn per retraining epoch (SFTConfig.epoch_samples; default: all "
                        "its data, as imitation's epochs are). imitation has no such option")
    p.add_argument("--eval-horizon", type=float, default=10.0, help="evaluation horizon [s] (default 10)")
    p.add_argument("--eval-episodes", type=int, default=3, help="evaluation episodes (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--torch-threads", type=int, default=1,
                   help="torch threads on both sides (imitate's SFTConfig.threads; 0: all cores, imitate's default). "
                        "Default 1: on a loaded 2-core host 2 threads made SFT epochs over 10x slower")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of the tables")
    p.add_argument("--imitation-python", default=DEFAULT_IMITATION_PYTHON,
                   help=f"python of the venv with imitation 1.0.1 (default {DEFAULT_IMITATION_PYTHON})")
    p.add_argument("--workdir", default=None,
                   help="keep the stores, runs and logs here (default: a temporary folder, removed at the end)")
    p.add_argument("--side", choices=["both", "imitation"], default="both", help=argparse.SUPPRESS)
    p.add_argument("--store", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if min(args.rounds, args.num_envs, args.epochs, args.eval_episodes) < 1 or args.samples_per_round < args.num_envs:
        p.error("rounds, num-envs, epochs and eval-episodes must be >= 1, and samples-per-round >= num-envs")
    if args.epoch_samples is not None and args.epoch_samples < 1:
        p.error("epoch-samples must be >= 1")
    if args.torch_threads < 0:
        p.error("torch-threads must be >= 0 (0: all cores)")
    if args.samples_per_round % args.num_envs:
        p.error(f"samples-per-round must be a multiple of num-envs ({args.num_envs}): imitate collects "
                f"num-envs x steps")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.side == "imitation":
        return serve_imitation_side(args)
    _sidecar.check_python(args.imitation_python, "bench_dagger_vs_imitation", "imitation",
                          ("imitation", "stable_baselines3", "imitate"), "--imitation-python", SETUP)
    with _sidecar.work_folder(args.workdir, "bench-dagger-") as work:
        out = run_both(args, work, _sidecar.progress(args.json))
    mine, theirs = out["imitate"], out["imitation"]
    summary = [summarise(mine), summarise(theirs), {"side": "PD expert", **out["expert"]}]
    a, b = summary[0], summary[1]
    ratio = {"per_round": b["seconds_per_round"] / a["seconds_per_round"],
             "cpu_per_round": b["cpu_seconds_per_round"] / a["cpu_seconds_per_round"],
             "per_1k_samples": b["seconds_per_1k_samples"] / a["seconds_per_1k_samples"],
             "return_difference": a["normalised_return"] - b["normalised_return"]}
    ratio["target_met"] = bool(ratio["per_round"] >= 5.0 and ratio["return_difference"] >= 0.0)
    report = {"settings": {k: getattr(args, k) for k in (
                  "rounds", "samples_per_round", "num_envs", "epochs", "epoch_samples", "eval_horizon", "eval_episodes",
                  "seed", "torch_threads")},
              "imitation_version": theirs["evaluation"].get("versions", {}).get("imitation", ""),
              "summary": summary, "ratio": ratio, "sides": {"imitate": mine, "imitation": theirs}, "notes": NOTES}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
