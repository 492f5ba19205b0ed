"""``cryoflow lift STORE --name NAME --masks MASKS.mrc`` end to end on MRC files written here.

Two labelled objects are projected (the contract's binary forward projection) into one 2D mask
stack whose values are the classes (1 and 3), written as an MRC with mrcfile; the command must
give a label volume ``labels/lift`` whose classes match the objects, exportable with
``cryoflow export --key lift``. Bad masks files are refused before anything is written.
"""

from __future__ import annotations

import mrcfile
import numpy as np
import pytest

import cryoflow
from cryoflow.errors import NodeNotFoundError
from cryoflow.io import store as S
from tests.cli.test_ingest_real_files import cli, scheduler  # noqa: F401  (fixtures)
from tests.io_files import write_mrc, write_tlt

ANGLES = np.arange(-60.0, 61.0, 10.0)
SHAPE = (16, 24, 24)


def labelled_volume() -> np.ndarray:
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    lab = np.zeros(SHAPE, np.uint8)
    lab[((z - 8) / 4) ** 2 + ((y - 8) / 4) ** 2 + ((x - 9) / 5) ** 2 <= 1] = 1
    lab[((z - 7) / 3) ** 2 + ((y - 17) / 3) ** 2 + ((x - 15) / 4) ** 2 <= 1] = 3
    return lab


@pytest.fixture
def dataset(tmp_path, cli):  # noqa: F811
    lab = labelled_volume()
    one = np.asarray(cryoflow.project(lab == 1, ANGLES, SHAPE[2], mode="any"))
    three = np.asarray(cryoflow.project(lab == 3, ANGLES, SHAPE[2], mode="any"))
    masks = np.where(three, 3, np.where(one, 1, 0)).astype(np.uint8)
    images = np.random.default_rng(5).normal(size=masks.shape).astype(np.float32)
    write_mrc(tmp_path / "TS_01.mrc", images, voxel_size=4.0)
    write_tlt(tmp_path / "TS_01.tlt", ANGLES)
    store = tmp_path / "s.zarr"
    assert cli("ingest", tmp_path / "TS_01.mrc", "--out", store)[0] == 0
    return store, lab, masks


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_masks_mrc_classes_lift_to_the_labelled_volume(tmp_path, cli, dataset) -> None:  # noqa: F811
    store, lab, masks = dataset
    path = write_mrc(tmp_path / "masks.mrc", masks, voxel_size=4.0)
    code, out, err = cli("lift", store, "--name", "TS_01", "--masks", path, "--thickness", 16)
    assert code == 0, err
    assert "classes 1, 3" in out and "-> labels/lift" in out
    labels = S.open_volume(store, "TS_01", "lift").values
    assert labels.shape == SHAPE
    assert set(np.unique(labels)) == {0, 1, 3}
    assert iou(labels == 1, lab == 1) > 0.75  # class 3 hides part of class 1 in some tilts
    assert iou(labels == 3, lab == 3) > 0.8
    code, _, err = cli(
        "export", store, "--name", "TS_01", "--key", "lift", "--out", tmp_path / "lift.mrc"
    )
    assert code == 0, err
    exported = mrcfile.read(tmp_path / "lift.mrc")
    np.testing.assert_array_equal(exported, labels)
    # rerunning without --overwrite is refused; with it, replaced
    code, _, err = cli("lift", store, "--name", "TS_01", "--masks", path, "--thickness", 16)
    assert code == 2 and "labels/lift already exists" in err
    code, _, err = cli(
        "lift", store, "--name", "TS_01", "--masks", path, "--thickness", 16, "--overwrite"
    )
    assert code == 0, err


def test_fractional_masks_are_one_class_and_the_depth_follows_the_tomogram(
    tmp_path,
    cli,  # noqa: F811
    dataset,
) -> None:
    store, lab, masks = dataset
    soft = (masks > 0).astype(np.float32) * np.float32(0.7)  # non-zero inside
    path = write_mrc(tmp_path / "soft.mrc", soft, voxel_size=4.0)
    assert cli("reconstruct", store, "--name", "TS_01", "--thickness", 12)[0] == 0
    code, out, err = cli("lift", store, "--name", "TS_01", "--masks", path, "--out", "cells")
    assert code == 0, err
    assert "classes 1;" in out and "thickness 12 (the depth of volumes/tomogram)" in out
    labels = S.open_volume(store, "TS_01", "cells").values
    assert labels.shape == (12, *SHAPE[1:]) and set(np.unique(labels)) == {0, 1}


def test_bad_masks_files_are_refused_naming_the_file(tmp_path, cli, dataset) -> None:  # noqa: F811
    store, _, masks = dataset
    wrong = write_mrc(tmp_path / "wrong.mrc", masks[:, :, :-2], voxel_size=4.0)
    code, _, err = cli("lift", store, "--name", "TS_01", "--masks", wrong)
    assert code == 2
    assert str(wrong) in err and "(13, 24, 22)" in err and "(13, 24, 24)" in err
    png = tmp_path / "masks.mrc"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(2000))
    code, _, err = cli("lift", store, "--name", "TS_01", "--masks", png)
    assert code == 2 and "not an MRC file" in err and str(png) in err
    code, _, err = cli("lift", store, "--name", "TS_01", "--masks", tmp_path / "none.mrc")
    assert code == 2 and "none.mrc" in err
    negative = write_mrc(tmp_path / "neg.mrc", masks.astype(np.int16) - 1, voxel_size=4.0)
    code, _, err = cli("lift", store, "--name", "TS_01", "--masks", negative, "--thickness", 16)
    assert code == 2 and "negative value" in err and "neg.mrc" in err
    with pytest.raises(NodeNotFoundError):  # nothing was written
        S.open_volume(store, "TS_01", "lift")
