"""The picking page in a real headless Chromium (Debian's ``chromium``, driven by Playwright)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from importlib.util import find_spec

import numpy as np
import pytest
import starfile
from playwright.sync_api import Page, expect, sync_playwright

from cryoflow.io.results import read_table
from tests.picker.conftest import Server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="the Debian chromium package is not installed (apt-get install -y chromium)",
)


@pytest.fixture(scope="module")
def page() -> Iterator[Page]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        pg = browser.new_page(viewport={"width": 1200, "height": 800})
        try:
            yield pg
        finally:
            browser.close()


def _ready(page: Page) -> None:
    expect(page.locator("#tomograms tbody tr")).to_have_count(2)
    page.wait_for_function(
        "document.getElementById('slice').naturalWidth > 0 && state.level !== null"
    )
    page.wait_for_function("document.getElementById('overlay').dataset.count !== undefined")


def _click_image(page: Page, fx: float, fy: float, *, shift: bool = False) -> tuple[float, ...]:
    """Click the slice at fractions ``(fx, fy)`` of its box; returns the voxel the click names,
    worked out here from the image's natural size and level (``x0 = u * 2**level - 0.5``)."""
    img = page.locator("#slice")
    box = img.bounding_box()
    assert box is not None
    px, py = fx * box["width"], fy * box["height"]
    info = page.evaluate(
        "() => { const i = document.getElementById('slice'); return [i.naturalWidth, "
        "i.naturalHeight, i.clientWidth, i.clientHeight, state.level, "
        "Number(document.getElementById('index').value)]; }"
    )
    nat_w, nat_h, cw, ch, level, index = info
    f = 2**level
    x = float(np.rint((round(px) / cw * nat_w) * f - 0.5))
    y = float(np.rint((round(py) / ch * nat_h) * f - 0.5))
    img.click(position={"x": round(px), "y": round(py)}, modifiers=["Shift"] if shift else [])
    return x, y, float(index)


def test_pick_save_reload_in_the_browser(server: Server, page: Page) -> None:
    page.goto(server.url)
    _ready(page)
    expect(page.locator("#store")).to_contain_text(str(server.store))
    assert page.evaluate("state.tomo.name") == "cell_a"
    assert page.locator("#index").input_value() == "12"  # opens on the middle slice

    # a positive at the cube, a negative (shift-click) elsewhere
    x, y, z = _click_image(page, 0.615, 0.395)
    expect(page.locator("#status")).to_contain_text("added positive")
    expect(page.locator("#overlay circle.positive")).to_have_count(1)
    nx, ny, nz = _click_image(page, 0.2, 0.8, shift=True)
    expect(page.locator("#status")).to_contain_text("added negative")
    expect(page.locator("#overlay circle.negative")).to_have_count(1)
    expect(page.locator("#tomograms tbody tr").first).to_contain_text("cell_a")

    # what the page shows is what the store holds
    marks = read_table(server.store, "cell_a", "picker", "marks")
    assert sorted(zip(marks["kind"], marks["x"], marks["y"], marks["z"], strict=True)) == [
        ("negative", nx, ny, nz),
        ("positive", x, y, z),
    ]
    assert abs(x - 61.5) < 2 and abs(y - 31.5) < 2  # on the cube (x 60..63, y 30..33)

    # save the examples: STAR and CSV inside the store
    page.select_option("#what", "examples")
    page.click("#save")
    expect(page.locator("#status")).to_contain_text("saved 1 row(s)")
    star = starfile.read(server.store / "picks" / "examples.star")
    assert star[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy().tolist() == [
        [x, y, z]
    ]
    assert star["rlnTomoName"].tolist() == ["cell_a"]

    # a reload finds every mark again
    page.reload()
    _ready(page)
    expect(page.locator("#overlay circle")).to_have_count(2)

    # browse: a key moves the slice, the XZ view reads another plane
    page.locator("#slice").focus()
    page.keyboard.press("ArrowUp")
    expect(page.locator("#index-n")).to_have_value("13")
    page.select_option("#axis", "y")
    page.wait_for_function(
        "document.getElementById('slice').naturalHeight < document.getElementById('slice')"
        ".naturalWidth / 2"  # XZ of a (24, 80, 100) volume: 24 rows, 100 columns (or fewer)
    )

    # clicking the positive again removes it
    page.select_option("#axis", "z")
    page.fill("#index-n", str(int(z)))
    page.dispatch_event("#index-n", "change")
    page.wait_for_function(f"Number(document.getElementById('index').value) === {int(z)}")
    _ready(page)
    expect(page.locator("#overlay circle")).to_have_count(2)
    _click_image(page, 0.615, 0.395)
    expect(page.locator("#status")).to_contain_text("removed")
    expect(page.locator("#overlay circle.positive")).to_have_count(0)
    assert (read_table(server.store, "cell_a", "picker", "marks")["kind"] == "positive").sum() == 0

    # picking options are JSON, checked before anything is sent
    page.fill("#params", "{not json")
    page.click("#find")
    expect(page.locator("#job")).to_contain_text("options are not JSON")
    page.fill("#params", "")

    # undo brings it back, at the same voxel
    page.click("#undo")
    expect(page.locator("#status")).to_contain_text("undone")
    expect(page.locator("#overlay circle.positive")).to_have_count(1)
    marks = read_table(server.store, "cell_a", "picker", "marks")
    back = marks[marks["kind"] == "positive"]
    assert back[["x", "y", "z"]].values.tolist() == [[x, y, z]]


@pytest.mark.skipif(
    find_spec("cryoflow.pipelines.stages.pick") is not None,
    reason="network-assisted picking is installed; this checks the message shown without it",
)
def test_find_the_rest_shows_why_it_cannot_run(server: Server, page: Page) -> None:
    page.goto(server.url)
    _ready(page)
    _click_image(page, 0.3, 0.3)
    expect(page.locator("#status")).to_contain_text("added positive")
    page.click("#find")
    expect(page.locator("#job")).to_contain_text("network-assisted picking is not available")
    expect(page.locator("#job")).to_have_class("error")
    assert page.locator("#find").is_enabled()
