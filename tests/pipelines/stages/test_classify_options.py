"""``cryoflow classify`` options through the command line on a LocalCluster of worker
processes and a real store: ``--classes auto`` (K by BIC), ``--mask``, ``--symmetry``, and
class maps of an earlier run in ``--out``. Tiny phantoms: two hinge conformations, 24^3
boxes, 24 particles at SNR 0.5 with a +-60 degree wedge, the set carrying the true poses."""

from __future__ import annotations

import json
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import starfile

from cryoflow.cli.main import main
from cryoflow.kernels.heterogeneity.metrics import class_accuracy
from cryoflow.kernels.masks import spherical_mask
from tests._local_cluster import scheduler  # noqa: F401 (fixture)
from tests.pipelines.stages.heterogeneity_phantoms import BOX, PX, two_state_phantom, write_set

N = 24


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, np.ndarray]:
    root = tmp_path_factory.mktemp("classify_options")
    sim = two_state_phantom(N, seed=5)
    write_set(root / "data.zarr", "parts", sim)
    return root, sim.labels


def _run(args: list[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(args)
    assert done.value.code in (0, None)


def _fails(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as done:
        main(args)
    assert done.value.code == 2
    return capsys.readouterr().err


def _map(path: Path, box: int = BOX, px: float = PX, radius: float = 8.0) -> Path:
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(spherical_mask(box, radius, 2.0).astype(np.float32))
        mrc.voxel_size = px
    return path


def _c2_correlation(vol: np.ndarray) -> float:
    """Correlation of a map with itself turned 180 degrees about z (centre ``B // 2``)."""
    turned = np.roll(np.flip(vol, axis=(1, 2)), 1, axis=(1, 2))
    return float(np.corrcoef(vol.ravel(), turned.ravel())[0, 1])


def test_pca_auto_classes_by_bic_and_earlier_class_maps(dataset, scheduler, tmp_path, capsys):  # noqa: F811
    root, labels = dataset
    out = tmp_path / "auto"
    base = ["classify", str(root / "data.zarr"), "--set", "parts", "--method", "pca"]
    base += ["--out", str(out), "--scheduler", scheduler]
    _run([*base, "--classes", "auto", "--max-classes", "4"])
    record = json.loads((out / "classify.json").read_text())
    bic = np.asarray(record["bic"])
    k = len(record["class_sizes"])
    # the rule: K = the k of 1 .. --max-classes with the lowest BIC
    assert record["classes_chosen_by"].startswith("BIC") and len(bic) == 4
    assert k == int(np.argmin(bic)) + 1 == 2
    assert sorted(p.name for p in out.glob("class_*.mrc")) == ["class_1.mrc", "class_2.mrc"]
    star = starfile.read(out / "particles.star")
    assert set(star["rlnClassNumber"]) == {1, 2}
    assert class_accuracy(star["rlnClassNumber"].to_numpy() - 1, labels) >= 0.85
    for j in range(1, 7):  # the eigenvolumes as MRC maps with the set's voxel size
        with mrcfile.open(out / f"eigen_{j}.mrc") as mrc:
            assert mrc.data.shape == (BOX,) * 3 and float(mrc.voxel_size.x) == pytest.approx(PX)
    # a class map of an earlier run in --out is refused too, and replaced with --overwrite
    _map(out / "class_3.mrc")
    err = _fails([*base, "--classes", "2"], capsys)
    assert "class_3.mrc" in err and "--overwrite" in err
    _run([*base, "--classes", "2", "--overwrite"])
    assert sorted(p.name for p in out.glob("class_*.mrc")) == ["class_1.mrc", "class_2.mrc"]
    assert json.loads((out / "classify.json").read_text()).get("classes_chosen_by") is None


def test_mask_and_symmetry(dataset, scheduler, tmp_path, capsys):  # noqa: F811
    root, _ = dataset
    base = ["classify", str(root / "data.zarr"), "--set", "parts", "--method", "pca"]
    base += ["--classes", "2", "--scheduler", scheduler]
    # a mask of another box or voxel size: a clear error naming the file, before any cluster
    small = _map(tmp_path / "small.mrc", box=16)
    err = _fails([*base, "--out", str(tmp_path / "x"), "--mask", str(small)], capsys)
    assert str(small) in err and "24^3" in err
    coarse = _map(tmp_path / "coarse.mrc", px=2 * PX)
    err = _fails([*base, "--out", str(tmp_path / "x"), "--mask", str(coarse)], capsys)
    assert str(coarse) in err and "voxel size" in err
    assert not list((tmp_path / "x").glob("*")) if (tmp_path / "x").exists() else True
    # a tight mask: the PCA looks only inside it (eigenvolumes vanish outside)
    mask = _map(tmp_path / "mask.mrc", radius=6.0)
    out = tmp_path / "masked"
    _run([*base, "--out", str(out), "--mask", str(mask)])
    m = spherical_mask(BOX, 6.0, 2.0)
    with mrcfile.open(out / "eigen_1.mrc") as mrc:
        eig = np.asarray(mrc.data)
    assert (eig[m < 1e-3] ** 2).sum() < 0.03 * (eig**2).sum()  # band-limiting leaks a little
    from cryoflow.io.results import open_dataset_result

    prov = open_dataset_result(root / "data.zarr", "classify-parts", "assign").attrs["provenance"]
    assert "mask" in prov["inputs"] and prov["parameters"]["mask"] == str(mask)
    # C2: every class map symmetric about z; the C1 maps of the asymmetric hinge are not
    with mrcfile.open(out / "class_1.mrc") as mrc:
        c1 = _c2_correlation(np.asarray(mrc.data))
    sym = tmp_path / "c2"
    _run([*base, "--out", str(sym), "--symmetry", "c2"])
    for j in (1, 2):
        with mrcfile.open(sym / f"class_{j}.mrc") as mrc:
            assert _c2_correlation(np.asarray(mrc.data)) > 0.98 > c1 + 0.05


def test_auto_classes_need_pca_seeds_for_multiref(dataset, tmp_path, capsys):
    root, _ = dataset
    args = ["classify", str(root / "data.zarr"), "--set", "parts", "--out", str(tmp_path / "o")]
    err = _fails([*args, "--seed-method", "random"], capsys)
    assert "--classes auto" in err and "--seed-method" in err
    err = _fails([*args, "--classes", "many"], capsys)
    assert "--classes" in err and "auto" in err
