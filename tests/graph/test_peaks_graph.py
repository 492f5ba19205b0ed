"""Chunked peak finding: every particle found exactly once, also when it sits on a chunk border."""

from __future__ import annotations

from itertools import product

import dask
import dask.array as da
import numpy as np
import pytest
import zarr
from scipy import ndimage

from cryoflow.graph.peaks import centroids_lazy, peaks_lazy
from cryoflow.kernels.peaks import local_maxima


def _blobs(shape: tuple[int, int, int], centres: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    vol = np.zeros(shape, np.float32)
    for c in centres:
        vol[tuple(c)] = 1.0
    return ndimage.gaussian_filter(vol, sigma) * 100


def _border_centres(chunks: tuple[int, int, int], shape: tuple[int, int, int]) -> np.ndarray:
    """Well-separated particles on chunk borders (faces, edges and corners between chunks)."""
    axes = []
    for c, n in zip(chunks, shape, strict=True):
        borders = [v for b in range(c, n - 2, c) for v in (b - 1, b)]
        axes.append(sorted(set(borders) | {3, n // 2}))
    picked: list[tuple[int, int, int]] = []
    for p in product(*axes):
        on_border = sum(p[k] in axes[k] and p[k] not in (3, shape[k] // 2) for k in range(3))
        if on_border >= 2 and all(np.linalg.norm(np.subtract(p, q)) > 9 for q in picked):
            if all(2 <= p[k] < shape[k] - 2 for k in range(3)):
                picked.append(p)
    assert len(picked) >= 4
    return np.array(picked)


@pytest.mark.parametrize("chunks", [(8, 8, 8), (8, 13, 5), (5, 7, 11)])
def test_border_particles_found_once(chunks: tuple[int, int, int]) -> None:
    shape = (20, 24, 26)
    centres = _border_centres(chunks, shape)
    vol = _blobs(shape, centres)
    whole = local_maxima(vol, min_distance=3, threshold=1.0)
    lazy = peaks_lazy(da.from_array(vol, chunks=chunks), min_distance=3, threshold=1.0)
    got = dask.compute(lazy, scheduler="sync")[0]
    assert got[["z", "y", "x"]].to_numpy().tolist() == sorted(centres.tolist())
    assert (
        got[["z", "y", "x", "score"]].to_numpy().tolist()
        == whole[["z", "y", "x", "score"]].to_numpy().tolist()
    )


@pytest.mark.parametrize("chunks", [(6, 6, 6), (10, 4, 7)])
def test_noise_maps_match_whole_volume_with_plateaus(
    chunks: tuple[int, int, int], tmp_path
) -> None:
    rng = np.random.default_rng(2)
    vol = (
        (ndimage.gaussian_filter(rng.normal(size=(18, 16, 20)), 1.0) * 4).round().astype(np.float32)
    )
    whole = local_maxima(vol, min_distance=2.0, threshold=0.0)
    # a plain view of a stored array: tasks read chunk + halo themselves
    z = zarr.create_array(tmp_path / "s.zarr", shape=vol.shape, chunks=chunks, dtype="f4")
    z[...] = vol
    for arr in (da.from_array(vol, chunks=chunks), da.from_array(z, chunks=z.chunks)):
        got = dask.compute(peaks_lazy(arr, min_distance=2.0, threshold=0.0), scheduler="sync")[0]
        assert (
            got[["z", "y", "x"]].to_numpy().tolist() == whole[["z", "y", "x"]].to_numpy().tolist()
        )


def test_component_centroids_across_chunks() -> None:
    mask = np.zeros((12, 12, 12), bool)
    mask[2:9, 5:7, 5:7] = True  # spans the chunk border at z = 6
    mask[10:12, 0:2, 10:12] = True
    probs = mask * 0.5
    got = dask.compute(
        centroids_lazy(da.from_array(mask, chunks=6), weights=da.from_array(probs, chunks=6)),
        scheduler="sync",
    )[0]
    got = got.sort_values("n_voxels").reset_index(drop=True)
    assert got["n_voxels"].tolist() == [8, 28]
    assert got.loc[1, ["z", "y", "x"]].tolist() == [5.0, 5.5, 5.5]
    assert np.allclose(got["score"], 0.5)
