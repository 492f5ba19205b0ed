"""Fourier cropping and padding: a box resampled to another side by cutting or zero-padding
its centred transform (torch, batched, device from the input).

Rule. A ``(B, B, B)`` box and a ``(b, b, b)`` box share their physical extent; voxel ``B // 2``
and voxel ``b // 2`` are the same point (the contract's box centre), and the voxel size grows
by ``B / b``. On the centred transforms (:func:`~cryoflow.kernels.fourier_rotate.centred_rfft`,
phases about the box centre) the integer frequency ``f`` (``f / B`` cycles per input voxel) is
the same physical frequency on both grids, so resizing copies every ``f`` with
``|f| < min(B, b) / 2`` on each axis (the smaller grid's Nyquist plane is dropped, so the result
stays real and symmetric) and zeroes the rest. Values are scaled by ``(b / B)^3`` so that the
real-space values are preserved (a constant stays the same constant).
"""

from __future__ import annotations

import torch

from cryoflow.errors import GeometryError
from cryoflow.kernels.fourier_rotate import centred_irfft, centred_rfft


def _kept(side_in: int, side_out: int) -> tuple[list[int], int]:
    """Frequencies kept on a full axis (``|f| < min / 2``) and the count on the rfft axis."""
    half = min(side_in, side_out) // 2
    full = list(range(0, half)) + list(range(-half + 1, 0))
    return full, half


def resize_spectra(spectra: torch.Tensor, box_in: int, box_out: int) -> torch.Tensor:
    """Complex tensor (n, b, b, b//2+1): centred spectra of side ``box_in`` resized to ``box_out``.

    Parameters
    ----------
    spectra : complex tensor (n, B, B, B//2+1)
        Centred rfft spectra of ``(B, B, B)`` boxes, ``B = box_in``.
    box_out : int
        The new side ``b`` (smaller: Fourier crop; larger: Fourier pad).
    """
    if spectra.ndim != 4 or tuple(spectra.shape[1:]) != (box_in, box_in, box_in // 2 + 1):
        raise GeometryError(
            f"expected centred spectra (n, {box_in}, {box_in}, {box_in // 2 + 1}), "
            f"got {tuple(spectra.shape)}"
        )
    if int(box_out) < 2:
        raise GeometryError(f"a resized box needs a side >= 2, got {box_out}")
    b = int(box_out)
    full, n_r = _kept(box_in, b)
    src = torch.as_tensor([f % box_in for f in full], device=spectra.device)
    dst = torch.as_tensor([f % b for f in full], device=spectra.device)
    out = torch.zeros(
        (spectra.shape[0], b, b, b // 2 + 1), dtype=spectra.dtype, device=spectra.device
    )
    block = spectra[:, src][:, :, src][..., :n_r]
    out[:, dst[:, None], dst[None, :], :n_r] = block
    return out * (float(b) / float(box_in)) ** 3


def resize_volumes(volumes: torch.Tensor, box_out: int) -> torch.Tensor:
    """Real tensor (n, b, b, b): ``(n, B, B, B)`` boxes resampled to side ``box_out`` (see module)."""
    box_in = int(volumes.shape[-1])
    if volumes.ndim != 4 or not (volumes.shape[1] == volumes.shape[2] == box_in):
        raise GeometryError(
            f"expected a stack of cubic boxes (n, B, B, B), got {tuple(volumes.shape)}"
        )
    spec = resize_spectra(centred_rfft(volumes), box_in, int(box_out))
    return centred_irfft(spec, int(box_out))
