"""``cryoflow average`` end to end: a phantom particle set in a real store, the command line on
a local cluster of worker processes, the contract's files read back with ``mrcfile``,
``pandas`` and ``starfile``, and the orientations compared with the phantom's truth."""

from __future__ import annotations

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile
from scipy.spatial.transform import Rotation

from cryoflow.cli.main import main
from cryoflow.io.maps import write_map
from cryoflow.kernels.fsc import fsc
from tests.pipelines.stages._average_phantoms import BOX, PIXEL, start_map, write_phantom_set

FILES = ("average.mrc", "half1.mrc", "half2.mrc", "fsc.csv", "particles.star")


@pytest.fixture(scope="module")
def scheduler():
    """One local cluster of two worker processes for the module (its address for --scheduler)."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address="127.0.0.1:0", silence_logs=40,
    ) as cluster:  # fmt: skip
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def averaged(tmp_path_factory, scheduler):
    """The phantom set averaged through the command line from the truth low-passed to 60 Å."""
    tmp = tmp_path_factory.mktemp("average")
    ph = write_phantom_set(tmp, n=24, snr=2.0)
    ref = write_map(tmp / "ref.mrc", start_map(ph.sim), PIXEL)
    out = tmp / "out"
    args = ["average", str(ph.store), "--set", ph.name, "--out", str(out), "--reference",
            str(ref), "--iterations", "2", "--batch-size", "12", "--scheduler", scheduler]  # fmt: skip
    with pytest.raises(SystemExit) as done:
        main(args)
    assert done.value.code == 0
    return ph, out, args


def _errors_deg(star: pd.DataFrame, euler_true: np.ndarray) -> np.ndarray:
    est = Rotation.from_euler(
        "ZYZ", star[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy(), degrees=True
    )
    true = Rotation.from_euler("ZYZ", euler_true, degrees=True)
    return np.degrees((est.inv() * true).magnitude())


def test_cli_writes_every_contract_file_with_the_tomograms_voxel_size(averaged) -> None:
    ph, out, _ = averaged
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)  # no temporary left over
    for name in ("average.mrc", "half1.mrc", "half2.mrc"):
        with mrcfile.open(out / name, permissive=False) as mrc:
            assert mrc.data.shape == (BOX, BOX, BOX) and mrc.data.dtype == np.float32
            assert np.allclose([mrc.voxel_size.x, mrc.voxel_size.y, mrc.voxel_size.z], PIXEL)
            assert np.isfinite(mrc.data).all() and mrc.data.std() > 0
    with mrcfile.open(out / "average.mrc") as mrc:
        average = mrc.data.copy()
    truth = ph.sim.truth[0]
    # the average lies in the reference's (the truth's) frame, box centre B // 2
    assert fsc(average, truth).resolution_px(0.5) < 6.0
    assert np.corrcoef(average.ravel(), truth.ravel())[0, 1] > 0.6
    curve = pd.read_csv(out / "fsc.csv")
    assert list(curve.columns) == ["resolution_angstrom", "fsc"]
    assert len(curve) == BOX // 2 and np.isclose(curve["resolution_angstrom"].iloc[-1], 2 * PIXEL)
    assert np.all(np.diff(curve["resolution_angstrom"]) < 0)
    assert curve["fsc"].iloc[0] > 0.9 and curve["fsc"].iloc[-1] < 0.5


def test_particles_star_keeps_input_rows_and_recovers_truth(averaged) -> None:
    ph, out, _ = averaged
    star = starfile.read(out / "particles.star")
    assert isinstance(star, pd.DataFrame)  # one data_particles block
    for label in ("rlnTomoName", "rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ",
                  "rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst",
                  "rlnOriginYAngst", "rlnOriginZAngst", "rlnRandomSubset", "rlnClassNumber"):  # fmt: skip
        assert label in star.columns, label
    # rows in input order, input coordinates exactly as given, the input's own labels kept
    order = np.argsort(ph.table["input_index"].to_numpy())
    given = ph.table.iloc[order].reset_index(drop=True)
    assert list(star["rlnTomoName"]) == list(given["tomogram"])
    for axis in "XYZ":
        assert np.array_equal(
            star[f"rlnCoordinate{axis}"].to_numpy(), given[axis.lower()].to_numpy()
        )
    assert list(star["rlnTomoParticleName"]) == [f"p{i}" for i in range(len(star))]
    assert set(star["rlnClassNumber"]) == {1} and set(star["rlnRandomSubset"]) == {1, 2}
    assert abs(int((star["rlnRandomSubset"] == 1).sum()) - len(star) // 2) <= 1
    # orientations: the contract's ZYZ convention against the truth (input row i = particle i)
    err = _errors_deg(star, ph.sim.euler_deg)
    # (a loose bound: 24 particles of a 24^3 box; random orientations give a median near 126 deg)
    assert np.median(err) < 12.0 and np.mean(err < 20.0) >= 0.8, np.round(np.sort(err), 1)
    # origins: RELION's sign, the refined centre is coordinate - origin / voxel size
    xyz = given[["x", "y", "z"]].to_numpy()
    centre_true = np.rint(xyz) + ph.sim.shifts_zyx_px[:, ::-1]  # the truth's (x, y, z)
    origin = star[["rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst"]].to_numpy()
    centre = xyz - origin / PIXEL
    assert np.median(np.linalg.norm(centre - centre_true, axis=1)) < 0.75


def test_rerun_refuses_without_overwrite_and_replaces_with_it(averaged, capsys) -> None:
    ph, out, args = averaged
    before = {n: (out / n).read_bytes() for n in FILES}
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:
        main(args)
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err and str(out) in err
    assert {n: (out / n).read_bytes() for n in FILES} == before  # nothing touched
    (out / "fsc.csv").unlink()  # any one output present is enough to refuse
    with pytest.raises(SystemExit) as refused:
        main(args)
    assert refused.value.code == 2
    with pytest.raises(SystemExit) as done:  # the recorded result is current: files rewritten
        main([*args, "--overwrite"])
    assert done.value.code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    old = out.parent / "before.star"
    old.write_bytes(before["particles.star"])  # (the header's line holds the time written)
    pd.testing.assert_frame_equal(starfile.read(out / "particles.star"), starfile.read(old))
    (out.parent / "before.mrc").write_bytes(before["average.mrc"])
    with mrcfile.open(out / "average.mrc") as new, mrcfile.open(out.parent / "before.mrc") as was:
        assert np.array_equal(new.data, was.data)


def _fail(args: list[str], capsys) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    return capsys.readouterr().err


def test_bad_inputs_are_refused_naming_the_file_before_any_cluster(tmp_path, capsys) -> None:
    ph = write_phantom_set(tmp_path, n=4)
    base = [
        "average",
        str(ph.store),
        "--out",
        str(tmp_path / "o"),
        "--scheduler",
        "tcp://127.0.0.1:9",
    ]
    err = _fail([*base, "--set", "nope"], capsys)
    assert "nope" in err and "particle set" in err
    small = write_map(tmp_path / "small.mrc", np.zeros((16, 16, 16), np.float32), PIXEL)
    err = _fail([*base, "--set", ph.name, "--reference", str(small)], capsys)
    assert str(small) in err and "box 16" in err and f"box is {BOX}" in err
    flat = write_map(tmp_path / "flat.mrc", np.ones((BOX, BOX, BOX + 2), np.float32), PIXEL)
    err = _fail([*base, "--set", ph.name, "--mask", str(flat)], capsys)
    assert str(flat) in err and "cubic" in err
    err = _fail([*base, "--set", ph.name, "--reference", str(tmp_path / "missing.mrc")], capsys)
    assert "missing.mrc" in err
    err = _fail([*base, "--set", ph.name, "--symmetry", "X7"], capsys)
    assert "--symmetry" in err
    (tmp_path / "file").write_text("x")
    err = _fail(
        ["average", str(ph.store), "--out", str(tmp_path / "file"), "--set", ph.name], capsys
    )
    assert "file" in err and "directory" in err
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------- rounds
class _Killed(RuntimeError):
    pass


@pytest.mark.fault  # the fault matrix (docs/design/fault-matrix.md)
@pytest.mark.parametrize(
    ("with_reference", "symmetry", "with_mask"),
    [(True, "C2", False), (False, "C1", True)],
    ids=["reference-C2", "template-free-mask"],
)
def test_distributed_rounds_resume_and_equal_the_eager_refinement(
    tmp_path, scheduler, with_reference, symmetry, with_mask
) -> None:
    """A run killed after its first round resumes there; its result is bit-identical to the
    in-process refinement (:func:`cryoflow.kernels.refine.refine`) of the same particles
    (with a reference and a symmetry; template-free with the user's mask)."""
    from distributed import Client

    from cryoflow.io.maps import read_map
    from cryoflow.kernels.masks import spherical_mask
    from cryoflow.kernels.refine import refine
    from cryoflow.pipelines.engine.rounds import run_rounds
    from cryoflow.pipelines.stages import average as stage

    ph = write_phantom_set(tmp_path, n=8, box=16, seed=5)
    ref = write_map(tmp_path / "ref.mrc", start_map(ph.sim), PIXEL) if with_reference else None
    mask = None
    if with_mask:
        mask = write_map(tmp_path / "mask.mrc", spherical_mask(16, 5.0, 2.0), PIXEL)
    params = stage.AverageParams(
        set=ph.name, reference=None if ref is None else str(ref), iterations=2,
        initial_rounds=1, batch_size=3, symmetry=symmetry,
        mask=None if mask is None else str(mask),
    )  # fmt: skip
    plan = stage.plan(ph.store, [], params)

    def kill(k: int) -> None:
        raise _Killed(f"killed after round {k}")

    with Client(scheduler, set_as_default=False) as client:
        with pytest.raises(_Killed):
            run_rounds(client, ph.store, plan, params.to_dict(), on_round=kill)
        done = run_rounds(client, ph.store, plan, params.to_dict())
        again = run_rounds(client, ph.store, plan, params.to_dict())
    assert done.resumed_after == 1 and done.computed == plan.rounds - 1 and again.skipped
    info = stage.load_set(ph.store, ph.name, params.seed)
    eager = refine(
        ph.sim.volumes[ph.order],
        info.tilt_ranges,
        voxel_size_angstrom=PIXEL,
        params=plan.map.params,
        reference=None if ref is None else read_map(ref),
        mask=None if mask is None else read_map(mask),
        half_ids=info.half_ids,
    )
    s = done.state
    assert np.array_equal(s["average"], eager.outcome.average)
    assert np.array_equal(s["half_maps"], eager.outcome.half_maps)
    assert np.array_equal(s["euler_deg"], eager.alignment.euler_deg)
    assert np.array_equal(s["shifts_zyx_px"], eager.alignment.shifts_zyx_px)
    assert np.array_equal(s["half"], eager.half_ids + 1)
    assert np.allclose(s["fsc"][1], eager.outcome.fsc.fsc)
    assert s["history"].shape == (plan.rounds, 5)
    if mask is not None:
        assert np.array_equal(s["mask"], read_map(mask))
