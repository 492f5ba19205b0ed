"""The files ``cryoflow embed`` writes into ``DIR``, and how ``DIR`` is published whole.

- ``latent.csv``: ``tomogram, x, y, z, z0 .. z{D-1}`` (``CONTRACT.md``), one row per particle
  in the order of the input particle file (the set's ``input_index``), ``x, y, z`` exactly the
  input coordinates (written with round-trip precision);
- ``classes.csv``: ``tomogram, x, y, z, class`` (1..K) in the same order, and
  ``particles.star``: the set's table with ``rlnClassNumber`` (every input column kept);
- ``class_<k>.mrc``: the class averages (voxel size of the set, box centre ``B // 2``);
- ``latent.png``: the first two latent dimensions coloured by class; ``trajectory.png``: the
  central slices of volumes decoded along the main latent axes, whose maps are
  ``trajectory/axis<j>_step<s>.mrc``;
- ``weights.pt`` + ``model.json``: the trained network (state_dict + JSON config);
- ``embed.json``: what was done (inputs, band, checkpoint hash, classes, timings).

Everything is written into a hidden sibling ``.DIR.partial-<id>`` and renamed to ``DIR`` at the
end, so an interrupted run never leaves a ``DIR`` that looks complete; an existing ``DIR``
that is not empty is replaced only with ``overwrite``.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryoflow.errors import AlreadyExistsError

CONTRACT_FILES = ("latent.csv",)


def check_out(out: str | Path, overwrite: bool) -> Path:
    """``out`` as a path, refusing a non-empty existing directory (or a file) unless
    ``overwrite``."""
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise AlreadyExistsError(f"{p}: exists and is not a directory; choose another --out")
    if p.is_dir() and any(p.iterdir()) and not overwrite:
        raise AlreadyExistsError(
            f"{p}: output directory is not empty; pass --overwrite to replace it"
        )
    return p


def staging_dir(out: Path) -> Path:
    """A fresh hidden directory beside ``out`` to write into."""
    tmp = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:12]}"
    tmp.mkdir(parents=True)
    return tmp


def publish(tmp: Path, out: Path) -> None:
    """Rename the finished ``tmp`` to ``out`` (an existing ``out`` is removed first)."""
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:12]}"
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)


def input_order(table: pd.DataFrame) -> np.ndarray:
    """Row order of the input particle file (``input_index``), else the set's order."""
    if "input_index" in table.columns:
        return np.argsort(table["input_index"].to_numpy(), kind="stable")
    return np.arange(len(table))


def write_map(path: Path, volume: np.ndarray, voxel_size_angstrom: float) -> None:
    """An MRC map (float32) with the given voxel size."""
    import mrcfile

    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.ascontiguousarray(volume, dtype=np.float32))
        mrc.voxel_size = float(voxel_size_angstrom)


def write_tables(out: Path, table: pd.DataFrame, latent: np.ndarray, classes: np.ndarray) -> None:
    """``latent.csv``, ``classes.csv`` and ``particles.star`` (classes ``1..K``)."""
    from cryoflow.io.particles import write_particles

    order = input_order(table)
    base = table[["tomogram", "x", "y", "z"]].iloc[order].reset_index(drop=True)
    base["tomogram"] = base["tomogram"].astype(str)
    lat = pd.DataFrame(
        np.asarray(latent, dtype=np.float64)[order],
        columns=[f"z{d}" for d in range(latent.shape[1])],
    )
    pd.concat([base, lat], axis=1).to_csv(out / "latent.csv", index=False)
    cls = base.copy()
    cls["class"] = np.asarray(classes, dtype=int)[order]
    cls.to_csv(out / "classes.csv", index=False)
    star = table.iloc[order].reset_index(drop=True).copy()
    star["class"] = np.asarray(classes, dtype=int)[order]
    write_particles(out / "particles.star", star)


def latent_picture(path: Path, latent: np.ndarray, classes: np.ndarray, title: str) -> None:
    """``latent.png``: z0 against z1, one colour per class (a histogram for D = 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.0, 4.5), dpi=110)
    ks = np.unique(classes)
    cmap = plt.get_cmap("tab10")
    for i, k in enumerate(ks):
        sel = classes == k
        ax.scatter(
            latent[sel, 0],
            latent[sel, 1],
            s=8,
            alpha=0.7,
            color=cmap(i % 10),
            label=f"class {k} ({int(sel.sum())})",
        )
    ax.set_xlabel("z0")
    ax.set_ylabel("z1")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, markerscale=1.5, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def trajectory_outputs(out: Path, traj: Any, voxel_size_angstrom: float) -> None:
    """``trajectory/axis<j>_step<s>.mrc`` and ``trajectory.png`` (central z, y, x slices)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = out / "trajectory"
    folder.mkdir(exist_ok=True)
    vols = np.asarray(traj.volumes)
    n_axes, n_steps, box = vols.shape[0], vols.shape[1], vols.shape[2]
    for j in range(n_axes):
        for s in range(n_steps):
            write_map(folder / f"axis{j}_step{s}.mrc", vols[j, s], voxel_size_angstrom)
    c = box // 2
    fig, axes = plt.subplots(
        n_axes * 3, n_steps, figsize=(1.2 * n_steps, 1.2 * 3 * n_axes), dpi=100, squeeze=False
    )
    for j in range(n_axes):
        lo, hi = np.percentile(vols[j], [1, 99.5])
        for s in range(n_steps):
            cuts = (vols[j, s, c], vols[j, s, :, c], vols[j, s, :, :, c])
            for r, (cut, name) in enumerate(zip(cuts, ("z", "y", "x"), strict=True)):
                a = axes[3 * j + r, s]
                a.imshow(cut, cmap="gray", vmin=lo, vmax=hi, origin="lower")
                a.set_xticks([])
                a.set_yticks([])
                if s == 0:
                    a.set_ylabel(f"axis {j} {name}", fontsize=7)
                if r == 0 and j == 0:
                    a.set_title(f"{float(traj.steps[s]):+.1f} sd", fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "trajectory.png")
    plt.close(fig)


def write_record(out: Path, record: dict[str, Any]) -> None:
    """``embed.json``."""
    (out / "embed.json").write_text(json.dumps(record, indent=2, sort_keys=True, default=str))


def store_latent(
    store: Any, set_name: str, latent: np.ndarray, record: dict[str, Any], out: Path | None
) -> dict[str, Any]:
    """The latent points as the set's table columns ``z0 ..`` (:mod:`cryoflow.io.
    particle_latent`), with the checkpoint's hash; returns what ``embed.json`` says of it."""
    from cryoflow.io.particle_latent import write_latent

    prov = {
        "step": "embed",
        "checkpoint_sha256": record["checkpoint_sha256"],
        "parameters": record["parameters"],
        "out": None if out is None else str(out),
    }
    done = write_latent(store, set_name, latent, prov)
    return {
        "table": f"particles/{set_name}/table",
        "columns": done["columns"],
        **({"replaced_columns": done["replaced_columns"]} if "replaced_columns" in done else {}),
    }
