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
    "pick_f1",
    "pick_f1_blob",
    *("class_accuracy", "pca_class_accuracy", "embed_class_accuracy"),
    *("dewedge_wedge_cc", "dewedge_cc_before", "dewedge_cc_after", "dewedge_peer_wedge_cc"),
]
#: figures that are not fractions, with the range they must lie in
RANGES = {
    "orientation_error_deg": (0.0, 180.0),
    "average_fsc05_px": (2.0, 64.0),  # periods in voxels: Nyquist .. the box
    "average_fsc05_px_ideal": (2.0, 64.0),
    "gold_standard_fsc0143_px": (2.0, 64.0),
    "multibody_angle_error_deg": (0.0, 180.0),
}


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
    for name, (lo, hi) in RANGES.items():
        assert name in metrics and lo <= metrics[name] <= hi, (name, metrics.get(name))
    html = (out / "report.html").read_text()
    assert html.count("<img") >= 9  # + picks, FSC, slices, orientations
    assert "seg3d_iou" in proc.stdout
    assert not list(out.glob("error-*.txt"))
