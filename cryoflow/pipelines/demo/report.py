"""A self-contained HTML report: figures (PNG, embedded), tables and notes.

Used by ``cryoflow demo`` and by pipelines that want a picture a person would look at.
"""

from __future__ import annotations

import base64
import html
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Report:
    """Accumulates sections and writes one HTML file with everything embedded."""

    title: str
    sections: list[str] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.sections.append(f"<h2>{html.escape(text)}</h2>")

    def note(self, text: str) -> None:
        self.sections.append(f"<p>{html.escape(text)}</p>")

    def figure(self, fig: Any, caption: str) -> None:
        """Embed a matplotlib figure as PNG and close it."""
        import matplotlib.pyplot as plt

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
        plt.close(fig)
        data = base64.b64encode(buf.getvalue()).decode("ascii")
        self.sections.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}"/>'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def table(self, rows: dict[str, Any] | list[dict[str, Any]], caption: str = "") -> None:
        if isinstance(rows, dict):
            rows = [{"name": k, "value": v} for k, v in rows.items()]
        if not rows:
            return
        cols = list(rows[0])
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in cols) + "</tr>"
            for r in rows
        )
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        self.sections.append(f"<table>{cap}<tr>{head}</tr>{body}</table>")

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        doc = (
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1><p class='stamp'>written {stamp}</p>"
            + "\n".join(self.sections)
            + "</body></html>"
        )
        tmp = path.with_name(path.name + ".partial")
        tmp.write_text(doc, encoding="utf-8")
        tmp.replace(path)
        return path


def _fmt(v: Any) -> str:
    if isinstance(v, float | np.floating):
        return f"{float(v):.4g}"
    return "" if v is None else str(v)


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
h1{border-bottom:2px solid #345}h2{margin-top:2em;color:#345}
figure{display:inline-block;margin:1em}figcaption{font-size:.9em;color:#555;max-width:600px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .7em}
th{background:#eef}.stamp{color:#888}
"""


def slice_overlay(image: np.ndarray, masks: dict[str, np.ndarray], title: str) -> Any:
    """Figure of a 2D image (ndarray of shape (Y, X)) with coloured mask outlines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.imshow(np.asarray(image, dtype=np.float32), cmap="gray")
    colours = ["tab:red", "tab:cyan", "tab:green", "tab:orange", "tab:purple", "tab:pink"]
    for (name, mask), colour in zip(masks.items(), colours, strict=False):
        m = np.asarray(mask, dtype=float)
        if m.any():
            ax.contour(m, levels=[0.5], colors=[colour], linewidths=1.0)
        ax.plot([], [], color=colour, label=name)
    if masks:
        ax.legend(loc="lower right", fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    return fig


def curve(
    x: np.ndarray,
    ys: dict[str, np.ndarray],
    title: str,
    xlabel: str,
    ylabel: str,
    mark_x: float | None = None,
    hlines: tuple[float, ...] = (),
) -> Any:
    """Line plot of one or more curves over ``x`` (ndarray of shape (n,)); ``mark_x`` a dashed
    vertical line, ``hlines`` dotted horizontal ones (thresholds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, y in ys.items():
        ax.plot(np.asarray(x), np.asarray(y), marker=".", label=name)
    if mark_x is not None:
        ax.axvline(mark_x, color="k", ls="--", lw=0.8)
    for level in hlines:
        ax.axhline(level, color="grey", ls=":", lw=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    if len(ys) > 1:
        ax.legend(fontsize=7)
    return fig


def slices3(volumes: dict[str, np.ndarray]) -> Any:
    """Central XY, XZ and YZ slices of each ``(Z, Y, X)`` volume, one row per volume."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(volumes), 3, figsize=(7, 2.4 * len(volumes)), squeeze=False)
    for row, (name, vol) in zip(axes, volumes.items(), strict=True):
        v = np.asarray(vol, dtype=np.float32)
        z, y, x = (n // 2 for n in v.shape)
        for ax, (plane, img) in zip(
            row, (("XY", v[z]), ("XZ", v[:, y, :]), ("YZ", v[:, :, x])), strict=True
        ):
            ax.imshow(img, cmap="gray", origin="lower")
            ax.set_title(f"{name}: {plane}", fontsize=8)
            ax.axis("off")
    return fig


def scatter(
    points: dict[str, tuple[np.ndarray, np.ndarray]], title: str, xlabel: str, ylabel: str
) -> Any:
    """Scatter plot of named point sets ``(x, y)`` (1-D arrays of equal length)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, (x, y) in points.items():
        ax.scatter(np.asarray(x), np.asarray(y), s=8, alpha=0.7, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return fig
