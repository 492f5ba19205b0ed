"""Lazy picking over a whole tomogram: the picker's score map, block by block, and its peaks.

:func:`score_map` cuts the volume (at the picker's pyramid level) into blocks of ``block``
voxels per axis; each task reads its block plus the network's halo (clipped at the volume's
border), normalises it with the tomogram's ``mean`` and ``std`` (given, so every block is
normalised alike), pads with zeros beyond the border (the normalised mean, as the network was
trained) and returns the probabilities of its core. The network comes from the worker's
:class:`~cryoflow.models.loader.ModelPlugin` (loaded once per worker; tasks carry only the
:class:`~cryoflow.models.loader.ModelHandle`). A stored volume (a plain view of a Zarr array)
is read by the tasks themselves; any other Dask volume is sliced. GPU placement is the
pipeline's (``dask.annotate(resources={"GPU": 1})`` around this builder).

:func:`picks_lazy` turns a score map into picks (:mod:`cryoflow.graph.peaks`, half a diameter
apart, above the threshold) in level-0 ``x, y, z`` with their scores.
"""

from __future__ import annotations

from itertools import product
from typing import TYPE_CHECKING, Any, cast

import dask
import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from cryoflow.graph.peaks import peaks_lazy
from cryoflow.graph.sources import stored_source
from cryoflow.kernels.invariants import halo as invariant_halo
from cryoflow.models.checkpoint import ModelConfig, read_config
from cryoflow.models.loader import ModelHandle, get_model
from cryoflow.models.pickapply import min_distance_px, peak_table
from cryoflow.models.picknet import invariant_spec

if TYPE_CHECKING:
    from cryoflow.models.picknet import PickNet

__all__ = ["picks_lazy", "score_map", "volume_stats"]


def _score(
    region: np.ndarray,
    pads: tuple[tuple[int, int], ...],
    mean: float,
    std: float,
    handle: ModelHandle,
) -> np.ndarray:
    model = cast("PickNet", get_model(handle)[0])
    block = (np.asarray(region, dtype=np.float32) - np.float32(mean)) / np.float32(std)
    return model.score_block(np.pad(block, pads, mode="constant"))


def _score_stored(
    source: Any,
    lo: tuple[int, ...],
    hi: tuple[int, ...],
    pads: Any,
    mean: float,
    std: float,
    handle: ModelHandle,
) -> np.ndarray:
    region = np.asarray(source[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))])
    return _score(region, pads, mean, std, handle)


def volume_stats(volume: Any) -> tuple[Any, Any]:
    """Lazy ``(mean, std)`` of a volume (Dask scalars; compute them before :func:`score_map`)."""
    data = volume.data if hasattr(volume, "dims") else volume
    data = da.asarray(data).astype(np.float64)
    return data.mean(), data.std()


def score_map(
    volume: Any,
    handle: ModelHandle,
    *,
    mean: float,
    std: float,
    block: int = 64,
    config: ModelConfig | None = None,
    label: str = "pick",
) -> da.Array:
    """The picker's probability map ``(Z, Y, X)`` float32 of a volume at its level, lazily.

    Parameters
    ----------
    volume : Dask array or DataArray ``(Z, Y, X)`` (a stored view is read by the tasks)
    handle : the trained picker's checkpoint
    mean, std : the volume's statistics (:func:`volume_stats`)
    block : core voxels per task and axis (memory per task grows with ``(block + 2 halo)^3``
        times the descriptor count)
    config : the checkpoint's config (read from ``handle.directory`` when not given)

    Returns
    -------
    dask.array.Array (Z, Y, X) float32, one task per block.
    """
    data = volume.data if hasattr(volume, "dims") else volume
    data = data if isinstance(data, da.Array) else da.from_array(np.asarray(data), chunks=block)
    cfg = config or read_config(handle.directory)
    h = invariant_halo(invariant_spec(cfg.spec))
    shape = tuple(int(s) for s in data.shape)
    std = float(std) if float(std) > 0 else 1.0
    source = stored_source(data)
    token = tokenize(data.name, handle.sha256, handle.device, float(mean), std, int(block))
    name = f"{label}-scores-{token}"
    starts = [list(range(0, n, block)) for n in shape]
    dsk: dict[Any, Any] = {}
    deps: list[Any] = []
    if source is not None:
        dsk[f"source-{name}"] = source
    for idx in product(*(range(len(s)) for s in starts)):
        c0 = [starts[k][idx[k]] for k in range(3)]
        c1 = [min(c0[k] + block, shape[k]) for k in range(3)]
        lo = tuple(max(0, a - h) for a in c0)
        hi = tuple(min(n, b + h) for b, n in zip(c1, shape, strict=True))
        # zeros (the normalised mean) where the block's halo reaches beyond the volume
        pads = tuple((lo[k] - (c0[k] - h), (c1[k] + h) - hi[k]) for k in range(3))
        if source is not None:
            dsk[(name, *idx)] = (
                _score_stored,
                f"source-{name}",
                lo,
                hi,
                pads,
                float(mean),
                std,
                handle,
            )
        else:
            piece = data[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
            piece = piece.rechunk(piece.shape)
            deps.append(piece)
            dsk[(name, *idx)] = (_score, (piece.name, 0, 0, 0), pads, float(mean), std, handle)
    chunks = tuple(tuple(min(block, n - a) for a in s) for s, n in zip(starts, shape, strict=True))
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=deps)
    return da.Array(
        graph, name, chunks=chunks, dtype=np.float32, meta=np.empty((0, 0, 0), np.float32)
    )


def picks_lazy(
    scores: Any, config: ModelConfig, tomogram: str, *, threshold: float | None = None
) -> Any:
    """Delayed pick table (``tomogram, x, y, z, score``, level-0 voxels, best first)."""
    thr = config.threshold if threshold is None else float(threshold)
    peaks = peaks_lazy(scores, min_distance=min_distance_px(config), threshold=thr)
    return dask.delayed(peak_table, pure=True)(peaks, config, tomogram)
