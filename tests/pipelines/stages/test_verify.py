"""``cryoflow verify --deep``: a real store with a damaged chunk file, in this process and on a
real local cluster, through the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cryoflow.cli.main import main
from cryoflow.io import store
from cryoflow.pipelines.stages.verify import deep_verify, task_store

pytestmark = pytest.mark.fault  # the fault matrix: damaged and half-written stores

ANGLES = [-30.0, -10.0, 10.0, 30.0]
TILT_CHUNK = "tomograms/t/tilt_series/c/2/0/0"
VOLUME_CHUNK = "tomograms/t/volumes/tomogram/0/c/1/0/1"


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    path = tmp_path / "d.zarr"
    store.write_tilt_series(path, "t", rng.normal(size=(4, 16, 12)).astype(np.float32), ANGLES, 3.0)
    vol = rng.normal(size=(16, 16, 16)).astype(np.float32)
    store.write_volume(path, "t", "tomogram", vol, pixel_size_angstrom=3.0, provenance={}, chunk=8)
    return path


def _flip(path: Path, byte: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[byte % len(raw)] ^= 0x10
    path.write_bytes(bytes(raw))


def _run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return int(info.value.code or 0)


def test_deep_verify_of_a_sound_store_says_so_and_exits_0(dataset: Path, capsys) -> None:
    assert _run(["verify", str(dataset), "--deep"]) == 0
    out = capsys.readouterr().out
    assert "all sound" in out and "is clean" in out
    report = deep_verify(dataset)
    assert report.problems == () and not report.on_cluster
    assert report.n_arrays == 4 and report.n_chunks == 4 + 8 + 1 + 1  # series, 3 levels


def test_deep_verify_names_each_damaged_array_and_chunk(dataset: Path, capsys) -> None:
    _flip(dataset / TILT_CHUNK, 40)
    _flip(dataset / VOLUME_CHUNK, 17)
    assert _run(["verify", str(dataset)]) == 0  # without --deep only leftovers are looked for
    capsys.readouterr()
    assert _run(["verify", str(dataset), "--deep"]) == 1
    out = capsys.readouterr().out
    damaged = [line for line in out.splitlines() if line.startswith("damaged:")]
    assert len(damaged) == 2, out
    assert "'tomograms/t/tilt_series' chunk (2, 0, 0)" in damaged[0] and TILT_CHUNK in damaged[0]
    assert "'tomograms/t/volumes/tomogram/0' chunk (1, 0, 1)" in damaged[1]
    assert "crc32c" in out and "2 damaged" in out
    # --clean removes leftovers, never data: the damage is still reported and still fails
    assert _run(["verify", str(dataset), "--deep", "--clean"]) == 1
    assert (dataset / TILT_CHUNK).exists()


def test_deep_verify_on_a_local_cluster_finds_the_same(dataset: Path, capsys) -> None:
    _flip(dataset / VOLUME_CHUNK, 5)
    assert _run(["verify", str(dataset), "--deep", "--workers", "1"]) == 1
    out = capsys.readouterr().out
    assert "on the cluster" in out, out
    [line] = [x for x in out.splitlines() if x.startswith("damaged:")]
    assert "'tomograms/t/volumes/tomogram/0' chunk (1, 0, 1)" in line and VOLUME_CHUNK in line


def test_deep_verify_reports_leftovers_and_damage_together(dataset: Path, capsys) -> None:
    (dataset / "tomograms/t/.tmp-0123456789abcdef").mkdir()
    _flip(dataset / TILT_CHUNK, 3)
    assert _run(["verify", str(dataset), "--deep"]) == 1
    out = capsys.readouterr().out
    assert "leftover: tomograms/t/.tmp-0123456789abcdef" in out and "damaged:" in out


def test_task_store_makes_local_paths_absolute(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert task_store("d.zarr") == str(tmp_path / "d.zarr")
    assert task_store("s3://bucket/d.zarr") == "s3://bucket/d.zarr"


def test_verify_deep_through_the_console_entry_point(dataset: Path) -> None:
    _flip(dataset / TILT_CHUNK, 11)
    proc = subprocess.run(
        [sys.executable, "-m", "cryoflow.cli.main", "verify", str(dataset), "--deep"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert TILT_CHUNK in proc.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "cryoflow.cli.main", "verify", str(dataset.parent / "no.zarr")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2 and "no.zarr" in missing.stderr
    assert "Traceback" not in missing.stderr
