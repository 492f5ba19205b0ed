"""2D object detection on tilt images: Faster R-CNN from scratch, or boxes from segmentations.

Both produce per-tilt box tables with columns ``tilt, class, score, y0, x0, y1, x1`` (pixels,
``y1``/``x1`` exclusive; :data:`cryoflow.kernels.boxes.BOX2D_COLUMNS`), the input of the 2D-to-3D Algorithm 3.

The Faster R-CNN is torchvision's ``fasterrcnn_mobilenet_v3_large_fpn`` (or the ResNet-50 FPN
variant) built with ``weights=None, weights_backbone=None``: nothing is downloaded, it is
trained from scratch on the few boxes given. Grey images are repeated to three channels.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from torch import nn

from cryoflow.errors import ConfigError
from cryoflow.kernels._guards import refuse_lazy
from cryoflow.kernels.augment import standardize
from cryoflow.kernels.boxes import BOX2D_COLUMNS, boxes_from_masks, component_boxes

DETECTOR_ARCHS = ("small", "mobilenet", "resnet50")


@dataclass(frozen=True)
class DetectorParams:
    """Faster R-CNN size and training parameters.

    arch : ``"small"`` (torchvision's ``FasterRCNN`` on a three-layer conv backbone, the
    default: trains in seconds on a CPU), ``"mobilenet"`` or ``"resnet50"``; image_size : images are resized to this
    edge inside the network; steps, lr, seed : training; device : ``"cpu"``/``"cuda"``;
    max_seconds : stop training early after this long (``None``: never).
    """

    arch: str = "small"
    image_size: int = 128
    steps: int = 60
    lr: float = 0.01
    seed: int = 0
    device: str = "cpu"
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.arch not in DETECTOR_ARCHS:
            raise ConfigError(
                f"detector arch must be one of {list(DETECTOR_ARCHS)}, got {self.arch!r}"
            )
        if self.image_size < 32 or self.steps < 1 or self.lr <= 0:
            raise ConfigError(
                f"image_size >= 32, steps >= 1 and lr > 0 needed, got {self.image_size}, {self.steps}, {self.lr}"
            )

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _small_rcnn_settings(image_size: int) -> dict:
    """Faster R-CNN settings shared by every backbone: fixed image size, no ImageNet
    normalisation (no pretrained weights), and proposal/box budgets sized for a few small objects."""
    return {
        "min_size": image_size,
        "max_size": image_size,
        "image_mean": [0.0, 0.0, 0.0],
        "image_std": [1.0, 1.0, 1.0],
        "rpn_pre_nms_top_n_train": 300,
        "rpn_post_nms_top_n_train": 100,
        "rpn_pre_nms_top_n_test": 300,
        "rpn_post_nms_top_n_test": 100,
        "rpn_batch_size_per_image": 64,
        "box_batch_size_per_image": 64,
        "box_detections_per_img": 50,
    }


def build_detector(params: DetectorParams, n_classes: int = 1) -> nn.Module:
    """An untrained Faster R-CNN for ``n_classes`` foreground classes (no downloads)."""
    from torchvision.models import detection

    if params.arch == "small":
        return _build_small(params, n_classes)
    build = (
        detection.fasterrcnn_mobilenet_v3_large_fpn
        if params.arch == "mobilenet"
        else detection.fasterrcnn_resnet50_fpn
    )
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(params.seed)
        model = build(
            weights=None,
            weights_backbone=None,
            num_classes=n_classes + 1,
            **_small_rcnn_settings(params.image_size),
        )
        # small objects, few boxes: smaller anchors (same count per location, so the RPN head
        # fits) and a 128-wide box head instead of 1024 (the default's dominant CPU cost)
        n_levels = len(model.rpn.anchor_generator.sizes)
        per_level = len(model.rpn.anchor_generator.sizes[0])
        sizes = tuple(8 * 2**i for i in range(per_level))
        model.rpn.anchor_generator = AnchorGenerator(
            (sizes,) * n_levels, model.rpn.anchor_generator.aspect_ratios
        )
        channels = model.backbone.out_channels
        model.roi_heads.box_head = TwoMLPHead(channels * 7 * 7, 128)
        model.roi_heads.box_predictor = FastRCNNPredictor(128, n_classes + 1)
    return model


def _build_small(params: DetectorParams, n_classes: int) -> nn.Module:
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(params.seed)
        backbone = nn.Sequential(  # (B, 3, H, W) -> (B, 64, H/4, W/4)
            nn.Conv2d(3, 16, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        backbone.out_channels = 64  # type: ignore[assignment]
        return FasterRCNN(
            backbone,
            rpn_anchor_generator=AnchorGenerator(((8, 16, 32),), ((0.5, 1.0, 2.0),)),
            box_roi_pool=MultiScaleRoIAlign(["0"], output_size=7, sampling_ratio=2),
            box_head=TwoMLPHead(64 * 7 * 7, 128),
            box_predictor=FastRCNNPredictor(128, n_classes + 1),
            **_small_rcnn_settings(params.image_size),
        )


def _as_tensors(images: np.ndarray, device: torch.device) -> list[torch.Tensor]:
    x = standardize(images)
    return [torch.from_numpy(img).expand(3, -1, -1).contiguous().to(device) for img in x]


def box_targets(masks: np.ndarray, *, min_pixels: int = 4) -> list[np.ndarray]:
    """Training targets of each image: the boxes of its connected components.

    Parameters
    ----------
    masks : ndarray of shape (N, Y, X), bool

    Returns
    -------
    list of N ndarrays of shape (k, 4), float32 ``(y0, x0, y1, x1)`` (end exclusive), the
    boxes :func:`cryoflow.kernels.boxes.boxes_from_masks` finds on that image.
    """
    table = boxes_from_masks(masks, "target", min_pixels=min_pixels)
    coords = table[["y0", "x0", "y1", "x1"]].to_numpy(np.float32)
    tilts = table["tilt"].to_numpy()
    return [coords[tilts == i].reshape(-1, 4) for i in range(len(masks))]


def _cuda_devices(device: torch.device) -> list[int]:
    """The CUDA device whose generator state a fork must save (none on a CPU)."""
    return [device.index or 0] if device.type == "cuda" else []


def train_detector(
    images: np.ndarray,
    boxes: Sequence[np.ndarray],
    params: DetectorParams,
    on_step: Callable[[int, nn.Module], bool] | None = None,
) -> tuple[nn.Module, dict[str, float]]:
    """Train a one-class Faster R-CNN from scratch on a few images and their boxes.

    Parameters
    ----------
    images : ndarray of shape (N, Y, X)
    boxes : N ndarrays of shape (k_i, 4), ``(y0, x0, y1, x1)`` pixels
    params : DetectorParams
    on_step : called after every step with the steps done and the network; ``True`` stops
        (:class:`cryoflow.models.early_stop.Stopper`).

    Returns
    -------
    (model in eval mode, metrics with the last losses and the steps done)
    """
    refuse_lazy(images, "images")
    if len(boxes) != len(images):
        raise ConfigError(f"{len(images)} images but {len(boxes)} box lists")
    device = torch.device(params.device)
    model = build_detector(params).to(device)
    x = _as_tensors(np.asarray(images), device)
    targets = []
    for b in boxes:
        yx = torch.as_tensor(np.asarray(b, dtype=np.float32).reshape(-1, 4))
        xyxy = yx[:, [1, 0, 3, 2]]  # torchvision wants (x0, y0, x1, y1)
        targets.append(
            {
                "boxes": xyxy.to(device),
                "labels": torch.ones(len(yx), dtype=torch.int64, device=device),
            }
        )
    rng = np.random.default_rng(params.seed)
    opt = torch.optim.SGD(model.parameters(), lr=params.lr, momentum=0.9, weight_decay=1e-4)
    # torchvision's RPN and box-head samplers draw from torch's global generator: seed it
    # (in a fork, leaving the caller's state alone) so a seed gives the same network
    with torch.random.fork_rng(devices=_cuda_devices(device)):
        torch.manual_seed(params.seed)
        model.train()
        t0, losses, steps = time.perf_counter(), [], 0
        for _ in range(params.steps):
            pick = rng.choice(len(x), size=min(2, len(x)), replace=False)
            imgs, tgts = [], []
            for i in pick:
                img, tgt = x[i], dict(targets[i])
                if rng.random() < 0.5:  # horizontal flip keeps the tilt axis (y)
                    img = img.flip(-1)
                    bx = tgt["boxes"].clone()
                    bx[:, [0, 2]] = img.shape[-1] - tgt["boxes"][:, [2, 0]]
                    tgt["boxes"] = bx
                imgs.append(img)
                tgts.append(tgt)
            loss = sum(model(imgs, tgts).values())
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
            losses.append(float(loss.detach()))
            steps += 1
            if params.max_seconds is not None and time.perf_counter() - t0 > params.max_seconds:
                break
            if on_step is not None and on_step(steps, model):
                break
    model.eval()
    return model, {"final_loss": float(np.mean(losses[-5:])), "steps_done": float(steps)}


@torch.inference_mode()
def detect(
    model: nn.Module,
    images: np.ndarray,
    *,
    class_name: str,
    first_index: int = 0,
    min_score: float = 0.05,
) -> pd.DataFrame:
    """Run a trained detector on images ``(N, Y, X)``; one row per box.

    Returns
    -------
    pandas.DataFrame with columns ``tilt, class, score, y0, x0, y1, x1``; ``tilt`` counts
    from ``first_index``.
    """
    refuse_lazy(images, "images")
    device = next(model.parameters()).device
    rows = []
    for i, img in enumerate(_as_tensors(np.asarray(images), device)):
        out = model([img])[0]
        for (x0, y0, x1, y1), s in zip(
            out["boxes"].cpu().numpy(), out["scores"].cpu().numpy(), strict=True
        ):
            if s >= min_score:
                box = [float(v) for v in (y0, x0, y1, x1)]
                rows.append([first_index + i, class_name, float(s), *box])
    return pd.DataFrame(rows, columns=BOX2D_COLUMNS)


def boxes_from_probabilities(
    probabilities: np.ndarray,
    *,
    class_name: str,
    threshold: float = 0.5,
    min_pixels: int = 4,
    first_index: int = 0,
) -> pd.DataFrame:
    """The light detector: boxes around connected components of thresholded probability maps.

    Parameters
    ----------
    probabilities : ndarray of shape (N, Y, X), uint8 (0..255) or float (0..1)
    threshold : probability above which a pixel is the feature
    min_pixels : smaller components are dropped

    Returns
    -------
    pandas.DataFrame with columns ``tilt, class, score, y0, x0, y1, x1``; ``score`` is the
    component's mean probability.
    """
    refuse_lazy(probabilities, "probabilities")
    p = np.asarray(probabilities)
    prob = p.astype(np.float32) / (255.0 if p.dtype == np.uint8 else 1.0)
    rows = []
    for i, img in enumerate(prob):
        lab, boxes = component_boxes(img > threshold, min_pixels)
        if not boxes:
            continue
        means = ndimage.mean(img, lab, [k for k, _ in boxes])
        for mean, (_, box) in zip(means, boxes, strict=True):
            rows.append([first_index + i, class_name, float(mean), *box.tolist()])
    return pd.DataFrame(rows, columns=BOX2D_COLUMNS)


def average_precision(
    pred: pd.DataFrame, truth: pd.DataFrame, *, iou_threshold: float = 0.5
) -> float:
    """Average precision (all-point interpolated) of per-tilt boxes at an IoU threshold.

    Parameters
    ----------
    pred : table ``tilt, score, y0, x0, y1, x1`` (detections, any order)
    truth : table ``tilt, y0, x0, y1, x1`` (true boxes)

    Returns
    -------
    float in [0, 1]; 0 when there are true boxes but no detections, 1 when neither.
    """
    from cryoflow.kernels.iou import box_iou

    n_true = len(truth)
    if n_true == 0:
        return 1.0 if len(pred) == 0 else 0.0
    if len(pred) == 0:
        return 0.0
    cols = ["y0", "x0", "y1", "x1"]
    used = {t: np.zeros(int((truth["tilt"] == t).sum()), bool) for t in truth["tilt"].unique()}
    tboxes = {t: truth.loc[truth["tilt"] == t, cols].to_numpy(float) for t in used}
    order = pred.sort_values("score", ascending=False, kind="stable")
    tp = np.zeros(len(order))
    for j, row in enumerate(order.itertuples(index=False)):
        t = row.tilt
        if t not in tboxes:
            continue
        ious = box_iou(np.asarray([[row.y0, row.x0, row.y1, row.x1]], float), tboxes[t])[0]
        ious[used[t]] = -1.0
        k = int(np.argmax(ious))
        if ious[k] >= iou_threshold:
            used[t][k] = True
            tp[j] = 1
    ctp = np.cumsum(tp)
    recall = ctp / n_true
    precision = ctp / np.arange(1, len(tp) + 1)
    # all-point interpolation: precision envelope integrated over recall
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    idx = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))
