""" "Find the rest" through the page with cryoflow's own picking network (real browser, real
cluster). Runs once ``cryoflow.pipelines.stages.pick`` is part of the build."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
import starfile
from playwright.sync_api import Page, expect, sync_playwright

from cryoflow.io import store as S
from cryoflow.io.results import read_table
from cryoflow.simulate.crowded import CrowdedConfig, simulate_crowded
from tests.picker.conftest import Server, start_server, stop_server

#: the picking network's quick settings (as its own tests use them)
FAST = {"steps": 300, "n_random_negatives": 2000}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="the Debian chromium package is not installed (apt-get install -y chromium)",
    ),
    pytest.mark.skipif(
        find_spec("cryoflow.pipelines.stages.pick") is None,
        reason="cryoflow.pipelines.stages.pick (the picking network) is not in this build",
    ),
]


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, object]]:
    path = tmp_path_factory.mktemp("net") / "crowded.zarr"
    cfg = CrowdedConfig(  # small and clear: the network's own test phantom
        shape=(32, 64, 64),
        pixel_size_angstrom=20.0,
        diameter_angstrom=180.0,
        n_targets=10,
        n_decoys=10,
        decoys=("rod",),
        clutter_fraction=0.01,
        tilt_step_deg=6.0,
        snr=2.0,
        blur="gaussian",
        seed=3,
    )
    sim = simulate_crowded(cfg)
    attrs = {"tilt_range_deg": [cfg.tilt_min_deg, cfg.tilt_max_deg], "tilt_range_source": "sim"}
    S.write_volume(
        path,
        "crowded",
        "tomogram",
        sim.tomogram,
        pixel_size_angstrom=10.0,
        provenance={},
        attrs=attrs,
    )
    proc, srv = start_server(path)
    try:
        yield srv, sim.truth
    finally:
        stop_server(proc)


def test_find_accept_save_with_the_network(crowded: tuple[Server, object], tmp_path: Path) -> None:
    srv, truth = crowded
    targets = truth[truth["kind"] == "target"]  # type: ignore[index]
    for r in targets.head(4).itertuples():
        body = {"tomogram": "crowded", "op": "add", "kind": "positive"}
        srv.json("POST", "/api/marks", {**body, "x": round(r.x), "y": round(r.y), "z": round(r.z)})
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page: Page = browser.new_page(viewport={"width": 1200, "height": 800})
        try:
            page.goto(srv.url)
            page.wait_for_function("state.level !== null")
            page.fill("#params", json.dumps(FAST))
            page.click("#find")
            page.wait_for_function(
                "(() => { const j = document.getElementById('job'); "
                "return j.textContent.startsWith('done:') || j.className === 'error'; })()",
                timeout=900_000,
            )
            assert page.locator("#job").text_content().startswith("done:"), page.locator(
                "#job"
            ).text_content()
            picks = read_table(srv.store, "crowded", "picker", "picks")
            assert len(picks) and set(picks["status"]) == {"pending"}
            page.fill("#threshold", "0")
            page.dispatch_event("#threshold", "input")
            page.click("#accept")
            expect(page.locator("#status")).to_contain_text(f"accepted {len(picks)} pick(s)")
            out = tmp_path / "picks.star"
            page.select_option("#what", "picks")
            page.fill("#path", str(out))
            page.click("#save")
            expect(page.locator("#status")).to_contain_text(f"saved {len(picks)} row(s)")
        finally:
            browser.close()
    star = starfile.read(out)
    got = np.sort(star[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy(), axis=0)
    want = np.sort(picks[["x", "y", "z"]].to_numpy(), axis=0)
    np.testing.assert_allclose(got, want)  # the file holds what the store holds
