"""``cryoflow check`` on a store of ingested tomograms (MRC + tilt range, no tilt series).

A dewedge pipeline needs only each tomogram's volume and tilt range, so its check passes and
reports both; a pipeline with a step that needs the tilt series is still refused, naming the
missing node; and a tomogram ingested without a tilt range is refused naming it.
"""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest
import yaml

from cryoflow.errors import MissingTiltRangeError, NodeNotFoundError
from cryoflow.pipelines.engine.check import check_pipeline
from cryoflow.pipelines.engine.config import load_pipeline


def cli(*args: str) -> int:
    from cryoflow.cli.main import main

    with pytest.raises(SystemExit) as info:
        main(list(args))
    return int(info.value.code or 0)


def _mrc(path: Path, seed: int) -> Path:
    data = np.random.default_rng(seed).normal(size=(16, 24, 32)).astype(np.float32)
    with mrcfile.new(path) as m:
        m.set_data(data)
        m.voxel_size = 10.0
    return path


def _pipeline(tmp_path: Path, steps: list[dict]) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump({"dataset": {"store": "d.zarr"}, "steps": steps}))
    return path


@pytest.fixture(scope="module")
def ingested_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``d.zarr`` made by ``cryoflow ingest --tomogram`` (one call, one local worker):
    ``lam_a`` with a ``.tlt`` beside it (-50..58), ``lam_b`` with a ``.rawtlt`` (-60..60)."""
    tmp = tmp_path_factory.mktemp("ingested")
    mrcs = [_mrc(tmp / "lam_a.mrc", 0), _mrc(tmp / "lam_b.mrc", 1)]
    (tmp / "lam_a.tlt").write_text("\n".join(str(a) for a in np.linspace(-50, 58, 28)) + "\n")
    (tmp / "lam_b.rawtlt").write_text("\n".join(str(a) for a in range(-60, 61, 3)) + "\n")
    store = tmp / "d.zarr"
    assert cli("ingest", *map(str, mrcs), "--out", str(store), "--tomogram", "--workers", "1") == 0
    return store


@pytest.fixture
def ingested(tmp_path: Path, ingested_once: Path) -> Path:
    """A copy of the ingested store in this test's ``tmp_path`` (``d.zarr``)."""
    import shutil

    return Path(shutil.copytree(ingested_once, tmp_path / "d.zarr"))


def test_a_dewedge_pipeline_checks_ingested_tomograms_without_tilt_series(
    tmp_path: Path, ingested: Path
) -> None:
    assert not (ingested / "tomograms" / "lam_a" / "tilt_series").exists()
    config = load_pipeline(_pipeline(tmp_path, [{"dewedge": {"steps": 10}}]))
    lines = check_pipeline(config)
    text = "\n".join(lines)
    assert "lam_a: no tilt series; volume 'tomogram' 16 x 24 x 32, tilt range -50..58 deg" in text
    assert "lam_b: no tilt series; volume 'tomogram' 16 x 24 x 32, tilt range -60..60 deg" in text
    assert any("trains one network" in line for line in lines)
    # the command says the same and exits 0
    assert cli("check", str(tmp_path / "pipeline.yaml")) == 0


def test_a_step_that_needs_the_tilt_series_is_still_refused(tmp_path: Path, ingested: Path) -> None:
    config = load_pipeline(_pipeline(tmp_path, [{"reconstruct": {}}, {"dewedge": {}}]))
    with pytest.raises(NodeNotFoundError, match="tilt"):
        check_pipeline(config)


def test_a_volume_key_that_is_missing_or_a_missing_tilt_range_is_named(
    tmp_path: Path, ingested: Path
) -> None:
    config = load_pipeline(_pipeline(tmp_path, [{"dewedge": {"key": "denoised"}}]))
    with pytest.raises(NodeNotFoundError, match="denoised"):
        check_pipeline(config)
    from cryoflow.io import store as S

    volume = np.zeros((16, 24, 32), np.float32)  # written without a tilt range
    S.write_volume(ingested, "lam_c", "tomogram", volume, pixel_size_angstrom=10.0, provenance=None)
    config = load_pipeline(_pipeline(tmp_path, [{"dewedge": {}}]))
    with pytest.raises(MissingTiltRangeError, match="lam_c"):
        check_pipeline(config)
