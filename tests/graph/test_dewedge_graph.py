"""The blocked missing-wedge graph: equal to its in-memory twin, seamless, footprint-bound."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import torch
import zarr

from cryoflow.errors import CheckpointError, ConfigError
from cryoflow.geometry.tiles import TileGrid
from cryoflow.graph.dewedge import dewedge_lazy, lazy_normalisation
from cryoflow.models.arch import ModelSpec, build_model
from cryoflow.models.checkpoint import ModelConfig, save_checkpoint
from cryoflow.models.dewedge_checkpoint import read_dewedge
from cryoflow.models.dewedge_predict import apply_network, apply_tiled
from cryoflow.models.loader import ModelHandle, get_model
from tests._torch_threads import one_torch_thread  # noqa: F401  (autouse fixture)


def _checkpoint(directory, bin_factor: int, seed: int = 0) -> ModelHandle:
    """An untrained 3D U-Net with a non-zero head (so it is not the identity)."""
    torch.manual_seed(seed)
    spec = ModelSpec(arch="unet3d", base_channels=2, depth=2)
    model = build_model(spec)
    torch.nn.init.normal_(model.head.weight, std=0.3)
    config = ModelConfig(
        feature="dewedge",
        spec=spec,
        params={"bin_factor": bin_factor},
        training_set={
            "tomograms": [{"name": "t", "tilt_range_deg": [-60, 60], "normalisation": [0, 1]}]
        },
    )
    save_checkpoint(directory, model, config)
    return ModelHandle.from_directory(directory)


def _volume(shape=(24, 32, 40), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    from scipy import ndimage

    return (ndimage.gaussian_filter(rng.normal(size=shape), 1.5) * 5 + 0.3).astype(np.float32)


@pytest.fixture(scope="module")
def handles(tmp_path_factory):
    root = tmp_path_factory.mktemp("dewedge-models")
    return {b: _checkpoint(root / f"bin{b}", b) for b in (1, 2)}


@pytest.mark.parametrize("bin_factor", [1, 2])
@pytest.mark.parametrize("chunks", [(24, 32, 40), (7, 9, 11), (24, 5, 16)])
def test_dask_equals_in_memory_across_chunkings(handles, bin_factor, chunks) -> None:
    handle = handles[bin_factor]
    settings = read_dewedge(handle.directory)
    vol = _volume()
    block, margin, blend = 8 * bin_factor, 8 * bin_factor, 2 * bin_factor
    lazy = dewedge_lazy(
        da.from_array(vol, chunks=chunks),
        handle,
        loc=0.3,
        scale=2.0,
        settings=settings,
        block=block,
        margin=margin,
        blend=blend,
    )
    assert lazy.dtype == np.float32 and lazy.shape == vol.shape
    model, _ = get_model(handle)
    grid = TileGrid(vol.shape, block, margin, blend)
    expected = apply_tiled(model, vol, grid, loc=0.3, scale=2.0, bin_factor=bin_factor, n_threads=1)
    np.testing.assert_array_equal(lazy.compute(scheduler="sync"), expected)
    assert lazy.chunks == grid.chunks


def _steps_at(residual: np.ndarray, axis: int, seams: list[int]) -> tuple[float, float]:
    """Mean |jump| of ``residual`` across the seam planes and across all other planes."""
    d = np.abs(np.diff(residual, axis=axis)).mean(axis=tuple(a for a in range(3) if a != axis))
    at = np.zeros(d.size, bool)
    at[[s - 1 for s in seams]] = True
    return float(d[at].mean()), float(d[~at].mean())


def test_seams_hold_no_grid_artefacts(handles) -> None:
    handle = handles[2]
    settings = read_dewedge(handle.directory)
    model, _ = get_model(handle)
    vol = _volume((32, 48, 48), seed=1)
    whole = apply_network(model, vol, loc=0.3, scale=2.0, bin_factor=2, n_threads=1)
    scale = float(whole.std())

    def blocked(margin: int, blend: int) -> np.ndarray:
        return dewedge_lazy(
            vol, handle, loc=0.3, scale=2.0, settings=settings, block=16, margin=margin, blend=blend
        ).compute(scheduler="sync")

    good = blocked(16, 4)
    # 1. equal to the network on the whole volume, up to blending
    assert np.abs(good - whole).max() < 1e-3 * scale
    # 2. no step across the block boundaries: the difference from the whole-volume result
    #    jumps no more across the seam planes than across any other plane, and the result
    #    jumps across the seams exactly as the whole-volume result does there
    for axis in range(3):
        seams = list(range(16, vol.shape[axis], 16))
        at, off = _steps_at(good - whole, axis, seams)
        assert at <= 3 * off + 1e-6 * scale
        np.testing.assert_allclose(
            _steps_at(good, axis, seams), _steps_at(whole, axis, seams), rtol=1e-3
        )
    # 3. the check bites: tiles without context or blending show their seams
    bad = blocked(0, 0)
    assert np.abs(bad - whole).max() > 0.05 * scale
    at, off = _steps_at(bad - whole, 2, [16, 32])
    assert at > 5 * off


def test_stored_input_is_read_tile_by_tile(handles, tmp_path) -> None:
    handle = handles[2]
    settings = read_dewedge(handle.directory)
    vol = _volume()
    z = zarr.create_array(
        tmp_path / "tomo.zarr", shape=vol.shape, chunks=(8, 16, 16), dtype="float32"
    )
    z[...] = vol
    stored = da.from_zarr(z)
    lazy = dewedge_lazy(
        stored, handle, loc=0.3, scale=2.0, settings=settings, block=16, margin=16, blend=4
    )
    layers = set(lazy.dask.layers)
    assert not any(name.startswith(("rechunk", "from-zarr", "array-", "astype")) for name in layers)
    in_memory = dewedge_lazy(
        vol, handle, loc=0.3, scale=2.0, settings=settings, block=16, margin=16, blend=4
    )
    np.testing.assert_array_equal(
        lazy.compute(scheduler="sync"), in_memory.compute(scheduler="sync")
    )


def test_each_tile_reads_only_the_blocks_of_its_footprint(handles) -> None:
    handle = handles[1]
    settings = read_dewedge(handle.directory)
    vol = da.from_array(_volume(), chunks=8)
    lazy = dewedge_lazy(
        vol, handle, loc=0.0, scale=1.0, settings=settings, block=8, margin=4, blend=2
    )
    graph = dict(lazy.__dask_graph__())
    grid = TileGrid(vol.shape, 8, 4, 2)
    assert lazy.npartitions == int(np.prod(grid.n_tiles))
    tile_keys = [k for k in graph if isinstance(k, tuple) and k[0].startswith("dewedge-tile-")]
    assert len(tile_keys) == int(np.prod(grid.n_tiles))
    for key in tile_keys:
        idx = key[1:]
        deps = dask.core.get_dependencies(graph, key)
        blocks = {d[1:] for d in deps if isinstance(d, tuple) and d[0] == vol.name}
        assert blocks == set(grid.neighbours(idx))  # margin 4 of 8: the +-1 neighbours
    for key in (k for k in graph if isinstance(k, tuple) and k[0] == lazy.name):
        deps = dask.core.get_dependencies(graph, key)
        assert {d[1:] for d in deps} == set(grid.neighbours(key[1:]))
    # deterministic names
    again = dewedge_lazy(
        vol, handle, loc=0.0, scale=1.0, settings=settings, block=8, margin=4, blend=2
    )
    assert again.name == lazy.name


def test_misaligned_tiles_and_wrong_checkpoints_refused(handles, tmp_path) -> None:
    handle = handles[2]
    settings = read_dewedge(handle.directory)
    with pytest.raises(ConfigError, match="multiples of 8"):
        dewedge_lazy(_volume(), handle, loc=0.0, scale=1.0, settings=settings, block=12, margin=8)
    spec = ModelSpec(arch="unet", base_channels=2)
    save_checkpoint(tmp_path / "seg", build_model(spec), ModelConfig(feature="granule", spec=spec))
    with pytest.raises(CheckpointError, match="not a missing-wedge checkpoint"):
        read_dewedge(tmp_path / "seg")


def test_lazy_normalisation() -> None:
    vol = _volume()
    mean, std = dask.compute(*lazy_normalisation(da.from_array(vol, chunks=16)))
    assert mean == pytest.approx(vol.mean(dtype=np.float64)) and std == pytest.approx(
        vol.std(dtype=np.float64)
    )
