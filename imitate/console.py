"""The rich console: tables and progress for the command line (no computation here)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from .evaluation import EvalResult, Stat, summarize_endings

# Piped or logged output has no terminal width to fit; rich would cut it at 80 columns
console = Console(log_path=False, width=None if sys.stdout.isatty() else 160)
progress_console = Console(stderr=True)  # progress is not output: it stays out of pipes and --json


def clips_table(rows: list[dict]) -> Table:
    table = Table(title="Motion clips")
    for col, justify in (("name", "left"), ("source", "left"), ("frames", "right"), ("fps", "right"),
                         ("duration [s]", "right"), ("loop", "center"), ("distance / cycle [m]", "right")):
        table.add_column(escape(col), justify=justify)
    for r in rows:
        table.add_row(r["name"], r["source"], str(r["frames"]), f"{r['fps']:.1f}", f"{r['duration_s']:.3f}",
                      "wrap" if r["loop"] else "none", f"{r['distance_per_cycle_m']:.3f}")
    return table


def _pm(s: Stat, fmt: str = ".3f") -> str:
    return f"{s.mean:{fmt}} ± {s.std:{fmt}}"


def evaluation_table(results: dict[str, EvalResult], title: str) -> Table:
    """One column per controller; rows: normalised return, survival, errors, reward terms
    (each mean ± std over episodes; reward terms are means per step survived)."""
    table = Table(title=f"{title}: mean ± std over episodes")
    table.add_column("metric")
    for name in results:
        table.add_column(escape(name), justify="right")
    rs = list(results.values())
    rows = [
        ("episodes", [str(r.episodes) for r in rs]),
        ("normalised return", [_pm(r.normalised_return) for r in rs]),
        (f"survival [s] of {rs[0].horizon_s:g}", [_pm(r.survival_s, ".2f") for r in rs]),
        ("survived the whole horizon", [f"{r.full_horizon} of {r.episodes}" for r in rs]),
        ("how they ended", [summarize_endings(r.endings) for r in rs]),
        ("joint error [deg]", [_pm(r.joint_error_deg, ".2f") for r in rs]),
        ("end-effector error [cm]", [_pm(r.end_effector_error_cm, ".2f") for r in rs]),
    ]
    for term in ("pose", "velocity", "end_effector", "com", "root"):
        rows.append((f"r_{term}", [_pm(r.reward_terms[term]) for r in rs]))
    for label, cells in rows:
        table.add_row(escape(label), *cells)
    return table


def zoo_table(rows, title: str) -> Table:
    """`imitate zoo`'s table: one row per clip (zoo.ZooRow), zoo.COLUMNS."""
    from .learning import COLUMNS, cells

    table = Table(title=escape(title))
    for column in COLUMNS:
        table.add_column(column, justify="left" if column in ("clip", "expert", "how they ended") else "right")
    for row in rows:
        table.add_row(*(escape(c) for c in cells(row)))
    return table


def _fmt(x, fmt=".3g") -> str:
    return "-" if x is None else f"{x:{fmt}}"


def _span(s: dict, mean_fmt: str, ends_fmt: str) -> str:
    return escape(f"{_fmt(s['mean'], mean_fmt)} [{_fmt(s['min'], ends_fmt)}, {_fmt(s['max'], ends_fmt)}]")


def store_tables(summary: dict) -> list[Table]:
    """Tables of `imitate dataset stats`: metadata, rounds, fields, splits."""
    meta = summary["metadata"]
    t_meta = Table(title=f"Store {escape(summary['path'])}", show_header=False)
    t_meta.add_column("key")
    t_meta.add_column("value")
    for key in ("format", "schema_version", "imitate_version", "created_utc", "clip", "action_space", "control_hz",
                "physics_hz", "model_hash", "obs_dim", "act_dim", "episodes", "steps", "valid_every"):
        t_meta.add_row(key, escape(str(meta[key])))
    if "build_config" in meta:
        t_meta.add_row("mocap build", escape(", ".join(f"{k}={v}" for k, v in meta["build_config"].items())))

    t_rounds = Table(title="Episodes by source, round and clip (run: the DAgger run that collected them)")
    for col in ("source", "round", "run", "clip", "episodes", "steps", "length: mean [min, max]",
                "return: mean [min, max]"):
        t_rounds.add_column(escape(col), justify="left" if col in ("source", "clip", "run") else "right")
    for r in summary["rounds"]:
        t_rounds.add_row(r["source"], str(r["round"]), r.get("run") or "-", r["clip"], str(r["episodes"]),
                         str(r["steps"]), _span(r["length"], ".1f", ".0f"), _span(r["return"], ".2f", ".2f"))

    t_fields = Table(title="Observation and action groups")
    for col in ("group", "dims", "min", "max", "mean |mean|", "mean std", "at limit"):
        t_fields.add_column(col, justify="left" if col == "group" else "right")
    for name, f in summary["fields"].items():
        limit = "-"
        if "at_limit_fraction" in f:
            worst = f["at_limit_worst"]
            limit = f"{100 * f['at_limit_fraction']:.1f}% (most: {worst['hinge']} {100 * worst['fraction']:.0f}%)"
        t_fields.add_row(name, str(f["shape"][0]), _fmt(f["min"]), _fmt(f["max"]), _fmt(f["mean_abs_mean"]),
                         _fmt(f["mean_std"]), limit)

    t_splits = Table(title="Splits")
    for col in ("split", "episodes", "steps"):
        t_splits.add_column(col, justify="left" if col == "split" else "right")
    for split, s in summary["splits"].items():
        t_splits.add_row(split, str(s["episodes"]), str(s["steps"]))
    return [t_meta, t_rounds, t_fields, t_splits]


def progress_bar(console: Console | None = None, get_time: Callable[[], float] | None = None):
    """A rich progress bar for long work (building, training, preparing an expert), on stderr
    (or console).  Where that is not a terminal (a log file, nohup), a ``LoggedProgress``."""
    console = console or progress_console
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("elapsed,"), TimeRemainingColumn(), TextColumn("left"))
    # the speed over the last 10 minutes: a slow task's steps (a reconstruction's windows, a
    # guided labelling pass) come more than rich's default 30 s apart, which would show no estimate
    kwargs = {"console": console, "get_time": get_time, "speed_estimate_period": 600.0}
    return Progress(*columns, **kwargs) if console.is_terminal else LoggedProgress(*columns, **kwargs)


def _minutes(seconds: float) -> str:
    """seconds as m:ss."""
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _count(x: float) -> str:
    """A progress count: whole numbers as 1,234,567, others as they are."""
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


class LoggedProgress(Progress):
    """rich's Progress for output that is not a terminal.  rich draws nothing there until the
    work ends, so a log of a long job would say nothing for an hour: instead each task prints
    one line at most every ``every_s`` seconds [s] (what is done, the time taken, rich's
    estimate of the time left) and one when it completes."""

    def __init__(self, *columns, every_s: float = 30.0, **kwargs):
        super().__init__(*columns, disable=True, **kwargs)
        self.every_s = every_s
        self._last_line: dict = {}  # task id -> time of its last line [s]
        self._completed_lines: set = set()  # the tasks whose end has been printed
        self._said: dict = {}  # task id -> the completed count its last line showed

    def update(self, task_id, **kwargs) -> None:
        super().update(task_id, **kwargs)
        self._line(task_id)

    def advance(self, task_id, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._line(task_id)

    def stop(self) -> None:
        """A last line for each task that moved since its last (work that ended short of its total,
        as a reconstruction that gives up does)."""
        for task in self.tasks:
            if task.id not in self._completed_lines and self._said.get(task.id, 0) != task.completed:
                self._line(task.id, force=True)
        super().stop()

    def _line(self, task_id, force: bool = False) -> None:
        task = self._tasks[task_id]
        now = self.get_time()
        if task.finished:
            if task_id in self._completed_lines:
                return
            self._completed_lines.add(task_id)
        elif not force and now - self._last_line.get(
                task_id, now if task.start_time is None else task.start_time) < self.every_s:
            return
        self._last_line[task_id], self._said[task_id] = now, task.completed
        done = _count(task.completed) + ("" if task.total is None else f"/{_count(task.total)}")
        line = f"{task.description}: {done}, {_minutes(task.elapsed or 0.0)} elapsed"
        if not task.finished and task.time_remaining is not None:
            line += f", about {_minutes(task.time_remaining)} left"
        self.console.print(escape(line), highlight=False, soft_wrap=True)


class LiveTable:
    """A table redrawn as rows arrive (DAgger rounds, TRPO iterations); a context manager, or
    start() and stop().  render(rows) -> Table; last: show only the last rows."""

    def __init__(self, render: Callable[[list], Table], rows: Iterable = (), last: int | None = None):
        from rich.live import Live

        self.rows = list(rows)
        self._render, self._last = render, last
        self._live = Live(self._table(), console=console, refresh_per_second=2)

    def _table(self) -> Table:
        return self._render(self.rows[-self._last:] if self._last else self.rows)

    def add(self, row) -> None:
        self.rows.append(row)
        self._live.update(self._table())

    def start(self) -> LiveTable:
        self._live.start(refresh=True)
        return self

    def stop(self, finished: bool = True) -> None:
        """Leave the last table on screen; a blank line after it if the work finished."""
        self._live.stop()
        if finished:
            console.print()

    def __enter__(self) -> LiveTable:
        return self.start()

    def __exit__(self, exc_type, exc, traceback) -> None:
        self.stop(finished=exc_type is None)


def sft_table(result, title: str = "SFT") -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for label, value in (("epochs run (best)", f"{result.epochs_run} ({result.best_epoch})"),
                         ("train loss", f"{result.train_loss:.5f}"), ("valid loss", f"{result.valid_loss:.5f}"),
                         ("valid MSE of the mean action", f"{result.valid_mse:.5f}"),
                         ("train / valid samples", f"{result.train_samples} / {result.valid_samples}"),
                         ("seconds", f"{result.seconds:.1f}")):
        table.add_row(label, value)
    return table


def rounds_table(results, title: str = "DAgger rounds (evaluation from phase 0)") -> Table:
    """One row per round: beta, steps, validation loss, evaluation."""
    table = Table(title=title)
    for col in ("round", "beta", "expert share", "new steps", "total steps", "valid loss", "evaluated",
                "norm. return", "survival [s]", "joint err [deg]"):
        table.add_column(escape(col), justify="right")
    for r in results:
        ev = r.evaluation
        new = f"{r.new_steps} + {r.plan_steps} planned" if r.plan_steps else str(r.new_steps)
        table.add_row(str(r.round), f"{r.beta:.2f}", f"{r.expert_share:.2f}", new, str(r.total_steps),
                      f"{r.valid_loss:.4f}", f"{ev['episodes']} x {ev['horizon_s']:g} s",
                      f"{ev['normalised_return']['mean']:.3f}",
                      f"{ev['survival_s']['mean']:.2f}", f"{ev['joint_error_deg']['mean']:.1f}")
    return table


def trpo_table(logs, title: str = "TRPO iterations") -> Table:
    table = Table(title=title)
    for col in ("iter", "samples", "step rew.", "ep. return", "ep. [s]", "falls/ep", "KL", "step", "V loss"):
        table.add_column(escape(col), justify="right")
    for e in logs:
        step = "warm-up" if e.warmup else ("rejected" if e.step_fraction == 0 else f"{e.step_fraction:.2f}")
        table.add_row(str(e.iteration), f"{e.samples:,}", f"{e.mean_step_reward:.3f}", f"{e.mean_episode_return:.2f}",
                      f"{e.mean_episode_length_s:.2f}", f"{e.fall_rate:.2f}", f"{e.kl:.4f}", step,
                      f"{e.value_loss:.3f}")
    return table
