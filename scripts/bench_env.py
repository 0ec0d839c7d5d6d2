"""Benchmark: how close the imitation vector env comes to raw MuJoCo stepping.

Measures, in one run, on the same humanoid model (``imitate.humanoid.load_model("pd_target")``)
and the same native thread count:

1. raw: ``mujoco.batch.Batch(model, N, T)`` stepped open loop, ``substeps`` physics steps per
   call as the env does, each sim on the walk clip's reference pose (spread over the clip) with
   its servos held at that pose's hinge angles, and put back there every 0.5 s (staggered), so
   that its contact load stays like the env's; once with ``persistent=False`` (the env's kind
   of batch, the baseline of every ratio) and once with ``persistent=True``;
2. ``imitate.make_vec_env("walk", num_envs=N, nthread=T)`` with uniform random actions in
   [-1, 1] (observations, reward, terminations and autoreset included);
3. the same env driven by a 1024-512 ReLU MLP (float32 torch, tanh output) that computes
   the actions from the observations at every step.

Rates are summed over all N sims; one control step is ``env.config.substeps`` physics steps.
Each measurement is warmed up, then the cases are timed interleaved for a few rounds and the
median rate is reported. Targets: env with random actions >= 0.85 of raw, with the MLP >= 0.75.

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
LABELS = {
    "raw": "raw MuJoCo Batch (persistent=False)",
    "raw_persistent": "raw MuJoCo Batch (persistent=True)",
    "env_random": "vec env, random actions",
    "env_mlp": "vec env, MLP policy",
}


def timed(step, seconds: float, warmup_s: float) -> float:
    """Calls per second of step() over about `seconds`, after `warmup_s` of untimed calls."""
    for budget, timing in ((warmup_s, False), (seconds, True)):
        calls, start = 0, time.perf_counter()
        while calls == 0 or time.perf_counter() - start < budget:
            step()
            calls += 1
    return calls / (time.perf_counter() - start)


class Raw:
    """Open-loop stepping of a Batch of the env's model, from reference poses.

    Held at fixed servo targets the humanoid falls in about a second and then lies on the floor
    with several contacts, which costs more per step than the env's states (it ends an episode
    at the first floor contact of a non-foot body). So each sim is put back on its reference
    pose every EPISODE_CALLS calls, staggered like autoresets, in native calls inside the timing.
    """

    EPISODE_CALLS = 15  # 0.5 s at 30 Hz: about the env's mean episode length under random actions

    def __init__(self, num_envs: int, threads: int, substeps: int, persistent: bool):
        self.batch = Batch(hum.load_model("pd_target"), num_envs, threads, persistent=persistent)
        clip = imitate.load_clip("walk")
        times = np.linspace(0.0, clip.duration_s, num_envs, endpoint=False)
        self.qpos, self.qvel = clip.qpos(times), clip.qvel(times)
        self.ctrl = np.clip(self.qpos[:, hum.HINGE_QPOS], hum.HINGE_RANGE[:, 0], hum.HINGE_RANGE[:, 1])
        self.substeps = substeps
        self.age = np.zeros(num_envs, int)

    def start(self) -> None:
        """All sims on their reference poses, ages staggered."""
        self.age = np.arange(len(self.age)) % self.EPISODE_CALLS
        self.replace(np.arange(len(self.age), dtype=np.int32))

    def replace(self, ids: np.ndarray) -> None:
        self.batch.reset(ids, stage=mujoco.mjtStage.mjSTAGE_NONE)
        self.batch.qpos[ids], self.batch.qvel[ids], self.batch.ctrl[ids] = self.qpos[ids], self.qvel[ids], self.ctrl[ids]
        self.batch.forward(ids, stage=mujoco.mjtStage.mjSTAGE_VEL)

    def step(self) -> None:
        self.batch.step(nstep=self.substeps)
        self.age += 1
        done = self.age >= self.EPISODE_CALLS
        if done.any():
            self.age[done] = 0
            self.replace(np.flatnonzero(done).astype(np.int32))


class EnvLoop:
    """The vec env stepped with random actions, or with a policy's actions when given one."""

    def __init__(self, num_envs: int, threads: int, policy: torch.nn.Module | None):
        self.env = imitate.make_vec_env("walk", num_envs=num_envs, nthread=threads)
        self.policy, self.round = policy, 0
        self.rng = np.random.default_rng(0)

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


def run(num_envs: int, threads: int, seconds: float, rounds: int, warmup_s: float) -> dict:
    torch.manual_seed(0)
    env_random = EnvLoop(num_envs, threads, None)
    substeps = env_random.env.config.substeps
    obs_dim, act_dim = env_random.env.single_observation_space.shape[0], hum.NU
    cases = {
        "raw": Raw(num_envs, threads, substeps, persistent=False),
        "raw_persistent": Raw(num_envs, threads, substeps, persistent=True),
        "env_random": env_random,
        "env_mlp": EnvLoop(num_envs, threads, mlp(obs_dim, act_dim)),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):  # interleaved, so drifting machine load hits every case alike
        for name, case in cases.items():
            case.start()
            samples[name].append(timed(case.step, seconds, warmup_s))
    results = {}
    for name, calls_per_s in samples.items():
        control = statistics.median(calls_per_s) * num_envs  # one call = one control step each
        results[name] = {"label": LABELS[name], "control_steps_per_s": control,
                         "physics_steps_per_s": control * substeps,
                         "rounds_physics_steps_per_s": [r * num_envs * substeps for r in calls_per_s]}
    raw = results["raw"]["physics_steps_per_s"]
    for name, r in results.items():
        r["ratio_to_raw"] = r["physics_steps_per_s"] / raw
        if name in TARGETS:
            r["target"], r["target_met"] = TARGETS[name], r["ratio_to_raw"] >= TARGETS[name]
    return {"num_envs": num_envs, "threads": threads, "torch_threads": torch.get_num_threads(),
            "substeps": substeps, "seconds": seconds, "rounds": rounds,
            "mujoco": mujoco.__version__, "torch": torch.__version__, "results": results}


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"imitate env vs raw MuJoCo: {report['num_envs']} sims, {report['threads']} "
                        f"threads, {report['substeps']} physics steps per control step, median of "
                        f"{report['rounds']} x {report['seconds']:g} s")
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
            console.print(f"{r['label']}: {r['ratio_to_raw']:.3f} of raw, target >= {r['target']:.2f}: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-envs", type=int, default=64, help="sims / envs (default 64)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="native threads (default: all CPUs)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per measurement (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported")
    parser.add_argument("--warmup", type=float, default=0.5, help="warm-up seconds before each measurement")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch intra-op threads (default: --threads; the MLP runs between env steps)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads or args.threads)
    report = run(args.num_envs, args.threads, args.seconds, args.rounds, args.warmup)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)


if __name__ == "__main__":
    main()
