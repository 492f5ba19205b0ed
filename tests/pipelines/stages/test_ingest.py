"""Ingest: MRC + angles into the store on a Dask client; every bad input refused cleanly."""

from __future__ import annotations

import gzip
import re
import subprocess
import sys

import numpy as np
import pytest

import cryoflow
from cryoflow.cli.main import main
from cryoflow.errors import InputFileError, InputFilesError, NonStandardInputWarning
from cryoflow.io import mrc as mrc_io
from cryoflow.io import store
from cryoflow.io.verify import find_leftovers
from cryoflow.pipelines.stages.eager import Target
from cryoflow.pipelines.stages.ingest import IngestParams
from cryoflow.pipelines.stages.ingest import run as ingest
from cryoflow.pipelines.stages.ingestion import plan_ingest
from tests.io_files import (
    gzip_file,
    patch_bytes,
    set_header_int32,
    snapshot,
    tilt_stack,
    write_mdoc,
    write_mrc,
    write_tlt,
)

ANGLES = np.round(np.linspace(-45.0, 45.0, 8), 2)


@pytest.fixture(scope="module")
def client():
    import distributed
    with distributed.Client(
        processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0"
    ) as c:
        yield c


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(42)


def _series(tmp_path, rng, name="TS_01", dtype=np.float32, angles=ANGLES, **kw):
    data = (tilt_stack(rng, n=len(angles)) * 100).astype(dtype)
    path = write_mrc(tmp_path / f"{name}.mrc", data, **kw)
    write_tlt(tmp_path / f"{name}.tlt", angles)
    return path, data


# ---------------------------------------------------------------------------- happy paths
def test_single_file_with_companion_tlt(tmp_path, rng, client) -> None:
    path, data = _series(tmp_path, rng, voxel_size=1.35)
    out = str(tmp_path / "s.zarr")
    assert ingest(client, Target(out, (), quiet=True), IngestParams(inputs=(str(path),))) == ["TS_01"]
    ts = cryoflow.open_tilt_series(out, "TS_01")
    np.testing.assert_array_equal(ts.values, data)
    np.testing.assert_allclose(ts["angle"], ANGLES, atol=1e-9)
    assert ts.attrs["pixel_size_angstrom"] == pytest.approx(1.35)
    prov = ts.attrs["provenance"]
    assert prov["step"] == "ingest" and prov["inputs"]["mrc"]["path"] == str(path)
    assert find_leftovers(out) == []


def test_mdoc_gives_pixel_size_and_tilt_axis(tmp_path, rng, client) -> None:
    data = tilt_stack(rng, n=4).astype(np.int16)
    path = write_mrc(tmp_path / "TS_02.mrc", data, voxel_size=2.0)  # set, and not the mdoc's
    write_mdoc(
        tmp_path / "TS_02.mrc.mdoc",
        [2.0, -2.0, 4.0, -4.0],
        pixel=3.1,
        tilt_axis=85.3,
        order=[1, 0, 3, 2],
    )
    write_tlt(tmp_path / "TS_02.tlt", [9, 9, 9, 9])  # the mdoc comes first
    out = str(tmp_path / "s.zarr")
    with pytest.warns(NonStandardInputWarning, match="differs from the mdoc's"):
        ingest(client, Target(out, (), quiet=True), IngestParams(inputs=(str(path),), name="renamed"))
    ts = cryoflow.open_tilt_series(out, "renamed")
    assert ts.attrs["pixel_size_angstrom"] == 3.1
    np.testing.assert_allclose(ts["angle"], [2.0, -2.0, 4.0, -4.0])
    assert store.read_geometry(out, "renamed").tilt_axis_deg == 85.3
    np.testing.assert_array_equal(ts.values, data)


def test_directory_and_glob_in_parallel(tmp_path, rng, client) -> None:
    src = tmp_path / "raw"
    src.mkdir()
    written = {}
    for i, dtype in enumerate([np.int8, np.uint16, np.float16]):
        _, written[f"TS_{i}"] = _series(src, rng, name=f"TS_{i}", dtype=dtype)
    out = str(tmp_path / "s.zarr")
    names = ingest(client, Target(out, (), quiet=True), IngestParams(inputs=(str(src),), tile_px=16))
    assert names == ["TS_0", "TS_1", "TS_2"] == store.list_tomograms(out)
    for name, data in written.items():
        ts = cryoflow.open_tilt_series(out, name)
        assert ts.dtype == data.dtype and ts.data.chunksize == (1, 16, 16)
        np.testing.assert_array_equal(ts.values, data)
    out2 = str(tmp_path / "g.zarr")
    assert ingest(
        client, Target(out2, (), quiet=True), IngestParams(inputs=(str(src / "TS_[12].mrc"),))
    ) == ["TS_1", "TS_2"]


def test_old_file_and_extended_header_ingest_with_warning(tmp_path, rng, client) -> None:
    path, data = _series(tmp_path, rng, extended_header=np.ones(4096, np.uint8), exttyp=b"FEI1")
    patch_bytes(path, 208, b"\0\0\0\0")
    out = str(tmp_path / "s.zarr")
    with pytest.warns(NonStandardInputWarning, match="no 'MAP ' stamp"):
        ingest(client, Target(out, (), quiet=True), IngestParams(inputs=(str(path),)))
    np.testing.assert_array_equal(cryoflow.open_tilt_series(out, "TS_01").values, data)


def test_compressed_input(tmp_path, rng, client) -> None:
    path, data = _series(tmp_path, rng)
    packed = gzip_file(path, tmp_path / "TS_01.mrc.gz")
    path.unlink()
    out = str(tmp_path / "s.zarr")
    ingest(client, Target(out, (), quiet=True), IngestParams(inputs=(str(packed),)))
    np.testing.assert_array_equal(cryoflow.open_tilt_series(out, "TS_01").values, data)


def test_tomogram_volume(tmp_path, rng, client) -> None:
    vol = rng.normal(size=(12, 20, 18)).astype(np.float32)
    path = write_mrc(tmp_path / "rec.mrc", vol, voxel_size=8.0)
    out = str(tmp_path / "s.zarr")
    ingest(client, Target(out, (), quiet=True), IngestParams(inputs=(str(path),), tomogram=True))
    v = store.open_volume(out, "rec", "tomogram")
    np.testing.assert_array_equal(v.values, vol)
    assert v.attrs["pixel_size_angstrom"] == 8.0
    assert store.open_volume(out, "rec", "tomogram", level=2).shape == (3, 5, 4)


def test_failure_while_writing_leaves_store_unchanged(tmp_path, rng, client, monkeypatch) -> None:
    path, _ = _series(tmp_path, rng)
    out = str(tmp_path / "s.zarr")
    ingest(client, Target(out, (), quiet=True), IngestParams(inputs=(str(path),), name="keep"))
    before = snapshot(tmp_path / "s.zarr")
    original = mrc_io.read_mrc_block

    def flaky(info, index):
        if index[0].start == 5:
            raise OSError("disk went away")
        return original(info, index)

    monkeypatch.setattr(mrc_io, "read_mrc_block", flaky)
    with pytest.raises(OSError, match="disk went away"):
        ingest(client, Target(out, (), quiet=True), IngestParams(inputs=(str(path),), name="lost"))
    with pytest.raises(OSError, match="disk went away"):
        ingest(
            client,
            Target(out, (), overwrite=True, quiet=True),
            IngestParams(inputs=(str(path),), name="keep"),
        )
    assert snapshot(tmp_path / "s.zarr") == before
    assert store.list_tomograms(out) == ["keep"]


# ---------------------------------------------------------------------------- bad input via the CLI
def _bad_truncated(tmp_path, rng):
    path, _ = _series(tmp_path, rng, name="cut")
    path.write_bytes(path.read_bytes()[:-10])
    return [str(path)], "truncated"


def _bad_count(tmp_path, rng):
    path, _ = _series(tmp_path, rng, name="count")
    write_tlt(tmp_path / "count.tlt", ANGLES[:5])
    return [str(path)], "holds 8 images but .*count.tlt lists 5 tilt angles"


def _bad_nan(tmp_path, rng):
    path, _ = _series(tmp_path, rng, name="nan")
    write_tlt(tmp_path / "other.tlt", [*ANGLES[:7], np.nan])
    return [
        str(path),
        "--angles",
        str(tmp_path / "other.tlt"),
    ], "line 8: tilt angle 'nan' is not finite"


def _bad_absurd(tmp_path, rng):
    path, _ = _series(tmp_path, rng, name="absurd")
    set_header_int32(path, 0, 10**6)
    return [str(path)], "header claims nx = 1000000"


def _bad_name(tmp_path, rng):
    path, _ = _series(tmp_path, rng, name="fine")
    return [str(path), "--name", "../escape"], "invalid tomogram name '../escape'"


def _bad_bomb(tmp_path, rng):
    raw = write_mrc(tmp_path / "bomb.mrc", np.zeros((2, 4, 4), np.float32))
    for word, value in ((0, 32768), (1, 32768), (2, 100)):
        set_header_int32(raw, word, value)
    with gzip.open(tmp_path / "bomb.mrc.gz", "wb") as f:
        f.write(raw.read_bytes())
    raw.unlink()
    write_tlt(tmp_path / "bomb.tlt", np.zeros(100))
    return [str(tmp_path / "bomb.mrc.gz")], "would expand to 429496730624 bytes, past the limit"


def _bad_no_angles(tmp_path, rng):
    path = write_mrc(tmp_path / "lonely.mrc", tilt_stack(rng, n=3))
    return [str(path)], "no tilt angles"


def _bad_exists(tmp_path, rng):
    path, _ = _series(tmp_path, rng, name="keep")
    return [str(path)], "tilt series 'keep' already exists"


def _bad_mode(tmp_path, rng):
    path, _ = _series(tmp_path, rng, name="mode")
    set_header_int32(path, 3, 101)
    return [str(path)], "unsupported MRC mode 101"


def _bad_missing(tmp_path, rng):
    return [str(tmp_path / "nothere.mrc")], "no such file"


@pytest.mark.parametrize(
    "case",
    [
        _bad_truncated,
        _bad_count,
        _bad_nan,
        _bad_absurd,
        _bad_name,
        _bad_bomb,
        _bad_no_angles,
        _bad_exists,
        _bad_mode,
        _bad_missing,
    ],
)
def test_bad_input_one_line_exit_2_store_unchanged(tmp_path, rng, client, capsys, case) -> None:
    keep, _ = _series(tmp_path, rng, name="keep")
    out = tmp_path / "s.zarr"
    ingest(client, Target(str(out), (), quiet=True), IngestParams(inputs=(str(keep),)))
    before = snapshot(out)
    capsys.readouterr()
    args, expected = case(tmp_path, rng)
    with pytest.raises(SystemExit) as exit_info:
        main(["ingest", *args, "--out", str(out)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cryoflow: error: "), err
    assert "Traceback" not in err[0]
    assert re.search(expected, err[0]), err[0]
    named = {"_bad_nan": "other.tlt", "_bad_name": "../escape", "_bad_exists": str(out)}
    assert named.get(case.__name__, args[0]) in err[0]
    assert snapshot(out) == before


def test_bad_input_in_a_subprocess_has_no_traceback(tmp_path, rng) -> None:
    path, _ = _series(tmp_path, rng, name="cut")
    path.write_bytes(path.read_bytes()[:2000])
    out = tmp_path / "new.zarr"
    proc = subprocess.run(
        [sys.executable, "-m", "cryoflow.cli.main", "ingest", str(path), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"cryoflow: error: {path}: truncated: header (8 x 32 x 24, mode 2, extended header 0 bytes) "
        f"needs {1024 + 8 * 32 * 24 * 4} bytes, the file has 2000 bytes"
    ]
    assert not out.exists()


def test_directory_with_bad_files_names_each_and_writes_nothing(tmp_path, rng, capsys) -> None:
    src = tmp_path / "raw"
    src.mkdir()
    for i in range(3):
        _series(src, rng, name=f"good_{i}")
    cut, _ = _series(src, rng, name="bad_cut")
    cut.write_bytes(cut.read_bytes()[:-10])
    count, _ = _series(src, rng, name="bad_count")
    write_tlt(src / "bad_count.tlt", ANGLES[:5])
    out = tmp_path / "s.zarr"
    with pytest.raises(InputFilesError) as info:
        plan_ingest(str(out), IngestParams(inputs=(str(src),)))
    assert [e.path for e in info.value.errors] == [str(count), str(cut)]
    assert isinstance(info.value, InputFileError)  # still the single-file error's family
    with pytest.raises(SystemExit) as exit_info:
        main(["ingest", str(src), "--out", str(out)])
    assert exit_info.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(
        "cryoflow: error: 2 of 5 input files cannot be used, nothing was written: [1] "
    )
    assert f"[1] {count}: holds 8 images but" in line and f"[2] {cut}: truncated" in line
    assert not out.exists()
