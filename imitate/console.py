"""The rich console: tables and progress for the command line (no computation here)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .evaluate import EvalResult, Stat

console = Console()


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
    """One column per controller; rows: normalised return, survival, errors, reward terms."""
    table = Table(title=title)
    table.add_column("metric (mean ± std over episodes)")
    for name in results:
        table.add_column(name, justify="right")
    rs = list(results.values())
    rows = [
        ("episodes", [str(r.episodes) for r in rs]),
        ("normalised return", [_pm(r.normalised_return) for r in rs]),
        ("survival [s]", [f"{_pm(r.survival_s, '.2f')} of {r.horizon_s:g}" for r in rs]),
        ("joint error [deg]", [_pm(r.joint_error_deg, ".2f") for r in rs]),
        ("end-effector error [cm]", [_pm(r.end_effector_error_cm, ".2f") for r in rs]),
    ]
    for term in ("pose", "velocity", "end_effector", "com", "root"):
        rows.append((f"r_{term} (mean per step)", [_pm(r.reward_terms[term]) for r in rs]))
    for label, cells in rows:
        table.add_row(escape(label), *cells)
    return table
