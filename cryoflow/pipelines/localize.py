"""The paper's Algorithm 3 over a dataset: 2D boxes per tilt -> 3D boxes per tomogram.

For each tomogram and class: paint the class's 2D boxes into per-tilt masks
(:func:`cryoflow.kernels.boxes.box_masks`), back-project them into votes ``U3D``, threshold
(``T`` given, or chosen by :func:`cryoflow.select_threshold` against the box masks), label the
3D connected components chunk by chunk across the cluster (:func:`cryoflow.graph.labels.label`)
and measure each component's bounding box and support (mean votes inside). Written under
``results/<out>/``: ``votes_<class>``, ``labels_<class>`` ``(z, y, x)``, the score curve
``thresholds_<class>``/``scores_<class>`` (when searched), and the table ``boxes3d`` (columns of
:data:`cryoflow.io.boxes.BOX3D_COLUMNS` plus ``label``, ``n_voxels``, ``threshold``).

2D boxes come from a CSV/JSON file (:mod:`cryoflow.io.boxes`; a ``tomogram`` column, if
present, selects each tomogram's rows) or from the simulator's truth
(:func:`truth_boxes2d`: per-tilt components of ``truth/masks2d_<class>``, jittered).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
from dask.base import tokenize

from cryoflow.errors import ConfigError
from cryoflow.graph.labels import label
from cryoflow.io import store as S
from cryoflow.io.boxes import BOX3D_COLUMNS, read_boxes, write_boxes
from cryoflow.io.names import validate_name
from cryoflow.kernels.boxes import box_masks, boxes_from_masks
from cryoflow.kernels.components import block_stats, bounding_boxes, merge_stats
from cryoflow.kernels.iou import match_boxes
from cryoflow.pipelines.lift import lift_masks, refuse_existing, runner, volume_shape

__all__ = [
    "LocalizeConfig",
    "box_metrics",
    "components_boxes",
    "localize_dataset",
    "localize_tomogram",
    "truth_boxes2d",
    "truth_boxes3d",
]


@dataclass(frozen=True)
class LocalizeConfig:
    """What ``cryoflow localize`` does to one tomogram.

    boxes : 2D box file (.csv/.json), or None with ``from_truth``.
    classes : classes to localise (empty: every class in the boxes).
    threshold : ``T`` in ``U3D > T``; None searches it (Algorithm 1's selection).
    min_score : 2D boxes below this score are ignored.
    connectivity : 1 (faces), 2 or 3 (corners) for 3D components.
    min_voxels : smaller components are dropped.
    jitter_px, seed : for boxes made from truth masks.
    """

    boxes: Path | None = None
    from_truth: bool = False
    classes: tuple[str, ...] = ()
    threshold: float | None = None
    min_score: float = 0.0
    connectivity: int = 1
    min_voxels: int = 1
    jitter_px: float = 0.0
    seed: int = 0
    thickness: int | None = None
    chunks: int = 64
    out: str = "localize"
    overwrite: bool = False

    def __post_init__(self) -> None:
        validate_name(self.out, "output step")
        if (self.boxes is None) == (not self.from_truth):
            raise ConfigError("give exactly one of --boxes FILE or --from-truth")
        if self.connectivity not in (1, 2, 3):
            raise ConfigError(f"connectivity must be 1, 2 or 3, got {self.connectivity}")
        if self.min_voxels < 1 or self.chunks < 1:
            raise ConfigError(
                f"min_voxels and chunks must be >= 1, got {self.min_voxels}, {self.chunks}"
            )
        for c in self.classes:
            validate_name(f"votes_{c}", "class name")


def truth_boxes2d(
    client: Any,
    store: Any,
    name: str,
    classes: Sequence[str],
    *,
    jitter_px: float = 0.0,
    seed: int = 0,
) -> pd.DataFrame:
    """2D boxes around the components of the simulator's ``truth/masks2d_<class>`` maps."""
    tables = []
    for i, c in enumerate(classes):
        masks = client.compute(S.open_result(store, name, "truth", f"masks2d_{c}").data, sync=True)
        tables.append(
            boxes_from_masks(np.asarray(masks) != 0, c, jitter_px=jitter_px, seed=seed + i)
        )
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def _tilt_mask(
    boxes: pd.DataFrame, shape: tuple[int, int], class_name: str, min_score: float
) -> np.ndarray:
    return box_masks(boxes.assign(tilt=0), 1, shape, class_name=class_name, min_score=min_score)


def lazy_box_masks(
    boxes: pd.DataFrame,
    n_tilts: int,
    image_shape: tuple[int, int],
    *,
    class_name: str,
    min_score: float = 0.0,
    name: str = "boxmasks",
) -> da.Array:
    """:func:`cryoflow.kernels.boxes.box_masks` as a lazy ``(n_tilts, Y, U)`` array, one task
    per tilt (each holds only its tilt's boxes)."""
    bad = boxes[(boxes["tilt"] < 0) | (boxes["tilt"] >= n_tilts)]
    if len(bad):
        raise ConfigError(
            f"box on tilt {int(bad['tilt'].iloc[0])} but the series has tilts 0..{n_tilts - 1}"
        )
    per_tilt = []
    for t in range(n_tilts):
        rows = boxes[boxes["tilt"] == t]
        key = f"{name}-{tokenize(rows, image_shape, class_name, min_score)}-{t}"
        task = dask.delayed(_tilt_mask, pure=True)(
            rows, image_shape, class_name, min_score, dask_key_name=key
        )
        per_tilt.append(
            da.from_delayed(
                task, shape=(1, *image_shape), dtype=bool, meta=np.zeros((0, 0, 0), bool)
            )
        )
    return da.concatenate(per_tilt, axis=0)


def _stats(labels: np.ndarray, votes: np.ndarray, offset: tuple[int, int, int]) -> pd.DataFrame:
    return block_stats(labels, votes, offset)


def components_boxes(
    labels: da.Array,
    votes: da.Array | None,
    class_name: str,
    *,
    min_voxels: int = 1,
    name: str = "boxes",
) -> Any:
    """Lazy 3D boxes of a chunked label volume (per-chunk statistics, merged in one task).

    Parameters
    ----------
    labels : dask array of shape (Z, Y, X), int (global labels, 0 = background)
    votes : dask array of shape (Z, Y, X) or None, rechunked like ``labels``

    Returns
    -------
    dask.delayed.Delayed computing to the DataFrame of
    :func:`cryoflow.kernels.components.bounding_boxes`.
    """
    lab = labels.to_delayed()
    vot = votes.rechunk(labels.chunks).to_delayed() if votes is not None else None
    starts = [np.concatenate([[0], np.cumsum(c)[:-1]]) for c in labels.chunks]
    parts = []
    for idx in itertools.product(*(range(n) for n in lab.shape)):
        offset = tuple(int(starts[a][i]) for a, i in enumerate(idx))
        parts.append(
            dask.delayed(_stats, pure=True)(lab[idx], None if vot is None else vot[idx], offset)
        )
    merged = dask.delayed(merge_stats, pure=True)(parts)
    return dask.delayed(bounding_boxes, pure=True)(merged, class_name, min_voxels=min_voxels)


BOXES3D_COLUMNS = [*BOX3D_COLUMNS, "label", "n_voxels", "threshold"]


def class_boxes(
    client: Any,
    labels: da.Array,
    votes: da.Array,
    class_name: str,
    threshold: float,
    min_voxels: int,
) -> pd.DataFrame:
    """3D boxes of one class's labelled components, computed on the cluster, with ``T``."""
    boxes = client.compute(
        components_boxes(labels, votes, class_name, min_voxels=min_voxels), sync=True
    )
    boxes["threshold"] = threshold
    return boxes


def boxes3d_table(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Per-class box tables as one ``boxes3d`` table of :data:`BOXES3D_COLUMNS`."""
    if not tables:
        return pd.DataFrame(columns=BOXES3D_COLUMNS)
    return pd.concat(tables, ignore_index=True)[BOXES3D_COLUMNS]


def localize_tomogram(
    client: Any,
    store: Any,
    name: str,
    boxes2d: pd.DataFrame,
    config: LocalizeConfig,
    *,
    quiet: bool = False,
) -> pd.DataFrame:
    """Algorithm 3 on one tomogram; writes votes, labels, curves and ``boxes3d``.

    Returns
    -------
    pandas.DataFrame of 3D boxes: ``tomogram``, :data:`BOX3D_COLUMNS`, ``label``,
    ``n_voxels``, ``threshold``.
    """
    refuse_existing(store, [name], config.out, ["boxes3d"], config.overwrite)
    tilts = S.open_tilt_series(store, name)
    geometry = S.read_geometry(store, name)
    shape = volume_shape(tilts, config.thickness)
    n, Y, U = (int(s) for s in tilts.shape)
    if "tomogram" in boxes2d.columns:
        boxes2d = boxes2d[boxes2d["tomogram"].astype(str) == name]
    classes = config.classes or tuple(sorted(set(boxes2d["class"].astype(str))))
    prov = {
        "step": config.out,
        "inputs": {"tilt_series": name, "boxes": str(config.boxes) if config.boxes else "truth"},
        "parameters": {
            "classes": list(classes),
            "threshold": config.threshold,
            "min_score": config.min_score,
            "connectivity": config.connectivity,
            "min_voxels": config.min_voxels,
            "volume_shape": list(shape),
            "jitter_px": config.jitter_px,
            "seed": config.seed,
        },
    }
    run = runner(client, f"localize {name}", quiet)
    tables = []
    for c in classes:
        masks = lazy_box_masks(
            boxes2d,
            n,
            (Y, U),
            class_name=c,
            min_score=config.min_score,
            name=f"boxmasks-{name}-{c}",
        )
        lifted = lift_masks(
            client, masks, geometry, shape, name=c, threshold=config.threshold, chunks=config.chunks
        )
        labels, _ = label(
            lifted.votes > lifted.threshold,
            connectivity=config.connectivity,
            name=f"label-{name}-{c}",
        )
        labels = client.persist(labels)
        S.write_result(
            store,
            name,
            config.out,
            f"votes_{c}",
            lifted.votes,
            dims=("z", "y", "x"),
            provenance=prov,
            attrs={"threshold": lifted.threshold},
            overwrite=config.overwrite,
            compute=False,
        ).run(run)
        S.write_result(
            store,
            name,
            config.out,
            f"labels_{c}",
            labels,
            dims=("z", "y", "x"),
            provenance=prov,
            overwrite=config.overwrite,
            compute=False,
        ).run(run)
        if lifted.thresholds.size:
            for what, arr in (("thresholds", lifted.thresholds), ("scores", lifted.scores)):
                S.write_result(
                    store,
                    name,
                    config.out,
                    f"{what}_{c}",
                    arr,
                    dims=("candidate",),
                    provenance=prov,
                    attrs={"threshold": lifted.threshold},
                    overwrite=config.overwrite,
                    compute=False,
                ).run(run)
        tables.append(
            class_boxes(client, labels, lifted.votes, c, lifted.threshold, config.min_voxels)
        )
    table = boxes3d_table(tables)
    S.write_table(
        store, name, config.out, "boxes3d", table, provenance=prov, overwrite=config.overwrite
    )
    table.insert(0, "tomogram", name)
    return table


def localize_dataset(
    client: Any,
    store: Any,
    names: Sequence[str],
    config: LocalizeConfig,
    *,
    export: Path | None = None,
    quiet: bool = False,
) -> pd.DataFrame:
    """:func:`localize_tomogram` for each tomogram; optionally export all 3D boxes (CSV/JSON)."""
    refuse_existing(store, names, config.out, ["boxes3d"], config.overwrite)
    file_boxes = read_boxes(config.boxes, ndim=2) if config.boxes is not None else None
    tables = []
    for name in names:
        if file_boxes is None:
            classes = config.classes or ("mito_membrane",)
            b2d = truth_boxes2d(
                client, store, name, classes, jitter_px=config.jitter_px, seed=config.seed
            )
        else:
            b2d = file_boxes
        tables.append(localize_tomogram(client, store, name, b2d, config, quiet=quiet))
    table = pd.concat(tables, ignore_index=True)
    if export is not None:
        write_boxes(export, table, ndim=3)
    return table


# ---------------------------------------------------------------------------- demo figure
def truth_boxes3d(
    client: Any, store: Any, name: str, class_name: str, *, min_voxels: int = 8
) -> pd.DataFrame:
    """3D boxes of the objects of class ``class_name`` in the simulator's ``truth_labels``.

    Objects are the 26-connected components of ``truth_labels == class``; a component whose
    box lies inside another's is part of that object (the inner membrane of a mitochondrion
    inside its outer membrane) and is dropped.
    """
    from cryoflow.simulate.classes import CLASS_IDS

    truth = S.open_volume(store, name, "truth_labels").data == CLASS_IDS[class_name]
    labels, _ = label(truth, connectivity=3, name=f"label-truth-{name}")
    boxes = client.compute(
        components_boxes(labels, None, class_name, min_voxels=min_voxels), sync=True
    )
    b = boxes[["z0", "y0", "x0", "z1", "y1", "x1"]].to_numpy()
    inside = (b[:, None, :3] >= b[None, :, :3]).all(-1) & (b[:, None, 3:] <= b[None, :, 3:]).all(-1)
    np.fill_diagonal(inside, False)
    return boxes[~inside.any(axis=1)].reset_index(drop=True)


def box_metrics(
    client: Any,
    store: Any,
    name: str,
    *,
    class_name: str = "mito_membrane",
    jitter_px: float = 1.0,
    seed: int = 0,
    overwrite: bool = True,
    quiet: bool = True,
) -> dict[str, Any]:
    """Algorithm 3 from jittered truth 2D boxes, scored against the truth 3D boxes.

    Returns
    -------
    dict
        ``localize_box_iou``: mean 3D IoU over matched pairs (Hungarian matching on IoU;
        pairs with IoU 0 are not matches; 0.0 when nothing matches);
        ``localize_box_iou_all``: the same sum divided by the number of true boxes (missed
        boxes count 0); ``localize_n_pred``, ``localize_n_truth``, ``localize_n_matched``,
        ``localize_threshold``; ``localize_boxes`` and ``localize_truth_boxes`` (DataFrames of
        3D boxes); ``localize_slice`` = ``{"votes": (Y, X) array, "z": int}`` at the centre of
        the first true box (for drawing boxes over a slice).
    """
    depth = int(S.open_volume(store, name, "truth_labels").shape[0])
    config = LocalizeConfig(
        from_truth=True,
        classes=(class_name,),
        jitter_px=jitter_px,
        seed=seed,
        overwrite=overwrite,
        out="localize",
        thickness=depth,
    )
    truth = truth_boxes3d(client, store, name, class_name)
    pred = localize_dataset(client, store, [name], config, quiet=quiet)
    cols = ["z0", "y0", "x0", "z1", "y1", "x1"]
    pi, ti, iou = match_boxes(pred[cols].to_numpy(float), truth[cols].to_numpy(float))
    votes = S.open_result(store, name, "localize", f"votes_{class_name}").data
    z = int((truth["z0"].iloc[0] + truth["z1"].iloc[0]) // 2) if len(truth) else votes.shape[0] // 2
    return {
        "localize_box_iou": float(iou.mean()) if iou.size else 0.0,
        "localize_box_iou_all": float(iou.sum() / len(truth)) if len(truth) else 0.0,
        "localize_n_pred": len(pred),
        "localize_n_truth": len(truth),
        "localize_n_matched": int(iou.size),
        "localize_threshold": float(pred["threshold"].iloc[0]) if len(pred) else float("nan"),
        "localize_boxes": pred,
        "localize_truth_boxes": truth,
        "localize_slice": {"votes": client.compute(votes[z], sync=True), "z": z},
    }
