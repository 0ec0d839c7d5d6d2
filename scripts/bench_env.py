"""Benchmark: how much of the vec env's time is its physics, measured against that same physics.

Each case steps 64 humanoids (``--num-envs``) on the walk clip, on T native threads, for a while,
and records what its Batch did: every sim's state at the start, the controls of every
``Batch.step`` call and the state rows every autoreset wrote. The recording is then replayed
through a raw ``mujoco.batch.Batch`` of the same model, sims, threads, bound fields and call
arguments: the same physics (the same states, controls and so contacts), with nothing else
around it, the replay's final states checked bit for bit against the env's. A case's ratio is
replay time / env time over the same physics steps: 1 would be an env that costs nothing but
its physics.

Cases (one control step = ``env.config.substeps`` physics steps of every sim):
- ``env_random``: ``ImitationVecEnv.step`` with uniform random actions in [-1, 1];
- ``env_mlp``: the same with a 1024-512 ReLU MLP (float32 torch, tanh output) acting on its
  observations, synchronously: policy, then step (the loop of before PipelinedVecEnv);
- ``pipelined_random`` and ``pipelined_mlp``: ``PipelinedVecEnv`` in 2 groups of envs
  (``--groups``), the policy acting on one group while the other's physics runs (send / recv).

Each round runs every case for --seconds in slices of --slice s, each slice of a case followed
by its replay, so that the host's drifting load hits both sides alike. Reported from the totals
over all rounds (ratios of totals, not medians of ratios): physics steps/s of the env and of its
replay, their ratio in wall time and per CPU second (``time.process_time``: all the process's
threads, so the native threads' work and the Python's alike), the share of the env's wall time
spent inside its own Batch.step, and each round's wall ratio (its spread). Target: the
policy-in-the-loop envs >= 0.90 of their physics in wall time. The pipelined env gains only
where the physics leaves cores free (more cores than --threads, an unloaded host); where the
physics fills them, its Python work competes with the physics and its groups double the
per-call cost of observations and reward (the per CPU second column shows that cost).

Run:  python scripts/bench_env.py [--num-envs 64] [--threads T] [--seconds 5] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import mujoco
import numpy as np
import torch
from mujoco.batch import Batch

from imitate import humanoid as hum
from imitate.env import ImitationVecEnv, PipelinedVecEnv
from imitate.simulation import Simulation

TARGETS = {"env_mlp": 0.90, "pipelined_mlp": 0.90}  # the policy-in-the-loop envs, of their physics (wall)
LABELS = {  # the table's rows, in order
    "env_random": "vec env, random actions",
    "env_mlp": "vec env, MLP policy (synchronous)",
    "pipelined_random": "pipelined env, random actions",
    "pipelined_mlp": "pipelined env, MLP policy",
}
BOUND_FIELDS = ("xpos", "subtree_com", "sensordata")  # the env's bound outputs (Simulation.__init__)


class PhysicsLog:
    """What one Simulation's Batch did over a stretch of control steps, enough to replay it:
    ``start`` (N, nstate) the state rows at the start, per Batch.step call its ``controls``
    (N, nu) and the ``resets`` (ids, state rows) written after it, and the call's arguments.
    Installed by wrapping the Batch's step; ``physics_s`` sums the wall time inside it."""

    def __init__(self, sim: Simulation):
        self.sim, self.physics_s = sim, 0.0
        self.kwargs: dict | None = None
        self.begin()
        real_step = sim.batch.step

        def logged_step(**kwargs):
            self.controls.append(sim.batch.ctrl.copy())
            self.resets.append(None)
            if self.kwargs not in (None, kwargs):
                raise RuntimeError(f"Batch.step called with {kwargs}, before with {self.kwargs}")
            self.kwargs = kwargs
            start = time.perf_counter()
            real_step(**kwargs)
            self.physics_s += time.perf_counter() - start

        sim.batch.step = logged_step  # an instance attribute: Simulation calls it as before

    def begin(self) -> None:
        """Start a new stretch from the sims' current states."""
        self.start = self.sim.batch.state.copy()
        self.controls: list[np.ndarray] = []
        self.resets: list[tuple[np.ndarray, np.ndarray] | None] = []

    def note_resets(self, done: np.ndarray) -> None:
        """After a control step: the rows its autoreset wrote (done (N,) bool)."""
        ids = np.flatnonzero(done)
        if len(ids):
            self.resets[-1] = (ids, self.sim.batch.state[ids].copy())

    @property
    def physics_steps(self) -> int:
        return len(self.controls) * self.sim.num_envs * self.kwargs["nstep"]


class Replay:
    """A raw Batch of a Simulation's model, sims and threads, replaying its PhysicsLogs."""

    def __init__(self, sim: Simulation):
        self.batch = Batch(sim.model, sim.num_envs, sim.batch.nthread)
        self.physics_steps = 0  # counted here, from the calls made: checked against the env's
        for name in BOUND_FIELDS:  # outputs copied after every call: the env's work too
            self.batch.bind(name)

    def load(self, log: PhysicsLog) -> None:
        self.batch.state[:] = log.start

    def call(self, log: PhysicsLog, k: int) -> None:
        """Batch.step call k of log, then the autoreset rows written after it."""
        self.batch.ctrl[:] = log.controls[k]
        self.batch.step(**log.kwargs)
        self.physics_steps += self.batch.nsim * log.kwargs["nstep"]
        if log.resets[k] is not None:
            ids, rows = log.resets[k]
            self.batch.state[ids] = rows


def replay(replays: list[Replay], logs: list[PhysicsLog]) -> None:
    """Every log's calls, interleaved across groups in the order the env made them."""
    for r, log in zip(replays, logs, strict=True):
        r.load(log)
    for k in range(max(len(log.controls) for log in logs)):
        for r, log in zip(replays, logs, strict=True):
            if k < len(log.controls):
                r.call(log, k)


class Case:
    """An env stepped in a loop by random actions or by policy(obs), with its physics logged."""

    def __init__(self, env, policy: torch.nn.Module | None):
        self.env, self.policy = env, policy
        self.pipelined = isinstance(env, PipelinedVecEnv)
        sims = env.sims if self.pipelined else [env.sim]
        self.logs = [PhysicsLog(sim) for sim in sims]
        self.replays = [Replay(sim) for sim in sims]
        self.rng = np.random.default_rng(0)
        self.obs, _ = env.reset(seed=0)

    def act(self, obs: np.ndarray) -> np.ndarray:
        if self.policy is None:
            return self.rng.uniform(-1.0, 1.0, (len(obs), hum.NU))
        with torch.inference_mode():
            return self.policy(torch.from_numpy(obs)).numpy()

    def run(self, seconds: float, steps: int | None = None) -> None:
        """Control steps for about `seconds` (at most `steps` if given), from a fresh log; the
        pipelined env's groups all stepped as often, the pipeline drained at the end."""
        for log in self.logs:
            log.begin()
        start, done = time.perf_counter(), 0

        def more() -> bool:
            return time.perf_counter() - start < seconds and (steps is None or done < steps)

        if not self.pipelined:
            while more():
                self.obs, _, term, trunc, _ = self.env.step(self.act(self.obs))
                self.logs[0].note_resets(term | trunc)
                done += 1
            return
        env = self.env
        for g in range(env.groups):
            env.send(self.act(self.obs[env.envs(g)]), g)
        sending = True
        while env.in_flight:
            g, obs, _, term, trunc, _ = env.recv()
            self.logs[g].note_resets(term | trunc)
            self.obs[env.envs(g)] = obs
            if g == 0:  # decide between whole control steps, so that the next run starts at group 0
                done += 1
                sending = more()
            if sending:
                env.send(self.act(obs), g)

    def replay(self) -> None:
        replay(self.replays, self.logs)

    def replay_matches(self) -> bool:
        """The replay's states are the env's, bit for bit (the same physics, done again)."""
        return all(np.array_equal(r.batch.state, log.sim.batch.state, equal_nan=True)
                   for r, log in zip(self.replays, self.logs, strict=True))


def timed(fn, *args) -> tuple[float, float]:
    """(wall s, CPU s of the whole process) of fn(*args)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


def mlp(obs_dim: int, act_dim: int) -> torch.nn.Module:
    nn = torch.nn
    return nn.Sequential(nn.Linear(obs_dim, 1024), nn.ReLU(), nn.Linear(1024, 512), nn.ReLU(),
                         nn.Linear(512, act_dim), nn.Tanh()).float().eval()


def make_cases(names: list[str], num_envs: int, threads: int, groups: int) -> dict[str, Case]:
    torch.manual_seed(0)
    cases = {}
    for name in names:
        env = (PipelinedVecEnv(num_envs=num_envs, nthread=threads, groups=groups) if name.startswith("pipelined")
               else ImitationVecEnv(num_envs=num_envs, nthread=threads))
        policy = mlp(env.single_observation_space.shape[0], hum.NU) if name.endswith("mlp") else None
        cases[name] = Case(env, policy)
    return cases


def run(names: list[str], num_envs: int, threads: int, groups: int, seconds: float, rounds: int,
        warmup_s: float, slice_s: float) -> dict:
    report = measure(make_cases(names, num_envs, threads, groups), seconds, rounds, warmup_s, slice_s)
    return {"num_envs": num_envs, "threads": threads, "groups": groups, **report}


def measure(cases: dict[str, Case], seconds: float, rounds: int, warmup_s: float, slice_s: float) -> dict:
    """Each case and its replay in interleaved slices; the figures of the totals (module docstring)."""
    for case in cases.values():
        case.run(warmup_s)
        case.replay()
    zero = {"env_wall": 0.0, "env_cpu": 0.0, "replay_wall": 0.0, "replay_cpu": 0.0, "physics_s": 0.0,
            "env_steps": 0, "replay_steps": 0}
    totals = {name: dict(zero) for name in cases}
    round_ratios: dict[str, list[float]] = {name: [] for name in cases}
    matched = dict.fromkeys(cases, True)
    nslice = max(1, round(seconds / slice_s))
    for _ in range(rounds):
        this_round = {name: dict(zero) for name in cases}
        for _ in range(nslice):  # interleaved slices: each case, then its replay
            for name, case in cases.items():
                t, physics_before = this_round[name], sum(log.physics_s for log in case.logs)
                wall, cpu = timed(case.run, seconds / nslice)
                t["env_wall"] += wall
                t["env_cpu"] += cpu
                t["physics_s"] += sum(log.physics_s for log in case.logs) - physics_before
                t["env_steps"] += sum(log.physics_steps for log in case.logs)
                replayed_before = sum(r.physics_steps for r in case.replays)
                wall, cpu = timed(case.replay)
                t["replay_wall"] += wall
                t["replay_cpu"] += cpu
                t["replay_steps"] += sum(r.physics_steps for r in case.replays) - replayed_before
                matched[name] &= case.replay_matches()
        for name, t in this_round.items():
            round_ratios[name].append(t["replay_wall"] / t["env_wall"])
            for key, value in t.items():
                totals[name][key] += value
    results = {}
    for name, t in totals.items():
        steps = t["env_steps"]
        results[name] = {
            "label": LABELS.get(name, name), "physics_steps": steps, "replay_physics_steps": t["replay_steps"],
            "replay_matches_env": matched[name],
            "env_physics_steps_per_s": steps / t["env_wall"], "replay_physics_steps_per_s": steps / t["replay_wall"],
            "ratio_wall": t["replay_wall"] / t["env_wall"],
            "env_physics_steps_per_cpu_s": steps / t["env_cpu"],
            "replay_physics_steps_per_cpu_s": steps / t["replay_cpu"],
            "ratio_cpu": t["replay_cpu"] / t["env_cpu"],
            "batch_step_share": t["physics_s"] / t["env_wall"],
            "rounds_ratio_wall": round_ratios[name]}
        if name in TARGETS:
            results[name].update(target=TARGETS[name], target_met=results[name]["ratio_wall"] >= TARGETS[name])
    return {"torch_threads": torch.get_num_threads(),
            "substeps": next(iter(cases.values())).logs[0].kwargs["nstep"], "seconds": seconds, "rounds": rounds,
            "slice_s": slice_s, "cpus": os.cpu_count(), "mujoco": mujoco.__version__, "torch": torch.__version__,
            "results": results}


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"imitate env vs a replay of its own physics: {report['num_envs']} sims, "
                        f"{report['threads']} threads, {report['groups']} groups (pipelined), {report['substeps']} "
                        f"physics steps per control step, totals of {report['rounds']} rounds x "
                        f"{report['seconds']:g} s, torch threads {report['torch_threads']}")
    columns = ("what", "env physics steps/s", "replay physics steps/s", "env / replay (wall)", "per round",
               "env physics steps/CPU s", "replay steps/CPU s", "env / replay (CPU)", "Batch.step share")
    for col in columns:
        table.add_column(col, justify="left" if col == "what" else "right")
    for r in report["results"].values():
        table.add_row(r["label"], f"{r['env_physics_steps_per_s']:,.0f}", f"{r['replay_physics_steps_per_s']:,.0f}",
                      f"{r['ratio_wall']:.3f}", " ".join(f"{x:.2f}" for x in r["rounds_ratio_wall"]),
                      f"{r['env_physics_steps_per_cpu_s']:,.0f}", f"{r['replay_physics_steps_per_cpu_s']:,.0f}",
                      f"{r['ratio_cpu']:.3f}", f"{r['batch_step_share']:.3f}")
    console = Console(width=200)
    console.print(table)
    console.print("env / replay: ratios of totals (replay time / env time over the same physics steps); per round: "
                  "each round's wall ratio. Batch.step share: the env's wall time inside its own Batch.step.")
    for r in report["results"].values():
        same = "same steps, replay states == env states" if (
            r["replay_matches_env"] and r["physics_steps"] == r["replay_physics_steps"]) else "[red]REPLAY DIFFERS[/]"
        console.print(f"{r['label']}: {r['physics_steps']:,} physics steps each side, {same}")
        if "target" in r:
            verdict = "[green]met[/]" if r["target_met"] else "[red]NOT met[/]"
            console.print(f"  {r['ratio_wall']:.3f} of its physics, target >= {r['target']:.2f}: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-envs", type=int, default=64, help="sims / envs (default 64)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="native threads (default: all CPUs)")
    parser.add_argument("--groups", type=int, default=2, help="the pipelined env's groups (default 2)")
    parser.add_argument("--cases", nargs="+", choices=list(LABELS), default=list(LABELS), help="cases to run")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per case per round (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; totals are reported (default 3)")
    parser.add_argument("--warmup", type=float, default=0.5, help="warm-up seconds per case before the rounds")
    parser.add_argument("--slice", type=float, default=2.5, help="seconds per interleaved slice (default 2.5)")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch threads (default 1: a batch-64 MLP gains little from more, and OpenMP "
                             "barriers stall badly when a shared core is busy)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads)
    report = run(args.cases, args.num_envs, args.threads, args.groups, args.seconds, args.rounds, args.warmup,
                 args.slice)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)


if __name__ == "__main__":
    main()
