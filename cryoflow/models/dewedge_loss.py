"""The masked Fourier loss of self-supervised missing-wedge filling (DeepDeWedge's, IsoNet's idea).

A training pair is a rotated box ``x_R`` (measured on ``RW = W(R^T k)``) with the tomogram's
wedge ``W`` imposed again (the network input, measured on ``W`` and ``RW``) and a target
``t_R`` (the same box, or the other tilt half's, rotated the same way). Only components that the
target measured can be compared, and among them those the input lacks (``RW`` outside ``W``:
the wedge the network must fill) weigh ``wedge_weight`` times more:

    loss = sum_k RW(k) [W(k) + wedge_weight (1 - W(k))] |F(out - t_R)(k)|^2 / N^2

(``N`` voxels per box; with every weight 1 this is the mean squared error by Parseval). Computed
on ``rfftn`` output, with the non-redundant half-space weighted twice.
"""

from __future__ import annotations

import torch


def hermitian_weights(n_x: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(n_x // 2 + 1,)`` weights: 1 for ``kx = 0`` (and Nyquist when ``n_x`` is even), else 2."""
    w = torch.full((n_x // 2 + 1,), 2.0, device=device)
    w[0] = 1.0
    if n_x % 2 == 0:
        w[-1] = 1.0
    return w


def loss_weights(
    measured_target: torch.Tensor, measured_input: torch.Tensor, wedge_weight: float
) -> torch.Tensor:
    """``(B, Z, Y, X//2+1)`` float weights from two bool masks of that shape (rfft order)."""
    t = measured_target.float()
    i = measured_input.float()
    return t * (i + float(wedge_weight) * (1.0 - i))


def masked_fourier_loss(
    output: torch.Tensor, target: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Mean over the batch of the weighted squared Fourier error.

    Parameters
    ----------
    output, target : tensor of shape (B, 1, Z, Y, X)
    weights : tensor of shape (B, Z, Y, X // 2 + 1) (see :func:`loss_weights`)
    """
    diff = torch.fft.rfftn((output - target)[:, 0], dim=(-3, -2, -1))
    n = output.shape[-3] * output.shape[-2] * output.shape[-1]
    herm = hermitian_weights(output.shape[-1], device=output.device)
    per_box = (weights * herm * diff.real.square().add(diff.imag.square())).sum(dim=(-3, -2, -1))
    return per_box.mean() / float(n) ** 2


def impose_wedge(volumes: torch.Tensor, measured: torch.Tensor) -> torch.Tensor:
    """``(B, 1, Z, Y, X)`` boxes with the components outside ``measured`` (rfft order) zeroed."""
    shape = volumes.shape[-3:]
    f = torch.fft.rfftn(volumes[:, 0], dim=(-3, -2, -1)) * measured
    return torch.fft.irfftn(f, s=shape, dim=(-3, -2, -1)).unsqueeze(1)


def replace_wedge(
    volumes: torch.Tensor, predictions: torch.Tensor, measured: torch.Tensor
) -> torch.Tensor:
    """The measured components of ``volumes`` with the unmeasured ones of ``predictions``.

    All ``(B, 1, Z, Y, X)``; ``measured`` bool ``(B or 1, Z, Y, X // 2 + 1)``.
    """
    shape = volumes.shape[-3:]
    fv = torch.fft.rfftn(volumes[:, 0], dim=(-3, -2, -1))
    fp = torch.fft.rfftn(predictions[:, 0], dim=(-3, -2, -1))
    f = torch.where(measured, fv, fp)
    return torch.fft.irfftn(f, s=shape, dim=(-3, -2, -1)).unsqueeze(1)
