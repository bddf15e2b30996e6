"""Every figure the library writes, as PNG files through matplotlib's Agg backend (no display):
learning curves, loss curves, open-loop error and return against real steps."""

from __future__ import annotations

from collections.abc import Sequence


def curves(path: str, series: dict[str, tuple[Sequence[float], Sequence[float]]], xlabel: str,
           ylabel: str, title: str = "", log_y: bool = False, style: str = "-",
           log_x: bool = False) -> None:
    """Plots ``{label: (x, y)}`` as lines on one axis (a legend when labels are given) and
    saves the figure to ``path``. Empty series are skipped, so an empty log still gives a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    labelled = False
    for label, (x, y) in series.items():
        if len(x):
            ax.plot(x, y, style, lw=1.5, label=label or None)
            labelled |= bool(label)
    if log_y:
        ax.set_yscale("log")
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    if labelled:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def state_panels(path: str, real, pred) -> None:
    """One panel per state dimension: a real trajectory ``[T, D]`` and an imagined one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    dims = real.shape[1]
    fig, axes = plt.subplots(dims, 1, figsize=(6, 1.4 * dims), dpi=100, sharex=True)
    for d, ax in enumerate(np.atleast_1d(axes)):
        ax.plot(real[:, d], label="real")
        ax.plot(pred[:, d], "--", label="imagined")
        ax.set_ylabel(f"x[{d}]")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
