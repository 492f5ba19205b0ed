"""The paper's Algorithm 1 over a dataset: 2D masks of every tilt -> 3D mask, per tomogram.

For each tomogram and class: read the 2D maps ``(tilt, y, x)`` (binarised by :func:`binarise`:
annotate's probability maps at their ``threshold`` attribute, other float maps at ``>= 0.5``),
back-project them into vote counts ``M`` (:func:`cryoflow.backproject`), pick the
threshold ``T`` whose ``M > T`` re-projects best onto the maps
(:func:`cryoflow.select_threshold`), and write, under ``results/<out>/``:

- ``votes_<class>`` ``(z, y, x)``: the vote map;
- ``thresholds_<class>``, ``scores_<class>`` ``(candidate,)``: the score curve, with the
  chosen ``threshold`` in the attributes;

and the label volume ``labels/<out>`` (OME-Zarr label image, ``uint8``): each voxel takes the
passing class with the highest support (votes / n_tilts), else 0
(:func:`cryoflow.kernels.lift.assign_classes`). Class ids are the simulator's
(:data:`cryoflow.simulate.classes.CLASS_IDS`) when every class is one of its names, else
``1..K`` in the order given; the mapping is in the provenance (``parameters.class_ids``).

With several classes, the maps of class ``c`` are read from ``<step>/<key>_<c>`` (the
simulator writes ``truth/masks2d_<class>``); with none, from ``<step>/<key>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import dask
import dask.array as da
import numpy as np

from cryoflow.errors import AlreadyExistsError, ConfigError, NodeNotFoundError, StoreError
from cryoflow.geometry import TiltGeometry
from cryoflow.io import store as S
from cryoflow.io.names import validate_name
from cryoflow.kernels.lift import assign_classes
from cryoflow.pipelines.selection import runner, select_tomograms

__all__ = [
    "LiftConfig",
    "LiftedClass",
    "class_ids",
    "lift_dataset",
    "lift_masks",
    "lift_outputs",
    "refuse_existing",
    "lift_tomogram",
    "parse_maps",
    "seg3d_metrics",
    "select_tomograms",
    "volume_shape",
]


# ---------------------------------------------------------------------------- config
def parse_maps(text: str) -> tuple[str, str]:
    """``"STEP/KEY"`` -> ``(step, key)``; both on the store's name allow-list."""
    parts = str(text).split("/")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"--maps must be STEP/KEY (e.g. truth/masks2d), got {text!r}")
    return validate_name(parts[0], "result step"), validate_name(parts[1], "result key")


@dataclass(frozen=True)
class LiftConfig:
    """What ``cryoflow lift`` does to one tomogram.

    maps : (step, key) of the 2D maps; with ``classes``, key ``<key>_<class>`` per class.
    classes : class names (empty: one class named after ``key``).
    out : result step (and label-volume key) to write.
    thickness : volume depth Z in voxels; None takes the tilt series' ``volume_shape``
        attribute if there is one, else the detector width.
    chunks : block edge of the vote map (voxels).
    """

    maps: tuple[str, str]
    classes: tuple[str, ...] = ()
    out: str = "lift"
    thickness: int | None = None
    overwrite: bool = False
    chunks: int = 64
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_name(self.out, "output step")
        for c in self.classes:
            validate_name(f"{self.maps[1]}_{c}", "result key")
        if len(set(self.classes)) != len(self.classes):
            raise ConfigError(f"classes must be unique, got {list(self.classes)}")
        if self.thickness is not None and self.thickness < 1:
            raise ConfigError(f"thickness must be >= 1 voxel, got {self.thickness}")
        if self.chunks < 1:
            raise ConfigError(f"chunks must be >= 1, got {self.chunks}")


def class_ids(classes: Sequence[str]) -> dict[str, int]:
    """Label id of each class: the simulator's ids when all are known, else ``1..K``."""
    from cryoflow.simulate.classes import CLASS_IDS

    if all(c in CLASS_IDS and CLASS_IDS[c] > 0 for c in classes):
        return {c: CLASS_IDS[c] for c in classes}
    return {c: i + 1 for i, c in enumerate(classes)}


def volume_shape(tilts: Any, thickness: int | None) -> tuple[int, int, int]:
    """``(Z, Y, X)`` of the volume behind a tilt series ``(n, Y, U)`` (X = U)."""
    _, Y, U = (int(s) for s in tilts.shape)
    if thickness is not None:
        return (int(thickness), Y, U)
    vs = tilts.attrs.get("volume_shape") if hasattr(tilts, "attrs") else None
    if vs is not None:
        return tuple(int(s) for s in vs)  # type: ignore[return-value]
    return (U, Y, U)


def refuse_existing(
    store: Any, names: Sequence[str], step: str, keys: Sequence[str], overwrite: bool
) -> None:
    """Raise :class:`AlreadyExistsError` before any work when an output result exists."""
    if overwrite:
        return
    for name in names:
        for key in keys:
            try:
                S.open_result(store, name, step, key)
            except NodeNotFoundError:
                continue
            except StoreError:
                pass  # it exists, as a table
            raise AlreadyExistsError(
                f"{store}: result {name}/{step}/{key} already exists; pass --overwrite to replace it"
            )


def lift_outputs(config: LiftConfig) -> list[str]:
    """Result keys :func:`lift_tomogram` writes under ``config.out``."""
    classes = config.classes or (config.maps[1],)
    return [f"{w}_{c}" for c in classes for w in ("votes", "thresholds", "scores")]


# ---------------------------------------------------------------------------- core
@dataclass(frozen=True)
class LiftedClass:
    """One class lifted to 3D: persisted vote map and the threshold search."""

    name: str
    votes: da.Array  # (Z, Y, X) int
    threshold: float
    thresholds: np.ndarray  # (n_candidates,)
    scores: np.ndarray  # (n_candidates,)
    n_tilts: int


def binarise(maps: Any) -> da.Array:
    """2D maps ``(n, Y, U)`` -> bool.

    Probability maps stored as integers ``0..scale`` (``attrs["scale"]``, as ``cryoflow
    annotate`` writes them) are cut at ``attrs["threshold"]`` (default 0.5) times the scale;
    float maps at ``>= 0.5``; other integer maps (masks, label counts) at ``!= 0``.
    """
    attrs = getattr(maps, "attrs", None) or {}
    arr = da.asarray(getattr(maps, "data", maps))
    if arr.dtype == np.bool_:
        return arr
    if attrs.get("scale") is not None:
        return arr >= float(attrs.get("threshold", 0.5)) * float(attrs["scale"])
    if arr.dtype.kind == "f":
        return arr >= 0.5
    return arr != 0


def lift_masks(
    client: Any,
    masks: Any,
    geometry: TiltGeometry,
    shape: tuple[int, int, int],
    *,
    name: str,
    threshold: float | None = None,
    chunks: int = 64,
) -> LiftedClass:
    """Back-project binary 2D masks into votes on the cluster and choose ``T``.

    Parameters
    ----------
    masks : array of shape (n_tilts, Y, U), bool
    threshold : float or None
        None runs :func:`cryoflow.select_threshold` against ``masks``; a number is used as is
        (the score curve is then empty).

    Returns
    -------
    LiftedClass whose ``votes`` (Z, Y, X) are persisted on the cluster.
    """
    import cryoflow

    m = client.persist(binarise(masks))
    with dask.config.set(scheduler=client):
        votes = cryoflow.backproject(m, geometry, shape, chunks=(chunks,) * 3)
        v = client.persist(da.asarray(getattr(votes, "data", votes)))
        if threshold is None:
            sel = cryoflow.select_threshold(v, m, geometry)
            t, ts, sc = float(sel.threshold), np.asarray(sel.thresholds), np.asarray(sel.scores)
        else:
            t, ts, sc = float(threshold), np.zeros(0), np.zeros(0)
    return LiftedClass(name, v, t, ts, sc, geometry.n_tilts)


def lift_tomogram(
    client: Any, store: Any, name: str, config: LiftConfig, *, quiet: bool = False
) -> dict[str, Any]:
    """Algorithm 1 on one tomogram; writes votes, curves and the label volume.

    Returns
    -------
    dict with ``thresholds`` (class -> chosen T), ``class_ids`` and ``labels``, the label
    volume (Z, Y, X) as a lazy Dask array read back from the store.
    """
    step, key = config.maps
    refuse_existing(store, [name], config.out, lift_outputs(config), config.overwrite)
    tilts = S.open_tilt_series(store, name)
    geometry = S.read_geometry(store, name)
    shape = volume_shape(tilts, config.thickness)
    classes = config.classes or (key,)
    ids = class_ids(classes)
    lifted = []
    for c in classes:
        maps = S.open_result(store, name, step, f"{key}_{c}" if config.classes else key)
        if tuple(maps.shape) != tuple(tilts.shape):
            raise ConfigError(
                f"{name}: maps {step}/{maps.name} have shape {tuple(maps.shape)}, "
                f"the tilt series {tuple(tilts.shape)}"
            )
        lifted.append(lift_masks(client, maps, geometry, shape, name=c, chunks=config.chunks))
    params = {
        "maps": f"{step}/{key}",
        "classes": list(classes),
        "class_ids": ids,
        "volume_shape": list(shape),
        "thresholds": {lc.name: lc.threshold for lc in lifted},
        "support": "votes / n_tilts",
        **config.extra,
    }
    inputs = {"tilt_series": name, "maps": f"{step}/{key}"}
    prov = {"step": config.out, "parameters": params, "inputs": inputs}
    run = runner(client, f"lift {name}", quiet)
    for lc in lifted:
        S.write_result(
            store,
            name,
            config.out,
            f"votes_{lc.name}",
            lc.votes,
            dims=("z", "y", "x"),
            provenance=prov,
            overwrite=config.overwrite,
            compute=False,
        ).run(run)
        for what, arr in (("thresholds", lc.thresholds), ("scores", lc.scores)):
            S.write_result(
                store,
                name,
                config.out,
                f"{what}_{lc.name}",
                arr,
                dims=("candidate",),
                provenance=prov,
                attrs={"threshold": lc.threshold},
                overwrite=config.overwrite,
                compute=False,
            ).run(run)
    stack = da.stack([lc.votes for lc in lifted])
    labels = stack.map_blocks(
        assign_classes,
        [lc.threshold for lc in lifted],
        [lc.n_tilts for lc in lifted],
        [ids[lc.name] for lc in lifted],
        drop_axis=0,
        dtype=np.uint8,
        meta=np.zeros((0, 0, 0), np.uint8),
    )
    S.write_volume(
        store,
        name,
        config.out,
        labels,
        kind="label",
        pixel_size_angstrom=tilts.attrs["pixel_size_angstrom"],
        provenance=prov,
        overwrite=config.overwrite,
        compute=False,
    ).run(run)
    return {
        "thresholds": {lc.name: lc.threshold for lc in lifted},
        "class_ids": ids,
        "labels": S.open_volume(store, name, config.out).data,
    }


def lift_dataset(
    client: Any, store: Any, names: Sequence[str], config: LiftConfig, *, quiet: bool = False
) -> dict[str, dict[str, Any]]:
    """:func:`lift_tomogram` for each of ``names``; returns their summaries by name."""
    refuse_existing(store, names, config.out, lift_outputs(config), config.overwrite)
    return {n: lift_tomogram(client, store, n, config, quiet=quiet) for n in names}


# ---------------------------------------------------------------------------- demo figure
def seg3d_metrics(
    client: Any,
    store: Any,
    name: str,
    *,
    class_name: str = "granule",
    seed: int = 0,
    overwrite: bool = True,
    quiet: bool = True,
) -> dict[str, Any]:
    """Algorithm 1 on the simulator's truth 2D masks corrupted like a segmenter's output.

    Reads ``truth/masks2d_<class_name>``, corrupts it with
    :func:`cryoflow.kernels.corrupt.corrupt_masks` (``seed``), writes it to
    ``corrupt/masks2d_<class_name>``, lifts it into ``seg3d`` and compares the 3D mask with
    ``truth_labels == id(class_name)``.

    Returns
    -------
    dict
        ``seg3d_iou`` (3D IoU with the truth; NaN when the truth has no voxel of the class),
        ``seg3d_n_truth_voxels``, ``seg3d_iou_2d_input`` (mean per-tilt IoU of
        the corrupted vs true 2D masks), ``seg3d_threshold``, ``seg3d_thresholds`` and
        ``seg3d_scores`` (the score curve, 1-D arrays), ``seg3d_slice_z`` and
        ``seg3d_slice`` = ``{"truth", "pred", "votes"}``: 2-D ``(Y, X)`` arrays at the z slice
        holding the most true voxels (for an overlay figure).
    """
    from cryoflow.kernels.corrupt import corrupt_masks
    from cryoflow.kernels.iou import mask_iou
    from cryoflow.simulate.classes import CLASS_IDS

    key = f"masks2d_{class_name}"
    true2d = client.compute(S.open_result(store, name, "truth", key).data).result().astype(bool)
    bad2d = corrupt_masks(true2d, seed=seed)
    prov = {
        "step": "corrupt",
        "parameters": {"seed": seed, "class": class_name},
        "inputs": {"maps": f"truth/{key}"},
    }
    S.write_result(
        store,
        name,
        "corrupt",
        key,
        bad2d,
        dims=("tilt", "y", "x"),
        provenance=prov,
        overwrite=overwrite,
        compute=False,
    ).run(runner(client, "corrupt", quiet))
    truth3d = S.open_volume(store, name, "truth_labels").data == CLASS_IDS[class_name]
    config = LiftConfig(
        maps=("corrupt", "masks2d"),
        classes=(class_name,),
        out="seg3d",
        thickness=int(truth3d.shape[0]),
        overwrite=overwrite,
    )
    res = lift_tomogram(client, store, name, config, quiet=quiet)
    pred = res["labels"] == res["class_ids"][class_name]
    truth_np, pred_np = client.compute([truth3d, pred], sync=True)
    votes = S.open_result(store, name, "seg3d", f"votes_{class_name}").data
    z = int(np.argmax(truth_np.sum(axis=(1, 2))))
    curve_t = np.asarray(S.open_result(store, name, "seg3d", f"thresholds_{class_name}"))
    curve_s = np.asarray(S.open_result(store, name, "seg3d", f"scores_{class_name}"))
    n_truth = int(truth_np.sum())
    return {
        # no true voxel: nothing to measure (mask_iou of two empty masks would say 1.0)
        "seg3d_iou": mask_iou(pred_np, truth_np) if n_truth else float("nan"),
        "seg3d_n_truth_voxels": n_truth,
        "seg3d_iou_2d_input": float(
            np.mean([mask_iou(a, b) for a, b in zip(bad2d, true2d, strict=True)])
        ),
        "seg3d_threshold": res["thresholds"][class_name],
        "seg3d_thresholds": curve_t,
        "seg3d_scores": curve_s,
        "seg3d_slice_z": z,
        "seg3d_slice": {
            "truth": truth_np[z],
            "pred": pred_np[z],
            "votes": client.compute(votes[z], sync=True),
        },
    }
