"""The wedge-masked loss reads only what each particle measured (loss and gradients alike)."""

from __future__ import annotations

import numpy as np
import torch

from cryoflow.kernels.conformation_input import EmbedFrame, band_weights, work_mask
from cryoflow.kernels.fourier_rotate import centred_rfft
from cryoflow.kernels.wedge import wedge_mask
from cryoflow.models.conformation_ae import ConformationAE
from cryoflow.models.embed_train import EmbedTrainParams, training_objective, wedge_bank
from cryoflow.models.wedge_loss import wedge_masked_loss

FRAME = EmbedFrame(box=16, resolution_px=3.0, mask_radius_px=6.0)  # working box 16


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    b = FRAME.work_box
    vol = torch.as_tensor(rng.normal(size=(3, b, b, b)).astype(np.float32))
    spec = centred_rfft(vol).to(torch.complex64)
    rot = [np.eye(3), np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0]]), np.eye(3)[[1, 0, 2]]]
    w = np.stack([wedge_mask((b,) * 3, (-60, 60), rotation_zyx=r, rfft=True) for r in rot])
    wedges = torch.as_tensor(w.astype(np.float32))
    return spec * wedges, wedges


def _model() -> ConformationAE:
    torch.manual_seed(0)
    m = ConformationAE(box=FRAME.work_box, latent_dim=3, base_channels=2, depth=3)
    rng = np.random.default_rng(1)
    avg = torch.as_tensor(rng.normal(size=(FRAME.work_box,) * 3).astype(np.float32))
    m.set_frame_arrays(avg, torch.as_tensor(work_mask(FRAME)))
    return m


def _grads(model: ConformationAE, loss: torch.Tensor) -> list[torch.Tensor]:
    model.zero_grad()
    loss.backward()
    return [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]


def test_loss_and_gradients_ignore_the_unmeasured_region() -> None:
    targets, wedges = _batch()
    rng = np.random.default_rng(5)
    junk = (
        torch.as_tensor(
            (rng.normal(size=targets.shape) + 1j * rng.normal(size=targets.shape)).astype(
                np.complex64
            )
        )
        * 100.0
    )
    changed = torch.where(wedges > 0, targets, junk)  # same measured values, anything elsewhere
    assert not torch.equal(changed, targets)
    band = band_weights(FRAME)
    params = EmbedTrainParams(steps=1, batch_size=3)
    extra = wedge_bank(FRAME, 60.0, 3, seed=2)
    model = _model()
    # the wedge-masked loss alone, against a decoded volume that carries gradients
    la = wedge_masked_loss(model.decode(torch.ones(3, 3)), targets, wedges, band)
    ga = _grads(model, la)
    lb = wedge_masked_loss(model.decode(torch.ones(3, 3)), changed, wedges, band)
    gb = _grads(model, lb)
    assert float(la.detach()) == float(lb.detach())
    assert all(torch.equal(x, y) for x, y in zip(ga, gb, strict=True))
    # the whole training objective (inputs, two views, consistency, variance): the same
    oa = training_objective(model, targets, wedges, extra, band, params)
    ga = _grads(model, oa)
    ob = training_objective(model, changed, wedges, extra, band, params)
    gb = _grads(model, ob)
    assert float(oa.detach()) == float(ob.detach())
    assert all(torch.equal(x, y) for x, y in zip(ga, gb, strict=True))
    # ... while a change inside the measured region changes both
    inside = targets + 0.5 * wedges * junk
    oc = training_objective(model, inside, wedges, extra, band, params)
    gc = _grads(model, oc)
    assert float(oc.detach()) != float(oa.detach())
    assert any(not torch.equal(x, y) for x, y in zip(ga, gc, strict=True))


def test_loss_is_a_relative_error_on_the_measured_band() -> None:
    targets, wedges = _batch(1)
    band = band_weights(FRAME)
    b = FRAME.work_box
    from cryoflow.kernels.fourier_rotate import centred_irfft

    exact = centred_irfft(targets, b)
    assert float(wedge_masked_loss(exact, targets, wedges, band)) < 1e-8
    assert (
        abs(float(wedge_masked_loss(torch.zeros_like(exact), targets, wedges, band)) - 1.0) < 1e-6
    )
    # anything the decoder puts into the wedge costs nothing
    fill = centred_irfft(targets + (1 - wedges) * centred_rfft(torch.randn(3, b, b, b)), b)
    assert float(wedge_masked_loss(fill, targets, wedges, band)) < 1e-8
