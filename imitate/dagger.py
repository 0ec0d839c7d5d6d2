"""DAgger: the learner drives, the expert relabels every state it visits, the store grows, retrain.

Round 0 is SFT on the store's mocap round (or a given checkpoint).  Round k >= 1:
1. run the mixture policy in the batched env for ``steps_per_env`` control steps per env from
   random clip times: each step (``mixing="step"``) or each segment of ``segment_steps`` steps
   (``mixing="segment"``), an env executes the expert's action with probability beta(k), else
   the learner's (the policy of round k-1);
2. label every visited state with the expert (simulator state + clip time -> action); with
   ``plan_labels`` N and a search expert, also the N states its plan for each visited state
   reaches, followed open loop, each labelled by the plan's own action there (source "plan");
3. append the round to the store, all or nothing (the executed actions and labels both kept);
4. retrain, warm-starting from round k-1 (or from scratch, ``retrain_from_scratch``), on the
   mocap round plus the last ``keep_rounds`` rounds (all by default); with ``fits`` N, N
   retrains from other seeds, each evaluated as in 5, the best return kept;
5. evaluate from phase 0 (each episode's start noised as in ``imitate evaluate``) and save the
   round's checkpoint, then the run's state (RUN_DIR/state.json).
Killed at any point, the same call resumes: a round whose data is in the store is not collected
again, a round whose checkpoint exists is not retrained (checkpoints are written atomically).
Beta schedules are any ``Callable[[int], float]``; ``schedule("exponential:0.5")`` etc. build
the usual ones.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .atomic import write_text
from .config import with_action_noise
from .distributed import RayExpert
from .errors import ConfigError
from .evaluation import EvalResult, evaluate, policy_controller
from .experts import label, provenance_json
from .experts.pd import PDExpert
from .motion import load_clip
from .policy import load_checkpoint, save_checkpoint
from .settings import BetaSchedule, DAggerConfig, constant, exponential, linear, schedule  # noqa: F401 (imitate.dagger names them too)
from .sft import SFTResult, sft_on_store
from .simulation import Simulation, model_hash_of
from .store import DemoStore, Episode, run_of

# Rows the learner is asked about per call in `collect`.  A forward pass may round differently
# with the batch's size (measured: a 1024-512 MLP's row alone and in a batch of 8 differ by ~1e-8),
# and for some shapes with a row's position in the batch too (measured: a 6-64-2 MLP), so collect
# asks in blocks of this many rows only a learner that `rows_independent` clears, else row by row.
LEARNER_BLOCK = 8
FIT_SEED_STRIDE = 1000  # fit j of round k trains with seed (the retrain's) + k + 1000 j (DAggerConfig.fits)


def rows_independent(learner: Callable[[np.ndarray], np.ndarray], obs_dim: int, block: int = LEARNER_BLOCK) -> bool:
    """Whether the learner gives a row of a `block`-row call the same bits at every position in
    the call: checked on two fixed pseudo-random blocks (float32, obs_dim columns), each shifted
    through all positions.  Fixed data, so the answer depends on the learner alone, never on
    which humanoids share a Simulation."""
    rng = np.random.default_rng(20240521)
    for _ in range(2):
        probe = rng.normal(size=(block, obs_dim)).astype(np.float32)
        first = np.asarray(learner(probe))
        for shift in range(1, block):
            if not np.array_equal(np.roll(learner(np.roll(probe, shift, axis=0)), -shift, axis=0), first):
                return False
    return True


def act_in_blocks(learner: Callable[[np.ndarray], np.ndarray], obs: np.ndarray, block: int) -> np.ndarray:
    """The learner's actions (N, A) for observations (N, D), asked `block` rows at a time (the
    last block padded with zero rows, whose actions are dropped): one call per block instead of
    one per row.  Each row's bits are then independent of N and of the other rows where
    `rows_independent(learner, D, block)` holds (block 1: row by row, always)."""
    if block == 1:
        return np.concatenate([learner(obs[i:i + 1]) for i in range(len(obs))])
    n = len(obs)
    padded = np.zeros((-(-n // block) * block, *obs.shape[1:]), obs.dtype)
    padded[:n] = obs
    return np.concatenate([learner(padded[a:a + block]) for a in range(0, len(padded), block)])[:n]


class PlanFollower:
    """Follows a search expert's plans open loop from the states it has just labelled, in a
    Simulation of its own beside the collecting one, and keeps what they reach.

    Each plan is a whole horizon of servo targets of which the label is only the first step; the
    states the plan reaches over its next `steps` control steps (the env's own physics), each
    labelled by the plan's action there, are more labels for the cost of `steps` control steps of
    simulation instead of a search each.  A plan stops where its humanoid falls.  Rows are kept
    per humanoid: ``episodes()`` gives one "plan" episode each, its plans one after another, every
    plan's last row ``truncated`` (or ``terminated`` where it fell)."""

    FIELDS = ("obs", "expert_actions", "qpos", "qvel", "time_s", "reward", "terminated", "truncated")

    def __init__(self, sim, steps: int, nthread: int = 0):
        self.steps = steps
        self.side = Simulation(sim.config, sim.num_envs, nthread, clip=sim.clip, env_ids=sim.env_ids)
        self.kept: list[dict[str, np.ndarray]] = []  # per plan step: every humanoid's row, and "alive"

    def follow(self, sim, expert, labels: np.ndarray) -> None:
        """From sim's states, which expert has just labelled with labels (N, 28)."""
        side = self.side
        side.set_state(sim.qpos, sim.qvel, sim.ref_time_s)
        _, terminated, truncated, _ = side.step(labels)
        alive = ~(terminated | truncated)
        for j in range(1, self.steps + 1):
            if not alive.any():
                break
            obs, qpos, qvel, t = side.obs.copy(), side.qpos.copy(), side.qvel.copy(), side.ref_time_s.copy()
            # a fallen humanoid's state may be non-finite: it is not followed, but still stepped
            actions = np.where(alive[:, None], expert.planned_actions(j, np.nan_to_num(qpos), t), 0.0)
            reward, terminated, truncated, _ = side.step(actions)
            self.kept.append({"obs": obs, "expert_actions": actions, "qpos": qpos, "qvel": qvel, "time_s": t,
                              "reward": reward, "terminated": terminated.copy(),
                              "truncated": (truncated | (j == self.steps)) & ~terminated, "alive": alive.copy()})
            alive &= ~(terminated | truncated)

    def episodes(self, env_ids) -> list[dict[str, np.ndarray] | None]:
        """Per humanoid (sim's order): its plan episode (collect's fields; the plans' actions are
        executed and labels alike), or None if it has no rows."""
        if not self.kept:
            return [None] * len(env_ids)
        stacked = {k: np.stack([row[k] for row in self.kept], axis=1) for k in self.kept[0]}  # (N, rows, ...)
        out = []
        for i in range(len(env_ids)):
            alive = stacked["alive"][i]
            if not alive.any():
                out.append(None)
                continue
            ep = {k: stacked[k][i][alive] for k in self.FIELDS}
            ep["actions"] = ep["expert_actions"].copy()
            ep.update(expert_share=1.0, env=int(env_ids[i]), source="plan")
            out.append(ep)
        return out


def collect(sim, learner: Callable[[np.ndarray], np.ndarray], expert, beta: float, steps: int,
            seed: int | tuple[int, ...], mixing: str = "step", segment_steps: int = 15,
            progress: Callable[[int, int], None] | None = None,
            action_noise: float = 0.0, plan_labels: int = 0, nthread: int = 0) -> list[dict[str, np.ndarray]]:
    """Run the beta-mixture of expert and learner in every env of sim for `steps` steps.

    sim: a Simulation (or anything with env_ids/reset/start_times/step/obs/qpos/qvel/ref_time_s).
    expert: a callable (qpos, qvel, time_s) -> actions, or an object with label(sim).
    seed: names the collection (e.g. (run seed, round)).  Humanoid i draws its start times,
    its expert-or-learner choices and its action noise from its own generator
    default_rng([*seed, sim.env_ids[i]]), and the learner acts on each humanoid's observation
    alone, so a humanoid's episodes do not depend on which others share its Simulation: a slice
    of the envs collected elsewhere (a Ray worker) gives the same episodes bit for bit (the
    learner is asked in fixed blocks of rows where its rows come out alike in any position of a
    block, rows_independent, else row by row).
    Returns one dict of arrays per episode (split where an env ended and was reset; env by env,
    in sim's order): obs, expert_actions (labels of every visited state), actions (executed),
    qpos, qvel, time_s, reward, terminated, truncated, expert_share (the fraction of executed
    expert actions), env (the env's id).
    progress: called with (steps done, steps) after each step.
    action_noise: std of Gaussian noise added to every executed action (clipped to [-1, 1]); the
    labels stay the expert's actions at the states visited.
    plan_labels: with a search expert (``planned_actions``), also the states its plans reach over
    this many control steps (PlanFollower, nthread threads): after each env's episodes, one
    episode of source "plan" (the others carry source "dagger").
    """
    n = sim.num_envs
    env_ids = np.asarray(sim.env_ids)
    rngs = [np.random.default_rng([*np.atleast_1d(seed).tolist(), int(i)]) for i in env_ids]

    def start_times(rows) -> np.ndarray:
        return np.array([sim.start_times(rngs[i], 1)[0] for i in rows])

    def choices(rows) -> np.ndarray:
        return np.array([rngs[i].random() < beta for i in rows], bool)

    sim.reset(np.arange(n), start_times(range(n)))
    block = LEARNER_BLOCK if rows_independent(learner, sim.obs.shape[1]) else 1
    rec = {k: [] for k in ("obs", "expert_actions", "actions", "qpos", "qvel", "time_s", "reward", "terminated",
                           "truncated", "from_expert")}
    use_expert = choices(range(n))
    if plan_labels and not hasattr(expert, "planned_actions"):
        raise ConfigError(f"plan_labels needs an expert that plans (the search or guided expert); "
                          f"found {type(expert).__name__}")
    follower = PlanFollower(sim, plan_labels, nthread) if plan_labels else None
    for step in range(steps):
        if mixing == "step" or step % segment_steps == 0:
            use_expert = choices(range(n))
        obs, qpos, qvel, t = sim.obs.copy(), sim.qpos.copy(), sim.qvel.copy(), sim.ref_time_s.copy()
        labels = label(expert, sim)
        if follower:
            follower.follow(sim, expert, labels)
        learned = act_in_blocks(learner, obs, block)
        executed = np.where(use_expert[:, None], labels, learned)
        if action_noise > 0:
            executed = np.concatenate([with_action_noise(executed[i:i + 1], action_noise, rngs[i]) for i in range(n)])
        reward, terminated, truncated, _ = sim.step(executed)
        last = step == steps - 1
        truncated = truncated | (last & ~terminated)
        for key, value in (("obs", obs), ("expert_actions", labels), ("actions", executed), ("qpos", qpos),
                           ("qvel", qvel), ("time_s", t), ("reward", reward), ("terminated", terminated),
                           ("truncated", truncated), ("from_expert", use_expert)):
            rec[key].append(np.asarray(value).copy())
        done = np.flatnonzero(terminated | truncated)
        if len(done) and not last:
            sim.reset(done, start_times(done))
            if mixing == "segment":
                use_expert[done] = choices(done)
        if progress:
            progress(step + 1, steps)
    arrays = {k: np.stack(v, axis=1) for k, v in rec.items()}  # (n, steps, ...)
    planned = follower.episodes(env_ids) if follower else [None] * n
    episodes = []
    for i in range(n):
        ends = np.flatnonzero(arrays["terminated"][i] | arrays["truncated"][i])
        start = 0
        for end in ends:
            ep = {k: v[i, start:end + 1] for k, v in arrays.items()}
            ep["expert_share"] = float(ep.pop("from_expert").mean())
            ep["env"] = int(env_ids[i])
            ep["source"] = "dagger"
            episodes.append(ep)
            start = end + 1
        if planned[i] is not None:
            episodes.append(planned[i])
    return episodes


def check_plan_labels(config: DAggerConfig, expert) -> None:
    """ConfigError unless config.plan_labels is 0 or the expert plans at least that far ahead."""
    if not config.plan_labels:
        return
    horizon = getattr(getattr(expert, "config", None), "horizon", None)
    if horizon is None or not (hasattr(expert, "planned_actions") or isinstance(expert, RayExpert)):
        raise ConfigError(f"plan_labels needs an expert that plans (the search or guided expert); found "
                          f"{type(expert).__name__}")
    if config.plan_labels >= horizon:
        raise ConfigError(f"plan_labels must be below the expert's planning horizon ({horizon} steps); "
                          f"found {config.plan_labels}")


@dataclass(frozen=True)
class RoundResult:
    round: int
    beta: float
    new_steps: int
    total_steps: int
    expert_share: float  # fraction of executed actions that were the expert's
    train_loss: float
    valid_loss: float
    sft_seconds: float
    evaluation: dict  # EvalResult.to_dict()
    checkpoint: str  # file name in the run folder
    plan_steps: int = 0  # the round's states reached by the expert's plans (plan_labels), beside new_steps
    fit_returns: list[float] = field(default_factory=list)  # with config.fits > 1: each fit's evaluated return


def finished_rounds(run_dir: str | os.PathLike) -> list[RoundResult]:
    """The rounds a run folder has finished, 0 first (from its state.json; none in a new folder)."""
    state_path = Path(run_dir) / "state.json"
    if not state_path.exists():
        return []
    return [RoundResult(**r) for r in json.loads(state_path.read_text())["rounds"]]


def best_round(results: list[RoundResult]) -> RoundResult:
    """The round whose policy scored the highest normalised return in its evaluation (DAgger's
    guarantee is for the best policy of the sequence, not the last: rounds can regress)."""
    if not results:
        raise ConfigError("best_round: no rounds")
    return max(results, key=lambda r: r.evaluation["normalised_return"]["mean"])


CURVE_COLUMNS = ("round", "beta", "new_steps", "plan_steps", "total_steps", "expert_share", "train_loss", "valid_loss",
                 "normalised_return", "survival_s", "full_horizon", "episodes", "horizon_s")


def write_learning_curve(run_dir: Path, results: list[RoundResult]) -> None:
    """run_dir/learning_curve.csv (one row per round: CURVE_COLUMNS) and learning_curve.png."""
    from .plots import learning_curve_png

    rows = [{"round": r.round, "beta": r.beta, "new_steps": r.new_steps, "plan_steps": r.plan_steps,
             "total_steps": r.total_steps,
             "expert_share": r.expert_share, "train_loss": r.train_loss, "valid_loss": r.valid_loss,
             "normalised_return": r.evaluation["normalised_return"]["mean"],
             "survival_s": r.evaluation["survival_s"]["mean"], "full_horizon": r.evaluation["full_horizon"],
             "episodes": r.evaluation["episodes"], "horizon_s": r.evaluation["horizon_s"]} for r in results]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CURVE_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    write_text(run_dir / "learning_curve.csv", buffer.getvalue())
    horizon, episodes = max(r["horizon_s"] for r in rows), rows[-1]["episodes"]
    evaluated = f"{episodes} episode{'s' if episodes > 1 else ''} of {horizon:g} s a round"
    learning_curve_png(run_dir / "learning_curve.png", [r["round"] for r in rows],
                       {"normalised return": [r["normalised_return"] for r in rows],
                        f"survival / {horizon:g} s": [r["survival_s"] / horizon for r in rows]},
                       xlabel="DAgger round", title=f"DAgger: {run_dir.name} ({evaluated})")


def _store_ref(run_dir: Path, store_path) -> str:
    """How state.json names the run's store: relative to the run folder when inside it (so a
    folder moved or copied whole, store included, still resumes), else its absolute path."""
    store = Path(store_path).resolve()
    try:
        return str(store.relative_to(run_dir.resolve()))
    except ValueError:
        return str(store)


def _store_of(run_dir: Path, ref: str) -> Path:
    """The store state.json's ref names (_store_ref)."""
    return (run_dir / ref).resolve() if not Path(ref).is_absolute() else Path(ref)


def _save_state(run_dir: Path, state: dict) -> None:
    write_text(run_dir / "state.json", json.dumps(state, indent=2))


def _round_result(k, beta, new_steps, total, sft: SFTResult, ev: EvalResult, ckpt: Path, share,
                  plan_steps: int = 0, fit_returns: list | None = None) -> RoundResult:
    return RoundResult(round=k, beta=beta, new_steps=new_steps, plan_steps=plan_steps, total_steps=total,
                       expert_share=share,
                       train_loss=sft.train_loss, valid_loss=sft.valid_loss, sft_seconds=sft.seconds,
                       evaluation=ev.to_dict(), checkpoint=ckpt.name, fit_returns=list(fit_returns or []))


def run_dagger(run_dir: str | os.PathLike, store_path: str | os.PathLike, config: DAggerConfig = DAggerConfig(), *,
               init_checkpoint: str | os.PathLike | None = None, beta_schedule: BetaSchedule | None = None,
               expert=None, on_round: Callable[[RoundResult], None] | None = None,
               on_progress: Callable[[str], None] | None = None, sim_threads: int = 0) -> list[RoundResult]:
    """Run (or resume) DAgger into run_dir on the store; return every round's result.

    The env configuration is the store's.  beta_schedule overrides config.beta (any callable).
    sim_threads: threads stepping the in-process collection's humanoids (0: all cores).
    A second run on the same store while this one runs is refused (StoreError).  The same as
    ``DAggerTrainer(...).run()``; the trainer shows each step of a round.
    """
    return DAggerTrainer(run_dir, store_path, config, init_checkpoint=init_checkpoint, beta_schedule=beta_schedule,
                         expert=expert, on_round=on_round, on_progress=on_progress, sim_threads=sim_threads).run()


class DAggerTrainer:
    """A DAgger run in run_dir on a store, one step at a time, or all of it with ``run()``.

    Each round k >= 1 is ``collect(k)`` (the beta_k mixture of learner and expert drives; the
    expert labels every visited state), ``aggregate(k, episodes)`` (the episodes join the store
    as a round of this run's own), ``select(k)`` (``fit(k, j)``, a retrain on the mocap rounds
    and this run's rounds, once or for each of config.fits seeds, the best kept) and
    ``evaluate_round(...)`` (the policy from phase 0; checkpoint, state.json and the learning
    curve written); ``round(k)`` does the four, and ``start()`` is round 0 (SFT on the mocap
    rounds, or init_checkpoint).  Everything is written atomically and the run folder alone
    resumes it: a round collected or trained before an interruption is not done again.

    A run owns the store rounds it collected (state.json's ``store_rounds``: its round k -> the
    store's round) and never takes another run's rounds in the same store as its own: its
    episodes' checkpoint_id starts with its ``run_id``.
    """

    def __init__(self, run_dir: str | os.PathLike, store_path: str | os.PathLike, config: DAggerConfig = DAggerConfig(),
                 *, init_checkpoint: str | os.PathLike | None = None, beta_schedule: BetaSchedule | None = None,
                 expert=None, on_round: Callable[[RoundResult], None] | None = None,
                 on_progress: Callable[[str], None] | None = None, sim_threads: int = 0):
        self.run_dir, self.config = Path(run_dir), config
        self.sim_threads = sim_threads  # of the in-process collection's Simulation (0: all cores)
        self.store = DemoStore(store_path)
        self.env_config = self.store.env_config
        self.clip = load_clip(self.env_config.clip)
        self.expert = expert or PDExpert(self.clip, self.env_config.action_space)
        check_plan_labels(config, self.expert)  # refused before the run folder is made
        self.beta_of = beta_schedule or schedule(config.beta)
        self.init_checkpoint, self.on_round = init_checkpoint, on_round
        self.say = on_progress or (lambda message: None)
        state_path = self.run_dir / "state.json"
        config_now = json.loads(json.dumps(asdict(config)))  # as state.json holds it (lists, not tuples)
        self.state = json.loads(state_path.read_text()) if state_path.exists() else {
            "store": _store_ref(self.run_dir, store_path), "config": config_now, "rounds": [],
            "run_id": uuid.uuid4().hex[:8], "store_rounds": {}}
        self.legacy = "run_id" not in self.state  # begun before runs owned their rounds: store round k is round k
        if _store_of(self.run_dir, self.state["store"]) != Path(store_path).resolve():
            raise ConfigError(f"{run_dir}: this run uses the store {self.state['store']}, not {store_path}")
        self.results = [RoundResult(**r) for r in self.state["rounds"]]
        if config_now != self.state["config"]:  # resumed with other settings: keep a record of what ran when
            self.state.setdefault("config_history", [{"from_round": 0, "config": self.state["config"]}])
            self.state["config_history"].append({"from_round": len(self.results), "config": config_now})
            self.state["config"] = config_now
        if init_checkpoint is not None and not self.results:
            load_checkpoint(init_checkpoint, self.env_config)  # refused before the run folder is made
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.policy = None
        self._sim = None

    # ----- what the run owns ------------------------------------------------------------
    def data_rounds(self) -> list[int] | None:
        """The store rounds this run trains on: the mocap rounds and its own (legacy: all)."""
        if self.legacy:
            return None
        mocap = {e["round"] for e in self.store.episode_index() if e["source"] == "mocap"}
        return sorted(mocap | set(self.state["store_rounds"].values()))

    def _steps_in(self, rounds) -> int:
        return sum(e["length"] for e in self.store.episode_index() if rounds is None or e["round"] in rounds)

    def _owned(self, r: int) -> bool:
        """Whether store round r holds this run's episodes (collected before an interruption)."""
        rows = [e for e in self.store.episode_index() if e["round"] == r]
        return bool(rows) and (self.legacy or all(run_of(e) == self.state["run_id"] for e in rows))

    def _checkpoint_id(self) -> str:
        last = self.results[-1].checkpoint
        return last if self.legacy else f"{self.state['run_id']}:{last}"

    # ----- the steps ----------------------------------------------------------------------
    def start(self) -> RoundResult:
        """Round 0 (SFT on the mocap rounds, or the init checkpoint), unless done; the current
        policy is then the last finished round's."""
        if not self.results:
            if self.init_checkpoint is not None:
                policy, _, _ = load_checkpoint(self.init_checkpoint, self.env_config)
                sft = SFTResult(0, 0, float("nan"), float("nan"), float("nan"), 0, 0, 0.0)
            else:
                self.say("round 0: SFT on the store's mocap rounds" if not self.legacy else "round 0: SFT on the store")
                policy, sft = sft_on_store(self.store, self.config.sft, policy_config=self.config.policy,
                                           rounds=self.data_rounds())
            self.evaluate_round(0, 1.0, 0, policy, sft, 1.0)
        self.policy, _, _ = load_checkpoint(self.run_dir / self.results[-1].checkpoint, self.env_config)
        return self.results[-1]

    def collect(self, k: int) -> tuple[list[Episode], float]:
        """Round k's episodes, and the share of executed actions that were the expert's:
        config.num_envs humanoids from random clip times, each step the expert's action with
        probability beta_k (else the current policy's), every visited state labelled by the expert."""
        config, beta = self.config, float(self.beta_of(k))
        self.say(f"round {k}: collecting with beta {beta:.3f}")
        started = time.perf_counter()

        def report(done, steps):  # a slow expert: say how far, at each quarter
            if done * 4 // steps != (done - 1) * 4 // steps:
                labels = done * config.num_envs
                self.say(f"round {k}: {done}/{steps} steps, {labels} states labelled "
                         f"({labels / (time.perf_counter() - started):.1f} per s, simulation and learner included)")

        collecting = replace(self.env_config, random_start=True)
        if isinstance(self.expert, RayExpert):  # each worker collects a slice of the envs with its own expert
            eps = self.expert.collect(self.policy, collecting, config.num_envs, beta, config.steps_per_env,
                                      (config.seed, k), config.mixing, config.segment_steps, config.collect_noise,
                                      plan_labels=config.plan_labels, progress=lambda done, total: self.say(
                                          f"round {k}: {done} of {total} workers' slices collected"))
        else:
            self._sim = self._sim or Simulation(collecting, config.num_envs, self.sim_threads, clip=self.clip)
            eps = collect(self._sim, self.policy.act, self.expert, beta, config.steps_per_env, (config.seed, k),
                          config.mixing, config.segment_steps, report, config.collect_noise, config.plan_labels,
                          self.sim_threads)
        labelled_by = provenance_json(self.expert)
        visited = [e for e in eps if e["source"] == "dagger"]
        share = float(np.average([e["expert_share"] for e in visited], weights=[len(e["obs"]) for e in visited]))
        return [Episode(obs=e["obs"], expert_actions=e["expert_actions"], actions=e["actions"], qpos=e["qpos"],
                        qvel=e["qvel"], time_s=e["time_s"], phase=self.clip.phase(e["time_s"]), reward=e["reward"],
                        terminated=e["terminated"], truncated=e["truncated"], source=e["source"], clip=self.clip.name,
                        checkpoint_id=self._checkpoint_id(), beta=beta, seed=config.seed * 1000 + k,
                        labelled_by=labelled_by)
                for e in eps], share

    def aggregate(self, k: int, episodes: list[Episode]) -> int:
        """Append round k's episodes to the store as a round of this run's own; its store round."""
        rounds_in_store = json.loads(self.store.attrs()["rounds"])
        r = k if self.legacy else max(rounds_in_store, default=-1) + 1
        if not self.legacy:  # recorded before appending, so that a resume finds the round
            self.state["pending"] = {"round": k, "store_round": r}
            _save_state(self.run_dir, self.state)
        self.store.append_round(episodes, round=r, env_config=self.env_config,
                                model_hash=model_hash_of(self.env_config))
        self._record(k, r)
        return r

    def _record(self, k: int, r: int) -> None:
        if not self.legacy:
            self.state["store_rounds"][str(k)] = r
            self.state.pop("pending", None)
            _save_state(self.run_dir, self.state)

    def collected(self, k: int) -> tuple[int, int, float] | None:
        """(new steps, plan steps, expert share) of round k if it was collected before an
        interruption, else None."""
        rounds_in_store = json.loads(self.store.attrs()["rounds"])
        pending = self.state.get("pending") or {}
        r = k if self.legacy else self.state["store_rounds"].get(
            str(k), pending.get("store_round") if pending.get("round") == k else None)
        if r is None or r not in rounds_in_store or not self._owned(r):
            return None
        self._record(k, r)
        done = self.store.load(("actions", "expert_actions"), split=None, rounds=[r], sources=["dagger"])
        plan_steps = sum(e["length"] for e in self.store.episode_index() if e["round"] == r and e["source"] == "plan")
        # an executed expert action equals its label, unless collect_noise moved it: unknown then
        share = (float(np.mean(np.all(done["actions"] == done["expert_actions"], axis=1)))
                 if self.config.collect_noise == 0 else float("nan"))
        return len(done["actions"]), plan_steps, share

    def fit(self, k: int, attempt: int = 0):
        """Round k's policy and its SFTResult: retrained on the mocap rounds and this run's (or
        read back, if trained before an interruption); attempt j > 0 trains with another seed
        (config.fits), leaving the current policy as it was."""
        config, rounds = self.config, self.data_rounds()
        existing = self.run_dir / f"round_{k:03d}.pt"
        if existing.exists():  # trained before an interruption: do not train it twice
            return self._read_back(existing)[:2]
        fitting = f" (fit {attempt + 1} of {config.fits})" if config.fits > 1 else ""
        self.say(f"round {k}: retraining on {self._steps_in(rounds)} steps{fitting}")
        seed = k + FIT_SEED_STRIDE * attempt  # attempt 0: the seeds of a run without fits
        if config.retrain_from_scratch:  # round 0's training settings, the retrains' choice of data
            retrain = replace(config.sft, last_rounds=config.keep_rounds, seed=config.sft.seed + seed,
                              epoch_samples=config.retrain.epoch_samples,
                              drop_before_fall_s=config.retrain.drop_before_fall_s)
            return sft_on_store(self.store, retrain, policy_config=self.policy.config, rounds=rounds)
        retrain = replace(config.retrain, last_rounds=config.keep_rounds, seed=config.retrain.seed + seed)
        # a fit of several (or another attempt) starts from a copy: every fit from the same start
        start = self.policy if config.fits == 1 and attempt == 0 else copy.deepcopy(self.policy)
        return sft_on_store(self.store, retrain, policy=start, rounds=rounds)

    def select(self, k: int):
        """Round k's policy, its SFTResult, its evaluation (None: not evaluated yet) and every
        fit's return: config.fits policies fitted (``fit(k, j)``), each evaluated as the round
        is, the best return kept (the first of equals); one fit is just ``fit(k)``."""
        existing = self.run_dir / f"round_{k:03d}.pt"
        if existing.exists():  # chosen before an interruption
            policy, sft, returns = self._read_back(existing)
            return policy, sft, None, returns
        if self.config.fits == 1:
            return (*self.fit(k), None, [])
        best, kept, returns = None, 0, []
        for j in range(self.config.fits):
            policy, sft = self.fit(k, j)
            ev = self._evaluate(policy)
            returns.append(ev.normalised_return.mean)
            if best is None or returns[-1] > returns[kept]:  # (a NaN return never wins)
                best, kept = (policy, sft, ev), j
        self.say(f"round {k}: fit {kept + 1} of {len(returns)} kept (returns {', '.join(f'{r:.3f}' for r in returns)})")
        return (*best, returns)

    def _read_back(self, checkpoint: Path):
        """A round's policy, its SFTResult and its fits' returns, from its checkpoint (one read)."""
        policy, _, meta = load_checkpoint(checkpoint, self.env_config)
        return policy, SFTResult(**{**meta["sft"], "history": []}), meta.get("fit_returns", [])

    def _evaluate(self, policy) -> EvalResult:
        """policy from phase 0, as every round is evaluated (config.eval_*)."""
        config = self.config
        return evaluate(policy_controller(policy), replace(self.env_config, random_start=False),
                        episodes=config.eval_episodes, horizon_s=self.clip.episode_horizon_s(config.eval_horizon_s),
                        init_noise_rad=config.eval_init_noise_rad)

    def evaluate_round(self, k: int, beta: float, new_steps: int, policy, sft: SFTResult, share: float,
                       plan_steps: int = 0, evaluation: EvalResult | None = None,
                       fit_returns: list | None = None) -> RoundResult:
        """Checkpoint round k's policy (unless there), evaluate it from phase 0 (unless given its
        evaluation), and record the round (state.json, learning curve, on_round)."""
        ckpt = self.run_dir / f"round_{k:03d}.pt"
        if not ckpt.exists():
            trained_on = self.data_rounds() if not self.legacy else json.loads(self.store.attrs()["rounds"])
            save_checkpoint(ckpt, policy, self.env_config, round=k, store=str(self.store.path),
                            store_rounds=trained_on, run_id=self.state.get("run_id", ""),
                            sft=asdict(sft) | {"history": []}, fit_returns=list(fit_returns or []))
        if evaluation is None:
            self.say(f"round {k}: evaluating")
        ev = evaluation if evaluation is not None else self._evaluate(policy)
        result = _round_result(k, beta, new_steps, self._steps_in(self.data_rounds()), sft, ev, ckpt, share, plan_steps,
                               fit_returns)
        self.results.append(result)
        self.policy = policy
        self.state["rounds"] = [asdict(r) for r in self.results]
        _save_state(self.run_dir, self.state)
        write_learning_curve(self.run_dir, self.results)
        if self.on_round:
            self.on_round(result)
        return result

    def round(self, k: int) -> RoundResult:
        """Round k: collect and aggregate (unless collected before an interruption), fit, evaluate."""
        if self.policy is None:
            self.start()
        beta = float(self.beta_of(k))
        before = self.collected(k)
        if before is None:
            episodes, share = self.collect(k)
            self.aggregate(k, episodes)
            new_steps = sum(len(e) for e in episodes if e.source == "dagger")
            plan_steps = sum(len(e) for e in episodes if e.source == "plan")
        else:
            new_steps, plan_steps, share = before
        policy, sft, ev, returns = self.select(k)
        return self.evaluate_round(k, beta, new_steps, policy, sft, share, plan_steps, ev, returns)

    def run(self) -> list[RoundResult]:
        """Every round up to config.rounds (resuming), holding the store for the run's length."""
        with self.store.held_for_run():
            self.start()
            for k in range(len(self.results), self.config.rounds + 1):
                self.round(k)
        return self.results
