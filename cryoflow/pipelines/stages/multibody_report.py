"""The files ``cryoflow multibody`` writes (:func:`write_outputs`, the stage's module
docstring lists them): the maps, the particle table with every body's pose, body motions,
principal motions and their figure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def write_outputs(d: Path, inputs: Any, st: dict[str, np.ndarray], nb: int) -> dict[str, Any]:
    """Write every output of a finished refinement's state ``st`` into ``d`` (the particle
    file last) and return the ``multibody.json`` summary."""
    from cryoflow.pipelines.stages.particle_inputs import posed_table, write_map, write_table

    for k, vol in enumerate(st["body_maps"], start=1):
        write_map(d / f"body_{k}.mrc", vol, inputs.voxel_size_angstrom)
    write_map(d / "consensus.mrc", st["cons_map"], inputs.voxel_size_angstrom)
    table = posed_table(inputs, st["cons_euler"], st["cons_shifts"])
    for b in range(nb):
        body = (st["body_euler"][:, b], st["body_shifts"][:, b])
        table = posed_table(inputs, *body, prefix=f"body{b + 1}", base=table)
    table, summary = motion_outputs(st, table, d)
    summary.update(
        set=inputs.name,
        n_particles=inputs.n,
        consensus_resolution_px=float(st["resolution"][0]),
        body_resolution_px=[float(v) for v in st["body_res"]],
        body_columns={
            f"body{b + 1}": [f"rlnAngle{a}_body{b + 1}" for a in ("Rot", "Tilt", "Psi")]
            for b in range(nb)
        },
    )
    (d / "multibody.json").write_text(json.dumps(summary, indent=1) + "\n")
    write_table(d / "particles.star", table)
    return summary


def motion_outputs(
    state: dict[str, np.ndarray], table: pd.DataFrame, out: Path
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The table with ``motion<j>`` amplitudes (STAR ``cryoflow_motion<j>``), ``motions.csv``
    and ``principal_motions.png`` written to ``out``, and the JSON summary of the motions."""
    from cryoflow.kernels.heterogeneity.motions import principal_motions, relative_motions

    motions = relative_motions(
        state["cons_euler"],
        state["cons_shifts"],
        state["body_euler"],
        state["body_shifts"],
        state["body_centres"],
    )
    pm = principal_motions(motions)
    t = table.copy()
    n_show = min(4, pm.amplitudes.shape[1])
    for j in range(n_show):
        t[f"motion{j + 1}"] = pm.amplitudes[:, j]
    csv = table[["tomogram", "x", "y", "z"]].copy()
    for j, c in enumerate(pm.columns):
        csv[c] = motions.table()[:, j]
    csv.to_csv(out / "motions.csv", index=False)
    _figure(out / "principal_motions.png", pm, n_show)
    summary = {
        "principal_motions": [
            {
                "explained": float(pm.explained[j]),
                "direction": dict(
                    zip(pm.columns, np.round(pm.components[j], 4).tolist(), strict=True)
                ),
            }
            for j in range(n_show)
        ],
        "median_body_rotation_deg": np.median(
            np.linalg.norm(motions.rotations_deg, axis=2), axis=0
        ).tolist(),
    }
    return t, summary


def _figure(path: Path, pm: Any, n_show: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    a = pm.amplitudes
    axes[0].scatter(a[:, 0], a[:, 1] if a.shape[1] > 1 else np.zeros(len(a)), s=8)
    axes[0].set_xlabel(f"motion 1 ({100 * pm.explained[0]:.0f} %)")
    axes[0].set_ylabel("motion 2" if a.shape[1] > 1 else "")
    width = 0.8 / max(n_show, 1)
    x = np.arange(len(pm.columns))
    for j in range(n_show):
        axes[1].bar(x + j * width, pm.components[j], width, label=f"motion {j + 1}")
    axes[1].set_xticks(x + 0.4 - width / 2)
    axes[1].set_xticklabels(pm.columns, rotation=90, fontsize=6)
    axes[1].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
