"""The wedge-masked reconstruction loss: only what each particle measured counts.

For decoded volumes ``d_i`` (already inside the soft mask, :mod:`cryoflow.models.conformation_ae`)
and particles ``X_i`` in the reference frame with measured regions ``W_i`` (the particle's wedge
rotated by its alignment, :mod:`cryoflow.kernels.reference_frame`), band ``H``:

    L_i = sum_q h(q) W_i(q) H(q) |D_i(q) - X_i(q)|^2  /  sum_q h(q) W_i(q) H(q) |X_i(q)|^2

``D_i = centred_rfft(d_i)``, ``h`` the Hermitian weights of the rfft half-grid (each component
counted as often as in the full grid). Normalising by the particle's own measured power makes
``L_i`` a relative error (1 for a decoder that returns zero) whatever the wedge's size or the
particle's contrast; the loss is the mean over the batch. Components with ``W_i = 0`` enter
neither sum, so the network is never asked to reproduce the wedge: what its decoded volumes put
there comes from the other particles, whose wedges lie elsewhere.
"""

from __future__ import annotations

import torch

from cryoflow.errors import GeometryError
from cryoflow.kernels.fourier_rotate import centred_rfft, hermitian_weights


def wedge_masked_loss(
    decoded: torch.Tensor,  # (n, b, b, b) real
    targets: torch.Tensor,  # (n, b, b, b//2+1) complex
    wedges: torch.Tensor,  # (n, b, b, b//2+1) in [0, 1]
    band: torch.Tensor,  # (b, b, b//2+1) in [0, 1]
) -> torch.Tensor:
    """Scalar tensor: the batch mean of ``L_i`` (module docstring)."""
    b = int(decoded.shape[-1])
    half = (b, b, b // 2 + 1)
    if decoded.ndim != 4 or tuple(targets.shape[1:]) != half or targets.shape != wedges.shape:
        raise GeometryError(
            f"decoded (n, b, b, b), targets and wedges (n, b, b, b//2+1) must agree: got "
            f"{tuple(decoded.shape)}, {tuple(targets.shape)}, {tuple(wedges.shape)}"
        )
    weight = wedges * band * hermitian_weights(b, decoded.device)
    # the target enters only through W X: its values outside W are never read
    seen = wedges > 0
    zero = torch.zeros((), dtype=targets.dtype, device=targets.device)
    measured = torch.where(seen, targets, zero)
    resid = torch.where(seen, centred_rfft(decoded), zero) - measured
    num = (weight * resid.abs() ** 2).sum(dim=(-3, -2, -1))
    den = (weight * measured.abs() ** 2).sum(dim=(-3, -2, -1)).clamp_min(1e-12)
    return (num / den).mean()
