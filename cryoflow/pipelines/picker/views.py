"""Slices of a stored tomogram for the picking page, and the page's image <-> voxel mapping.

A *view* is one plane through a volume ``(Z, Y, X)``: ``axis="z"`` (the XY plane at depth
``index``; image rows ``y``, columns ``x``), ``axis="y"`` (XZ; rows ``z``, columns ``x``) or
``axis="x"`` (YZ; rows ``z``, columns ``y``). ``index`` is always a level-0 voxel index.

The page asks for a view at the size it can show (``fit_w`` x ``fit_h`` pixels); the server
reads it from the finest OME-Zarr pyramid level whose plane fits that size (the coarsest level
when none does), so a large tomogram opens quickly and zooming in asks for a finer level.

Image coordinates ``(u, v)`` are continuous positions in the PNG's own pixels (``u`` across,
``v`` down; pixel ``i`` covers ``[i, i + 1)``). A level ``k`` voxel ``i`` averages level-0
voxels ``[i f, (i + 1) f)`` (``f`` the level's factor on that axis), so level-0 voxel centre
``x0`` (covering ``[x0 - 0.5, x0 + 0.5)``) sits at ``u = (x0 + 0.5) / f`` and back
``x0 = u f - 0.5`` (:func:`to_voxel`, :func:`to_image`).

Grey levels: the ``low``/``high`` percentiles of the level's central XY plane (the plane the
page opens on; a seeded sample of at most 2^20 voxels) map to 0/255, so every slice read from
one level shares one contrast (no flicker while browsing). The window is per level because
averaging shrinks the noise: a coarse level's range would saturate level 0.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from cryoflow.errors import ConfigError
from cryoflow.io import nodes, ome
from cryoflow.io.chunks import CheckedArray
from cryoflow.io.layout import LABELS, TOMOGRAMS, VOLUMES, open_dataset
from cryoflow.io.store import open_volume
from cryoflow.pipelines.picker.cache import SlabCache

__all__ = ["AXES", "Level", "VolumeView", "to_image", "to_voxel"]

#: view axis -> (row axis, column axis), each an index into (z, y, x)
AXES: dict[str, tuple[int, int, int]] = {"z": (0, 1, 2), "y": (1, 0, 2), "x": (2, 0, 1)}
_SAMPLE = 1 << 20  # voxels of the coarsest level used for the percentiles


def parse_axis(axis: str) -> tuple[int, int, int]:
    """``(normal, row, column)`` axis indices into ``(z, y, x)`` of view ``axis``."""
    if axis not in AXES:
        raise ConfigError(f"view axis must be one of {', '.join(AXES)}; got {axis!r}")
    return AXES[axis]


@dataclass(frozen=True)
class Level:
    """One pyramid level: its number, shape ``(Z, Y, X)`` and factors against level 0."""

    level: int
    shape: tuple[int, int, int]
    factors: tuple[int, int, int]


def to_voxel(u: float, factor: int) -> float:
    """Level-0 voxel coordinate of image position ``u`` on a level of ``factor``."""
    return float(u) * factor - 0.5


def to_image(x0: float, factor: int) -> float:
    """Image position of level-0 voxel coordinate ``x0`` on a level of ``factor``."""
    return (float(x0) + 0.5) / factor


def _level_arrays(store: object, name: str, key: str) -> list[CheckedArray]:
    """The pyramid levels of volume ``key`` (an image, else a label image), as checked
    arrays: one Zarr read per slab (its chunks decoded concurrently), corrupt chunks named."""
    root = open_dataset(store)
    base = f"{TOMOGRAMS}/{name}"
    section = VOLUMES if nodes.exists(root, f"{base}/{VOLUMES}/{key}") else LABELS
    group = nodes.open_node(root, f"{base}/{section}/{key}", what="volume")
    n_levels = len(group.attrs["ome"]["multiscales"][0]["datasets"])
    return [CheckedArray(nodes.child_array(group, str(k))) for k in range(n_levels)]


class VolumeView:
    """Slices of tomogram ``name``'s volume ``key`` in ``store`` (reads only, no state).

    Raises
    ------
    NodeNotFoundError
        No such tomogram or volume.
    """

    def __init__(
        self, store: object, name: str, key: str = "tomogram", cache: SlabCache | None = None
    ) -> None:
        self.store, self.name, self.key = store, name, key
        self.cache = cache if cache is not None else SlabCache(0)
        base = open_volume(store, name, key, level=0)  # a clear error when there is none
        self.shape: tuple[int, int, int] = tuple(int(s) for s in base.shape)  # type: ignore[assignment]
        self.pixel_size_angstrom = float(base.attrs["pixel_size_angstrom"])
        self._data = _level_arrays(store, name, key)
        self._samples: dict[int, np.ndarray] = {}
        factors = ome.level_factors(self.shape, len(self._data))
        self.levels = tuple(
            Level(k, tuple(s // f for s, f in zip(self.shape, fk, strict=True)), fk)  # type: ignore[arg-type]
            for k, fk in enumerate(factors)
        )

    # ------------------------------------------------------------------------ contrast
    def _sample(self, lv: Level, centre: np.ndarray | None = None) -> np.ndarray:
        if lv.level not in self._samples:
            if centre is None:
                centre = self._level_plane(lv, 0, lv.shape[0] // 2)
            data = np.asarray(centre, dtype=np.float32).ravel()
            data = data[np.isfinite(data)]
            if data.size > _SAMPLE:
                data = np.random.default_rng(0).choice(data, _SAMPLE, replace=False)
            self._samples[lv.level] = data
        return self._samples[lv.level]

    def window(self, lv: Level, low: float = 0.5, high: float = 99.5) -> tuple[float, float]:
        """The grey values at percentiles ``low`` and ``high`` of level ``lv``'s central
        XY plane (``z = Z // 2``): one contrast for every view read from that level."""
        if not 0 <= low < high <= 100:
            raise ConfigError(
                f"contrast percentiles need 0 <= low < high <= 100; got {low}, {high}"
            )
        sample = self._sample(lv)
        if sample.size == 0:
            return 0.0, 1.0
        lo, hi = np.percentile(sample, [low, high])
        return float(lo), float(hi) if hi > lo else float(lo) + 1.0

    # ------------------------------------------------------------------------ slices
    def level_for(self, axis: str, fit_w: int, fit_h: int) -> Level:
        """The finest level whose ``axis`` plane fits ``fit_w`` x ``fit_h`` (else the coarsest)."""
        _, row, col = parse_axis(axis)
        if fit_w < 1 or fit_h < 1:
            raise ConfigError(f"view size must be at least 1 x 1 pixels; got {fit_w} x {fit_h}")
        for lv in self.levels:
            if lv.shape[col] <= fit_w and lv.shape[row] <= fit_h:
                return lv
        return self.levels[-1]

    def level(self, level: int) -> Level:
        if not 0 <= level < len(self.levels):
            raise ConfigError(
                f"tomogram {self.name!r} has pyramid levels 0..{len(self.levels) - 1}; got {level}"
            )
        return self.levels[level]

    def plane(self, axis: str, index: int, lv: Level) -> np.ndarray:
        """The ``axis`` plane through level-0 index ``index``, read from level ``lv``.

        Returns ndarray of shape (rows, cols) (float32).
        """
        normal, _, _ = parse_axis(axis)
        if not 0 <= index < self.shape[normal]:
            raise ConfigError(
                f"tomogram {self.name!r}: {axis} index must be in 0..{self.shape[normal] - 1}; "
                f"got {index}"
            )
        k = min(int(index) // lv.factors[normal], lv.shape[normal] - 1)
        out = np.asarray(self._level_plane(lv, normal, k), dtype=np.float32)
        if normal == 0 and k == lv.shape[0] // 2:
            self._sample(lv, out)  # the contrast window's plane, read once
        return out

    def _level_plane(self, lv: Level, normal: int, k: int) -> np.ndarray:
        key = (str(self.store), self.name, self.key, lv.level)
        return self.cache.plane(key, self._data[lv.level], normal, k)

    def png(self, plane: np.ndarray, window: tuple[float, float]) -> bytes:
        """``plane`` as an 8-bit greyscale PNG, ``window`` mapped to 0..255."""
        from PIL import Image

        lo, hi = window
        grey = np.clip((np.nan_to_num(plane, nan=lo) - lo) * (255.0 / (hi - lo)), 0, 255)
        buf = io.BytesIO()
        Image.fromarray(grey.astype(np.uint8), mode="L").save(buf, format="PNG", compress_level=1)
        return buf.getvalue()


# ---------------------------------------------------------------------------- mapping
def click_to_xyz(
    axis: str, index: int, u: float, v: float, lv: Level, shape: tuple[int, int, int]
) -> tuple[float, float, float]:
    """The level-0 voxel ``(x, y, z)`` (rounded, inside ``shape``) clicked at image ``(u, v)``
    of the ``axis`` view through level-0 ``index`` read from level ``lv``."""
    normal, row, col = parse_axis(axis)
    zyx = [0.0, 0.0, 0.0]
    zyx[normal] = float(index)
    zyx[col] = to_voxel(u, lv.factors[col])
    zyx[row] = to_voxel(v, lv.factors[row])
    zyx = [float(np.clip(np.rint(c), 0, n - 1)) for c, n in zip(zyx, shape, strict=True)]
    return zyx[2], zyx[1], zyx[0]


def xyz_to_view(
    axis: str, index: int, xyz: np.ndarray, lv: Level
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image ``(u, v)`` of level-0 positions ``xyz`` (shape ``(n, 3)``) on the ``axis`` view,
    and their distance ``d`` (level-0 voxels) from its plane at ``index``."""
    normal, row, col = parse_axis(axis)
    zyx = np.asarray(xyz, dtype=float).reshape(-1, 3)[:, ::-1]
    u = (zyx[:, col] + 0.5) / lv.factors[col]
    v = (zyx[:, row] + 0.5) / lv.factors[row]
    return u, v, np.abs(zyx[:, normal] - index)
