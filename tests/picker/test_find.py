""" "Find the rest" end to end on a real local cluster, in-process, with a stand-in picker.

The network-assisted picking function (``cryoflow.pipelines.stages.pick.find_particles``)
comes from another part of cryoflow; here the server is handed a small, real picking function
of the same signature (bright connected blobs, scored by brightness, computed on the
cluster's worker) so that the background job, the picks table, the score threshold,
accept/reject, the training set of the next search and saving picks are all tested.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import starfile
import uvicorn
from scipy import ndimage

from cryoflow.io import store as S
from cryoflow.io.store import open_volume
from cryoflow.pipelines.cluster.connect import ClusterConfig
from cryoflow.pipelines.picker.app import create_app
from cryoflow.pipelines.picker.server import bind
from tests.picker.conftest import Server

CALLS: list[dict[str, Any]] = []


def _blobs(store: str, name: str, min_value: float) -> pd.DataFrame:
    vol = np.asarray(open_volume(store, name, "tomogram").values)
    labels, n = ndimage.label(vol > min_value)
    idx = np.arange(1, n + 1)
    zyx = np.array(ndimage.center_of_mass(vol, labels, idx)).reshape(-1, 3)
    score = np.asarray(ndimage.mean(vol, labels, idx)) / 50.0
    return pd.DataFrame(
        {"tomogram": name, "x": zyx[:, 2], "y": zyx[:, 1], "z": zyx[:, 0], "score": score}
    )


def bright_blobs(
    store: Any,
    names: list[str],
    examples: pd.DataFrame,
    negatives: pd.DataFrame | None = None,
    *,
    client: Any = None,
    min_value: float = 10.0,
) -> pd.DataFrame:
    """A stand-in with ``find_particles``'s signature: blobs brighter than ``min_value``."""
    CALLS.append({"examples": examples.copy(), "negatives": negatives, "client": client})
    futures = [client.submit(_blobs, str(store), n, min_value, pure=False) for n in names]
    return pd.concat(client.gather(futures), ignore_index=True)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    path = tmp_path_factory.mktemp("find") / "data.zarr"
    vol = np.random.default_rng(3).normal(0, 1, (16, 48, 64)).astype(np.float32)
    vol[6:10, 10:14, 10:14] = 50.0  # blob 1: centre x, y, z = 11.5, 11.5, 7.5; score 1.0
    vol[6:10, 30:34, 40:44] = 30.0  # blob 2: centre 41.5, 31.5, 7.5; score 0.6
    S.write_volume(path, "cell", "tomogram", vol, pixel_size_angstrom=10.0, provenance={})
    served = bind()
    app = create_app(
        str(path),
        served.token,
        cluster=ClusterConfig(n_workers=1, dashboard=False, memory_limit="1GiB"),
        find=bright_blobs,
    )
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [served.sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base, token = served.url.split("/?token=")
    try:
        yield Server(base, token, served.url, path)
    finally:
        server.should_exit = True
        thread.join(timeout=120)
        served.sock.close()


def _wait(live: Server, job: dict) -> dict:
    for _ in range(1200):
        if job["state"] != "running":
            return job
        time.sleep(0.1)
        job = live.json("GET", f"/api/jobs/{job['id']}")
    raise AssertionError(f"job still running: {job}")


def _overlay_picks(live: Server, threshold: float) -> list[tuple[float, float, str]]:
    q = f"tomogram=cell&axis=z&index=8&level=0&radius=4&threshold={threshold}"
    items = live.json("GET", f"/api/overlay?{q}")["items"]
    return sorted((i["u"], round(i["score"], 3), i["kind"]) for i in items if i["table"] == "picks")


def test_find_accept_reject_save(live: Server, tmp_path: Path) -> None:
    click = {"tomogram": "cell", "axis": "z", "index": 8, "level": 0, "u": 12, "v": 12}
    assert live.json("POST", "/api/click", click)["action"] == "added"

    job = live.json("POST", "/api/find", {"radius": 4, "params": {"min_value": 10}})
    assert job["state"] == "running"
    code, _, raw = live.post("/api/find", {})  # one action at a time
    assert code == 400 and b"still running" in raw  # (the cluster alone takes seconds)
    job = _wait(live, job)
    assert job["state"] == "done", job
    assert job["result"]["picks"] == {"cell": 2}
    assert "dashboard" in job  # the cluster's dashboard link (none here: dashboard=False)
    ex = CALLS[0]["examples"]
    assert ex[["tomogram", "x", "y", "z"]].values.tolist() == [["cell", 12.0, 12.0, 8.0]]
    assert CALLS[0]["negatives"] is None

    # the threshold slider hides low scores; the picks come back where they are (u = x + 0.5)
    assert _overlay_picks(live, 0.8) == [(12.0, 1.0, "pending")]
    assert _overlay_picks(live, 0.5) == [(12.0, 1.0, "pending"), (42.0, 0.6, "pending")]
    assert (
        live.json(
            "POST", "/api/picks", {"tomogram": "cell", "status": "accepted", "threshold": 0.8}
        )["changed"]
        == 1
    )
    assert (
        live.json(
            "POST", "/api/picks", {"tomogram": "cell", "status": "rejected", "threshold": 0.8}
        )["changed"]
        == 1
    )
    # the page's undo: picks back to a status by id
    ids = [
        i["id"]
        for i in live.json("GET", "/api/overlay?tomogram=cell&axis=z&index=8&level=0&radius=4")[
            "items"
        ]
        if i["table"] == "picks"
    ]
    undo = live.json("POST", "/api/picks", {"tomogram": "cell", "status": "pending", "ids": ids})
    assert sorted(undo["previous"].values()) == ["accepted", "rejected"]
    assert _overlay_picks(live, 0.5) == [(12.0, 1.0, "pending"), (42.0, 0.6, "pending")]
    for status in ("accepted", "rejected"):
        body = {"tomogram": "cell", "status": status, "threshold": 0.8}
        assert live.json("POST", "/api/picks", body)["changed"] == 1
    # decided picks show at any threshold
    assert _overlay_picks(live, 0.99) == [(12.0, 1.0, "accepted"), (42.0, 0.6, "rejected")]
    tomo = live.json("GET", "/api/tomograms")["tomograms"][0]
    assert (tomo["pending"], tomo["accepted"], tomo["rejected"]) == (0, 1, 1)
    assert tomo["score_range"] == [pytest.approx(0.6), pytest.approx(1.0)]

    out = tmp_path / "picks.star"
    assert live.json("POST", "/api/save", {"what": "picks", "path": str(out)})["rows"] == 1
    star = starfile.read(out)
    assert star[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].values.tolist() == [
        [11.5, 11.5, 7.5]
    ]
    assert star["rlnAutopickFigureOfMerit"].tolist() == [pytest.approx(1.0)]

    # the next search trains on the decisions; it finds the same two blobs, already decided
    job = _wait(live, live.json("POST", "/api/find", {"radius": 4, "params": {"min_value": 10}}))
    assert job["state"] == "done" and job["result"]["picks"] == {"cell": 0}
    ex, neg = CALLS[1]["examples"], CALLS[1]["negatives"]
    assert sorted(ex[["x", "y", "z"]].values.tolist()) == [[11.5, 11.5, 7.5], [12.0, 12.0, 8.0]]
    assert neg[["x", "y", "z"]].values.tolist() == [[41.5, 31.5, 7.5]]
    assert CALLS[0]["client"] is CALLS[1]["client"]  # one cluster for the server's life


def test_a_failing_picker_is_reported(live: Server) -> None:
    job = _wait(live, live.json("POST", "/api/find", {"params": {"no_such_option": 1}}))
    assert job["state"] == "failed"
    assert "no_such_option" in job["error"]
