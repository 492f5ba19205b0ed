"""Make ``docs/picker.png``: the picking page on a simulated crowded tomogram, some marks placed.

Run: ``nice -n 10 python docs/picker_screenshot.py`` (needs Debian's ``chromium``). The marks
are the simulator's truth (targets as positives, two decoys as negatives), placed through the
page's own routes; the page is then opened at the first target's slice and captured.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

from cryoflow.io import store as S
from cryoflow.simulate.crowded import CrowdedConfig, simulate_crowded

OUT = Path(__file__).with_name("picker.png")


def main() -> None:
    sim = simulate_crowded(CrowdedConfig(shape=(64, 192, 256), snr=0.5, n_targets=24, seed=2))
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "crowded.zarr"
        S.write_volume(
            store, "crowded_01", "tomogram", sim.tomogram, pixel_size_angstrom=10.0, provenance={}
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "cryoflow.cli.main", "picker", str(store)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().split(" ", 2)[2].strip()
            base, token = url.split("/?token=")
            truth = sim.truth
            z = int(round(truth[truth["kind"] == "target"]["z"].iloc[0]))
            near = truth[(truth["z"] - z).abs() < 6]
            for kind, rows in (
                ("positive", near[near["kind"] == "target"]),
                ("negative", near[near["kind"] == "decoy"].head(2)),
            ):
                for r in rows.itertuples():
                    body = {
                        "tomogram": "crowded_01",
                        "op": "add",
                        "x": round(r.x),
                        "y": round(r.y),
                        "z": round(r.z),
                        "kind": kind,
                    }
                    req = urllib.request.Request(
                        base + "/api/marks",
                        data=json.dumps(body).encode(),
                        headers={"X-Cryoflow-Token": token, "Content-Type": "application/json"},
                    )
                    urllib.request.urlopen(req).read()
            with sync_playwright() as p:
                browser = p.chromium.launch(
                    executable_path=shutil.which("chromium"), args=["--no-sandbox"]
                )
                page = browser.new_page(viewport={"width": 1280, "height": 720})
                page.goto(url)
                page.wait_for_function("state.level !== null")
                page.fill("#radius", "10")
                page.dispatch_event("#radius", "change")
                page.fill("#index-n", str(z))
                page.dispatch_event("#index-n", "change")
                page.wait_for_function(f"Number(document.getElementById('index').value) === {z}")
                page.wait_for_timeout(1500)
                page.screenshot(path=str(OUT))
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
