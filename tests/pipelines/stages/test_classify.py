"""``cryoflow classify`` end to end: a real particle set on disk, a LocalCluster with worker
processes, the command line (a subprocess and the in-process entry point), real MRC and STAR
files read back. Tiny phantoms: two hinge conformations (0 and 45 degrees), 24^3 boxes,
24 particles at SNR 0.5 with a +-60 degree wedge, the set carrying the true consensus poses.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile

from cryoflow.cli.main import main
from cryoflow.kernels.heterogeneity.metrics import class_accuracy
from tests.pipelines.stages.heterogeneity_phantoms import BOX, PX, two_state_phantom, write_set

N = 24


@pytest.fixture(scope="module")
def scheduler():
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, pd.DataFrame, np.ndarray]:
    root = tmp_path_factory.mktemp("classify")
    sim = two_state_phantom(N, seed=5)
    table = write_set(root / "data.zarr", "parts", sim)
    write_set(root / "bare.zarr", "parts", sim, poses=False)
    return root, table, sim.labels


def _check_outputs(out: Path, table: pd.DataFrame, k: int) -> pd.DataFrame:
    for j in range(1, k + 1):
        with mrcfile.open(out / f"class_{j}.mrc") as mrc:
            assert mrc.data.shape == (BOX, BOX, BOX)
            assert mrc.voxel_size.x == pytest.approx(PX)
            assert float(np.abs(mrc.data).max()) > 0
    star = starfile.read(out / "particles.star")
    assert len(star) == len(table)
    # the input coordinates exactly, row for row
    for col, label in (("x", "rlnCoordinateX"), ("y", "rlnCoordinateY"), ("z", "rlnCoordinateZ")):
        np.testing.assert_array_equal(star[label].to_numpy(), table[col].to_numpy())
    assert star["rlnTomoName"].tolist() == table["tomogram"].tolist()
    assert set(star["rlnClassNumber"]) <= set(range(1, k + 1))
    assert set(star["rlnRandomSubset"]) <= {1, 2}
    return star


@pytest.mark.slow  # about 40 s of CPU (a subprocess and its rounds)
def test_multiref_from_the_command_line(dataset, scheduler, tmp_path) -> None:
    root, table, labels = dataset
    out = tmp_path / "mr"
    args = ["classify", str(root / "data.zarr"), "--set", "parts", "--classes", "2"]
    args += ["--out", str(out), "--iterations", "4", "--scheduler", scheduler]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [sys.executable, "-m", "cryoflow.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    star = _check_outputs(out, table, 2)
    assert class_accuracy(star["rlnClassNumber"].to_numpy() - 1, labels) >= 0.9
    # orientations in the contract's ZYZ convention, from the set's consensus (no re-alignment)
    for c, label in (("rot", "rlnAngleRot"), ("tilt", "rlnAngleTilt"), ("psi", "rlnAnglePsi")):
        np.testing.assert_allclose(star[label].to_numpy(), table[c].to_numpy(), atol=1e-6)
    # shifts searched around the consensus: the origins stay within the search of the input
    moved = star["rlnOriginXAngst"].to_numpy() - table["origin_x_angstrom"].to_numpy()
    assert np.abs(moved).max() <= 3.0 * PX + 1e-6
    # an existing result is not overwritten: a clear error, nothing touched
    before = (out / "particles.star").read_bytes()
    again = subprocess.run(
        [sys.executable, "-m", "cryoflow.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert again.returncode == 2
    assert "already exist" in again.stderr and "--overwrite" in again.stderr
    assert "Traceback" not in again.stderr
    assert (out / "particles.star").read_bytes() == before


def test_pca_writes_eigenvolumes_and_a_rerun_reuses_the_result(
    dataset, scheduler, tmp_path, capsys
) -> None:
    root, table, labels = dataset
    out = tmp_path / "pca"
    args = ["classify", str(root / "data.zarr"), "--set", "parts", "--classes", "2"]
    args += ["--method", "pca", "--out", str(out), "--scheduler", scheduler]
    with pytest.raises(SystemExit) as done:
        main(args)
    assert done.value.code in (0, None)
    star = _check_outputs(out, table, 2)
    assert class_accuracy(star["rlnClassNumber"].to_numpy() - 1, labels) >= 0.85
    for j in range(1, 7):
        assert (out / f"eigen_{j}.mrc").is_file()
    coords = pd.read_csv(out / "pca.csv")
    assert list(coords.columns[:5]) == ["tomogram", "x", "y", "z", "class"]
    assert (out / "pca_scatter.png").stat().st_size > 1000
    # the same parameters again (--overwrite): the published rounds are reused, same classes
    with pytest.raises(SystemExit):
        main([*args, "--overwrite"])
    again = starfile.read(out / "particles.star")
    np.testing.assert_array_equal(again["rlnClassNumber"], star["rlnClassNumber"])


def _fails(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as done:
        main(args)
    assert done.value.code == 2
    return capsys.readouterr().err


def test_bad_requests_fail_before_any_cluster_with_clear_errors(dataset, tmp_path, capsys) -> None:
    root, _, _ = dataset
    base = ["classify", str(root / "data.zarr"), "--set", "parts", "--out", str(tmp_path / "o")]
    err = _fails([*base, "--method", "nope"], capsys)
    assert "nope" in err
    err = _fails([*base, "--classes", "13"], capsys)
    assert "--classes 13" in err and "24 particles" in err
    err = _fails([*base[:2], "--set", "nope", *base[4:]], capsys)
    assert "nope" in err
    bare = ["classify", str(root / "bare.zarr"), "--set", "parts", "--out", str(tmp_path / "b")]
    err = _fails(bare, capsys)
    assert "no orientations" in err and "--reference" in err
    bad_ref = tmp_path / "small.mrc"
    with mrcfile.new(bad_ref) as mrc:
        mrc.set_data(np.zeros((8, 8, 8), np.float32))
        mrc.voxel_size = PX
    err = _fails([*bare, "--reference", str(bad_ref)], capsys)
    assert str(bad_ref) in err and "24^3" in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


@pytest.mark.slow  # about 60 s of CPU (a global orientation search)
def test_reference_aligns_a_set_without_orientations(dataset, scheduler, tmp_path) -> None:
    root, table, labels = dataset
    sim = two_state_phantom(N, seed=5)  # the same particles: their truth maps
    ref = tmp_path / "ref.mrc"
    with mrcfile.new(ref) as mrc:
        mrc.set_data(sim.truth.mean(axis=0).astype(np.float32))
        mrc.voxel_size = PX
    out = tmp_path / "ref_out"
    args = ["classify", str(root / "bare.zarr"), "--set", "parts", "--classes", "2"]
    args += ["--reference", str(ref), "--align-rounds", "2", "--iterations", "3"]
    with pytest.raises(SystemExit) as done:
        main([*args, "--out", str(out), "--scheduler", scheduler])
    assert done.value.code in (0, None)
    star = _check_outputs(out, table, 2)
    assert class_accuracy(star["rlnClassNumber"].to_numpy() - 1, labels) >= 0.8
    # orientations were found (the set had none): most within 30 degrees of the truth
    from cryoflow.geometry.orientation_error import orientation_errors_deg
    from cryoflow.geometry.rotation import matrix_xyz_from_euler

    found = star[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy()
    err, _ = orientation_errors_deg(
        matrix_xyz_from_euler(found), matrix_xyz_from_euler(sim.euler_deg)
    )
    assert np.median(err) < 30.0


def test_classes_found_elsewhere_are_averaged_on_the_cluster(dataset, scheduler) -> None:
    """The runner a method such as the autoencoder plugs into: given classes -> class maps."""
    from distributed import Client

    from cryoflow.pipelines.stages.classify import ClassifyParams, given_classes
    from cryoflow.pipelines.stages.particle_inputs import load_set

    root, _, labels = dataset
    truth = two_state_phantom(N, seed=5).truth
    with Client(scheduler) as client:
        inputs = load_set(str(root / "data.zarr"), "parts")
        params = ClassifyParams(set="parts", classes=2)
        res = given_classes(client, inputs, params, None, labels)
    np.testing.assert_array_equal(res.assign, labels)
    assert res.maps.shape == (2, BOX, BOX, BOX)
    corr = np.corrcoef(np.concatenate([res.maps.reshape(2, -1), truth.reshape(2, -1)]))[:2, 2:]
    assert corr[0, 0] > corr[0, 1] and corr[1, 1] > corr[1, 0]  # each map is its own state
    assert [r["phase"] for r in res.summary["rounds"]] == ["consensus", "sums"]


@pytest.mark.slow  # trains the conformation autoencoder (a few steps) on the cluster
def test_autoencoder_method_classes_from_the_latent_space(dataset, scheduler, tmp_path) -> None:
    root, table, labels = dataset
    out = tmp_path / "ae"
    args = ["classify", str(root / "data.zarr"), "--set", "parts", "--classes", "2"]
    args += ["--method", "autoencoder", "--latent-steps", "150", "--out", str(out)]
    with pytest.raises(SystemExit) as done:
        main([*args, "--scheduler", scheduler])
    assert done.value.code in (0, None)
    star = _check_outputs(out, table, 2)
    assert class_accuracy(star["rlnClassNumber"].to_numpy() - 1, labels) >= 0.7  # chance: about 0.58 for 24
