"""``cryoflow demo --quick`` end to end on a real local cluster: every stage runs and reports."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

EXPECTED = [
    "seg3d_iou",
    "edges_f1_before",
    "edges_f1_after",
    "localize_box_iou",
    "seg2d3d_iou",
    "seg3d_conventional_iou",
    "annotate_iou_granule",
    "detect_ap50",
    "detect_ap50_fasterrcnn",
    *("dewedge_wedge_cc", "dewedge_cc_before", "dewedge_cc_after", "dewedge_peer_wedge_cc"),
]


@pytest.mark.slow
def test_quick_demo_runs_every_stage(tmp_path) -> None:
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "cryoflow.cli.main", "demo", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    for name in EXPECTED:
        assert name in metrics, name
        assert math.isfinite(metrics[name]) and 0.0 <= metrics[name] <= 1.0, (name, metrics[name])
    html = (out / "report.html").read_text()
    assert html.count("<img") >= 5
    assert "seg3d_iou" in proc.stdout
    assert not list(out.glob("error-*.txt"))
