"""Segmentation networks, few-shot training sets, training, checkpoints and the 2D detector."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from cryoflow.errors import CheckpointError, ConfigError, InputFileError
from cryoflow.kernels.augment import augment, standardize
from cryoflow.kernels.combine import combine_features
from cryoflow.kernels.iou import mask_iou
from cryoflow.models.arch import ModelSpec, build_model
from cryoflow.models.checkpoint import load_checkpoint, save_checkpoint
from cryoflow.models.predict import predict_images, run_in_batches
from cryoflow.models.train import TrainParams, train_model
from cryoflow.models.trainset import (
    from_box_file,
    from_labels,
    read_labels,
    training_set_from_masks,
)
from tests._models_data import blob_images

SMALL_TOMOSEG = ModelSpec(arch="tomoseg", channels=(8, 8), kernel_size=15)
SMALL_UNET = ModelSpec(arch="unet", base_channels=4, depth=2)


@pytest.mark.parametrize("spec", [SMALL_TOMOSEG, SMALL_UNET], ids=["tomoseg", "unet"])
@pytest.mark.parametrize("hw", [(32, 48), (33, 27)])
def test_networks_map_images_to_same_size_logits(spec: ModelSpec, hw: tuple[int, int]) -> None:
    net = build_model(spec).eval()
    x = torch.zeros((2, 1, *hw))
    assert net(x).shape == (2, 1, *hw)


def test_model_spec_rejects_unknown_arch_and_fields() -> None:
    with pytest.raises(ConfigError, match="tomoseg"):
        ModelSpec(arch="resnet")
    with pytest.raises(ConfigError, match="unknown"):
        ModelSpec.from_dict({"arch": "unet", "layers": 3})


def test_augment_is_seeded_and_moves_masks_with_images() -> None:
    rng = np.random.default_rng(1)
    boxes = rng.normal(size=(5, 16, 16)).astype(np.float32)
    masks = (boxes > 1).astype(np.uint8)
    a1 = augment(boxes, masks, np.random.default_rng(7), noise_sigma=0.0, contrast_range=(1, 1))
    a2 = augment(boxes, masks, np.random.default_rng(7), noise_sigma=0.0, contrast_range=(1, 1))
    np.testing.assert_array_equal(a1[0], a2[0])
    # each augmented box is one of the eight symmetries of the original, shifted by an offset
    for x, m, b0, m0 in zip(a1[0], a1[1], boxes, masks, strict=True):
        syms = [np.rot90(f, k) for f in (b0, b0[:, ::-1]) for k in range(4)]
        msyms = [np.rot90(f, k) for f in (m0, m0[:, ::-1]) for k in range(4)]
        hits = [j for j, s in enumerate(syms) if np.allclose(x - x.mean(), s - s.mean(), atol=1e-4)]
        assert hits and any(np.array_equal(m, msyms[j]) for j in hits)
    with pytest.raises(TypeError):
        import dask.array as da

        augment(da.zeros((1, 4, 4)), np.zeros((1, 4, 4)), np.random.default_rng(0))


def test_training_set_from_labels_uses_painted_background_for_negatives() -> None:
    rng = np.random.default_rng(0)
    images, masks = blob_images(4, rng, size=40)
    labels = masks.astype(np.uint8)  # 1 = feature
    labels[:, :6, :6] = 2  # painted background in a corner
    ts = from_labels(
        images, labels, feature="granule", n_positive=5, n_negative=2, box_size=16, rng=rng
    )
    assert ts.positive.sum() == 5 and (~ts.positive).sum() == 2
    assert ts.images.shape == (7, 16, 16) and ts.masks.dtype == np.uint8
    for (i, y0, x0, y1, x1), pos, m in zip(ts.boxes, ts.positive, ts.masks, strict=True):
        np.testing.assert_array_equal(m, masks[i, y0:y1, x0:x1])
        if pos:
            assert m.any()
        else:
            assert y0 <= 5 and x0 <= 5  # centred on the painted corner (clipped to the image)
    assert len(ts.identity) == 64 and ts.describe()["n_positive"] == 5
    with pytest.raises(ConfigError, match="no 'granule' pixels"):
        from_labels(images, np.zeros_like(labels), feature="granule", rng=rng, box_size=16)


def test_read_labels_zarr_mrc_tiff(tmp_path) -> None:
    import mrcfile
    import tifffile
    import zarr

    labels = np.random.default_rng(0).integers(0, 3, (3, 8, 10)).astype(np.uint8)
    z = zarr.create_array(str(tmp_path / "l.zarr"), shape=labels.shape, dtype="uint8")
    z[...] = labels
    with mrcfile.new(tmp_path / "l.mrc") as mrc:
        mrc.set_data(labels.astype(np.int16))
    tifffile.imwrite(tmp_path / "l.tif", labels, photometric="minisblack")
    for name in ("l.zarr", "l.mrc", "l.tif"):
        np.testing.assert_array_equal(read_labels(tmp_path / name), labels)
    (tmp_path / "bad.tif").write_bytes(b"not a tiff")
    with pytest.raises(InputFileError, match="bad.tif"):
        read_labels(tmp_path / "bad.tif")
    with pytest.raises(InputFileError, match="unknown labels format"):
        read_labels(tmp_path / "l.mrc.txt") if (tmp_path / "l.mrc.txt").write_text("x") else None


def test_box_files_json_and_csv_give_the_same_training_set(tmp_path) -> None:
    rng = np.random.default_rng(3)
    images, masks = blob_images(2, rng, size=24)
    rows = [
        {"index": 0, "y0": 2, "x0": 3, "y1": 10, "x1": 11, "positive": True},
        {"index": 1, "y0": 8, "x0": 8, "y1": 16, "x1": 16, "positive": False},
    ]
    for r in rows:
        r["mask"] = masks[r["index"], r["y0"] : r["y1"], r["x0"] : r["x1"]].astype(int).tolist()
    rows[0]["mask"][0][0] = 1  # make sure box 0 is positive
    (tmp_path / "b.json").write_text(json.dumps({"boxes": rows}))
    csv_rows = [{**r, "mask": "".join(str(v) for line in r["mask"] for v in line)} for r in rows]
    pd.DataFrame(csv_rows).to_csv(tmp_path / "b.csv", index=False)
    a = from_box_file(images, tmp_path / "b.json", feature="granule")
    b = from_box_file(images, tmp_path / "b.csv", feature="granule")
    np.testing.assert_array_equal(a.masks, b.masks)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.positive, [True, False])
    (tmp_path / "bad.json").write_text(json.dumps({"boxes": [{**rows[0], "mask": [[1]]}]}))
    with pytest.raises(InputFileError, match="box 0 is malformed"):
        from_box_file(images, tmp_path / "bad.json", feature="granule")


def test_network_learns_from_a_few_boxes_and_generalises_to_held_out_images() -> None:
    """Floor: held-out IoU >= 0.5, and at least 0.3 above the untrained network's."""
    rng = np.random.default_rng(0)
    train_images, train_masks = blob_images(6, rng)
    test_images, test_masks = blob_images(6, np.random.default_rng(99))
    ts = training_set_from_masks(
        train_images,
        train_masks,
        feature="granule",
        n_positive=10,
        n_negative=4,
        box_size=24,
        rng=rng,
    )
    params = TrainParams(spec=SMALL_UNET, steps=60, batch_size=8, lr=3e-3, seed=0)
    model, config = train_model(ts, params)
    prob = predict_images(model, test_images, batch_size=6)
    trained = mask_iou(prob > 255 * config.threshold, test_masks)
    untrained_net = build_model(SMALL_UNET).eval()
    untrained = max(
        mask_iou(predict_images(untrained_net, test_images) > 255 * t, test_masks)
        for t in (0.3, 0.5, 0.7)
    )
    print(f"held-out IoU trained {trained:.3f} untrained {untrained:.3f}")
    assert trained >= 0.5, (trained, config.metrics)
    assert trained >= untrained + 0.3, (trained, untrained)
    assert config.training_set["identity"] == ts.identity
    assert config.params["steps"] == 60 and "val_iou" in config.metrics


def _tiny_trained(tmp_path, spec=SMALL_UNET):
    rng = np.random.default_rng(0)
    images, masks = blob_images(3, rng, size=32)
    ts = training_set_from_masks(
        images, masks, feature="granule", n_positive=5, n_negative=2, box_size=16, rng=rng
    )
    model, config = train_model(ts, TrainParams(spec=spec, steps=3, batch_size=4))
    digest = save_checkpoint(tmp_path / "model", model, config)
    return model, config, digest, images


def test_checkpoint_round_trip_with_weights_only(tmp_path) -> None:
    model, config, digest, images = _tiny_trained(tmp_path)
    loaded, cfg2, digest2 = load_checkpoint(tmp_path / "model")
    assert digest2 == digest and cfg2 == config
    np.testing.assert_array_equal(predict_images(model, images), predict_images(loaded, images))
    record = json.loads((tmp_path / "model" / "model.json").read_text())
    assert record["weights_sha256"] == digest and record["spec"]["arch"] == "unet"


class _Payload:
    def __reduce__(self):
        return (print, ("pickled code ran",))


@pytest.mark.fault  # the fault matrix (docs/design/fault-matrix.md)
def test_checkpoint_refuses_tampered_and_pickled_weights(tmp_path) -> None:
    import hashlib

    _tiny_trained(tmp_path)
    d = tmp_path / "model"
    weights = d / "weights.pt"
    # 1. changed bytes: hash mismatch
    data = bytearray(weights.read_bytes())
    data[-20] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(d)
    # 2. a pickle with code in it, with its hash written into model.json: weights_only refuses
    torch.save({"w": _Payload()}, weights)
    record = json.loads((d / "model.json").read_text())
    record["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (d / "model.json").write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="not a safe tensor state_dict"):
        load_checkpoint(d)
    # 3. no config at all
    (d / "model.json").unlink()
    with pytest.raises(CheckpointError, match="not a cryoflow model directory"):
        load_checkpoint(d)


@pytest.mark.fault  # the fault matrix (docs/design/fault-matrix.md)
def test_out_of_memory_halves_the_batch_and_retries() -> None:
    images = np.arange(10 * 2 * 2, dtype=np.float32).reshape(10, 2, 2)
    seen: list[int] = []
    halved: list[int] = []

    def fn(batch: np.ndarray) -> np.ndarray:
        seen.append(len(batch))
        if len(batch) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return batch * 2

    out = run_in_batches(fn, images, 8, on_halve=halved.append)
    np.testing.assert_array_equal(out, images * 2)
    assert halved == [4, 2] and seen[:3] == [8, 4, 2] and set(seen[3:]) <= {2}

    def always_oom(batch: np.ndarray) -> np.ndarray:
        raise torch.cuda.OutOfMemoryError("injected")

    with pytest.raises(torch.cuda.OutOfMemoryError):
        run_in_batches(always_oom, images, 4)


def test_combination_takes_the_best_feature_above_its_threshold() -> None:
    # three features, one pixel per case
    p = np.array(
        [
            [0.9, 0.6, 0.2, 0.55, 0.70],  # feature 1, threshold 0.5
            [0.8, 0.7, 0.3, 0.65, 0.70],  # feature 2, threshold 0.7
            [0.1, 0.2, 0.25, 0.60, 0.70],  # feature 3, threshold 0.1
        ]
    )[:, None, :]  # (F=3, N=1, 5 pixels)
    labels = combine_features(p, [0.5, 0.7, 0.1])
    # 0.9 best; 0.7 not above 0.7 -> 1 (0.6 > 0.5); 0.25 only f3; 0.60 (f3) > 0.55 (f1), f2 fails;
    # tie at 0.70 between f1 and f3 (f2 not above) -> lower index
    np.testing.assert_array_equal(labels[0], [1, 1, 3, 3, 1])
    assert combine_features(p, [0.95, 0.95, 0.95]).max() == 0
    u8 = np.rint(p * 255).astype(np.uint8)
    np.testing.assert_array_equal(combine_features(u8, [0.5, 0.7, 0.1]), labels)
    with pytest.raises(ValueError, match="one threshold per feature"):
        combine_features(p, [0.5])


def test_standardize_refuses_dask() -> None:
    import dask.array as da

    with pytest.raises(TypeError, match="Dask"):
        standardize(da.zeros((1, 4, 4)))
    with pytest.raises(TypeError, match="Dask"):
        predict_images(build_model(SMALL_UNET).eval(), da.zeros((1, 8, 8)))


def test_detector_trains_from_scratch_without_downloads(monkeypatch) -> None:
    from cryoflow.kernels.boxes import BOX2D_COLUMNS as BOX_COLUMNS
    from cryoflow.models.detector import (
        DetectorParams,
        build_detector,
        detect,
        train_detector,
    )
    from cryoflow.models.detector import (
        box_targets as det_boxes,
    )

    def no_download(*args, **kwargs):
        raise AssertionError("the detector tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    build_detector(DetectorParams(arch="mobilenet", image_size=64))  # builds offline too
    rng = np.random.default_rng(0)
    images, masks = blob_images(3, rng, size=48)
    boxes = det_boxes(masks)
    torch.set_num_threads(1)
    model, metrics = train_detector(images, boxes, DetectorParams(steps=4, image_size=64))
    assert metrics["steps_done"] == 4 and np.isfinite(metrics["final_loss"])
    table = detect(model, images[:1], class_name="granule", first_index=5, min_score=0.0)
    assert list(table.columns) == BOX_COLUMNS
    assert (table["tilt"] == 5).all() and (table["y1"] >= table["y0"]).all()


def test_component_boxes_and_average_precision() -> None:
    from cryoflow.models.detector import average_precision, boxes_from_probabilities

    prob = np.zeros((2, 16, 16), np.uint8)
    prob[0, 2:6, 3:8] = 200
    prob[1, 10:14, 10:12] = 250
    prob[1, 0, 0] = 255  # single pixel: dropped by min_pixels
    table = boxes_from_probabilities(prob, class_name="granule", threshold=0.5, min_pixels=2)
    assert table[["tilt", "y0", "x0", "y1", "x1"]].to_numpy().tolist() == [
        [0, 2, 3, 6, 8],
        [1, 10, 10, 14, 12],
    ]
    assert table["score"].tolist() == pytest.approx([200 / 255, 250 / 255])
    truth = table[["tilt", "y0", "x0", "y1", "x1"]]
    assert average_precision(table, truth) == pytest.approx(1.0)
    shifted = table.assign(x0=table.x0 + 3, x1=table.x1 + 3)
    assert average_precision(shifted, truth) < 1.0
    assert average_precision(table.iloc[:0], truth) == 0.0
    # a false positive ranked first: precisions 1/2, 2/3 at recalls 1/2, 1; the envelope is 2/3
    fp = pd.DataFrame([[0, "granule", 0.99, 12, 12, 15, 15]], columns=table.columns)
    assert average_precision(pd.concat([fp, table]), truth) == pytest.approx(2 / 3)


@pytest.mark.gpu_test
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_and_inference_on_cuda(tmp_path) -> None:
    rng = np.random.default_rng(0)
    images, masks = blob_images(3, rng, size=32)
    ts = training_set_from_masks(
        images, masks, feature="granule", n_positive=5, n_negative=2, box_size=16, rng=rng
    )
    model, config = train_model(
        ts, TrainParams(spec=SMALL_UNET, steps=5, batch_size=4, device="cuda")
    )
    assert next(model.parameters()).device.type == "cuda"
    save_checkpoint(tmp_path / "m", model, config)
    loaded, _, _ = load_checkpoint(tmp_path / "m", device="cuda")
    gpu = predict_images(loaded, images)
    cpu = predict_images(loaded.to("cpu"), images)
    assert np.abs(gpu.astype(int) - cpu.astype(int)).max() <= 2


def test_context_margin_cuts_surroundings_and_masks_the_loss() -> None:
    rng = np.random.default_rng(2)
    images, masks = blob_images(2, rng, size=40)
    ts = training_set_from_masks(
        images, masks, feature="granule", n_positive=3, n_negative=1, box_size=16, margin=4, rng=rng
    )
    assert ts.images.shape == (4, 24, 24) and ts.describe()["box_shape"] == [16, 16]
    w = ts.loss_weights()
    assert w.sum() == 16 * 16 and w[4:20, 4:20].all()
    std = standardize(images)
    for (i, y0, x0, y1, x1), img, m in zip(ts.boxes, ts.images, ts.masks, strict=True):
        np.testing.assert_allclose(img[4:20, 4:20], std[i, y0:y1, x0:x1])
        np.testing.assert_array_equal(m[4:20, 4:20], masks[i, y0:y1, x0:x1])
    model, config = train_model(ts, TrainParams(spec=SMALL_UNET, steps=2, batch_size=2))
    assert config.training_set["margin"] == 4
