"""Dataset-level steps in rounds: the ``intensity`` step through ``cryoflow run``, resumed after
an interruption with the same result, skipped when current, and the round graph itself."""

from __future__ import annotations

import numpy as np
import pytest

from cryoflow.io.results import open_dataset_result
from cryoflow.io.store import write_tilt_series
from cryoflow.io.verify import find_leftovers
from cryoflow.pipelines.engine.config import parse_pipeline
from cryoflow.pipelines.engine.run import read_summary, run_pipeline

ANGLES = np.linspace(-60, 60, 6)
OUTPUTS = ("mean", "std", "count", "history")


def make_dataset(store, n=3, seed=0):
    """Noisy tilt series with a few very bright pixels (fiducials) that clipping must drop."""
    rng = np.random.default_rng(seed)
    data = []
    for i in range(n):
        ts = rng.normal(5.0 + i, 2.0, size=(6, 24, 20)).astype(np.float32)
        ts[1, 3, 2:6] = 400.0
        write_tilt_series(store, f"TS_{i}", ts, ANGLES, 2.0)
        data.append(ts)
    return data


def reference(data, clip, rounds):
    """Iterative sigma clipping over every pixel, in plain NumPy."""
    x = np.concatenate([d.astype(np.float64).ravel() for d in data])
    mean, std, rows = 0.0, np.inf, []
    for _ in range(rounds):
        keep = x[np.abs(x - mean) <= clip * std] if np.isfinite(std) else x
        mean, std = float(keep.mean()), float(keep.std())
        rows.append([mean, std, keep.size])
    return np.array(rows)


def pipeline(store, **params):
    return parse_pipeline({"dataset": {"store": str(store)}, "cluster": {"retries": 0},
                           "steps": [{"intensity": {"rounds": 4, "batch_size": 4, **params}}]})


def results(store):
    return {k: open_dataset_result(store, "intensity", k).values for k in OUTPUTS}


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, memory_limit="1GiB", silence_logs=50) as cluster:
        with Client(cluster, set_as_default=False) as c:
            yield c


def test_intensity_rounds_equal_sigma_clipping_and_rerun_skips(tmp_path, client):
    store = tmp_path / "d.zarr"
    data = make_dataset(store)
    summary = run_pipeline(pipeline(store), client, quiet=True)
    assert summary.ok, summary.failures
    assert (summary.steps["intensity"].computed, summary.steps["intensity"].chunks) == (1, 4)
    got = results(store)
    ref = reference(data, 3.0, 4)
    np.testing.assert_allclose(got["history"][:, :2], ref[:, :2], rtol=1e-9)
    np.testing.assert_array_equal(got["history"][:, 2], ref[:, 2])
    assert got["history"][0, 1] > 5 * got["std"][0]  # round 1 saw the bright pixels
    assert got["count"][0] == ref[-1, 2] < ref[0, 2]
    prov = open_dataset_result(store, "intensity", "mean").attrs["provenance"]
    assert set(prov["inputs"]) == {f"tomograms/TS_{i}/tilt_series" for i in range(3)}
    assert prov["run_id"] == summary.run_id and prov["parameters"]["clip"] == 3.0
    assert find_leftovers(store) == []  # the round records are gone once published
    again = run_pipeline(pipeline(store), client, quiet=True)
    assert (again.steps["intensity"].skipped, again.steps["intensity"].chunks) == (1, 0)
    # another clip is another run: every round again
    other = run_pipeline(pipeline(store, clip=2.0), client, quiet=True)
    assert other.steps["intensity"].chunks == 4
    np.testing.assert_allclose(results(store)["history"][:, :2],
                               reference(data, 2.0, 4)[:, :2], rtol=1e-9)


def test_interrupted_rounds_resume_at_the_last_recorded_round_identically(tmp_path, client):
    ref_store, store = tmp_path / "ref.zarr", tmp_path / "d.zarr"
    make_dataset(ref_store)
    make_dataset(store)
    run_pipeline(pipeline(ref_store), client, quiet=True)

    class Crash(Exception):
        pass

    def crash(tomogram, step, n):
        if step == "intensity" and n == 2:
            raise Crash

    with pytest.raises(Crash):
        run_pipeline(pipeline(store), client, quiet=True, on_chunk=crash)
    records = sorted(p.name for p in (store / "results" / "intensity").glob(".tmp-rounds-*/round-*"))
    assert records == ["round-0001", "round-0002"]
    messages = []
    summary = run_pipeline(pipeline(store), client, log=messages.append)
    assert summary.ok and summary.steps["intensity"].chunks == 2  # rounds 3 and 4 only
    assert any("resuming after round 2 of 4" in m for m in messages)
    resumed, uninterrupted = results(store), results(ref_store)
    for key in OUTPUTS:
        np.testing.assert_array_equal(resumed[key], uninterrupted[key], err_msg=key)
    assert read_summary(store)["steps"]["intensity"]["computed"] == 1
    assert find_leftovers(store) == []


def test_a_failing_dataset_step_is_recorded_and_the_run_goes_on(tmp_path, client):
    store = tmp_path / "d.zarr"
    make_dataset(store, n=1)
    cfg = parse_pipeline({"dataset": {"store": str(store), "tomograms": ["TS_00", "nope"]},
                          "steps": [{"intensity": {}}]})
    summary = run_pipeline(cfg, client, quiet=True)
    assert list(summary.failures) == ["(dataset) intensity"]
    assert "NodeNotFoundError" in summary.failures["(dataset) intensity"]


def test_round_graph_combines_in_a_fixed_tree() -> None:
    import dask

    from cryoflow.graph.rounds import batches, map_reduce_graph

    def rows(state, a, b):
        return [(state, i) for i in range(a, b)]

    def concat(x, y):
        return x + y

    g = map_reduce_graph("s", 11, 3, rows, concat, name="t")
    assert dask.compute(g, scheduler="sync")[0] == [("s", i) for i in range(11)]
    assert g.key == map_reduce_graph("s", 11, 3, rows, concat, name="t").key  # deterministic
    graph = dict(g.__dask_graph__())
    assert sum(1 for k in graph if isinstance(k, tuple) and "map" in k[0]) == 4
    assert sum(1 for k in graph if isinstance(k, tuple) and "combine" in k[0]) == 3
    assert dask.compute(map_reduce_graph("s", 0, 3, rows, concat), scheduler="sync")[0] is None
    assert batches(7, 3) == [(0, 3), (3, 6), (6, 7)]
    with pytest.raises(ValueError, match="batch_size"):
        batches(3, 0)
