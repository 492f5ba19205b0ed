"""The PCA's extra files: eigenvolumes, principal coordinates and their scatter by class."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from cryoflow.pipelines.stages.particle_inputs import SetInputs, write_map


def pca_files(state: dict[str, np.ndarray], inputs: SetInputs) -> dict[str, Callable[[Path], None]]:
    """``eigen_<j>.mrc`` (j = 1 ..), ``pca.csv`` and ``pca_scatter.png`` writers."""
    out: dict[str, Callable[[Path], None]] = {}
    eig = np.asarray(state["eigen"])
    for j in range(eig.shape[0] if eig.ndim == 4 else 0):

        def one(path: Path, v: np.ndarray = eig[j]) -> None:
            write_map(path, v, inputs.voxel_size_angstrom)

        out[f"eigen_{j + 1}.mrc"] = one
    coords = np.asarray(state["coords"])
    labels = np.asarray(state["assign"]).astype(int) + 1
    if coords.ndim == 2:
        out["pca.csv"] = lambda path: _csv(path, inputs, coords, labels)
        out["pca_scatter.png"] = lambda path: _scatter(path, coords, labels)
    return out


def _csv(path: Path, inputs: SetInputs, coords: np.ndarray, labels: np.ndarray) -> None:
    t = inputs.table[["tomogram", "x", "y", "z"]].copy()
    t["class"] = labels
    for j in range(coords.shape[1]):
        t[f"pc{j + 1}"] = coords[:, j]
    t.to_csv(path, index=False)


def _scatter(path: Path, coords: np.ndarray, labels: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4))
    y = coords[:, 1] if coords.shape[1] > 1 else np.zeros(len(coords))
    for k in np.unique(labels):
        sel = labels == k
        ax.scatter(coords[sel, 0], y[sel], s=10, label=f"class {k}")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
