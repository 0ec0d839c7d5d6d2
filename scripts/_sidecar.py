"""Shared plumbing of the benchmarks that run another library in its own venv, beside imitate.

bench_trpo_vs_sb3.py and bench_dagger_vs_imitation.py compare imitate with a library that cannot
live in the project's venv (sb3-contrib, imitation).  Each runs imitate's side in the project's
interpreter (the driver) and the other library's side in a subprocess: the same script file, run
by the other venv's python with ``--side NAME``.  That child answers each command line on its
stdin with one JSON line on stdout (`serve`); the driver talks to it through a `Sidecar`.

Both processes import this module (``python scripts/NAME.py`` puts scripts/ on sys.path), so at
import time it needs only the standard library; what it takes from imitate, torch, rich or
stable-baselines3 it imports inside the function that uses it (the side venvs have imitate
installed with --no-deps, and stable-baselines3; the project's venv has no stable-baselines3).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

# imitate's observation normaliser: (obs - mean) / max(std, STD_FLOOR), clipped to +-OBS_CLIP
OBS_CLIP, STD_FLOOR = 10.0, 1e-3


# --------------------------------------------------------------------------------------------
# the driver's end (the project's venv)


def check_python(python: str, prog: str, side: str, modules: Iterable[str], option: str, setup: str) -> None:
    """Stop the script at once, with the setup commands, unless `python` exists and imports `modules`."""
    modules = list(modules)
    if not Path(python).exists():
        sys.exit(f"{prog}: no {side} venv: {python} does not exist.\n"
                 f"Set it up once (outside the repo), or pass {option} PATH:\n  {setup}")
    probe = subprocess.run([python, "-c", f"import {', '.join(modules)}"], capture_output=True, text=True)
    if probe.returncode != 0:
        last = probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else f"exit {probe.returncode}"
        sys.exit(f"{prog}: {python} cannot import {', '.join(modules[:-1])} and {modules[-1]}:\n"
                 f"  {last}\nSet the venv up with:\n  {setup}")


def cli_options(args, *names: str) -> list[str]:
    """The command-line options that give the child the driver's `args` of these `names`."""
    return [word for name in names for word in (f"--{name.replace('_', '-')}", str(getattr(args, name)))]


class Sidecar:
    """The driver's handle on the child: starts `cmd`, its stderr going to `log_path`, and waits for
    its ready line; `ask` sends one command and returns the JSON answer.  The child is pointed at
    the very clip file imitate's side uses (its venv may have no pybullet to find it).  If the
    child fails (an error answer, or it exits), the script stops with `label` ("PROG: the NAME
    side"), the command line and the last 25 lines of the log."""

    def __init__(self, cmd: list[str], log_path: Path, clip: str, label: str):
        from imitate.motion import resolve_clip

        env = dict(os.environ)
        env["IMITATE_MOTIONS"] = os.pathsep.join([str(resolve_clip(clip).parent), env.get("IMITATE_MOTIONS", "")])
        self.cmd, self.log_path, self.label = cmd, log_path, label
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                     text=True)
        self._read()

    def _fail(self, what: str):
        self.proc.kill()
        self.proc.wait()
        self.log.close()
        tail = "\n".join(self.log_path.read_text().strip().splitlines()[-25:])
        sys.exit(f"{self.label} failed ({what}):\n  {' '.join(self.cmd)}\n{tail}")

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self._fail(f"exited with {self.proc.wait()}")
        answer = json.loads(line)
        if answer.get("ok") is False or "error" in answer:
            self._fail(answer.get("error", "error"))
        return answer

    def ask(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait()
        self.log.close()


def progress(json_output: bool) -> Callable[[str], None]:
    """The driver's progress printer: to stderr under --json (stdout carries the report), else stdout."""
    return lambda message: print(message, file=sys.stderr if json_output else sys.stdout, flush=True)


@contextmanager
def work_folder(workdir: str | None, prefix: str) -> Iterator[Path]:
    """The benchmark's working folder: --workdir (kept), or a temporary one removed at the end."""
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix=prefix))
    work.mkdir(parents=True, exist_ok=True)
    try:
        yield work
    finally:
        if not workdir:
            shutil.rmtree(work, ignore_errors=True)


def console(width: int):
    """A rich Console: the terminal's width, or `width` columns when the output is not a terminal."""
    from rich.console import Console

    out = Console()
    return out if out.is_terminal else Console(width=width)


def table(title: str, columns, *, no_wrap: bool = False):
    """A rich Table with these columns: the first (the row's name) left-aligned, figures right."""
    from rich.table import Table

    out = Table(title=title)
    for i, col in enumerate(columns):
        out.add_column(col, justify="left" if i == 0 else "right", no_wrap=no_wrap)
    return out


# --------------------------------------------------------------------------------------------
# the child's end (the other library's venv)


def serve(make_side: Callable[[], object], commands: Iterable[str]) -> int:
    """The child's loop.  Build the side (``make_side()``) and say so ({"ok": true}, or the error),
    then answer each line from stdin, "NAME [INT ...]" with NAME one of `commands`, by calling
    ``side.NAME(INT, ...)`` and printing its dict as one JSON line on stdout, until "quit" or the
    end of stdin.  Whatever the libraries print goes to stderr (the driver's log), and so does the
    traceback of a failure, whose answer is {"error": ...} for the driver to report."""
    commands = set(commands)
    reply = sys.stdout
    with redirect_stdout(sys.stderr):
        try:
            side = make_side()
            answer = {"ok": True}
        except Exception as exc:  # tell the driver, whose user sees it
            traceback.print_exc()
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), file=reply, flush=True)
        if not answer["ok"]:
            return 1
        for line in sys.stdin:
            command = line.split()
            if not command or command[0] == "quit":
                break
            try:
                if command[0] in commands:
                    out = getattr(side, command[0])(*map(int, command[1:]))
                else:
                    out = {"error": f"unknown command {line!r}"}
            except Exception as exc:
                traceback.print_exc()
                out = {"error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(out), file=reply, flush=True)
    return 0


class Clock:
    """Wall and CPU seconds per phase, and counters of work done.  CPU is this process's (all its
    threads, ``time.process_time``) plus ``extra_cpu()`` (e.g. a SubprocVecEnv's workers,
    `cpu_seconds_of`).  ``with clock("phase"): ...``, ``clock.timed(fn, "phase")`` or
    ``clock.add("phase", since, until)`` with marks from ``clock.now()``."""

    def __init__(self, extra_cpu: Callable[[], float] = lambda: 0.0, phases: Iterable[str] = ()):
        self.extra_cpu = extra_cpu
        self.wall, self.cpu, self.count = dict.fromkeys(phases, 0.0), dict.fromkeys(phases, 0.0), {}

    def now(self) -> tuple[float, float]:
        """A mark: (wall, CPU) seconds."""
        return time.perf_counter(), time.process_time() + self.extra_cpu()

    def add(self, phase: str, since: tuple[float, float], until: tuple[float, float] | None = None) -> None:
        wall, cpu = until or self.now()
        self.wall[phase] = self.wall.get(phase, 0.0) + wall - since[0]
        self.cpu[phase] = self.cpu.get(phase, 0.0) + cpu - since[1]

    @contextmanager
    def __call__(self, phase: str, extra: bool = True):
        """extra False: this process's CPU only (no /proc reads), for a phase the others idle through."""
        clock = self.now if extra else lambda: (time.perf_counter(), time.process_time())
        since = clock()
        try:
            yield
        finally:
            self.add(phase, since, clock())

    def timed(self, fn: Callable, phase: str) -> Callable:
        """fn, its calls' time added to phase."""
        def wrapper(*a, **kw):
            with self(phase):
                return fn(*a, **kw)
        return wrapper

    def tally(self, name: str, k: int = 1) -> None:
        self.count[name] = self.count.get(name, 0) + k

    def snapshot(self) -> dict:
        return {"wall": dict(self.wall), "cpu": dict(self.cpu), "count": dict(self.count)}

    def since(self, before: dict) -> dict:
        """The phases and counts accumulated after `before` (a snapshot)."""
        now = self.snapshot()
        return {part: {k: v - before[part].get(k, 0) for k, v in now[part].items()} for part in now}

    def split(self, total: tuple[float, float], rest: str) -> dict:
        """{"wall": {phase: s}, "cpu": {phase: s}}, phase `rest` getting what the others leave of
        total (wall, CPU) seconds."""
        for got, value in ((self.wall, total[0]), (self.cpu, total[1])):
            got[rest] = value - sum(v for k, v in got.items() if k != rest)
        return {"wall": dict(self.wall), "cpu": dict(self.cpu)}


def cpu_seconds_of(pids: Iterable[int]) -> float:
    """User + system CPU seconds so far of these processes (e.g. a SubprocVecEnv's workers),
    from /proc (Linux); a process that has exited counts 0.  A process's own threads are
    time.process_time()'s."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / tick


def fixed_normaliser():
    """An SB3 features extractor class: imitate's observation normaliser with fixed statistics,
    (obs - mean) / max(std, 1e-3), clipped to +-10; no parameters.  Built on call, as only the
    side venvs have stable-baselines3."""
    import numpy as np
    import torch
    from gymnasium import spaces
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    class FixedNormaliser(BaseFeaturesExtractor):
        def __init__(self, observation_space: spaces.Box, mean, std):
            super().__init__(observation_space, features_dim=int(np.prod(observation_space.shape)))
            self.register_buffer("mean", torch.as_tensor(np.asarray(mean), dtype=torch.float32))
            self.register_buffer("std", torch.as_tensor(np.maximum(np.asarray(std), STD_FLOOR), dtype=torch.float32))

        def forward(self, obs):
            return ((obs - self.mean) / self.std).clamp(-OBS_CLIP, OBS_CLIP)

    return FixedNormaliser


def sb3_controller(policy):
    """An SB3 policy as an imitate controller: its deterministic (mean) action on the sim's observations."""
    import numpy as np

    return lambda sim: policy.predict(sim.obs, deterministic=True)[0].astype(np.float64)


# --------------------------------------------------------------------------------------------
# both ends


def evaluate_controller(controller, env_config, horizon_s: float, episodes: int, **kwargs) -> dict:
    """`imitate.evaluation.evaluate` of a controller from phase 0 (init_noise_rad 0.01; `kwargs` go
    to it as well), as the flat dict the reports show."""
    from imitate.evaluation import evaluate

    ev = evaluate(controller, env_config, episodes=episodes, horizon_s=horizon_s, init_noise_rad=0.01, **kwargs)
    return {"normalised_return": ev.normalised_return.mean, "normalised_return_std": ev.normalised_return.std,
            "survival_s": ev.survival_s.mean, "survival_s_std": ev.survival_s.std,
            "joint_error_deg": ev.joint_error_deg.mean}
