"""``cryoflow demo --preset demo|paper``: the presets resolve to their sizes, an unknown preset
is a clear error, figures over several test tomograms are their mean, spread and count."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from cryoflow.cli.main import main
from cryoflow.errors import ConfigError
from cryoflow.pipelines.demo.context import DemoConfig
from cryoflow.pipelines.demo.presets import over_tomograms, resolve_preset


def _run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return int(info.value.code or 0)


def test_paper_preset_is_accepted_and_resolves_to_the_papers_scale(tmp_path: Path, capsys) -> None:
    out = tmp_path / "paper"
    assert _run(["demo", "--preset", "paper", "--out", str(out), "--dry-run"]) == 0
    sizes = json.loads(capsys.readouterr().out)
    z, y, x = sizes["shape_zyx"]
    assert z >= 128 and y >= 512 and x >= 512
    assert sizes["tilt_range_deg"] == [-60.0, 60.0] and 2.0 <= sizes["tilt_step_deg"] <= 3.0
    assert sizes["n_tilts"] == 41
    assert len(sizes["test_tomograms"]) >= 2 and len(sizes["train_tomograms"]) >= 1
    assert not set(sizes["train_tomograms"]) & set(sizes["test_tomograms"])
    assert sizes["time_budget_s"] is None  # training by steps, never by the clock
    assert sizes["unet_steps"] > 0 and sizes["detector_steps"] > 0
    assert not out.exists()  # a dry run writes nothing


def test_demo_preset_is_the_default_and_keeps_its_sizes() -> None:
    cfg = DemoConfig(out=Path("x"))
    assert cfg.preset == "demo" and cfg.sizes == resolve_preset("demo")
    sizes = cfg.sizes.sizes()
    assert sizes["shape_zyx"] == [64, 128, 128] and sizes["n_tomograms"] == 2
    assert sizes["test_tomograms"] == ["sim_001"] and sizes["time_budget_s"] is None
    quick = resolve_preset("demo", quick=True).sizes()
    assert quick["shape_zyx"] == [32, 64, 64] and quick["time_budget_s"] is None
    paper_quick = resolve_preset("paper", quick=True)
    assert paper_quick.per_tomogram and paper_quick.training.time_budget_s is None


def test_an_unknown_preset_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--preset must be one of demo, paper \(got 'huge'\)"):
        DemoConfig(out=tmp_path, preset="huge")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cryoflow.cli.main",
            "demo",
            "--preset",
            "huge",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "--preset must be one of demo, paper (got 'huge')" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "o").exists()


def test_figures_over_tomograms_are_mean_spread_and_count() -> None:
    per = [
        {"iou": 0.5, "n": 3, "curve": [1, 2], "flag": True},
        {"iou": 0.7, "n": 5},
        {"iou": float("nan"), "n": 4},
    ]
    got = over_tomograms(per)
    assert got["iou"] == pytest.approx(0.6) and got["iou_std"] == pytest.approx(0.1)
    assert got["iou_n"] == 2.0  # the NaN (nothing to measure there) is not counted
    assert got["n"] == pytest.approx(4.0) and got["n_std"] == pytest.approx(math.sqrt(2 / 3))
    assert got["n_n"] == 3.0
    assert "curve" not in got and "flag" not in got
    assert math.isnan(over_tomograms([{"a": float("nan")}])["a"])
