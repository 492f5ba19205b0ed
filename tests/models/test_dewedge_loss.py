"""The masked Fourier loss: Parseval, masks, the wedge weight."""

from __future__ import annotations

import numpy as np
import torch

from cryoflow.kernels.wedge import wedge_mask
from cryoflow.models.dewedge_loss import (
    impose_wedge,
    loss_weights,
    masked_fourier_loss,
    replace_wedge,
)


def _pair(seed=0, shape=(2, 1, 10, 12, 14)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g)


def test_all_ones_weights_give_the_mean_squared_error() -> None:
    out, tgt = _pair()
    w = torch.ones(2, 10, 12, 8)
    torch.testing.assert_close(
        masked_fourier_loss(out, tgt, w), ((out - tgt) ** 2).mean(), rtol=1e-5, atol=0
    )


def test_only_weighted_components_count() -> None:
    out, tgt = _pair(1)
    meas = torch.as_tensor(wedge_mask((10, 12, 14), (-50, 50), rfft=True))[None].repeat(2, 1, 1, 1)
    w = loss_weights(meas, meas, 2.0)  # target and input measured alike: weight 1 on W
    # change the output only outside W: the loss does not move
    delta = torch.randn_like(out)
    outside = delta - impose_wedge(delta, meas)
    torch.testing.assert_close(
        masked_fourier_loss(out + outside, tgt, w),
        masked_fourier_loss(out, tgt, w),
        rtol=1e-4,
        atol=1e-6,
    )


def test_wedge_weight_scales_the_part_the_input_lacks() -> None:
    out, tgt = _pair(2)
    shape = (10, 12, 14)
    target_meas = torch.ones(2, *shape[:2], shape[2] // 2 + 1, dtype=torch.bool)
    input_meas = torch.as_tensor(wedge_mask(shape, (-40, 40), rfft=True))[None].repeat(2, 1, 1, 1)
    l1 = masked_fourier_loss(out, tgt, loss_weights(target_meas, input_meas, 1.0))
    l3 = masked_fourier_loss(out, tgt, loss_weights(target_meas, input_meas, 3.0))
    only_in = masked_fourier_loss(out, tgt, loss_weights(target_meas, input_meas, 0.0))
    torch.testing.assert_close(l3 - only_in, 3 * (l1 - only_in), rtol=1e-4, atol=1e-6)


def test_replace_wedge_keeps_measured_and_takes_the_rest() -> None:
    a, b = _pair(3)
    meas = torch.as_tensor(wedge_mask((10, 12, 14), (-60, 60), rfft=True))[None]
    mixed = replace_wedge(a, b, meas)
    fa, fb, fm = (torch.fft.rfftn(v[:, 0], dim=(-3, -2, -1)) for v in (a, b, mixed))
    m = meas.expand_as(fm)
    torch.testing.assert_close(fm[m], fa[m], atol=1e-4, rtol=0)
    torch.testing.assert_close(fm[~m], fb[~m], atol=1e-4, rtol=0)
    assert np.isfinite(mixed.numpy()).all()
