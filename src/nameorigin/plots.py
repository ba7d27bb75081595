"""Pictures: loss curves, confusion matrices, attention heat maps, reliability and risk-coverage curves.
Rendered with no display (Agg).

Each function draws a :class:`matplotlib.figure.Figure`, saves it as PNG (atomically) when given a path,
and returns it, so callers and tests can read its text.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

if "inline" not in os.environ.get("MPLBACKEND", ""):  # a notebook kernel draws inline; elsewhere, no display
    matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from .atomic import atomic_path


def save(fig: Figure, path: str | os.PathLike) -> Path:
    """Write a PNG through a temporary file renamed into place."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def figure_text(fig: Figure) -> list[str]:
    """Every piece of text drawn in a figure (titles, labels, tick labels, legends)."""
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text) if t.get_text()]


def loss_curve(
    steps: Sequence[float],
    losses: Sequence[float],
    *,
    title: str = "Training loss",
    xlabel: str = "Iterations",
    path: str | os.PathLike | None = None,
) -> Figure:
    """One run's training loss, as the worksheet plots it."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, losses)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Loss (Train)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if path:
        save(fig, path)
    return fig


def loss_curves(
    curves: Mapping[str, Sequence[tuple[Sequence[float], Sequence[float]]]],
    *,
    title: str,
    xlabel: str = "Training names seen",
    path: str | os.PathLike | None = None,
) -> Figure:
    """Several models together, as the worksheet's last plot: for each model the mean over seeds, with a
    band from the lowest to the highest seed. ``curves[model]`` is a list of (x, loss) runs."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for model, runs in curves.items():
        n = min(len(loss) for _, loss in runs)
        if n == 0:
            continue
        x = np.asarray(runs[0][0][:n], dtype=float)
        ys = np.asarray([loss[:n] for _, loss in runs], dtype=float)
        (line,) = ax.plot(x, ys.mean(0), label=f"{model} (n={len(runs)})")
        if len(runs) > 1:
            ax.fill_between(x, ys.min(0), ys.max(0), color=line.get_color(), alpha=0.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Loss (Train)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    if path:
        save(fig, path)
    return fig


def _finish_heatmap(fig: Figure, ax, im, *, title: str, scale: str, path: str | os.PathLike | None) -> Figure:
    """Title, a colour bar labelled ``scale``, and the file when ``path`` is given."""
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=scale)
    if path:
        save(fig, path)
    return fig


def confusion(
    matrix,
    labels: Sequence[str],
    *,
    title: str = "Confusion matrix (rows: true language)",
    path: str | os.PathLike | None = None,
) -> Figure:
    """Row-normalised confusion matrix with every language on both axes."""
    m = np.asarray(matrix, dtype=float)
    rows = m.sum(1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    size = max(6, 0.42 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=90)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("Predicted language")
    ax.set_ylabel("True language")
    return _finish_heatmap(fig, ax, im, title=title, scale="share of the true language's names", path=path)


def attention_map(
    names: Sequence[str],
    weights: Sequence[Sequence[float]],
    *,
    title: str = "Attention",
    path: str | os.PathLike | None = None,
) -> Figure:
    """Each name a row, each character a cell shaded by its attention weight."""
    width = max(len(n) for n in names)
    grid = np.full((len(names), width), np.nan)
    for i, w in enumerate(weights):
        grid[i, : len(w)] = w
    fig, ax = plt.subplots(figsize=(max(4, 0.55 * width + 2), max(1.8, 0.55 * len(names) + 1)))
    im = ax.imshow(np.ma.masked_invalid(grid), cmap="Reds", vmin=0, vmax=max(1e-9, float(np.nanmax(grid))))
    for i, name in enumerate(names):
        for j, ch in enumerate(name):
            ax.text(
                j,
                i,
                ch,
                ha="center",
                va="center",
                fontsize=11,
                color="white" if grid[i, j] > 0.6 * np.nanmax(grid) else "black",
            )
    ax.set_yticks(range(len(names)), names)
    ax.set_xticks(range(width), [str(j + 1) for j in range(width)])
    ax.set_xlabel("Character position")
    return _finish_heatmap(fig, ax, im, title=title, scale="attention weight", path=path)


def reliability_diagram(
    before: Sequence[dict],
    after: Sequence[dict] | None = None,
    *,
    temperature: float = 1.0,
    title: str = "Reliability",
    path: str | os.PathLike | None = None,
) -> Figure:
    """Accuracy against confidence per bin, before (and after) temperature scaling; the diagonal is perfect."""
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfectly calibrated")
    for bins, label in [(before, "before (T = 1)"), (after, f"after (T = {temperature:.2f})")]:
        if bins:
            pts = [(b["confidence"], b["accuracy"]) for b in bins if b["count"]]
            ax.plot(*zip(*pts, strict=False), marker="o", label=label)
    ax.set_ylim(0, 1)
    return _finish_lines(fig, ax, xlabel="Confidence (top probability)", ylabel="Accuracy", title=title, path=path)


def _finish_lines(fig: Figure, ax, *, xlabel: str, ylabel: str, title: str, path: str | os.PathLike | None) -> Figure:
    """The common ending of a line plot over [0, 1]: labels, title, legend, grid, and the PNG when asked."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xlim(0, 1)
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    if path:
        save(fig, path)
    return fig


def risk_coverage(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    title: str = "Risk-coverage",
    path: str | os.PathLike | None = None,
) -> Figure:
    """Error rate among the names answered (risk) against the share answered (coverage), most confident first;
    one line per ranking. Lower is better; the right end is the model's plain error rate."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, (coverage, risk) in curves.items():
        ax.plot(coverage, risk, label=label)
    ax.set_ylim(bottom=0)
    return _finish_lines(
        fig,
        ax,
        xlabel="Coverage (share of names answered, most confident first)",
        ylabel="Risk (error rate among them)",
        title=title,
        path=path,
    )
