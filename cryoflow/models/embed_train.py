"""Training the conformation autoencoder on one worker (CPU or GPU: ``device`` a parameter).

Each step draws a batch of prepared particles (:func:`cryoflow.kernels.conformation_input.
prepare_batch`: targets ``T_i = W_i X_i / a_i``, measured regions ``W_i``, inputs ``x_i``) and
builds a second view of every particle through a *re-imposed wedge*: ``W'_i = W_i V`` with
``V`` a randomly rotated wedge of ``+-augment_tilt_deg`` (a bank of them, drawn once from the
seed), filled with the average where ``W'_i = 0`` exactly as the real wedges are. The objective:

    L = full_weight L_rec(decode(z_i), T_i; W_i) + L_rec(decode(z'_i), T_i; W_i (1 - V))
        + consistency * mean |z_i - z'_i|^2 + variance * spread hinge + latent_l2 * mean |z_i|^2

``L_rec`` is :func:`cryoflow.models.wedge_loss.wedge_masked_loss`. The second view is scored
only on the measured components it did not see (their noise is independent of its input, so
the latent gains nothing from encoding noise; ``full_weight`` 0 by default: scoring view 1 on
its own measured components rewards encoding its noise); it teaches the decoder to restore,
from what is left, components a wedge took away, and the consistency term puts one particle
seen through two wedges on one latent point: the latent follows the particle, not its wedge.
With the PCA anchor (``anchor="pca"``, :func:`pca_anchor`) the latent starts as the leading
principal coordinates of the training inputs and the spread hinge holds the total spread
(``relu(1 - sqrt(sum_d var z_d))``); without it, every axis' (``mean_d relu(1 - std z_d)``).
Adam, a cosine learning-rate decay, epochs of random permutations, exactly ``steps`` steps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, cast

import numpy as np
import torch

from cryoflow.errors import ConfigError
from cryoflow.geometry.rotation import matrix_zyx_from_euler, random_euler
from cryoflow.kernels.conformation_input import (
    EmbedFrame,
    band_weights,
    filled_spectra,
    network_input,
    work_mask,
)
from cryoflow.kernels.fourier_rotate import centred_rfft
from cryoflow.kernels.wedge import wedge_mask
from cryoflow.models.arch import ModelSpec, build_model
from cryoflow.models.checkpoint import ModelConfig
from cryoflow.models.conformation_ae import ConformationAE
from cryoflow.models.embed_select import Selection, heldout_losses, split_holdout
from cryoflow.models.wedge_loss import wedge_masked_loss

#: re-imposed wedges drawn per training run
WEDGE_BANK = 64
#: how the latent starts (EmbedTrainParams.anchor)
ANCHORS = ("pca", "none")


@dataclass(frozen=True)
class ObjectiveWeights:
    """The weights of the training objective's terms (module docstring).

    full_weight : view 1 scored on its own measured components (0: not scored);
    consistency : the two views' latent distance; variance : the spread hinge;
    latent_l2 : ``|z|^2``; correction_l2 : ``|f(x)|^2``, the learned correction's size (only
    with an anchor). All ``>= 0``.
    """

    consistency: float = 1.0
    full_weight: float = 0.0
    variance: float = 1.0
    latent_l2: float = 1e-3
    correction_l2: float = 0.5

    def __post_init__(self) -> None:
        bad = {k: v for k, v in asdict(self).items() if not float(v) >= 0}
        if bad:
            raise ConfigError(f"objective weights must be >= 0, got {bad}")


@dataclass(frozen=True)
class EmbedTrainParams:
    """Training parameters (recorded in the checkpoint, :meth:`to_dict`: one flat mapping).

    latent_dim : latent dimension D (2..16); base_channels : first level's channels;
    steps, batch_size, lr : optimiser steps, particles per step, Adam's learning rate;
    weights : :class:`ObjectiveWeights`;
    augment_tilt_deg : half-range of the re-imposed wedges (0: no second view);
    seed : weights, batches and wedges; device : ``"cpu"``, ``"cuda"``, ...;
    anchor : ``"pca"`` (the latent starts as the training inputs' leading principal
    coordinates, :func:`pca_anchor`) or ``"none"`` (a free encoder). Training runs exactly
    ``steps`` steps (never stopped by a clock);
    holdout : fraction of the particles held out to select the final state
    (:mod:`cryoflow.models.embed_select`; 0: none, the last state kept);
    anchor_fraction : share of the steps with the anchored latent frozen (decoder only);
    margin_se : how many standard errors of the held-out paired differences a state with the
    learned correction must gain over the frozen anchor's best to be kept.
    """

    latent_dim: int = 4
    base_channels: int = 8
    steps: int = 400
    batch_size: int = 16
    lr: float = 2e-3
    weights: ObjectiveWeights = field(default_factory=ObjectiveWeights)
    augment_tilt_deg: float = 60.0
    seed: int = 0
    device: str = "cpu"
    anchor: str = "pca"
    holdout: float = 0.2
    anchor_fraction: float = 0.5
    margin_se: float = 2.0

    def __post_init__(self) -> None:
        if not 2 <= int(self.latent_dim) <= 16:
            raise ConfigError(f"latent_dim must lie in 2..16, got {self.latent_dim}")
        if self.steps < 1 or self.batch_size < 2 or not self.lr > 0 or self.base_channels < 1:
            raise ConfigError(
                "steps >= 1, batch_size >= 2, lr > 0 and base_channels >= 1 required, got "
                f"{self.steps}, {self.batch_size}, {self.lr}, {self.base_channels}"
            )
        if not 0 <= self.augment_tilt_deg <= 90:
            raise ConfigError(f"augment_tilt_deg must lie in [0, 90], got {self.augment_tilt_deg}")
        if not (0 <= self.holdout < 1 and 0 <= self.anchor_fraction <= 1 and self.margin_se >= 0):
            raise ConfigError(
                "holdout in [0, 1), anchor_fraction in [0, 1] and margin_se >= 0 required, got "
                f"{self.holdout}, {self.anchor_fraction}, {self.margin_se}"
            )
        if self.anchor not in ANCHORS:
            raise ConfigError(f"anchor must be one of {list(ANCHORS)}, got {self.anchor!r}")

    def to_dict(self) -> dict[str, Any]:
        """The parameters as one flat mapping, the weights' keys in place of ``weights`` (the
        layout checkpoints have always recorded)."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            out.update(value if key == "weights" else {key: value})
        return out


@dataclass(frozen=True)
class TrainedEmbedding:
    """A trained autoencoder: the network (eval mode), its frame, the checkpoint config and the
    loss per step."""

    model: ConformationAE
    frame: EmbedFrame
    config: ModelConfig
    history: tuple[float, ...]


def wedge_bank(frame: EmbedFrame, tilt_deg: float, n: int, seed: int) -> torch.Tensor:
    """Float tensor (n, b, b, b//2+1): wedges of ``+-tilt_deg`` under random rotations."""
    rng = np.random.default_rng(seed)
    m = matrix_zyx_from_euler(random_euler(rng, n)).reshape(n, 3, 3)
    b = frame.work_box
    return torch.as_tensor(
        np.stack(
            [wedge_mask((b,) * 3, (-tilt_deg, tilt_deg), rotation_zyx=mi, rfft=True) for mi in m]
        ).astype(np.float32)
    )


def pca_anchor(
    model: ConformationAE, targets: torch.Tensor, wedges: torch.Tensor, band: torch.Tensor
) -> None:
    """Anchor ``model``'s latent on the leading ``D`` principal axes of the training inputs.

    The inputs are the network's own (:func:`network_input` of the filled spectra, so exactly
    what the encoder sees); randomised SVD (``torch.svd_lowrank``, torch's seeded generator);
    every axis is divided by the spread of the first coordinate, so the first coordinate has
    unit standard deviation and the others keep their relative spread.
    """
    a_spec = centred_rfft(model.average[None])[0]
    rows = []
    for s in range(0, int(targets.shape[0]), 256):
        sl = slice(s, s + 256)
        x = network_input(filled_spectra(targets[sl], wedges[sl], a_spec), band, model.mask)
        rows.append(x.flatten(1))
    x_all = torch.cat(rows).to(torch.float32)
    mean = x_all.mean(dim=0)
    d = model.latent_dim
    _, _, v = torch.svd_lowrank(x_all - mean, q=min(d + 8, *x_all.shape), niter=3)
    axes = v[:, :d].T  # (D, b^3)
    sd = ((x_all - mean) @ axes[0]).std().clamp_min(1e-12)
    model.set_anchor(mean, axes / sd)


def training_objective(
    model: ConformationAE,
    targets: torch.Tensor,  # (n, b, b, b//2+1) complex: W X / a
    wedges: torch.Tensor,  # (n, b, b, b//2+1)
    extra_wedges: torch.Tensor | None,  # (n, b, b, b//2+1) or None: no second view
    band: torch.Tensor,  # (b, b, b//2+1)
    params: EmbedTrainParams,
) -> torch.Tensor:
    """Scalar tensor: ``L`` of the module docstring for one batch (reads ``targets`` only
    where ``wedges > 0``)."""
    a_spec = centred_rfft(model.average[None])[0]
    x1 = network_input(filled_spectra(targets, wedges, a_spec), band, model.mask)
    lin1, corr1 = model.encode_parts(x1)
    z1 = lin1 + corr1
    if extra_wedges is None or params.weights.full_weight > 0:
        weight = 1.0 if extra_wedges is None else params.weights.full_weight
        loss = weight * wedge_masked_loss(model.decode(z1), targets, wedges, band)
    else:  # view 1 only encoded (its reconstruction would score its own noise)
        loss = torch.zeros((), device=x1.device)
    if extra_wedges is not None:
        w2 = wedges * extra_wedges
        x2 = network_input(filled_spectra(targets, w2, a_spec), band, model.mask)
        z2, d2 = model(x2)
        # scored where the second view saw nothing: its noise is independent of the input
        loss = loss + wedge_masked_loss(d2, targets, wedges * (1.0 - extra_wedges), band)
        loss = loss + params.weights.consistency * ((z1 - z2) ** 2).sum(dim=1).mean()
    if bool(model.anchor_axes.any()):
        # anchored: the linear part cannot collapse; only the total spread is held, so an
        # axis that carries little (noise) is not blown up to unit spread
        spread = torch.relu(1.0 - torch.sqrt(z1.var(dim=0).sum() + 1e-6))
        loss = loss + params.weights.correction_l2 * (corr1**2).sum(dim=1).mean()
    else:
        spread = torch.relu(1.0 - torch.sqrt(z1.var(dim=0) + 1e-6)).mean()
    return (
        loss
        + params.weights.variance * spread
        + params.weights.latent_l2 * (z1**2).sum(dim=1).mean()
    )


def train_embedding(
    targets: torch.Tensor,
    wedges: torch.Tensor,
    frame: EmbedFrame,
    average_work: np.ndarray,
    params: EmbedTrainParams,
    *,
    training_set: dict[str, Any] | None = None,
) -> TrainedEmbedding:
    """Train on prepared particles (``targets``/``wedges`` of :class:`PreparedBatch`, all
    particles or a sample of them, ``(n, b, b, b//2+1)``).

    ``average_work`` is the :func:`~cryoflow.kernels.conformation_input.work_average`
    ``(b, b, b)``; it and the mask become the model's buffers.
    """
    n = int(targets.shape[0])
    if n < 2 or targets.shape != wedges.shape or targets.shape[1] != frame.work_box:
        raise ConfigError(
            f"training needs >= 2 prepared particles on the frame's {frame.work_box}-grid, got "
            f"targets {tuple(targets.shape)}, wedges {tuple(wedges.shape)}"
        )
    device = torch.device(params.device)
    torch.manual_seed(params.seed)
    spec = ModelSpec(
        arch="conformation_ae",
        base_channels=params.base_channels,
        depth=3,
        latent_dim=params.latent_dim,
        box=frame.work_box,
    )
    model = cast(ConformationAE, build_model(spec))
    model.set_frame_arrays(torch.as_tensor(average_work), torch.as_tensor(work_mask(frame)))
    model = model.to(device).train()
    t_all, w_all = targets.to(device), wedges.to(device)
    band = band_weights(frame, device)
    bank = None
    if params.augment_tilt_deg > 0:
        bank = wedge_bank(frame, params.augment_tilt_deg, WEDGE_BANK, params.seed + 1).to(device)
    if params.anchor == "pca":
        with torch.no_grad():
            pca_anchor(model, t_all, w_all, band)
    train_idx, held_idx = split_holdout(n, params.holdout, params.seed)
    history, selection = _run_steps(model, t_all, w_all, band, bank, params, train_idx, held_idx)
    model.eval()
    config = ModelConfig(
        feature="conformation",
        spec=spec,
        training_set={"n_particles": n, "n_held_out": len(held_idx), **(training_set or {})},
        params={
            "frame": frame.to_dict(),
            "train": params.to_dict(),
            "steps_run": len(history),
            "selection": selection,
        },
        metrics={"loss_last_20": float(np.mean(history[-20:]))},
    )
    return TrainedEmbedding(model, frame, config, tuple(history))


def _run_steps(
    model: ConformationAE,
    t_all: torch.Tensor,
    w_all: torch.Tensor,
    band: torch.Tensor,
    bank: torch.Tensor | None,
    params: EmbedTrainParams,
    train_idx: np.ndarray,
    held_idx: np.ndarray,
) -> tuple[list[float], dict[str, Any]]:
    """Exactly ``params.steps`` steps on ``train_idx``: the anchor frozen for the first
    ``anchor_fraction`` of them (anchored models), held-out scoring and selection
    (:mod:`cryoflow.models.embed_select`); the model is left in its selected state, eval mode.
    Returns the loss per step and the selection record."""
    device = t_all.device
    anchored = bool(model.anchor_axes.any())
    frozen_steps = int(round(params.anchor_fraction * params.steps)) if anchored else 0
    opt = torch.optim.Adam(model.parameters(), lr=params.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=params.steps, eta_min=params.lr / 20
    )
    rng = np.random.default_rng(params.seed)
    n = len(train_idx)
    batch = min(params.batch_size, n)
    order, pos = rng.permutation(n), 0
    held = None
    if len(held_idx) and bank is not None:
        h = torch.as_tensor(held_idx, device=device)
        extra = bank[torch.arange(len(held_idx), device=bank.device) % len(bank)]
        held = (t_all[h], w_all[h], extra)
    selection = Selection(params.margin_se)
    every = max(1, params.steps // 12)
    history: list[float] = []
    for p in model.correction_parameters():
        p.requires_grad_(frozen_steps == 0)
    for step in range(1, params.steps + 1):
        if step == frozen_steps + 1:
            for p in model.correction_parameters():
                p.requires_grad_(True)
        if pos + batch > n:
            order, pos = rng.permutation(n), 0
        idx = torch.as_tensor(train_idx[order[pos : pos + batch]], device=device)
        pos += batch
        extra_b = None if bank is None else bank[torch.as_tensor(rng.integers(0, len(bank), batch))]
        loss = training_objective(model, t_all[idx], w_all[idx], extra_b, band, params)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        history.append(float(loss.detach()))
        if held is not None and (step % every == 0 or step in (frozen_steps, params.steps)):
            frozen = step <= frozen_steps or not anchored
            selection.offer(step, heldout_losses(model, *held, band), model, frozen)
    if selection.best_state is not None:
        model.load_state_dict(selection.best_state)
    record = selection.record() if held is not None else {"selected_step": params.steps}
    return history, record
