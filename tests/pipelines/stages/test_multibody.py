"""``cryoflow multibody`` end to end: a two-body hinge phantom (the arm at 0, 10, 20, 30 or
40 degrees per particle, 24^3 boxes, 30 particles, SNR 0.5, +-60 degree wedge) as a particle
set with the fixed body's true poses, body masks as MRC files, a LocalCluster with worker
processes, the command line in a subprocess (``--bodies A.mrc B.mrc``, the contract's form).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile

from cryoflow.cli.main import main
from tests.pipelines.stages.heterogeneity_phantoms import (
    BOX,
    PX,
    body_masks,
    hinge_phantom,
    write_set,
)

ANGLES = (0.0, 10.0, 20.0, 30.0, 40.0)
N = 30


@pytest.fixture(scope="module")
def scheduler():
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        yield cluster.scheduler_address


@pytest.mark.slow  # about 80 s of CPU (a cluster, 3 rounds of local body searches)
def test_multibody_from_the_command_line(tmp_path, scheduler) -> None:
    sim = hinge_phantom(N, seed=3, angles_deg=ANGLES)
    table = write_set(tmp_path / "data.zarr", "hinge", sim)
    truth = np.array(ANGLES)[sim.labels]
    b1, b2 = body_masks(20.0, tmp_path)
    out = tmp_path / "mb"
    args = ["multibody", str(tmp_path / "data.zarr"), "--set", "hinge", "--bodies", str(b1)]
    args += [str(b2), "--out", str(out), "--rounds", "2", "--scheduler", scheduler]
    res = subprocess.run(
        [sys.executable, "-m", "cryoflow.cli.main", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=900,
    )
    assert res.returncode == 0, res.stderr
    for k in (1, 2):
        with mrcfile.open(out / f"body_{k}.mrc") as mrc:
            assert mrc.data.shape == (BOX, BOX, BOX)
            assert mrc.voxel_size.x == pytest.approx(PX)
    star = starfile.read(out / "particles.star")
    np.testing.assert_array_equal(star["rlnCoordinateX"].to_numpy(), table["x"].to_numpy())
    np.testing.assert_array_equal(star["rlnCoordinateZ"].to_numpy(), table["z"].to_numpy())
    np.testing.assert_allclose(star["rlnAngleRot"].to_numpy(), table["rot"].to_numpy())
    for k in (1, 2):
        for label in ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst"):
            assert f"{label}_body{k}" in star.columns
    assert "cryoflow_motion1" in star.columns
    # the arm turns about the hinge (the y axis): its rotation follows the truth, per particle
    motions = pd.read_csv(out / "motions.csv")
    rot_y = motions["body2_rot_y_deg"].to_numpy()
    assert np.corrcoef(rot_y, truth)[0, 1] < -0.8  # (z, y, x) hinge turn = -y in (x, y, z)
    err = -rot_y - (truth - truth.mean())
    assert np.median(np.abs(err - np.median(err))) < 6.0
    # the fixed body barely moves
    assert np.median(np.abs(motions["body1_rot_y_deg"])) < np.median(np.abs(rot_y - rot_y.mean()))
    summary = json.loads((out / "multibody.json").read_text())
    assert len(summary["body_resolution_px"]) == 2
    assert summary["body_columns"]["body2"][0] == "rlnAngleRot_body2"
    assert (out / "principal_motions.png").stat().st_size > 1000


def test_bad_bodies_fail_before_any_cluster(tmp_path, capsys) -> None:
    sim = hinge_phantom(6, seed=1, angles_deg=(0.0,))
    write_set(tmp_path / "d.zarr", "h", sim)
    b1, _ = body_masks(0.0, tmp_path)
    base = ["multibody", str(tmp_path / "d.zarr"), "--set", "h", "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as done:
        main([*base, "--bodies", str(b1)])
    assert done.value.code == 2
    assert "at least two body masks" in capsys.readouterr().err
    small = tmp_path / "small.mrc"
    with mrcfile.new(small) as mrc:
        mrc.set_data(np.ones((8, 8, 8), np.float32))
        mrc.voxel_size = PX
    with pytest.raises(SystemExit) as done:
        main([*base, "--bodies", str(b1), str(small)])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert str(small) in err and "24^3" in err
