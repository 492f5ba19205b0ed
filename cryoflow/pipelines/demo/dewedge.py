"""The demo's missing-wedge stage: ``cryoflow dewedge`` on the simulated tomograms, against truth.

One network is trained on every simulated tomogram and applied to each (the stage's own
entry point, :func:`cryoflow.pipelines.stages.dewedge.run`, on the demo's client: the plans
``cryoflow dewedge`` and ``cryoflow run`` execute). Then, on the test tomograms, against the
simulator's ``truth_density`` (:func:`cryoflow.kernels.wedge_report.filling_figures`):

- ``dewedge_wedge_cc`` / ``dewedge_wedge_cc_before``: Fourier correlation with the truth over
  the missing wedge (``|k| <= 0.25``) after / before;
- ``dewedge_cc_after`` / ``dewedge_cc_before``: real-space correlation with the truth;
- ``dewedge_z_ratio`` / ``dewedge_z_ratio_before``: median z/x extent of the round objects
  (granules and particles; truth about 1);
- ``dewedge_peer_wedge_cc`` / ``dewedge_peer_cc``: the best trivial non-linear filter
  (:data:`cryoflow.kernels.wedge_report.PEERS`, best by wedge CC, measured in this run).

Training length is a number of steps, never a clock (:data:`SETTINGS`). The report shows XY
and XZ slices of the truth, the tomogram and the filled volume, and the log amplitude of
their Fourier transforms' central sections (``ky = 0``: the wedge is the empty double cone
about ``kz``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cryoflow.pipelines.demo.context import DemoContext

__all__ = ["SETTINGS", "dewedge_figures", "round_objects", "stage_dewedge"]

#: (preset, quick) -> DewedgeParams fields; every other field keeps the stage's default
SETTINGS: dict[tuple[str, bool], dict[str, Any]] = {
    ("demo", False): {"steps": 600, "box": 16, "depth": 2, "bin": 4, "boxes_per_tomogram": 48},
    ("demo", True): {"steps": 60, "box": 16, "depth": 2, "boxes_per_tomogram": 24},
    ("paper", False): {},  # the stage's defaults (600 steps, 24-voxel boxes, depth 3)
    ("paper", True): {"steps": 60, "box": 16, "depth": 2, "boxes_per_tomogram": 24},
}
FIGURES = ("wedge_cc", "cc", "z_ratio")


def round_objects(labels: np.ndarray, particles: Any) -> tuple[np.ndarray, np.ndarray]:
    """Centres ``(n, 3)`` (z, y, x) and radii ``(n,)`` of the phantom's round objects: every
    connected granule of ``labels`` (radius of the ball of its volume) and every particle of
    the truth table (60% of its bounding radius, its typical half-width)."""
    from scipy import ndimage

    from cryoflow.simulate.classes import GRANULE

    comp, n = ndimage.label(np.asarray(labels) == GRANULE)
    ids = np.arange(1, n + 1)
    ones = np.ones(comp.shape)
    centres = [np.asarray(ndimage.center_of_mass(ones, comp, ids), dtype=float).reshape(-1, 3)]
    radii = [np.cbrt(3.0 * np.asarray(ndimage.sum_labels(ones, comp, ids)) / (4.0 * np.pi))]
    if particles is not None and len(particles):
        centres.append(particles[["z", "y", "x"]].to_numpy(dtype=float))
        radii.append(0.6 * particles["radius_px"].to_numpy(dtype=float))
    return np.concatenate(centres), np.concatenate(radii)


def dewedge_figures(store: Any, name: str) -> dict[str, Any]:
    """Before / after / best-peer figures of tomogram ``name`` and the volumes shown."""
    from cryoflow.io import store as S
    from cryoflow.io.results import read_table
    from cryoflow.io.tomograms import tilt_range
    from cryoflow.kernels.wedge_report import filling_figures, peer_volumes
    from cryoflow.kernels.wedge_shapes import z_elongation

    truth = S.open_volume(store, name, "truth_density").values
    tomo = S.open_volume(store, name, "tomogram").values
    filled = S.open_volume(store, name, "dewedged").values
    try:
        particles = read_table(store, name, "truth", "particles")
    except (FileNotFoundError, KeyError):
        particles = None
    labels = S.open_volume(store, name, "truth_labels").values
    kw: dict[str, Any] = {"reference": tomo, "objects": round_objects(labels, particles)}
    tr = tilt_range(store, name).as_tuple
    before = filling_figures(tomo, truth, tr, **kw)
    after = filling_figures(filled, truth, tr, **kw)
    # the peers: wedge and real-space CC only (the bar is the best of them by wedge CC)
    peers = {p: filling_figures(v, truth, tr) for p, v in peer_volumes(tomo).items()}
    best = max(peers, key=lambda p: peers[p]["wedge_cc"])
    metrics: dict[str, Any] = {
        "dewedge_wedge_cc": after["wedge_cc"],
        "dewedge_wedge_cc_before": before["wedge_cc"],
        "dewedge_wedge_cc_deep": after["wedge_cc_deep"],
        "dewedge_cc_after": after["cc"],
        "dewedge_cc_before": before["cc"],
        "dewedge_z_ratio": after["z_ratio"],
        "dewedge_z_ratio_before": before["z_ratio"],
        "dewedge_z_ratio_truth": float(np.nanmedian(z_elongation(truth, *kw["objects"]))),
        "dewedge_copy_cc": after["copy_cc"],
        "dewedge_peer_wedge_cc": peers[best]["wedge_cc"],
        "dewedge_peer_cc": peers[best]["cc"],
    }
    rows = {"before": before, "after": after, f"best peer ({best})": peers[best]}
    return {
        "metrics": metrics,
        "rows": rows,
        "peer": best,
        "tilt_range": tr,
        "volumes": {"truth": truth, "tomogram": tomo, "dewedged": filled},
    }


def _log_amplitude(volume: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``log(1 + |F|)`` of the volume's 3D transform on the central sections ``kz = 0``
    (``(ky, kx)``) and ``ky = 0`` (``(kz, kx)``), zero frequency at the centre."""
    v = np.asarray(volume, dtype=np.float32)
    f = np.abs(np.fft.fftshift(np.fft.fftn(v - v.mean())))
    z, y, _ = (n // 2 for n in v.shape)
    return np.log1p(f[z]), np.log1p(f[:, y])


def slices_figure(volumes: dict[str, np.ndarray], title: str) -> Any:
    """Rows: each volume; columns: its XY and XZ central slices and the log amplitude of
    its transform in the ``(ky, kx)`` and ``(kz, kx)`` planes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = ("XY slice", "XZ slice", "|F| (ky, kx), log", "|F| (kz, kx), log")
    fig, axes = plt.subplots(len(volumes), 4, figsize=(12, 2.4 * len(volumes)), squeeze=False)
    for row, (label, vol) in enumerate(volumes.items()):
        v = np.asarray(vol, dtype=np.float32)
        z, y, _ = (n // 2 for n in v.shape)
        fxy, fxz = _log_amplitude(v)
        for ax, image, name in zip(axes[row], (v[z], v[:, y], fxy, fxz), cols, strict=True):
            lo, hi = np.percentile(image, (1, 99.5))
            ax.imshow(image, cmap="gray" if "slice" in name else "magma", vmin=lo, vmax=hi)
            ax.set_title(f"{label}: {name}", fontsize=8)
            ax.axis("off")
    fig.suptitle(title, fontsize=9)
    return fig


def _number(v: Any) -> str:
    return "n/a" if v is None else f"{float(v):.4g}"


def stage_dewedge(ctx: DemoContext) -> None:
    """Missing-wedge filling learned from every simulated tomogram, measured on the tests."""
    from cryoflow.pipelines.demo.presets import over_tomograms
    from cryoflow.pipelines.stages import dewedge
    from cryoflow.pipelines.stages.eager import Target

    sizes = ctx.config.sizes
    settings = SETTINGS[(sizes.name, ctx.config.quick)]
    params = dewedge.DewedgeParams(**settings, seed=ctx.config.seed)
    names = tuple(ctx.state["names"])
    done = dewedge.run(ctx.client, Target(ctx.store, names, quiet=True), params)
    per = [dewedge_figures(ctx.store, name) for name in ctx.state["tests"]]
    metrics = per[0]["metrics"] if len(per) == 1 else over_tomograms([p["metrics"] for p in per])
    ctx.metrics.update({k: float(v) for k, v in metrics.items()})
    first = per[0]
    summary = next(iter(done.values()))
    ctx.report.heading("Missing-wedge filling (dewedge)")
    ctx.report.note(
        f"One 3D U-Net trained on all {len(names)} simulated tomograms (self-supervised, "
        f"{params.steps} steps, {params.box}-voxel boxes at bin {params.bin}, depth "
        f"{params.depth}; even/odd tilt halves where the tilt series allows), applied to each. "
        f"Figures on {', '.join(ctx.state['tests'])} against the simulator's truth density; "
        f"tilt range {first['tilt_range'][0]:.0f} to {first['tilt_range'][1]:.0f} deg. "
        f"Training loss {_number(summary.get('loss_first'))} -> "
        f"{_number(summary.get('loss_last'))}; best trivial peer: {first['peer']}."
    )
    ctx.report.table(
        [
            {"volume": k, **{f: v.get(f, float("nan")) for f in (*FIGURES, "copy_cc")}}
            for k, v in first["rows"].items()
        ],
        caption=(
            "wedge_cc: Fourier correlation with the truth in the missing wedge (|k| <= 0.25); "
            "cc: real-space correlation; z_ratio: z/x extent of round objects (truth "
            f"{first['metrics']['dewedge_z_ratio_truth']:.2f}); copy_cc: correlation with a "
            "copy of the measured neighbours (a fake wedge scores high)."
        ),
    )
    ctx.report.figure(
        slices_figure(first["volumes"], ctx.state["tests"][0]),
        "Truth, tomogram (before) and dewedged (after): central XY and XZ slices and the log "
        "amplitude of the 3D Fourier transform's central sections; in (kz, kx) the missing "
        "wedge is the dark double cone about kz before filling.",
    )
