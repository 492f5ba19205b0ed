"""Chunked extraction: exact against slicing, many tomograms, tasks by batch, chunks read."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest
import zarr
from dask.core import get_dependencies

from cryoflow.graph.extract import TASK_BYTES, extract_stack, task_groups
from cryoflow.kernels.extract import crop_boxes


def _dataset(rng: np.random.Generator):
    vols = {
        "a": rng.normal(size=(20, 24, 22)).astype(np.float32),
        "b": rng.normal(size=(15, 30, 18)).astype(np.float32),
    }
    rows = []
    for name, v in vols.items():
        Z, Y, X = v.shape
        for _ in range(17):
            rows.append(
                (name, rng.uniform(-3, X + 2), rng.uniform(-3, Y + 2), rng.uniform(-3, Z + 2))
            )
    table = pd.DataFrame(rows, columns=["tomogram", "x", "y", "z"]).sample(frac=1, random_state=1)
    table["score"] = rng.uniform(size=len(table))
    return vols, table.reset_index(drop=True)


def _check(
    stack: np.ndarray, planned: pd.DataFrame, vols: dict, table: pd.DataFrame, box: int, pad: object
) -> None:
    assert len(planned) == len(table)
    assert sorted(planned["input_index"]) == list(range(len(table)))
    for name, v in vols.items():
        rows = np.flatnonzero(planned["tomogram"].to_numpy() == name)
        ref = crop_boxes(v, planned.loc[rows, ["x", "y", "z"]].to_numpy(), box, pad=pad)
        assert np.array_equal(stack[rows], ref)
    # the input coordinates travel unchanged
    back = planned.set_index("input_index").sort_index()
    assert np.array_equal(back[["x", "y", "z"]].to_numpy(), table[["x", "y", "z"]].to_numpy())


@pytest.mark.parametrize("chunks", [(8, 8, 8), (7, 13, 5), (20, 30, 22)])
@pytest.mark.parametrize("pad", ["mean", 0.0])
def test_dask_volumes_equal_slicing(chunks, pad) -> None:
    rng = np.random.default_rng(0)
    vols, table = _dataset(rng)
    box = 7
    lazy = {n: da.from_array(v, chunks=chunks) for n, v in vols.items()}
    stack, planned = extract_stack(lazy, table, box, batch_size=5, pad=pad)
    assert stack.chunks[0] == (5,) * 6 + (4,)
    got = stack.compute(scheduler="sync")
    _check(got, planned, vols, table, box, pad)


@pytest.mark.parametrize("task_bytes", [TASK_BYTES, 3 * 4 * 6**3 * 4, 1])
def test_stored_volumes_equal_slicing_and_few_read_tasks(tmp_path, task_bytes) -> None:
    rng = np.random.default_rng(1)
    vols, table = _dataset(rng)
    stored = {}
    for n, v in vols.items():
        z = zarr.create_array(tmp_path / f"{n}.zarr", shape=v.shape, chunks=(6, 9, 7), dtype="f4")
        z[...] = v
        stored[n] = da.from_array(z, chunks=z.chunks)  # a plain view, as open_volume gives
    stack, planned = extract_stack(stored, table, 6, batch_size=4, task_bytes=task_bytes)
    graph = dict(stack.__dask_graph__())
    blocks = [k for k in graph if isinstance(k, tuple) and k[0] == stack.name]
    groups = task_groups(len(table), 4, 6, task_bytes)
    assert [len(g) for g in groups] == {TASK_BYTES: [9], 1: [1] * 9}.get(task_bytes, [3] * 3)
    # one block per read task (whole batches), not tomograms x chunks, and nothing else: the
    # stored arrays travel in the tasks, no block slices another task's result
    assert len(blocks) == len(groups) == len(graph)
    assert all(c % 4 == 0 for c in stack.chunks[0][:-1])
    assert planned.attrs["batch_size"] == 4
    _check(stack.compute(scheduler="sync"), planned, vols, table, 6, "mean")


class Recorder:
    """A stored-array stand-in that records every region read (to check what tasks read)."""

    def __init__(self, data: np.ndarray, chunks: tuple[int, int, int]) -> None:
        self.data, self.shape, self.chunks, self.dtype = data, data.shape, chunks, data.dtype
        self.store, self.path = "memory", "rec"
        self.reads: list[tuple[slice, ...]] = []

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        self.reads.append(key)
        return self.data[key]


def test_tasks_read_only_the_chunks_their_boxes_overlap() -> None:
    vol = np.random.default_rng(2).normal(size=(32, 32, 32)).astype(np.float32)
    rec = Recorder(vol, (8, 8, 8))
    table = pd.DataFrame(
        {"tomogram": ["t"] * 3, "x": [4.0, 5.0, 28.0], "y": [4.0, 4.0, 28.0], "z": [4.0, 3.0, 28.0]}
    )
    stack, planned = extract_stack({"t": rec}, table, 4, batch_size=2)
    got = dask.compute(stack, scheduler="sync")[0]
    assert np.array_equal(got, crop_boxes(vol, planned[["x", "y", "z"]].to_numpy(), 4))
    touched = {tuple(s.start // 8 for s in key) for key in rec.reads}
    assert touched == {(0, 0, 0), (3, 3, 3)}  # 2 of the 64 chunks; never the whole volume
    for key in rec.reads:
        assert all(s.stop - s.start <= 8 for s in key)


def test_one_read_task_reads_each_chunk_once() -> None:
    rng = np.random.default_rng(3)
    vol = rng.normal(size=(24, 24, 24)).astype(np.float32)
    rec = Recorder(vol, (8, 8, 8))
    xyz = rng.uniform(-2, 26, size=(40, 3))
    table = pd.DataFrame({"tomogram": ["t"] * 40, "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]})
    stack, planned = extract_stack({"t": rec}, table, 5, batch_size=4)  # one read task
    got = dask.compute(stack, scheduler="sync")[0]
    assert np.array_equal(got, crop_boxes(vol, planned[["x", "y", "z"]].to_numpy(), 5))
    touched = [tuple(s.start // 8 for s in key) for key in rec.reads]
    assert len(touched) == len(set(touched)) == 27  # every chunk, each once


def test_dask_path_depends_only_on_overlapped_chunks() -> None:
    vol = da.zeros((32, 32, 32), chunks=8, dtype=np.float32)
    table = pd.DataFrame({"tomogram": ["t"], "x": [12.0], "y": [3.0], "z": [30.0]})
    stack, _ = extract_stack({"t": vol}, table, 4, batch_size=1)
    graph = dict(stack.__dask_graph__())
    (key,) = [k for k in graph if isinstance(k, tuple) and k[0] == stack.name]
    deps = get_dependencies(graph, key)
    chunk_keys = {k[1:] for k in deps if isinstance(k, tuple) and k[0] == vol.name}
    assert chunk_keys == {(3, 0, 1)}
