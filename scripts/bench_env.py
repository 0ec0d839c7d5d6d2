"""Benchmark: how close the imitation vector env comes to raw MuJoCo stepping.

Measures in one run, on the same humanoid model (``imitate.humanoid.load_model("pd_target")``)
and the same native threads, in physics steps/s summed over the N sims:

1. raw: ``mujoco.batch.Batch(model, N, T)`` stepped open loop, ``substeps`` physics steps per
   call as the env does, each sim on a walk reference pose (spread over the clip) with its
   servos held at that pose's angles, and put back there every 0.5 s (staggered, as autoresets)
   so that the contact load stays like the env's; with ``persistent=False`` (the env's kind of
   batch, the baseline of every ratio) and with ``persistent=True``;
2. ``imitate.make_vec_env("walk", num_envs=N, nthread=T)`` with uniform random actions in
   [-1, 1] (observations, reward, terminations and autoreset included);
3. the same env with a 1024-512 ReLU MLP (float32 torch, tanh output) acting on its observations.
For 2 and 3 the rate of the env's own Batch.step alone is shown too: env time outside it is
Python overhead, and its ratio to raw shows how far the env's contact load is from raw's.

One control step is ``env.config.substeps`` physics steps. Each round warms every case up, then
times each for --seconds, interleaved in ~1 s slices so that the host's drifting load hits all
alike. Reported: the median rate over rounds, and the median of each round's ratio to that
round's raw rate. Targets: env with random actions >= 0.85 of raw, with the MLP >= 0.75.

Run:  python scripts/bench_env.py [--num-envs 64] [--threads T] [--seconds 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import mujoco
import numpy as np
import torch
from mujoco.batch import Batch

import imitate
from imitate import humanoid as hum

TARGETS = {"env_random": 0.85, "env_mlp": 0.75}
LABELS = {  # the table's rows, in order
    "raw": "raw Batch",
    "raw_persistent": "raw Batch, persistent",
    "env_random": "vec env, random actions",
    "env_random_physics": "  its Batch.step alone",
    "env_mlp": "vec env, MLP policy",
    "env_mlp_physics": "  its Batch.step alone",
}


def run_for(step, seconds: float) -> tuple[int, float]:
    """Call step() for about `seconds` (at least once); return (calls, elapsed seconds)."""
    calls, start = 0, time.perf_counter()
    while calls == 0 or time.perf_counter() - start < seconds:
        step()
        calls += 1
    return calls, time.perf_counter() - start


class Raw:
    """Open-loop stepping of a Batch of the env's model from reference poses.

    Held at fixed servo targets the humanoid falls within a second and lies on the floor with
    more contacts than the env ever sees (an episode ends at a non-foot body's floor contact),
    so each sim goes back to its pose every EPISODE_CALLS calls (native calls, timed too).
    """

    EPISODE_CALLS = 15  # 0.5 s at 30 Hz: about the env's mean episode under random actions

    def __init__(self, num_envs: int, threads: int, substeps: int, persistent: bool):
        self.batch = Batch(hum.load_model("pd_target"), num_envs, threads, persistent=persistent)
        clip = imitate.load_clip("walk")
        times = np.linspace(0.0, clip.duration_s, num_envs, endpoint=False)
        self.qpos, self.qvel = clip.qpos(times), clip.qvel(times)
        self.ctrl = np.clip(self.qpos[:, hum.HINGE_QPOS], hum.HINGE_RANGE[:, 0], hum.HINGE_RANGE[:, 1])
        self.substeps, self.age = substeps, np.zeros(num_envs, int)

    def start(self) -> None:
        self.age = np.arange(len(self.age)) % self.EPISODE_CALLS
        self.replace(np.arange(len(self.age), dtype=np.int32))

    def replace(self, ids: np.ndarray) -> None:
        b = self.batch
        b.reset(ids, stage=mujoco.mjtStage.mjSTAGE_NONE)
        b.qpos[ids], b.qvel[ids], b.ctrl[ids] = self.qpos[ids], self.qvel[ids], self.ctrl[ids]
        b.forward(ids, stage=mujoco.mjtStage.mjSTAGE_VEL)

    def step(self) -> None:
        self.batch.step(nstep=self.substeps)
        self.age += 1
        done = self.age >= self.EPISODE_CALLS
        if done.any():
            self.age[done] = 0
            self.replace(np.flatnonzero(done).astype(np.int32))


class EnvLoop:
    """The vec env stepped with random actions, or with the actions of policy(obs) if given.

    physics_s sums the wall time spent inside the env's own Batch.step (wrapped here).
    """

    def __init__(self, num_envs: int, threads: int, policy: torch.nn.Module | None):
        self.env = imitate.make_vec_env("walk", num_envs=num_envs, nthread=threads)
        self.policy, self.round, self.physics_s = policy, 0, 0.0
        self.rng = np.random.default_rng(0)
        batch_step = self.env.sim.batch.step

        def timed_batch_step(*args, **kwargs):
            start = time.perf_counter()
            batch_step(*args, **kwargs)
            self.physics_s += time.perf_counter() - start

        self.env.sim.batch.step = timed_batch_step

    def start(self) -> None:
        self.obs, _ = self.env.reset(seed=self.round)
        self.round += 1

    def step(self) -> None:
        if self.policy is None:
            action = self.rng.uniform(-1.0, 1.0, self.env.action_space.shape)
        else:
            with torch.inference_mode():
                action = self.policy(torch.from_numpy(self.obs)).numpy()
        self.obs = self.env.step(action)[0]


def mlp(obs_dim: int, act_dim: int) -> torch.nn.Module:
    nn = torch.nn
    return nn.Sequential(nn.Linear(obs_dim, 1024), nn.ReLU(), nn.Linear(1024, 512), nn.ReLU(),
                         nn.Linear(512, act_dim), nn.Tanh()).float().eval()


def run(num_envs: int, threads: int, seconds: float, rounds: int, warmup_s: float, slice_s: float) -> dict:
    torch.manual_seed(0)
    env_random = EnvLoop(num_envs, threads, None)
    substeps, obs_dim = env_random.env.config.substeps, env_random.env.single_observation_space.shape[0]
    cases = {"raw": Raw(num_envs, threads, substeps, persistent=False),
             "raw_persistent": Raw(num_envs, threads, substeps, persistent=True),
             "env_random": env_random, "env_mlp": EnvLoop(num_envs, threads, mlp(obs_dim, hum.NU))}
    envs = [name for name, case in cases.items() if isinstance(case, EnvLoop)]
    samples: dict[str, list[float]] = {name: [] for name in LABELS}  # calls/s per round
    nslice = max(1, round(seconds / slice_s))
    for _ in range(rounds):
        for case in cases.values():
            case.start()
            run_for(case.step, warmup_s)
        calls, spent = dict.fromkeys(cases, 0), dict.fromkeys(cases, 0.0)
        physics_before = {name: cases[name].physics_s for name in envs}
        for _ in range(nslice):  # interleaved slices
            for name, case in cases.items():
                n, dt = run_for(case.step, seconds / nslice)
                calls[name] += n
                spent[name] += dt
        for name in cases:
            samples[name].append(calls[name] / spent[name])
        for name in envs:
            samples[f"{name}_physics"].append(calls[name] / (cases[name].physics_s - physics_before[name]))
    results = {}
    for name, calls_per_s in samples.items():
        control = statistics.median(calls_per_s) * num_envs  # a call is a control step of each sim
        ratio = statistics.median(c / r for c, r in zip(calls_per_s, samples["raw"], strict=True))
        results[name] = {"label": LABELS[name], "control_steps_per_s": control,
                         "physics_steps_per_s": control * substeps, "ratio_to_raw": ratio,
                         "rounds_physics_steps_per_s": [c * num_envs * substeps for c in calls_per_s]}
        if name in TARGETS:
            results[name].update(target=TARGETS[name], target_met=ratio >= TARGETS[name])
    for name in envs:  # the fraction of the env's wall time spent inside its Batch.step
        share = (e / p for e, p in zip(samples[name], samples[f"{name}_physics"], strict=True))
        results[name]["physics_share"] = statistics.median(share)
    return {"num_envs": num_envs, "threads": threads, "torch_threads": torch.get_num_threads(),
            "substeps": substeps, "seconds": seconds, "rounds": rounds,
            "mujoco": mujoco.__version__, "torch": torch.__version__, "results": results}


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"imitate env vs raw MuJoCo: {report['num_envs']} sims, {report['threads']} threads, "
                        f"{report['substeps']} physics steps per control step, median of {report['rounds']} "
                        f"rounds x {report['seconds']:g} s, torch threads {report['torch_threads']}")
    for col in ("what", "physics steps/s", "control steps/s", "ratio to raw"):
        table.add_column(col, justify="left" if col == "what" else "right")
    for r in report["results"].values():
        table.add_row(r["label"], f"{r['physics_steps_per_s']:,.0f}", f"{r['control_steps_per_s']:,.0f}",
                      f"{r['ratio_to_raw']:.3f}")
    console = Console()
    console.print(table)
    for r in report["results"].values():
        if "target" in r:
            verdict = "[green]met[/]" if r["target_met"] else "[red]NOT met[/]"
            console.print(f"{r['label']}: {r['ratio_to_raw']:.3f} of raw, target >= {r['target']:.2f}: {verdict}"
                          f" (Batch.step is {r['physics_share']:.0%} of its time, the rest Python)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-envs", type=int, default=64, help="sims / envs (default 64)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="native threads (default: all CPUs)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per measurement (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians are reported (default 3)")
    parser.add_argument("--warmup", type=float, default=0.5, help="warm-up seconds before each round's timing")
    parser.add_argument("--slice", type=float, default=1.0, help="seconds per interleaved slice (default 1)")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch threads (default 1: a batch-64 MLP gains little from more, and OpenMP "
                             "barriers stall badly when a shared core is busy)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads)
    report = run(args.num_envs, args.threads, args.seconds, args.rounds, args.warmup, args.slice)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)


if __name__ == "__main__":
    main()
