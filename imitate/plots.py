"""Learning curves as PNG files (matplotlib, drawn off-screen): one function for every run."""

from __future__ import annotations

from pathlib import Path

from .atomic import replaced_on_success


def learning_curve_png(path: str | Path, x: list[float], series: dict[str, list[float]], *, xlabel: str,
                       title: str, ylim: tuple[float, float] | None = (0.0, 1.05)) -> Path:
    """Draw each series (label -> values, one per x) against x and write path; returns path.
    Written atomically (imitate.atomic)."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, values in series.items():
        ax.plot(x, values, marker="o" if len(x) < 40 else None, label=label)
    ax.set_xlabel(xlabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    try:
        with replaced_on_success(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
    return path
