"""Training the picking network from a few marked particles (and optional negatives).

:func:`train_picker` is the one entry point (the ``pick`` stage and the browser picker call it
with the marks of the moment):

1. **scale**: the particle diameter is given (Å) or estimated from the positives
   (:func:`estimate_diameter_px`, the Laplacian-of-Gaussian scale that responds most at the
   marks); the pyramid level the network runs at is the coarsest with a diameter of at least
   :data:`MIN_DIAMETER_PX` voxels (shape detail is lost below that);
2. **samples** (:mod:`cryoflow.models.picksamples`): positives at each mark and its 26
   neighbours (``jitter_px = 1``); negatives from the user's marks (same jitter), plus, *sampled
   away from the positives*: random voxels (more than ``max(2, 0.15 D)`` voxels from every
   positive, so off-centre positions teach centring), voxels ``0.3 .. 0.7 D`` off each positive
   (``n_ring_negatives``), and blob-like voxels (local maxima of the LoG at the particle's scale
   and polarity, more than ``0.5 D`` from every positive: the molecules of the right size that
   are not marked, where the shape must decide) with rings of off-centre voxels around them too.
   Some blob-like voxels are unmarked particles of the kind wanted (positive-unlabelled data):
   only those whose descriptors lie further from every mark than the marks typically lie from
   each other are used (:func:`reliable_negatives`);
3. **descriptors** at every sample (:func:`cryoflow.kernels.invariants.point_features`), their
   mean and standard deviation kept in the network for standardisation;
4. **head**: ``steps`` Adam steps on a class-balanced logistic loss (positives weighted by
   ``n_negative / n_positive``), minibatches of ``batch_size``, seeded;
5. **calibration** (:func:`calibrate`): the raw logit ``l`` becomes the score
   ``sigmoid(k (l - t))`` with ``t = b + alpha (e - b)`` and ``k = 4 / (e - b)``, ``e`` the
   median logit at the positive marks and ``b`` the 99.9th percentile over the random
   background samples (the background's tail; not the blob-like samples, some of which are
   unmarked particles of the kind), ``alpha = calibration_alpha`` (0.65). A class-balanced
   network trained on a few marks is overconfident everywhere (almost every peak has a raw
   probability near 1); between the background's tail and the examples' own level is where
   the unmarked particles of the kind (which the descriptors see like the examples) part from
   everything else, and a score of 0.5 puts the threshold there.

Volumes are normalised per tomogram (mean 0, standard deviation 1 at the level used) here and
at apply time (:mod:`cryoflow.graph.pick`). Coordinates are ``x, y, z`` in level-0 voxels; a
level-``k`` voxel ``i`` sits at level-0 ``i * 2^k + (2^k - 1) / 2`` (the OME-Zarr pyramid's
averaging).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from cryoflow.errors import ConfigError
from cryoflow.kernels.invariants import point_features
from cryoflow.models.arch import ModelSpec
from cryoflow.models.checkpoint import ModelConfig
from cryoflow.models.picknet import PickNet, invariant_spec
from cryoflow.models.picksamples import (
    blob_candidates,
    inside_grid,
    reliable_negatives,
    sample_voxels,
)
from cryoflow.models.pickscale import (
    MIN_DIAMETER_PX,
    choose_level,
    estimate_diameter_px,
    level_to_voxels,
    level_zyx,
    normalise,
    polarity_at_scale,
    voxels_to_level,
)
from cryoflow.models.picksearch import candidate_search

__all__ = [
    "MIN_DIAMETER_PX",
    "PickExamples",
    "PickTrainParams",
    "blob_candidates",
    "choose_level",
    "estimate_diameter_px",
    "level_to_voxels",
    "normalise",
    "reliable_negatives",
    "train_picker",
    "voxels_to_level",
]


@dataclass(frozen=True)
class PickExamples:
    """The marks in one tomogram: positives and (optionally) negatives, ``(n, 3)`` level-0
    voxel positions ``x, y, z``."""

    tomogram: str
    positives_xyz: np.ndarray
    negatives_xyz: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))

    def __post_init__(self) -> None:
        for what in ("positives_xyz", "negatives_xyz"):
            a = np.asarray(getattr(self, what), dtype=np.float64).reshape(-1, 3)
            if not np.all(np.isfinite(a)):
                raise ConfigError(f"{self.tomogram}: {what} must be finite numbers")
            object.__setattr__(self, what, a)


@dataclass(frozen=True)
class PickTrainParams:
    """Training settings (recorded in the checkpoint).

    diameter_angstrom : particle size; ``None`` estimates it from the positives.
    level : pyramid level to run at; ``None`` chooses it from the diameter.
    shells, degree, reach, hidden : descriptor and head sizes (:class:`ModelSpec`).
    n_random_negatives, n_blob_negatives : sampled negatives per tomogram.
    n_ring_negatives : off-centre negatives around every positive and blob-like voxel.
    jitter_px : positives (and marked negatives) are also taken this many voxels off the mark.
    steps, batch_size, lr, weight_decay, seed : the head's optimisation.
    threshold : score of a pick (recorded as the checkpoint's threshold).
    calibration_alpha : where between the background's tail (0) and the examples (1) the score
        0.5 lies (:func:`calibrate`).
    reliable_quantile : blob-like candidates count as negatives only when further (in the
        descriptors) from every mark than this quantile of the marks' distances to each
        other (:func:`reliable_negatives`).
    device : ``"cpu"`` or ``"cuda"``; max_seconds : stop the head's training early.
    search : ``"candidates"`` (default: score only the blob response's local maxima,
        :func:`candidate_search`) or ``"dense"`` (every voxel).
    candidate_fraction : candidates must reach this fraction of the weakest example's blob
        response (:func:`candidate_search`).
    """

    diameter_angstrom: float | None = None
    level: int | None = None
    shells: int = 6
    degree: int = 6
    reach: float = 0.8
    hidden: int = 32
    n_random_negatives: int = 10000
    n_blob_negatives: int = 400
    n_ring_negatives: int = 8
    jitter_px: int = 1
    steps: int = 1500
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-3
    seed: int = 0
    threshold: float = 0.5
    calibration_alpha: float = 0.65
    reliable_quantile: float = 0.9
    device: str = "cpu"
    max_seconds: float | None = None
    search: str = "candidates"
    candidate_fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.search not in ("candidates", "dense"):
            raise ConfigError(f"search must be 'candidates' or 'dense', got {self.search!r}")
        if not 0 <= self.candidate_fraction < 1:
            raise ConfigError(
                f"candidate_fraction must lie in [0, 1), got {self.candidate_fraction}"
            )
        if self.diameter_angstrom is not None and not self.diameter_angstrom > 0:
            raise ConfigError(f"diameter_angstrom must be > 0, got {self.diameter_angstrom}")
        if self.level is not None and not 0 <= self.level <= 8:
            raise ConfigError(f"level must be 0..8, got {self.level}")
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0 or self.jitter_px < 0:
            raise ConfigError("steps, batch_size, lr must be positive and jitter_px >= 0")
        if self.n_random_negatives < 1 or self.n_blob_negatives < 0 or self.n_ring_negatives < 0:
            raise ConfigError("n_random_negatives must be >= 1 and n_blob_negatives >= 0")
        if not 0 < self.threshold < 1:
            raise ConfigError(f"threshold must lie in (0, 1), got {self.threshold}")
        if not 0 < self.calibration_alpha < 1:
            raise ConfigError(f"calibration_alpha must lie in (0, 1), got {self.calibration_alpha}")
        if not 0 < self.reliable_quantile <= 1:
            raise ConfigError(f"reliable_quantile must lie in (0, 1], got {self.reliable_quantile}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------- training
def calibrate(
    model: PickNet, marks: torch.Tensor, negatives: torch.Tensor, alpha: float
) -> dict[str, float]:
    """Set the network's score calibration (module docstring, step 5); returns its numbers.

    ``marks``: descriptors at the positive marks themselves; ``negatives``: at the random
    background samples (not the blob-like ones, some of which are unmarked particles of the
    kind). When the examples do not stand above the background's 99.9th percentile, its 99th
    is the floor instead, and failing that the threshold sits one logit below the examples.
    """
    with torch.no_grad():
        e = float(model(marks).median())
        logits = model(negatives)
        b = float(torch.quantile(logits, 0.999))
        if e - b < 0.5:
            b = min(float(torch.quantile(logits, 0.99)), e - 1.0 / max(alpha, 1e-3))
    spread = max(e - b, 1e-3)
    model.logit_offset.fill_(b + alpha * spread)
    model.logit_scale.fill_(4.0 / spread)
    return {"examples_logit": e, "background_logit": b, "logit_offset": b + alpha * spread}


def train_picker(
    volumes: Mapping[str, np.ndarray],
    examples: Sequence[PickExamples],
    params: PickTrainParams,
    *,
    level: int,
    pixel_size_angstrom: float,
    diameter_px: float | None = None,
    polarity: float | None = None,
) -> tuple[PickNet, ModelConfig]:
    """Train the picking network on the examples (module docstring).

    Parameters
    ----------
    volumes : tomogram name -> its volume ``(Z, Y, X)`` at pyramid ``level`` (any scale; it is
        normalised here)
    examples : the marks per tomogram (level-0 ``x, y, z``)
    level : the pyramid level of ``volumes`` (see :func:`choose_level`)
    pixel_size_angstrom : level-0 voxel size
    diameter_px, polarity : at ``level``; else from ``params.diameter_angstrom``, else
        estimated from the positives

    Returns
    -------
    (PickNet in eval mode, ModelConfig) -- save with
    :func:`cryoflow.models.checkpoint.save_checkpoint`.
    """
    t0 = time.perf_counter()
    examples = [e for e in examples if len(e.positives_xyz) or len(e.negatives_xyz)]
    n_pos = sum(len(e.positives_xyz) for e in examples)
    if n_pos == 0:
        raise ConfigError("no positive examples: mark at least one particle")
    missing = sorted({e.tomogram for e in examples} - set(volumes))
    if missing:
        raise ConfigError(f"no volume given for the tomograms of the examples: {missing}")
    rng = np.random.default_rng(params.seed)
    norm = {e.tomogram: normalise(volumes[e.tomogram]) for e in examples}
    if diameter_px is None and params.diameter_angstrom is not None:
        diameter_px = params.diameter_angstrom / (float(pixel_size_angstrom) * 2.0**level)
    # 1. scale and polarity from the positives (all tomograms together)
    vols, pts = [], []
    for e in examples:
        if len(e.positives_xyz):
            vols.append(norm[e.tomogram])
            pts.append(voxels_to_level(e.positives_xyz, level)[:, ::-1])
    if diameter_px is not None and polarity is None:  # at the known scale (polarity_at_scale)
        signs = [
            polarity_at_scale(v, p, diameter_px) * len(p) for v, p in zip(vols, pts, strict=True)
        ]
        polarity = float(np.sign(sum(signs)) or 1.0)
    if diameter_px is None or polarity is None:
        estimates = [estimate_diameter_px(v, p) for v, p in zip(vols, pts, strict=True)]
        weights = [len(p) for p in pts]
        est_d = float(np.average([d for d, _ in estimates], weights=weights))
        est_p = float(np.sign(np.average([p for _, p in estimates], weights=weights)) or 1.0)
        diameter_px = diameter_px if diameter_px is not None else est_d
        polarity = polarity if polarity is not None else est_p
    spec = ModelSpec(
        arch="picker",
        diameter_px=float(diameter_px),
        shells=params.shells,
        degree=params.degree,
        reach=params.reach,
        hidden=params.hidden,
    )
    inv = invariant_spec(spec)
    marked_zyx = {e.tomogram: level_zyx(e.positives_xyz, level) for e in examples}
    cand_thr = float("nan")
    at_marks: dict[str, np.ndarray] = {}
    if params.search == "candidates":
        cand_thr, _, at_marks = candidate_search(
            norm, marked_zyx, inv, polarity, params.candidate_fraction
        )
    # 2. samples and 3. descriptors
    xs, ys, marks, background, blobs = [], [], [], [], []
    for e in examples:
        marked = marked_zyx[e.tomogram]
        pos, neg, n_bg, blob = sample_voxels(
            norm[e.tomogram],
            np.concatenate([marked, at_marks.get(e.tomogram, marked[:0])]),
            level_zyx(e.negatives_xyz, level),
            inv.diameter_px,
            polarity,
            params,
            rng,
        )
        if len(blob):
            blobs.append(point_features(norm[e.tomogram], blob, inv))
        at = inside_grid(marked, norm[e.tomogram].shape)
        if len(at):
            marks.append(point_features(norm[e.tomogram], at, inv))
        for where, label in ((pos, 1.0), (neg, 0.0)):
            if len(where):
                xs.append(point_features(norm[e.tomogram], where, inv))
                ys.append(np.full(len(where), label, np.float32))
                if label == 0.0:
                    background.append(xs[-1][:n_bg])
    n_blobs = n_kept = 0
    if blobs:
        fb = np.concatenate(blobs)
        keep = reliable_negatives(
            fb, np.concatenate(marks), np.concatenate(background), params.reliable_quantile
        )
        n_blobs, n_kept = len(fb), int(keep.sum())
        xs.append(fb[keep])
        ys.append(np.zeros(n_kept, np.float32))
    x = torch.from_numpy(np.concatenate(xs))
    y = torch.from_numpy(np.concatenate(ys))
    n_p, n_n = int(y.sum()), int((1 - y).sum())
    if n_n == 0:
        raise ConfigError("no negative samples could be drawn; the tomograms are too small")
    # 4. the head
    torch.manual_seed(params.seed)
    model = PickNet(spec)
    model.feature_mean.copy_(x.mean(dim=0))
    model.feature_std.copy_(x.std(dim=0).clamp_min(1e-6))
    model = model.to(params.device)
    x, y = x.to(params.device), y.to(params.device)
    weight = torch.where(
        y > 0,
        torch.tensor(n_n / n_p, device=params.device),
        torch.tensor(1.0, device=params.device),
    )
    opt = torch.optim.Adam(model.head.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    gen = torch.Generator(device="cpu").manual_seed(params.seed)
    model.train()
    loss_value, steps_done = float("nan"), 0
    for step in range(params.steps):
        idx = torch.randint(0, len(y), (params.batch_size,), generator=gen).to(params.device)
        loss = (
            F.binary_cross_entropy_with_logits(model(x[idx]), y[idx], weight=weight[idx])
            / weight[idx].mean()
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss_value, steps_done = float(loss.detach()), step + 1
        if params.max_seconds is not None and time.perf_counter() - t0 > params.max_seconds:
            break
    model.eval()
    if params.search == "candidates":
        model.candidate_polarity.fill_(float(polarity))
        model.candidate_threshold.fill_(cand_thr)
    calibration = calibrate(
        model,
        torch.from_numpy(np.concatenate(marks)).to(params.device),
        torch.from_numpy(np.concatenate(background)).to(params.device),
        params.calibration_alpha,
    )
    with torch.no_grad():
        prob = model.score(x)
        train_recall = float((prob[y > 0] >= params.threshold).float().mean())
        train_fpr = float((prob[y == 0] >= params.threshold).float().mean())
    config = ModelConfig(
        feature="particle",
        spec=spec,
        threshold=params.threshold,
        training_set={
            "tomograms": sorted({e.tomogram for e in examples}),
            "n_positive_marks": n_pos,
            "n_negative_marks": int(sum(len(e.negatives_xyz) for e in examples)),
            "n_positive_samples": n_p,
            "n_negative_samples": n_n,
            "n_blob_candidates": n_blobs,
            "n_blob_negatives": n_kept,
        },
        params={
            **params.to_dict(),
            "level": int(level),
            "pixel_size_angstrom": float(pixel_size_angstrom),
            "diameter_px": float(diameter_px),
            "diameter_angstrom": float(diameter_px) * float(pixel_size_angstrom) * 2.0**level,
            "polarity": float(polarity),
            "steps_done": steps_done,
        },
        metrics={
            "loss": loss_value,
            "train_recall": train_recall,
            "train_false_positive_rate": train_fpr,
            **calibration,
            **({"candidate_threshold": cand_thr} if np.isfinite(cand_thr) else {}),
            "seconds": time.perf_counter() - t0,
        },
    )
    return model.cpu(), config
