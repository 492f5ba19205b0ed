"""`cryoflow export`: volumes, labels and result volumes to MRC with the right voxel size."""

from __future__ import annotations

import mrcfile
import numpy as np
import pytest

from cryoflow.cli.main import main
from cryoflow.errors import AlreadyExistsError, NodeNotFoundError
from cryoflow.io import store
from cryoflow.pipelines.stages.export import ExportConfig, export_mrc, mrc_dtype


@pytest.fixture(scope="module")
def client():
    import distributed
    with distributed.Client(
        processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0"
    ) as c:
        yield c


@pytest.fixture
def dataset(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "s.zarr"
    vol = rng.normal(size=(9, 14, 11)).astype(np.float32)
    mask = rng.random((9, 14, 11)) > 0.7
    votes = rng.integers(0, 40, size=(9, 14, 11)).astype(np.int64)
    store.write_tilt_series(path, "t", rng.random((3, 14, 11)), [-10, 0, 10], 2.2)
    store.write_volume(path, "t", "tomogram", vol, pixel_size_angstrom=6.5, provenance={}, chunk=4)
    store.write_volume(
        path, "t", "membranes", mask, pixel_size_angstrom=6.5, provenance={}, kind="label"
    )
    store.write_result(path, "t", "lift", "votes", votes, dims=("z", "y", "x"), provenance={})
    return path, vol, mask, votes


def test_export_volume_label_and_result(tmp_path, dataset, client) -> None:
    path, vol, mask, votes = dataset
    cases = [
        ("tomogram", vol, np.float32, 6.5),
        ("membranes", mask.astype(np.int8), np.int8, 6.5),
        ("lift/votes", votes, np.int8, 2.2),
    ]
    for key, expected, dtype, voxel in cases:
        out = tmp_path / f"{key.replace('/', '_')}.mrc"
        export_mrc(client, ExportConfig(store=str(path), name="t", key=key, out=out), in_flight=2)
        with mrcfile.open(out) as m:
            assert m.data.dtype == dtype
            np.testing.assert_array_equal(m.data, expected)
            assert float(m.voxel_size.x) == pytest.approx(voxel)
            assert float(m.header.dmax) == pytest.approx(float(expected.max()))
    out = tmp_path / "lvl1.mrc"
    export_mrc(client, ExportConfig(store=str(path), name="t", key="tomogram", out=out, level=1))
    with mrcfile.open(out) as m:
        assert m.data.shape == (4, 7, 5) and float(m.voxel_size.x) == pytest.approx(13.0)
    assert not list(tmp_path.glob(".*tmp-*"))


def test_export_refuses_existing_and_missing(tmp_path, dataset, client) -> None:
    path, *_ = dataset
    out = tmp_path / "x.mrc"
    out.write_bytes(b"keep")
    with pytest.raises(AlreadyExistsError, match="already exists"):
        export_mrc(client, ExportConfig(store=str(path), name="t", key="tomogram", out=out))
    assert out.read_bytes() == b"keep"
    with pytest.raises(NodeNotFoundError, match="has no volume or label image 'nothing'"):
        export_mrc(
            client, ExportConfig(store=str(path), name="t", key="nothing", out=tmp_path / "y.mrc")
        )


def test_export_cli_error_is_one_line(tmp_path, dataset, capsys) -> None:
    path, *_ = dataset
    with pytest.raises(SystemExit) as info:
        main(
            [
                "export",
                str(path),
                "--name",
                "t",
                "--key",
                "bad key",
                "--out",
                str(tmp_path / "a.mrc"),
            ]
        )
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "invalid volume key 'bad key'" in err[0]


@pytest.mark.parametrize(
    ("dtype", "lo", "hi", "expected"),
    [
        (np.bool_, 0, 1, np.int8),
        (np.int64, 0, 100, np.int8),
        (np.int32, -300, 300, np.int16),
        (np.uint32, 0, 60000, np.uint16),
        (np.int64, 0, 1e6, np.float32),
        (np.float64, 0, 1, np.float32),
        (np.float16, 0, 1, np.float16),
    ],
)
def test_mrc_dtype(dtype, lo, hi, expected) -> None:
    assert mrc_dtype(np.dtype(dtype), lo, hi) == np.dtype(expected)
