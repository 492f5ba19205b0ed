"""Pictures of the demo's heterogeneity stages (matplotlib figures for the report)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["central_slices", "motions_figure", "scatter", "trajectory_slices"]

_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _cuts(volume: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The central z, y and x slices of a cube."""
    v = np.asarray(volume, dtype=np.float32)
    c = v.shape[0] // 2
    return v[c], v[:, c], v[:, :, c]


def _grid(rows: Sequence[tuple[str, np.ndarray]], columns: Sequence[str], size: float) -> Any:
    """Rows of volumes (label, cube) as their central slices, one column per ``columns``."""
    plt = _pyplot()
    fig, axes = plt.subplots(
        3, len(rows), figsize=(size * len(rows), size * 3), squeeze=False, dpi=100
    )
    for j, (label, vol) in enumerate(rows):
        lo, hi = np.percentile(vol, [1, 99.5])
        for i, cut in enumerate(_cuts(vol)):
            ax = axes[i, j]
            ax.imshow(cut, cmap="gray", vmin=lo, vmax=hi, origin="lower")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(label, fontsize=7)
            if j == 0:
                ax.set_ylabel(columns[i], fontsize=7)
    fig.tight_layout()
    return fig


def central_slices(volumes: Mapping[str, np.ndarray]) -> Any:
    """One column per named cube (B, B, B): its central z, y, x slices."""
    return _grid(list(volumes.items()), ("z", "y", "x"), 1.6)


def trajectory_slices(volumes: np.ndarray, span_sd: float = 2.0) -> Any:
    """The central slices of volumes (n_steps, B, B, B) decoded along one latent axis."""
    steps = np.linspace(-span_sd, span_sd, len(volumes))
    rows = [(f"{t:+.1f} sd", v) for t, v in zip(steps, volumes, strict=True)]
    return _grid(rows, ("z", "y", "x"), 1.2)


def scatter(points: np.ndarray, labels: np.ndarray, axes: tuple[str, str], title: str) -> Any:
    """Points (n, 2) coloured by their (true) class ``labels`` (n,)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.0), dpi=100)
    p = np.asarray(points, dtype=float)
    y = p[:, 1] if p.shape[1] > 1 else np.zeros(len(p))
    for n, k in enumerate(np.unique(labels)):
        on = np.asarray(labels) == k
        colour = _COLOURS[n % len(_COLOURS)]
        ax.scatter(p[on, 0], y[on], s=9, color=colour, label=f"true class {int(k) + 1}")
    ax.set(xlabel=axes[0], ylabel=axes[1], title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def motions_figure(
    swing_deg: np.ndarray,
    motion1: np.ndarray | None,
    errors_deg: np.ndarray,
    explained: Sequence[float],
) -> Any:
    """Principal motion 1 against the true swing, explained variances, per-body errors."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), dpi=100)
    if motion1 is not None:
        axes[0].scatter(swing_deg, motion1, s=10)
    axes[0].set(xlabel="true arm swing (deg)", ylabel="principal motion 1 amplitude")
    axes[1].bar(np.arange(1, len(explained) + 1), explained)
    axes[1].set(xlabel="principal motion", ylabel="explained variance share")
    axes[2].boxplot([errors_deg[:, 0], errors_deg[:, 1]])
    axes[2].set_xticks([1, 2], ["fixed body", "arm"])
    axes[2].set(ylabel="angle error against truth (deg)")
    fig.tight_layout()
    return fig
