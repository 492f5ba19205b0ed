"""An orphaned ``*.partial`` file (a crash mid chunk write) is reported and removed by verify."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from cryoflow.cli.main import main
from cryoflow.io import store
from cryoflow.io.verify import find_leftovers, verify_store

pytestmark = pytest.mark.fault  # the fault matrix: damaged and half-written stores

ANGLES = [0.0, 20.0, 40.0, 60.0]


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, np.ndarray]:
    path = tmp_path / "s.zarr"
    images = np.random.default_rng(5).normal(size=(4, 8, 8)).astype(np.float32)
    store.write_tilt_series(path, "c", images, ANGLES, 2.0)  # "c": also the chunk folder name
    store.write_result(path, "c", "s", "map", images * 2, dims=("tilt", "y", "x"), provenance={})
    return path, images


def _partial(path: Path) -> Path:
    """What zarr's local store leaves when the process dies mid write: ``<key>.<hex>.partial``."""
    out = path.with_suffix(f".{uuid.uuid4().hex}.partial")
    out.write_bytes(b"\x01\x02half a chunk")
    return out


def test_orphaned_partial_files_are_reported_and_cleaned(dataset) -> None:
    path, images = dataset
    chunk = _partial(path / "tomograms/c/results/s/map/c/2/0/0")
    meta = _partial(path / "tomograms/c/zarr.json")
    found = find_leftovers(path)
    assert sorted(f.path for f in found) == sorted(str(p.relative_to(path)) for p in (chunk, meta))
    assert all(f.is_file and "partial file" in f.reason for f in found)
    assert sorted(f.path for f in verify_store(path, clean=True)) == sorted(f.path for f in found)
    assert not chunk.exists() and not meta.exists()
    assert find_leftovers(path) == []
    np.testing.assert_array_equal(store.open_result(path, "c", "s", "map").values, images * 2)


def _run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return int(exit_info.value.code or 0)


def test_verify_command_exits_nonzero_on_a_partial_file(dataset, capsys) -> None:
    path, _ = dataset
    chunk = _partial(path / "tomograms/c/tilt_series/c/1/0/0")
    assert _run(["verify", str(path)]) == 1
    out = capsys.readouterr().out
    assert "partial file" in out and str(chunk.relative_to(path)) in out
    assert _run(["verify", str(path), "--clean"]) == 0
    assert not chunk.exists()
