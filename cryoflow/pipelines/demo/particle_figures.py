"""The averaging figures of the demo's structure half, measured against the simulator's truth.

:func:`average_figures` runs ``cryoflow average`` (:func:`cryoflow.pipelines.stages.average.run`)
on the picked particle set and measures, against the truth:

- ``orientation_error_deg``: median angle between the refined and the true orientation of
  every particle whose pick matched a target (within the preset's tolerance; contract ZYZ);
- ``average_fsc05_px``: FSC-0.5 resolution (voxels) of the average against the truth map (the
  target molecule rendered in its own frame, :func:`~cryoflow.simulate.crowded_store.
  molecule_truth_map`); started from a reference the average lies in the truth's frame,
  template-free it is registered to it first (:func:`cryoflow.kernels.truth_metrics.
  truth_figures`);
- ``average_fsc05_px_ideal``: the same, for the ideal average: the matched particles
  averaged with their true orientations and centres (the same half sets, the same
  wedge-weighted sums), the best these boxes allow;
- ``gold_standard_fsc0143_px``: the FSC-0.143 resolution of the refinement's two half maps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryoflow.pipelines.demo.report import Report, curve, scatter, slices3

__all__ = ["average_figures", "picks_figure", "report_average"]


def _matched(table: pd.DataFrame, truths: dict[str, pd.DataFrame], tol: float) -> tuple[Any, Any]:
    """Stack rows of ``table`` matched to a target, and those targets' truth rows."""
    from cryoflow.kernels.match import match_pairs

    rows, found = [], []
    for name, truth in truths.items():
        here = np.flatnonzero(table["tomogram"].astype(str).to_numpy() == name)
        tgt = truth[truth["kind"] == "target"].reset_index(drop=True)
        pi, ti = match_pairs(
            table.iloc[here][["x", "y", "z"]].to_numpy(float), tgt[["x", "y", "z"]].to_numpy(), tol
        )
        rows.append(here[pi])
        found.append(tgt.iloc[ti])
    return np.concatenate(rows), pd.concat(found, ignore_index=True)


def _ideal_fsc05(stack: np.ndarray, table: pd.DataFrame, rows: np.ndarray, true: pd.DataFrame,
                 truth_map: np.ndarray, halves: np.ndarray, px: float) -> float:  # fmt: skip
    """FSC-0.5 (voxels) against the truth of the matched particles averaged with their true
    orientations and centres (the true centre relative to the box centre)."""
    from cryoflow.kernels.align import AlignResult
    from cryoflow.kernels.finish import finish_round
    from cryoflow.kernels.fsc import fsc
    from cryoflow.kernels.refine import accumulate_all

    box = stack.shape[1]
    t = table.iloc[rows]
    centre = t[["box_z0", "box_y0", "box_x0"]].to_numpy(float) + box // 2
    shifts = true[["z", "y", "x"]].to_numpy(float) - centre
    ideal = AlignResult(true[["rot", "tilt", "psi"]].to_numpy(float), shifts, np.zeros(len(rows)))
    tr = t[["tilt_min_deg", "tilt_max_deg"]].to_numpy(float)
    sums = accumulate_all(stack[rows], ideal, tr, halves[rows], symmetry="C1", batch_size=32,
                          device="cpu")  # fmt: skip
    return fsc(finish_round(sums, voxel_size_angstrom=px).average, truth_map).resolution_px(0.5)


def average_figures(ctx: Any, set_name: str, work: Path) -> dict[str, Any]:
    """Average ``set_name`` with the preset's rounds and measure it (module docstring)."""
    from cryoflow.io.maps import write_map
    from cryoflow.io.particleset import open_particles, read_particle_table
    from cryoflow.io.results import open_dataset_result
    from cryoflow.kernels.fsc import FSCCurve, fsc, lowpass
    from cryoflow.kernels.truth_metrics import truth_figures
    from cryoflow.pipelines.stages import average
    from cryoflow.pipelines.stages.eager import Target
    from cryoflow.simulate.crowded_store import molecule_truth_map

    p = ctx.config.sizes.particles
    cfg = ctx.state["crowded_config"]
    px = cfg.pixel_size_angstrom
    truth = molecule_truth_map(cfg.target, cfg.diameter_angstrom, p.box, px)
    ref = None
    if p.start == "reference":  # the truth low-passed: a known related structure's resolution
        start = lowpass(truth, p.average["initial_resolution"] / px).astype(np.float32)
        ref = str(write_map(work / "start.mrc", start, px))
    params = average.AverageParams(set=set_name, reference=ref, seed=ctx.config.seed, **p.average)
    out = work / "average"
    average.run(ctx.client, Target(ctx.store, (), out=str(out), overwrite=True, quiet=True), params)
    step = average.step_name(set_name)
    state = {
        k: np.asarray(open_dataset_result(ctx.store, step, k).values)
        for k in ("average", "fsc", "euler_deg", "half")
    }
    table = read_particle_table(ctx.store, set_name)
    rows, true = _matched(table, ctx.state["crowded"], p.tolerance_px)
    figs = truth_figures(
        state["average"],
        truth,
        state["euler_deg"][rows],
        true[["rot", "tilt", "psi"]].to_numpy(float),
        template_free=ref is None,
    )
    gold = FSCCurve(state["fsc"][0], state["fsc"][1], p.box)
    stack = np.asarray(open_particles(ctx.store, set_name).values)
    ideal = _ideal_fsc05(stack, table, rows, true, truth, state["half"].astype(int) - 1, px)
    vs_truth = fsc(figs.registered, truth)
    return {
        "orientation_error_deg": figs.orientation_error_deg,
        "orientation_within_15deg": float(np.mean(figs.errors_deg < 15.0)),
        "average_fsc05_px": figs.average_fsc05_px,
        "average_fsc05_px_ideal": float(ideal),
        "gold_standard_fsc0143_px": gold.resolution_px(0.143),
        "average_n_matched": int(len(rows)),
        "average_n_particles": int(len(table)),
        "_gold": gold,
        "_vs_truth": vs_truth,
        "_average": figs.registered,
        "_truth": truth,
        "_euler": state["euler_deg"],
        "_true_euler": true[["rot", "tilt", "psi"]].to_numpy(float),
        "_start": p.start,
        "_out": str(out),
    }


def report_average(report: Report, f: dict[str, Any]) -> None:
    """The averaging section: figures, FSC curves, central slices, orientation distribution."""
    report.heading("Subtomogram averaging (average stage, gold-standard halves)")
    start = (
        "from the truth low-passed to the preset's initial resolution (the result in its frame)"
        if f["_start"] == "reference"
        else "template-free (registered to the truth before it is measured)"
    )
    report.note(
        f"{f['average_n_particles']} picked particles refined {start}; "
        f"{f['average_n_matched']} of them lie on a target and carry a true orientation. "
        f"orientation_error_deg={f['orientation_error_deg']:.2f} (median over those), "
        f"average_fsc05_px={f['average_fsc05_px']:.2f} against the truth (ideal average with "
        f"the true orientations: {f['average_fsc05_px_ideal']:.2f}), "
        f"gold_standard_fsc0143_px={f['gold_standard_fsc0143_px']:.2f}. Files: {f['_out']}."
    )
    gold, truth = f["_gold"], f["_vs_truth"]
    report.figure(
        curve(
            np.asarray(gold.frequency),
            {"gold standard (half 1 vs half 2)": gold.fsc, "average vs truth": truth.fsc},
            "Fourier shell correlation",
            "spatial frequency (cycles/voxel)",
            "FSC",
            hlines=(0.143, 0.5),
        ),
        "Gold-standard FSC of the two half maps and FSC of the average against the truth; "
        "dashed: the 0.143 and 0.5 thresholds.",
    )
    report.figure(
        slices3({"average": f["_average"], "truth": f["_truth"]}),
        "Central XY, XZ and YZ slices of the average (top) and the truth (bottom). The "
        "tomograms carry the CTF and averaging does not correct it, so the average's lowest "
        "frequencies are weak: solid lobes look hollow, their edges bright.",
    )
    e, t = np.asarray(f["_euler"]), np.asarray(f["_true_euler"])
    report.figure(
        scatter(
            {"refined (all picks)": (e[:, 0], e[:, 1]), "true (matched)": (t[:, 0], t[:, 1])},
            "Orientation distribution",
            "rot (deg)",
            "tilt (deg)",
        ),
        "Refined orientations of every picked particle and true orientations of the matched "
        "ones (rot, tilt of the contract's ZYZ angles): spread over the sphere, not clumped.",
    )


def picks_figure(volume: np.ndarray, picks: pd.DataFrame, targets: np.ndarray,
                 decoys: np.ndarray, tol: float, diameter_px: float) -> Any:  # fmt: skip
    """A central slab of ``volume`` with true/false picks, missed targets and decoys marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cryoflow.kernels.match import match_pairs

    z = volume.shape[0] // 2
    half = max(1, int(round(diameter_px / 2)))
    slab = np.asarray(volume[max(0, z - half) : z + half + 1]).mean(0)
    got = picks[["x", "y", "z"]].to_numpy(float)
    pi, ti = match_pairs(got, targets, tol)
    near = lambda xyz: np.abs(xyz[:, 2] - z) <= half  # noqa: E731
    tp = np.zeros(len(got), bool)
    tp[pi] = True
    missed = np.ones(len(targets), bool)
    missed[ti] = False
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.imshow(slab, cmap="gray")
    r = diameter_px / 2
    for xyz, colour, label in (
        (got[tp], "tab:green", "true pick"),
        (got[~tp], "tab:red", "false pick"),
        (targets[missed], "gold", "missed target"),
        (decoys, "tab:blue", "decoy"),
    ):
        xyz = xyz[near(xyz)] if len(xyz) else xyz
        for x, y, _ in xyz:
            ax.add_patch(plt.Circle((x, y), r, fill=False, color=colour, lw=1.0))
        ax.plot([], [], color=colour, label=label)
    ax.legend(loc="lower right", fontsize=7)
    ax.set_title(f"z = {z} +- {half}", fontsize=9)
    ax.axis("off")
    return fig
