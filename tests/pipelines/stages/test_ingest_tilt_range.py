"""``cryoflow ingest --tomogram`` records the tilt range (the missing wedge) of each volume."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from cryoflow.errors import ConfigError, MissingTiltRangeError
from cryoflow.io.tomograms import tilt_range
from cryoflow.pipelines.stages.ingest import IngestParams
from cryoflow.pipelines.stages.ingestion import plan_ingest
from tests.io_files import write_mrc, write_tlt


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cryoflow.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_ingest_records_the_three_ways_and_refuses_none_later(tmp_path) -> None:
    rng = np.random.default_rng(0)
    vol = rng.normal(size=(8, 12, 10)).astype(np.float32)
    beside = tmp_path / "beside"
    beside.mkdir()
    write_mrc(beside / "a.mrc", vol)
    write_tlt(beside / "a.tlt", np.array([-57.0, -3.0, 0.0, 61.0]))
    write_mrc(beside / "b.mrc", vol)  # no angles anywhere
    angles = tmp_path / "any_name.rawtlt"
    write_tlt(angles, np.array([-40.0, 44.5]))
    write_mrc(tmp_path / "c.mrc", vol)
    write_mrc(tmp_path / "d.mrc", vol)
    out = str(tmp_path / "s.zarr")
    first = _cli("ingest", str(beside), "--tomogram", "--out", out, "--workers", "1")
    assert first.returncode == 0, first.stderr
    assert "b.mrc: no tilt range" in first.stderr and "--tilt-range MIN MAX" in first.stderr
    second = _cli(
        "ingest",
        str(tmp_path / "c.mrc"),
        "--tomogram",
        "--angles",
        str(angles),
        "--out",
        out,
        "--workers",
        "1",
    )
    assert second.returncode == 0, second.stderr
    # the option overrides an angle file
    plan = plan_ingest(
        out,
        IngestParams(
            inputs=(str(tmp_path / "d.mrc"),),
            tomogram=True,
            tilt_range=(-50.0, 55.0),
            angles=str(angles),
        ),
    )
    assert plan.items[0].tilt_range is not None
    assert plan.items[0].tilt_range.as_tuple == (-50.0, 55.0)
    plan.cleanup()
    third = _cli(
        "ingest",
        str(tmp_path / "d.mrc"),
        "--tomogram",
        "--tilt-range",
        "-50",
        "55",
        "--out",
        out,
        "--workers",
        "1",
    )
    assert third.returncode == 0, third.stderr
    assert tilt_range(out, "a").as_tuple == (-57.0, 61.0)
    assert tilt_range(out, "a").source.endswith("a.tlt")
    assert tilt_range(out, "c").as_tuple == (-40.0, 44.5)
    assert tilt_range(out, "d").as_tuple == (-50.0, 55.0)
    assert tilt_range(out, "d").source == "--tilt-range"
    with pytest.raises(MissingTiltRangeError, match="'b'.*--angles FILE.*--tilt-range MIN MAX"):
        tilt_range(out, "b")


def test_tilt_range_refused_when_out_of_range_or_for_a_tilt_series(tmp_path) -> None:
    rng = np.random.default_rng(1)
    path = write_mrc(tmp_path / "e.mrc", rng.normal(size=(4, 6, 6)).astype(np.float32))
    write_tlt(tmp_path / "e.tlt", np.array([-30.0, -10.0, 10.0, 30.0]))
    out = str(tmp_path / "s.zarr")
    with pytest.raises(ConfigError, match="--tilt-range applies to --tomogram"):
        plan_ingest(out, IngestParams(inputs=(str(path),), tilt_range=(-60, 60)))
    bad = _cli("ingest", str(path), "--tomogram", "--tilt-range", "60", "-60", "--out", out)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "60" in bad.stderr
