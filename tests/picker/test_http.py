"""The picker over HTTP: a real ``cryoflow picker`` process on a real store."""

from __future__ import annotations

import io
import json
import time
from importlib.util import find_spec

import numpy as np
import pandas as pd
import pytest
import starfile
from PIL import Image

from cryoflow.io.particles import read_particles
from cryoflow.io.results import read_table
from cryoflow.io.store import open_volume
from tests.picker.conftest import SHAPE, Server, make_volume

GUARDED = [
    "/",
    "/api/tomograms",
    "/api/slice?tomogram=cell_a&axis=z&index=11&fit_w=100&fit_h=80",
    "/api/overlay?tomogram=cell_a&axis=z&index=11&level=0",
    "/api/jobs/1",
    "/static/picker.js",
    "/static/picker.css",
    "/nowhere",
]


def _png(raw: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(raw)))


def test_url_is_local_and_carries_a_token(server: Server) -> None:
    assert server.url.startswith("http://127.0.0.1:")
    assert len(server.token) >= 24


@pytest.mark.parametrize("path", GUARDED)
def test_requests_without_the_token_are_refused(server: Server, path: str) -> None:
    for token in (None, "wrong-token", server.token[:-1]):
        code, _, body = server.get(path, token=token)
        assert code == 403, (path, token, code)
        assert b"slice" not in body and b"cell_a" not in body


def test_token_in_the_query_opens_the_page(server: Server) -> None:
    code, _, body = server.get(f"/?token={server.token}", token=None)
    assert code == 200
    assert f"picker.js?token={server.token}".encode() in body
    code, _, js = server.get(f"/static/picker.js?token={server.token}", token=None)
    assert code == 200 and b"X-Cryoflow-Token" in js


def test_writes_without_the_token_change_nothing(server: Server) -> None:
    click = {"tomogram": "cell_a", "axis": "z", "index": 3, "level": 0, "u": 5, "v": 5}
    for path, body in (("/api/click", click), ("/api/save", {"what": "examples"})):
        code, _, _ = server.post(path, body, token=None)
        assert code == 403
        code, _, _ = server.post(path, body, token="nope")
        assert code == 403
    tomos = server.json("GET", "/api/tomograms")["tomograms"]
    assert all(t["positives"] == 0 and t["negatives"] == 0 for t in tomos)
    assert not (server.store / "picks").exists()


def test_tomogram_table(server: Server) -> None:
    data = server.json("GET", "/api/tomograms")
    by = {t["name"]: t for t in data["tomograms"]}
    assert set(by) == {"cell_a", "cell_b"}
    assert by["cell_a"]["shape"] == list(SHAPE)
    assert [lv["shape"] for lv in by["cell_a"]["levels"]] == [
        [24, 80, 100],
        [12, 40, 50],
        [6, 20, 25],
    ]
    assert by["cell_b"]["shape"] == [12, 80, 100]


def _window(store: object, level: int) -> tuple[float, float]:
    vol = np.asarray(open_volume(store, "cell_a", "tomogram", level).values, dtype=np.float32)
    lo, hi = np.percentile(vol[vol.shape[0] // 2].ravel(), [0.5, 99.5])
    return float(lo), float(hi)


@pytest.mark.parametrize(
    ("axis", "index", "fit", "level"),
    [
        ("z", 11, (100, 80), 0),
        ("z", 11, (60, 60), 1),
        ("y", 31, (100, 30), 0),
        ("x", 61, (20, 6), 2),
    ],
)
def test_slice_png_comes_from_the_level_that_fits(
    server: Server, axis: str, index: int, fit: tuple[int, int], level: int
) -> None:
    q = f"tomogram=cell_a&axis={axis}&index={index}&fit_w={fit[0]}&fit_h={fit[1]}"
    code, headers, raw = server.get(f"/api/slice?{q}")
    assert code == 200 and headers["content-type"] == "image/png"
    assert headers["x-cryoflow-level"] == str(level)
    img = _png(raw)
    vol = np.asarray(open_volume(server.store, "cell_a", "tomogram", level).values)
    f = 2**level
    sel: list[object] = [slice(None)] * 3
    sel["zyx".index(axis)] = index // f
    plane = vol[tuple(sel)]
    assert img.shape == plane.shape and img.dtype == np.uint8
    lo, hi = _window(server.store, level)
    expected = np.clip((plane - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(img, expected)
    assert img.max() == 255  # the cube lies on every one of these planes


def test_slice_shows_the_cube_where_it_is(server: Server) -> None:
    code, _, raw = server.get("/api/slice?tomogram=cell_a&axis=z&index=12&fit_w=100&fit_h=80")
    img = _png(raw)
    bright = np.argwhere(img == 255)
    assert set(map(tuple, bright)) >= {(y, x) for y in range(30, 34) for x in range(60, 64)}
    assert len(bright) <= 16 + 0.01 * img.size  # the cube and the brightest 0.5 % of noise
    assert make_volume()[12][img == 0].max() < -2.0  # the darkest 0.5 %


def test_bad_slice_requests_say_what_is_wrong(server: Server) -> None:
    code, _, raw = server.get("/api/slice?tomogram=cell_a&axis=z&index=24&fit_w=9&fit_h=9")
    assert code == 400 and b"0..23" in raw
    code, _, raw = server.get("/api/slice?tomogram=cell_a&axis=w&index=2&fit_w=9&fit_h=9")
    assert code == 400 and b"z, y, x" in raw
    code, _, raw = server.get("/api/slice?tomogram=nope&axis=z&index=2&fit_w=9&fit_h=9")
    assert code == 404 and b"nope" in raw


def _click(server: Server, **kw: object) -> dict:
    body = {"tomogram": "cell_b", "radius": 3, **kw}
    return server.json("POST", "/api/click", body)


def test_clicks_are_stored_and_saved_as_star_and_csv(server: Server, tmp_path) -> None:
    # level 0, XY view: image (u, v) = (41.4, 22.6) is voxel x 41 (41.4 - 0.5 -> 40.9), y 22
    r = _click(server, axis="z", index=5, level=0, u=41.4, v=22.6, mode="positive")
    assert r["action"] == "added" and r["xyz"] == [41.0, 22.0, 5.0]
    # level 1, XZ view at y = 30: u 10.3 -> x 10.3*2 - 0.5 = 20.1 -> 20; v 3.1 -> z 5.7 -> 6
    r = _click(server, axis="y", index=30, level=1, u=10.3, v=3.1, mode="positive")
    assert r["xyz"] == [20.0, 30.0, 6.0]
    r = _click(server, axis="z", index=2, level=0, u=80.7, v=60.2, mode="negative")
    assert r["xyz"] == [80.0, 60.0, 2.0] and r["kind"] == "negative"
    marks = read_table(server.store, "cell_b", "picker", "marks")
    assert sorted(zip(marks["x"], marks["y"], marks["z"], marks["kind"], strict=True)) == [
        (20.0, 30.0, 6.0, "positive"),
        (41.0, 22.0, 5.0, "positive"),
        (80.0, 60.0, 2.0, "negative"),
    ]
    # the overlay draws each mark on the views through it
    ov = server.json("GET", "/api/overlay?tomogram=cell_b&axis=z&index=5&level=0&radius=3")
    got = sorted((i["u"], i["v"], i["kind"], round(i["r"], 6)) for i in ov["items"])
    # the mark at z 5 at full radius; the one at z 6, a voxel away, smaller; z 2 too far
    assert got == [(20.5, 30.5, "positive", round(np.sqrt(8), 6)), (41.5, 22.5, "positive", 3.0)]
    ov = server.json("GET", "/api/overlay?tomogram=cell_b&axis=z&index=8&level=1&radius=3")
    [far] = ov["items"]  # at level 1 (half the pixels), the mark at z 6, two voxels away
    assert far["r"] == pytest.approx(np.sqrt(9 - 4) / 2)
    assert (far["u"], far["v"]) == (pytest.approx(10.25), pytest.approx(15.25))

    saved = server.json("POST", "/api/save", {"what": "examples"})
    assert saved["rows"] == 2
    star_path, csv_path = server.store / "picks/examples.star", server.store / "picks/examples.csv"
    assert saved["files"] == [str(star_path), str(csv_path)]
    star = starfile.read(star_path)
    assert isinstance(star, pd.DataFrame)
    got = star.sort_values("rlnCoordinateX")
    assert list(got["rlnTomoName"]) == ["cell_b", "cell_b"]
    assert list(got["rlnCoordinateX"]) == [20, 41]
    assert list(got["rlnCoordinateY"]) == [30, 22]
    assert list(got["rlnCoordinateZ"]) == [6, 5]
    table = read_particles(csv_path).sort_values("x")
    assert table[["x", "y", "z"]].to_numpy().tolist() == [[20, 30, 6], [41, 22, 5]]
    assert not list((server.store / "picks").glob(".*tmp*"))

    # negatives to a path of the user's; an existing file is kept unless overwrite is asked
    neg = tmp_path / "neg.star"
    assert server.json("POST", "/api/save", {"what": "negatives", "path": str(neg)})["rows"] == 1
    assert starfile.read(neg)["rlnCoordinateX"].tolist() == [80]
    code, _, raw = server.post("/api/save", {"what": "negatives", "path": str(neg)})
    assert code == 400 and b"exists" in raw and str(neg).encode() in raw
    body = {"what": "negatives", "path": str(neg), "overwrite": True}
    assert server.json("POST", "/api/save", body)["rows"] == 1
    code, _, raw = server.post("/api/save", {"what": "negatives", "path": str(tmp_path / "n.txt")})
    assert code == 400 and b".star or .csv" in raw

    # clicking a mark removes it
    r = _click(server, axis="z", index=5, level=0, u=42.0, v=23.0, mode="positive")
    assert r["action"] == "removed"
    by = {t["name"]: t for t in server.json("GET", "/api/tomograms")["tomograms"]}
    assert (by["cell_b"]["positives"], by["cell_b"]["negatives"]) == (1, 1)


def _wait(server: Server, job: dict) -> dict:
    for _ in range(600):
        if job["state"] != "running":
            return job
        time.sleep(0.1)
        job = server.json("GET", f"/api/jobs/{job['id']}")
    raise AssertionError(f"job still running: {job}")


def test_find_the_rest_without_examples_says_so(server: Server) -> None:
    job = _wait(server, server.json("POST", "/api/find", {"names": ["cell_a"]}))
    assert job["state"] == "failed" and "at least one positive" in job["error"]


@pytest.mark.skipif(
    find_spec("cryoflow.pipelines.stages.pick") is not None,
    reason="network-assisted picking is installed; this checks the message shown without it",
)
def test_find_the_rest_without_the_picking_function_says_so(server: Server) -> None:
    _click(server, tomogram="cell_a", axis="z", index=12, level=0, u=61.5, v=31.5)
    job = _wait(server, server.json("POST", "/api/find", {}))
    assert job["state"] == "failed"
    assert "not available" in job["error"] and "find_particles" in job["error"]


def test_bad_bodies_are_refused(server: Server) -> None:
    code, _, raw = server.request("POST", "/api/click", "not an object", "")
    assert code == 400 and b"JSON object" in raw
    code, _, raw = server.post("/api/find", {"names": ["nope"]})
    assert code == 404 and b"nope" in raw
    code, _, raw = server.post("/api/save", {"what": "everything"})
    assert code == 400 and b"examples, negatives, picks" in raw
    assert json.loads(raw)["error"]


def test_marks_route_adds_and_removes_by_position_and_id(server: Server) -> None:
    body = {"tomogram": "cell_b", "op": "add", "x": 3, "y": 4, "z": 5, "kind": "negative"}
    new = server.json("POST", "/api/marks", body)["id"]
    gone = server.json("POST", "/api/marks", {"tomogram": "cell_b", "op": "remove", "id": new})
    assert gone == {"xyz": [3.0, 4.0, 5.0], "kind": "negative"}
    code, _, raw = server.post("/api/marks", {**body, "x": 100})
    assert code == 400 and b"outside its volume" in raw
    code, _, raw = server.post("/api/marks", {"tomogram": "cell_b", "op": "remove", "id": new})
    assert code == 404 and f"no mark {new}".encode() in raw
