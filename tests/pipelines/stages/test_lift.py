"""Algorithm 1 (lift), the multi-class rule, mask corruption, and the three commands' CLI."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest

import cryoflow
from cryoflow.kernels.corrupt import corrupt_masks
from cryoflow.kernels.iou import box_iou, mask_iou
from cryoflow.kernels.lift import assign_classes


def balls(shape, centres, radii) -> np.ndarray:
    g = np.indices(shape, dtype=float)
    out = np.zeros(shape, bool)
    for c, r in zip(centres, radii, strict=True):
        out |= sum((g[i] - c[i]) ** 2 for i in range(3)) <= r * r
    return out


def test_assign_classes_rule() -> None:
    votes = np.array([[[[5, 5, 2, 9]]], [[[6, 5, 9, 1]]]])  # (K=2, 1, 1, 4)
    out = assign_classes(votes, thresholds=[4, 4], n_tilts=[10, 10], class_ids=[3, 1])
    # voxel 0: both pass, class 1 has more support; voxel 1: tie -> first class;
    # voxel 2: only class 1 passes; voxel 3: only class 0 passes
    assert out.ravel().tolist() == [1, 3, 1, 3]
    # support is normalised by each class's tilt count
    out = assign_classes(votes, thresholds=[0, 0], n_tilts=[10, 20], class_ids=[3, 1])
    assert out.ravel().tolist() == [3, 3, 1, 3]
    assert assign_classes(votes, [9, 9], 10, [3, 1]).max() == 0
    with pytest.raises(ValueError, match="1..255"):
        assign_classes(votes, [0, 0], 10, [0, 1])


def test_corrupt_masks_is_seeded_and_errs_like_a_segmenter() -> None:
    masks = np.zeros((4, 40, 40), bool)
    masks[:, 10:30, 12:28] = True
    a = corrupt_masks(masks, seed=1)
    b = corrupt_masks(masks, seed=1)
    c = corrupt_masks(masks, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert 0.6 < mask_iou(a, masks) < 0.97
    inner = masks.copy()
    inner[:, 10:12], inner[:, 28:30], inner[:, :, 12:14], inner[:, :, 26:28] = (False,) * 4
    assert (inner & ~a).any()  # missed pixels away from the border
    assert (a[:, :, :8] | a[:, :, 32:]).any() or (a[:, :8] | a[:, 32:]).any()  # false blobs
    with pytest.raises(TypeError):
        corrupt_masks(da.zeros((1, 4, 4), dtype=bool))


def test_algorithm1_lifts_exact_masks_back_to_the_phantom() -> None:
    shape = (24, 20, 24)
    phantom = balls(shape, [(12, 9, 8), (11, 10, 16)], [4.0, 3.5])
    full = np.arange(-88.0, 90.0, 4.0)  # nearly the whole circle: the hull is the phantom
    limited = np.arange(-60.0, 61.0, 3.0)  # a missing wedge: the hull grows along z
    with dask.config.set(scheduler="sync"):
        for angles, min_iou in ((full, 0.9), (limited, 0.6)):
            masks = np.asarray(cryoflow.project(phantom, angles, shape[2], mode="any"))
            votes = np.asarray(cryoflow.backproject(masks, angles, shape))
            sel = cryoflow.select_threshold(votes, masks, angles)
            lifted = votes > sel.threshold
            assert (votes[phantom] == len(angles)).all()  # every ray through it is marked
            assert lifted[phantom].all()
            assert mask_iou(lifted, phantom) > min_iou
            assert sel.scores.max() > 0.95


# ---------------------------------------------------------------------------- dataset + CLI
CLASSES = ("membrane", "granule")


def make_dataset(path, n_tomograms: int = 2, shape=(16, 24, 24), seed: int = 0):
    """A store of tiny tomograms with truth 2D masks per class and a truth label volume."""
    from cryoflow.io import store as S
    from cryoflow.simulate.classes import CLASS_IDS

    rng = np.random.default_rng(seed)
    angles = np.arange(-60.0, 61.0, 8.0)
    g = np.indices(shape, dtype=float)
    truth = {}
    for t in range(n_tomograms):
        name = f"t{t}"
        labels = np.zeros(shape, np.uint8)
        r = np.sqrt((g[0] - 7.5) ** 2 + (g[1] - 11.5) ** 2 + (g[2] - 6.5 - t) ** 2)
        labels[(r <= 5) & (r > 3.5)] = CLASS_IDS["membrane"]
        for _ in range(2):
            c = rng.uniform([5, 5, 13], [10, 18, 19])
            labels[sum((g[i] - c[i]) ** 2 for i in range(3)) <= 4.0] = CLASS_IDS["granule"]
        with dask.config.set(scheduler="sync"):
            density = np.asarray(
                cryoflow.project(labels.astype(np.float32), angles, shape[2], mode="sum")
            )
            S.write_tilt_series(path, name, density, angles, 10.0)
            for c in CLASSES:
                m = np.asarray(cryoflow.project(labels == CLASS_IDS[c], angles, shape[2]))
                S.write_result(
                    path,
                    name,
                    "truth",
                    f"masks2d_{c}",
                    m,
                    dims=("tilt", "y", "x"),
                    provenance={"step": "truth"},
                )
            S.write_volume(
                path,
                name,
                "truth_labels",
                labels,
                kind="label",
                pixel_size_angstrom=10.0,
                provenance={"step": "truth"},
                multiscale=False,
            )
        truth[name] = labels
    return truth


@pytest.fixture(scope="module")
def scheduler():
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
    ) as cluster:
        yield cluster.scheduler_address


def run_cli(args: list[str]) -> str:
    from typer.testing import CliRunner

    from cryoflow.cli.main import app

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_cli_lift_edges_localize_over_a_dataset(tmp_path, scheduler, capsys) -> None:
    from cryoflow.io import store as S
    from cryoflow.io.boxes import read_boxes, write_boxes
    from cryoflow.kernels.boxes import boxes_from_masks
    from cryoflow.simulate.classes import CLASS_IDS

    store = str(tmp_path / "data.zarr")
    truth = make_dataset(store)
    sched = ["--scheduler", scheduler]
    # Algorithm 1, two classes, every tomogram
    out = run_cli(
        [
            "lift",
            store,
            "--all",
            "--maps",
            "truth/masks2d",
            "--classes",
            "membrane,granule",
            "--thickness",
            "16",
            *sched,
        ]
    )
    assert out.count("lifted") == 2
    for name, labels in truth.items():
        got = np.asarray(S.open_volume(store, name, "lift"))
        assert set(np.unique(got)) <= {0, CLASS_IDS["membrane"], CLASS_IDS["granule"]}
        for c in CLASSES:
            assert mask_iou(got == CLASS_IDS[c], labels == CLASS_IDS[c]) > 0.3
        curve = S.open_result(store, name, "lift", "scores_granule")
        assert curve.shape[0] > 1 and "threshold" in curve.attrs
        assert np.asarray(S.open_result(store, name, "lift", "votes_granule")).max() == 16
    # a second run refuses to overwrite, with one clean error line
    from cryoflow.cli.main import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "lift",
                store,
                "--name",
                "t0",
                "--maps",
                "truth/masks2d",
                "--classes",
                "granule",
                "--thickness",
                "16",
                *sched,
            ]
        )
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("cryoflow: error:") and "already exists" in err  # before any cluster
    # Algorithm 2
    out = run_cli(["edges", store, "--name", "t0", "--thickness", "16", "-m", "1", *sched])
    assert "edges t0" in out
    assert np.asarray(S.open_result(store, "t0", "edges", "sums")).max() > 0
    # Algorithm 3 from a box file (rows for both tomograms) and from the truth
    rows = []
    for name in truth:
        m = np.asarray(S.open_result(store, name, "truth", "masks2d_granule"))
        b = boxes_from_masks(m, "granule", min_pixels=1)
        b["tomogram"] = name
        rows.append(b)
    boxes_file = write_boxes(tmp_path / "boxes.csv", pd.concat(rows), ndim=2)
    export = tmp_path / "boxes3d.json"
    run_cli(
        [
            "localize",
            store,
            "--all",
            "--boxes",
            str(boxes_file),
            "--thickness",
            "16",
            "--export",
            str(export),
            *sched,
        ]
    )
    got = read_boxes(export, ndim=3)
    assert set(got["tomogram"]) == set(truth) and (got["class"] == "granule").all()
    for name, labels in truth.items():
        from scipy import ndimage

        lab, n = ndimage.label(labels == CLASS_IDS["granule"])
        true_boxes = np.array(
            [[s.start for s in sl] + [s.stop for s in sl] for sl in ndimage.find_objects(lab)],
            float,
        )
        mine = got[got["tomogram"] == name][["z0", "y0", "x0", "z1", "y1", "x1"]].to_numpy(float)
        assert len(mine) >= 1
        assert box_iou(mine, true_boxes).max(axis=0).max() > 0.3
    run_cli(
        [
            "localize",
            store,
            "--name",
            "t1",
            "--from-truth",
            "--classes",
            "membrane",
            "--thickness",
            "16",
            "--out",
            "loc2",
            *sched,
        ]
    )
    table = S.read_table(store, "t1", "loc2", "boxes3d")
    assert len(table) >= 1 and (table["class"] == "membrane").all()
    bad = tmp_path / "bad.csv"
    bad.write_text("tilt,class\n0,a\n")
    with pytest.raises(SystemExit) as exc:
        main(["localize", store, "--name", "t0", "--boxes", str(bad), *sched])
    assert exc.value.code == 2
    assert "missing column" in capsys.readouterr().err


def test_binarise_uses_the_probability_threshold_of_annotate_maps() -> None:
    import xarray as xr

    from cryoflow.graph.lift import binarise

    probs = xr.DataArray(
        np.array([[[0, 100, 127, 128, 255]]], np.uint8), attrs={"scale": 255, "threshold": 0.5}
    )
    assert np.asarray(binarise(probs)).tolist() == [[[False, False, False, True, True]]]
    masks = np.array([[[0, 1, 2]]], np.uint8)
    assert np.asarray(binarise(masks)).tolist() == [[[False, True, True]]]
    assert np.asarray(binarise(np.array([[[0.2, 0.5]]]))).tolist() == [[[False, True]]]
