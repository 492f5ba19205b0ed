"""Few-shot training sets: a handful of positive 2D boxes with masks plus a few negative boxes.

A training set is cut from an image stack ``(N, Y, X)`` (tilt images or tomogram slices) and
a mask source of the same shape:

- a labels array (a napari Labels layer saved as Zarr, MRC or TIFF): ``0`` is unlabelled, the
  feature's value marks the feature, any other value marks painted background;
- a JSON or CSV file of boxes with their masks (see :func:`read_box_file`);
- the simulator's ground-truth masks.

Images are standardised per whole image before boxes are cut, exactly as at inference time.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict, Unpack

import numpy as np
from scipy import ndimage

from cryoflow.errors import ConfigError, InputFileError
from cryoflow.kernels.augment import standardize


@dataclass(frozen=True)
class TrainingSet:
    """Boxes cut from an image stack, with their masks.

    Attributes
    ----------
    feature : str
        The feature the masks mark (e.g. ``"granule"``).
    images : ndarray of shape (n_boxes, h, w), float32
        Standardised image boxes.
    masks : ndarray of shape (n_boxes, h, w), uint8
        1 where the feature is, 0 elsewhere.
    positive : ndarray of shape (n_boxes,), bool
        True for positive boxes (centred on the feature), False for negative ones.
    boxes : ndarray of shape (n_boxes, 5), int64
        ``(index, y0, x0, y1, x1)`` of every box in the source stack (end exclusive).
    source : dict
        Where the boxes came from (kind, store, tomogram, ...), recorded in checkpoints.
    margin : int
        Context pixels around each box in ``images``/``masks`` (so ``h = box_h + 2*margin``):
        the network sees the surroundings, the loss counts only the box itself. Without it a
        network whose receptive field exceeds the box learns the box's zero-padded border.
    """

    feature: str
    images: np.ndarray
    masks: np.ndarray
    positive: np.ndarray
    boxes: np.ndarray
    source: dict[str, Any] = field(default_factory=dict)
    margin: int = 0

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.ndim != 3 or self.masks.shape != self.images.shape:
            raise ConfigError(
                f"training images and masks must share shape (n, h, w); got "
                f"{self.images.shape} and {self.masks.shape}"
            )
        if self.positive.shape != (n,) or self.boxes.shape != (n, 5):
            raise ConfigError("training set positive/boxes do not match the number of boxes")
        if not self.positive.any():
            raise ConfigError(f"training set for {self.feature!r} holds no positive box")

    @property
    def identity(self) -> str:
        """SHA-256 of the boxes' pixels, masks and positions: names this exact training set."""
        h = hashlib.sha256()
        for a in (self.images, self.masks, self.positive, self.boxes):
            h.update(np.ascontiguousarray(a).tobytes())
        h.update(self.feature.encode())
        return h.hexdigest()

    def loss_weights(self) -> np.ndarray:
        """ndarray of shape (h, w), float32: 1 inside the box, 0 on the context margin."""
        h, wd = int(self.images.shape[1]), int(self.images.shape[2])
        w = np.zeros((h, wd), dtype=np.float32)
        m = self.margin
        w[m : h - m, m : wd - m] = 1.0
        return w

    def describe(self) -> dict[str, Any]:
        """JSON-ready record of this training set (without pixels)."""
        return {
            "feature": self.feature,
            "identity": self.identity,
            "n_positive": int(self.positive.sum()),
            "n_negative": int((~self.positive).sum()),
            "box_shape": [int(n) - 2 * self.margin for n in self.images.shape[1:]],
            "margin": self.margin,
            "boxes": self.boxes.tolist(),
            "source": self.source,
        }


def _box_at(cy: float, cx: float, size: int, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    y0 = int(np.clip(round(cy - size / 2), 0, shape[0] - size))
    x0 = int(np.clip(round(cx - size / 2), 0, shape[1] - size))
    return y0, x0, y0 + size, x0 + size


def _cut(
    std: np.ndarray, fm: np.ndarray, boxes: np.ndarray, margin: int
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``(index, y0, x0, y1, x1)`` of ``std``/``fm`` ``(N, Y, X)`` plus ``margin`` around."""
    m = int(margin)
    if m < 0 or m >= min(std.shape[1:]):
        raise ConfigError(f"margin must be 0..{min(std.shape[1:]) - 1}, got {margin}")
    pad = ((0, 0), (m, m), (m, m))
    std_p = np.pad(std, pad, mode="reflect") if m else std
    fm_p = np.pad(fm, pad) if m else fm
    images = np.stack([std_p[i, y0 : y1 + 2 * m, x0 : x1 + 2 * m] for i, y0, x0, y1, x1 in boxes])
    masks = np.stack([fm_p[i, y0 : y1 + 2 * m, x0 : x1 + 2 * m] for i, y0, x0, y1, x1 in boxes])
    return images.astype(np.float32), masks.astype(np.uint8)


class BoxCounts(TypedDict, total=False):
    """The box sampling keywords of :func:`training_set_from_masks` (its defaults apply to
    those left out), which the other builders pass through."""

    n_positive: int
    n_negative: int
    box_size: int
    margin: int


def training_set_from_masks(
    images: np.ndarray,
    feature_mask: np.ndarray,
    *,
    feature: str,
    n_positive: int = 10,
    n_negative: int = 4,
    box_size: int = 32,
    negative_mask: np.ndarray | None = None,
    margin: int = 0,
    rng: np.random.Generator,
    source: dict[str, Any] | None = None,
) -> TrainingSet:
    """Cut positive boxes centred on feature components and negative boxes elsewhere.

    Parameters
    ----------
    images : ndarray of shape (N, Y, X)
        Tilt images or tomogram slices (raw intensities; standardised here per image).
    feature_mask : ndarray of shape (N, Y, X), bool
        Where the feature is.
    feature : str
        Name of the feature.
    n_positive, n_negative : int
        How many boxes of each kind (positives: 1..200; fewer are taken if fewer components).
    box_size : int
        Edge of the square boxes in pixels (at most ``min(Y, X)``).
    negative_mask : ndarray of shape (N, Y, X), bool, optional
        Painted background: negative boxes are centred there. Without it they are placed at
        random where the box holds no feature pixel (or the fewest).
    rng : numpy.random.Generator
    margin : int
        Context pixels cut around each box (mirrored at the image border); see
        :class:`TrainingSet`.
    source : dict, optional
        Recorded as the training set's provenance.

    Returns
    -------
    TrainingSet with images and masks of shape (n, box_size + 2*margin, box_size + 2*margin)
    """
    imgs = np.asarray(images)
    fm = np.asarray(feature_mask).astype(bool)
    if imgs.ndim != 3 or fm.shape != imgs.shape:
        raise ConfigError(
            f"images and masks must share shape (N, Y, X); got {imgs.shape} and {fm.shape}"
        )
    if not 1 <= n_positive <= 200 or not 0 <= n_negative <= 200:
        raise ConfigError(
            f"n_positive must be 1..200 and n_negative 0..200, got {n_positive}, {n_negative}"
        )
    if not 4 <= box_size <= min(imgs.shape[1:]):
        raise ConfigError(f"box_size must be 4..{min(imgs.shape[1:])}, got {box_size}")
    std = standardize(imgs)
    shape2 = imgs.shape[1:]

    # 1. candidate positive centres: every connected feature component in every image
    centres: list[tuple[int, float, float]] = []
    for i in range(imgs.shape[0]):
        lab, n = ndimage.label(fm[i])
        if n:
            for cy, cx in ndimage.center_of_mass(fm[i], lab, range(1, n + 1)):
                centres.append((i, cy, cx))
    if not centres:
        raise ConfigError(f"no {feature!r} pixels found to cut positive boxes from")
    order = rng.permutation(len(centres))[:n_positive]
    picks = [
        (centres[j][0], *_box_at(centres[j][1], centres[j][2], box_size, shape2)) for j in order
    ]
    positive = [True] * len(picks)

    # 2. negative boxes: on painted background, else random boxes with the fewest feature pixels
    for _ in range(n_negative):
        if negative_mask is not None and np.any(negative_mask):
            idx = np.argwhere(np.asarray(negative_mask))
            i, cy, cx = idx[int(rng.integers(len(idx)))]
            picks.append((int(i), *_box_at(cy, cx, box_size, shape2)))
            positive.append(False)
        else:
            best: tuple[int, int, int, int, int] | None = None
            best_count = None
            for _try in range(20):
                i = int(rng.integers(imgs.shape[0]))
                y0 = int(rng.integers(shape2[0] - box_size + 1))
                x0 = int(rng.integers(shape2[1] - box_size + 1))
                count = int(fm[i, y0 : y0 + box_size, x0 : x0 + box_size].sum())
                if best_count is None or count < best_count:
                    best, best_count = (i, y0, x0, y0 + box_size, x0 + box_size), count
                if count == 0:
                    break
            if best is not None:  # always set: the loop runs at least once
                picks.append(best)
                positive.append(False)

    # 3. cut the boxes with their context margin
    boxes = np.asarray(picks, dtype=np.int64)
    cut_images, cut_masks = _cut(std, fm, boxes, margin)
    return TrainingSet(
        feature=feature,
        images=cut_images.astype(np.float32),
        masks=cut_masks,
        positive=np.asarray(positive, dtype=bool),
        boxes=boxes,
        source=dict(source or {}),
        margin=int(margin),
    )


def from_labels(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    feature: str,
    feature_value: int = 1,
    rng: np.random.Generator,
    source: dict[str, Any] | None = None,
    **sampling: Unpack[BoxCounts],
) -> TrainingSet:
    """Training set from a napari-style labels array ``(N, Y, X)`` (0 = unlabelled).

    Pixels equal to ``feature_value`` are the feature; any other non-zero value is painted
    background, where negative boxes are centred. The other arguments as in
    :func:`training_set_from_masks`.
    """
    lab = np.asarray(labels)
    if lab.shape != np.shape(images):
        raise ConfigError(f"labels shape {lab.shape} differs from images shape {np.shape(images)}")
    if not np.issubdtype(lab.dtype, np.integer) and lab.dtype != bool:
        raise ConfigError(f"labels must hold integers, got dtype {lab.dtype}")
    fm = lab == feature_value
    neg = (lab != 0) & ~fm
    return training_set_from_masks(
        images,
        fm,
        feature=feature,
        negative_mask=neg if neg.any() else None,
        rng=rng,
        source={"kind": "labels", "feature_value": int(feature_value), **(source or {})},
        **sampling,
    )


def read_labels(path: str | Path) -> np.ndarray:
    """Read a labels array ``(N, Y, X)`` from a Zarr array, an MRC file or a TIFF stack."""
    p = Path(path)
    suffix = p.suffix.lower()
    if not p.exists():
        raise InputFileError(p, "labels file does not exist")
    if suffix == ".zarr" or p.is_dir():
        import zarr

        try:
            node = zarr.open(str(p), mode="r")
        except (OSError, ValueError, KeyError) as exc:
            raise InputFileError(p, f"not a readable Zarr array: {exc}") from exc
        if not isinstance(node, zarr.Array):
            raise InputFileError(p, "a Zarr group, not an array; point at the labels array itself")
        data = np.asarray(node[...])
    elif suffix in (".mrc", ".mrcs", ".rec"):
        import mrcfile

        try:
            with mrcfile.open(p, permissive=False) as mrc:
                data = np.asarray(mrc.data).copy()
        except ValueError as exc:
            raise InputFileError(p, f"not a readable MRC file: {exc}") from exc
    elif suffix in (".tif", ".tiff"):
        import tifffile

        try:
            data = np.asarray(tifffile.imread(p))
        except (ValueError, tifffile.TiffFileError) as exc:
            raise InputFileError(p, f"not a readable TIFF file: {exc}") from exc
    else:
        raise InputFileError(p, f"unknown labels format {suffix!r}; use .zarr, .mrc or .tif")
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3 or data.dtype.kind not in "iub":
        raise InputFileError(
            p, f"labels must be an integer array (N, Y, X), got {data.dtype} {data.shape}"
        )
    return data


def read_box_file(path: str | Path) -> list[dict[str, Any]]:
    """Boxes with masks from JSON or CSV.

    JSON: ``{"boxes": [{"index": i, "y0":.., "x0":.., "y1":.., "x1":.., "positive": true,
    "mask": [[0, 1, ...], ...]}]}``. CSV: columns ``index,y0,x0,y1,x1,positive,mask`` where
    ``mask`` is the box's 0/1 pixels row by row as one string of ``(y1-y0)*(x1-x0)`` digits.

    Returns
    -------
    list of dict with ``index, y0, x0, y1, x1`` (int), ``positive`` (bool), ``mask``
    (ndarray of shape (y1-y0, x1-x0), uint8).
    """
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise InputFileError(p, f"cannot read box file: {exc}") from exc
    rows: list[dict[str, Any]]
    if p.suffix.lower() == ".json":
        try:
            rows = list(json.loads(text)["boxes"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputFileError(p, f"expected a JSON object with a 'boxes' list: {exc}") from exc
    elif p.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
    else:
        raise InputFileError(p, f"unknown box file format {p.suffix!r}; use .json or .csv")
    out = []
    for k, row in enumerate(rows):
        try:
            b: dict[str, Any] = {key: int(row[key]) for key in ("index", "y0", "x0", "y1", "x1")}
            pos = row.get("positive", True)
            b["positive"] = (
                pos if isinstance(pos, bool) else str(pos).strip().lower() in ("1", "true", "yes")
            )
            h, w = b["y1"] - b["y0"], b["x1"] - b["x0"]
            raw = row["mask"]
            if isinstance(raw, str):
                digits = raw.strip()
                if len(digits) != h * w or set(digits) - {"0", "1"}:
                    raise ValueError(f"mask must be {h * w} 0/1 digits")
                mask = np.frombuffer(digits.encode(), dtype=np.uint8) - ord("0")
            else:
                mask = np.asarray(raw, dtype=np.uint8)
            b["mask"] = (mask.reshape(h, w) > 0).astype(np.uint8)
        except (KeyError, ValueError, TypeError) as exc:
            raise InputFileError(p, f"box {k} is malformed: {exc}") from exc
        out.append(b)
    return out


def from_box_file(
    images: np.ndarray,
    path: str | Path,
    *,
    feature: str,
    margin: int = 0,
    source: dict[str, Any] | None = None,
) -> TrainingSet:
    """Training set from boxes with masks listed in a JSON/CSV file (see :func:`read_box_file`)."""
    imgs = np.asarray(images)
    std = standardize(imgs)
    rows = read_box_file(path)
    if not rows:
        raise InputFileError(path, "the box file lists no boxes")
    shapes = {r["mask"].shape for r in rows}
    if len(shapes) != 1:
        raise InputFileError(path, f"all boxes must have the same size, got {sorted(shapes)}")
    for r in rows:
        i, y0, x0, y1, x1 = r["index"], r["y0"], r["x0"], r["y1"], r["x1"]
        if not (
            0 <= i < imgs.shape[0]
            and 0 <= y0 < y1 <= imgs.shape[1]
            and 0 <= x0 < x1 <= imgs.shape[2]
        ):
            raise InputFileError(
                path, f"box {(i, y0, x0, y1, x1)} lies outside images of shape {imgs.shape}"
            )
    boxes = np.asarray(
        [[r[k] for k in ("index", "y0", "x0", "y1", "x1")] for r in rows], dtype=np.int64
    )
    cut_images, _ = _cut(std, np.zeros(std.shape, bool), boxes, margin)
    m = int(margin)
    masks = np.stack([np.pad(r["mask"], m) for r in rows]).astype(np.uint8)
    return TrainingSet(
        feature=feature,
        images=cut_images,
        masks=masks,
        margin=m,
        positive=np.asarray([r["positive"] for r in rows], dtype=bool),
        boxes=boxes,
        source={"kind": "box_file", "path": str(path), **(source or {})},
    )
