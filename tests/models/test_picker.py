"""The picking network: descriptors, training from a few marks, eager and chunked apply."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import torch
import zarr

from cryoflow.errors import ConfigError
from cryoflow.graph.pick import picks_lazy, score_map
from cryoflow.kernels.invariants import InvariantSpec, dense_features, halo, point_features
from cryoflow.kernels.match import match_picks
from cryoflow.models.checkpoint import load_checkpoint, save_checkpoint
from cryoflow.models.loader import ModelHandle
from cryoflow.models.pickapply import picks_from_scores, score_volume
from cryoflow.models.picktrain import (
    PickExamples,
    PickTrainParams,
    choose_level,
    estimate_diameter_px,
    level_to_voxels,
    voxels_to_level,
)
from cryoflow.models.picktrain import train_picker as _train
from cryoflow.simulate.crowded import CrowdedConfig, simulate_crowded

FAST = PickTrainParams(
    shells=4,
    degree=3,
    hidden=16,
    n_random_negatives=1500,
    n_blob_negatives=60,
    n_ring_negatives=4,
    steps=300,
    weight_decay=1e-2,
    seed=0,
)


@pytest.fixture(scope="module")
def crowded():
    cfg = CrowdedConfig(
        shape=(32, 64, 64),
        pixel_size_angstrom=20.0,
        diameter_angstrom=180.0,
        n_targets=10,
        n_decoys=10,
        decoys=("rod",),
        clutter_fraction=0.01,
        tilt_step_deg=6.0,
        snr=2.0,
        blur="gaussian",
        seed=3,
    )
    return simulate_crowded(cfg)


@pytest.fixture(scope="module")
def trained(crowded):
    targets = crowded.targets[["x", "y", "z"]].to_numpy()
    ex = PickExamples("t", targets[:4])
    torch.manual_seed(0)
    model, config = _train({"t": crowded.tomogram}, [ex], FAST, level=0, pixel_size_angstrom=20.0)
    return model, config, targets


def test_descriptors_are_rotation_invariant_and_dense_equals_points() -> None:
    spec = InvariantSpec(8.0, shells=3, degree=3)
    rng = np.random.default_rng(0)
    vol = rng.normal(size=(17, 19, 21)).astype(np.float32)
    pts = np.array([[8, 9, 10], [0, 0, 0], [16, 3, 20]])
    dense = dense_features(np.pad(vol, halo(spec)), spec).numpy()
    assert np.allclose(
        dense[:, pts[:, 0], pts[:, 1], pts[:, 2]].T, point_features(vol, pts, spec), atol=1e-5
    )

    # a quarter turn about z and a half turn about y leave every descriptor unchanged
    def turn(v: np.ndarray) -> np.ndarray:
        return np.rot90(np.rot90(v, 1, axes=(1, 2)), 2, axes=(0, 2)).copy()

    turned = turn(vol)
    c = np.array([[8, 9, 10]])
    marker = np.zeros(vol.shape)
    marker[tuple(c[0])] = 1
    c2 = np.argwhere(turn(marker))
    assert np.allclose(point_features(vol, c, spec), point_features(turned, c2, spec), atol=1e-5)


def test_scale_estimate_and_levels() -> None:
    vol = np.zeros((40, 40, 40), np.float32)
    zz, yy, xx = np.indices(vol.shape)
    centres = np.array([[12, 12, 12], [28, 26, 25]])
    for c in centres:
        vol[(zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= 36] = 1.0  # radius 6
    d, polarity = estimate_diameter_px(vol, centres)
    assert 10 <= d <= 14.5 and polarity == 1.0
    assert estimate_diameter_px(-vol, centres)[1] == -1.0
    assert choose_level(20) == 0 and choose_level(40) == 1 and choose_level(200) == 2
    xyz = np.array([[3.0, 5.0, 7.5]])
    assert np.allclose(level_to_voxels(voxels_to_level(xyz, 2), 2), xyz)


def test_finds_the_other_targets_and_only_molecules(crowded, trained) -> None:
    # at this tiny scale (9-voxel molecules) the target's and the decoy's shapes are not told
    # apart (benchmarks/phantom_pick.py measures that at a realistic scale); what must hold:
    # the unmarked targets are found, and picks lie on molecules, not on noise or clutter
    model, config, targets = trained
    scores = score_volume(model, crowded.tomogram, block=32)
    picks = picks_from_scores(scores, config, "t")
    assert (picks["score"] >= config.threshold).all()
    got = picks[["x", "y", "z"]].to_numpy()
    far_from_examples = np.min(np.linalg.norm(got[:, None] - targets[None, :4], axis=2), axis=1) > 3
    assert match_picks(got[far_from_examples], targets[4:], 3.0).recall >= 0.8
    molecules = crowded.truth[["x", "y", "z"]].to_numpy()
    assert match_picks(got, molecules, 3.0).precision >= 0.7
    assert config.spec.arch == "picker" and config.params["level"] == 0
    assert config.training_set["n_blob_negatives"] <= config.training_set["n_blob_candidates"]


def test_checkpoint_round_trip_and_chunked_apply(tmp_path, crowded, trained) -> None:
    model, config, _ = trained
    save_checkpoint(tmp_path / "m", model, config)
    loaded, cfg, _ = load_checkpoint(tmp_path / "m")
    vol = crowded.tomogram[:, :40, :48]
    ref = score_volume(model, vol, block=48)
    assert np.allclose(score_volume(loaded, vol, block=24), ref, atol=1e-4)
    handle = ModelHandle.from_directory(tmp_path / "m")
    mean, std = float(vol.mean()), float(vol.std())
    z = zarr.create_array(tmp_path / "v.zarr", shape=vol.shape, chunks=(16, 16, 16), dtype="f4")
    z[...] = vol
    for arr in (da.from_array(vol, chunks=(9, 20, 11)), da.from_array(z, chunks=z.chunks)):
        lazy = score_map(arr, handle, mean=mean, std=std, block=28, config=cfg)
        assert lazy.chunks[0] == (28, 4)
        got = lazy.compute(scheduler="sync")
        assert np.allclose(got, ref, atol=1e-4)
    table = dask.compute(picks_lazy(da.from_array(ref, chunks=13), cfg, "t"), scheduler="sync")[0]
    eager = picks_from_scores(ref, cfg, "t")
    assert np.allclose(
        table[["x", "y", "z", "score"]].to_numpy(), eager[["x", "y", "z", "score"]].to_numpy()
    )


def test_training_errors() -> None:
    vol = np.zeros((20, 20, 20), np.float32)
    with pytest.raises(ConfigError, match="positive"):
        _train(
            {"t": vol},
            [PickExamples("t", np.zeros((0, 3)))],
            FAST,
            level=0,
            pixel_size_angstrom=1.0,
        )
    with pytest.raises(ConfigError, match="no volume"):
        _train({}, [PickExamples("u", np.ones((1, 3)))], FAST, level=0, pixel_size_angstrom=1.0)
    with pytest.raises(ConfigError):
        PickTrainParams(threshold=1.0)


def test_reliable_negatives_keep_only_candidates_unlike_the_marks() -> None:
    from cryoflow.models.picktrain import reliable_negatives

    rng = np.random.default_rng(0)
    background = rng.normal(size=(500, 5))
    centre = np.array([3.0, 0, 0, 0, 0])
    marks = centre + 0.3 * rng.normal(size=(6, 5))
    like = centre + 0.3 * rng.normal(size=(10, 5))  # unmarked particles of the kind
    unlike = -centre + 0.3 * rng.normal(size=(10, 5))  # other molecules
    keep = reliable_negatives(np.concatenate([like, unlike]), marks, background, 0.9)
    assert keep[:10].sum() <= 3 and keep[10:].all()  # most unmarked particles left out
    assert reliable_negatives(np.zeros((0, 5)), marks, background, 0.9).shape == (0,)
    assert reliable_negatives(unlike, marks[:1], background, 0.9).sum() == 5  # one mark: median
