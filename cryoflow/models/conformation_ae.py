"""The conformation autoencoder: a 3D convolutional encoder to a small latent space and back.

Shapes (``b`` the working box, :class:`cryoflow.kernels.conformation_input.EmbedFrame`):

- ``encode``: ``(n, 1, b, b, b)`` filled, masked, band-limited particles -> ``(n, D)``.
  ``depth`` levels of [3^3 convolution, LeakyReLU, 3^3 convolution of stride 2, LeakyReLU],
  channels ``c, 2c, 4c, ...``; flattened, then a two-layer perceptron to ``D``.
- ``decode``: ``(n, D)`` -> ``(n, b, b, b)``: the mirror image (perceptron, reshape, per level a
  trilinear 2x upsampling and a 3^3 convolution), a last 3^3 convolution to one channel.
  The decoded volume is ``mask * (average + residual)``: the network learns each particle's
  departure from the consensus average (so an untrained decoder already returns the average),
  and nothing outside the soft mask.

**PCA anchor** (optional): ``encode`` returns ``P (x - mu) + f(x)``, a fixed linear projection
(the training inputs' leading principal axes, :meth:`ConformationAE.set_anchor`) plus the
learned encoder ``f`` (whose last layer starts at zero): the latent starts as the linear peer's
coordinates and training bends it. Without an anchor (zeros) ``encode`` is ``f(x)`` alone.

The consensus average, the mask (``(b, b, b)`` each) and the anchor (``mu`` ``(b^3,)``, ``P``
``(D, b^3)``) are buffers, saved in the checkpoint's ``state_dict`` (a checkpoint written
before the anchor existed loads with a zero anchor): a loaded model carries everything the
embedding needs but the frame (:class:`~cryoflow.kernels.conformation_input.EmbedFrame`, in
the JSON config).
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from cryoflow.errors import ConfigError

#: slope of the LeakyReLU activations
SLOPE = 0.1
#: width of the perceptron between the convolutions and the latent space
HIDDEN = 64


def _act() -> nn.Module:
    return nn.LeakyReLU(SLOPE)


class ConformationAE(nn.Module):
    """See the module docstring. ``box`` must be a multiple of ``2**depth``."""

    average: torch.Tensor  # buffer (b, b, b): the consensus average on the working grid
    mask: torch.Tensor  # buffer (b, b, b): the soft mask
    anchor_mean: torch.Tensor  # buffer (b^3,): mu of the PCA anchor
    anchor_axes: torch.Tensor  # buffer (D, b^3): P of the PCA anchor (zeros: none)

    def __init__(
        self, *, box: int, latent_dim: int = 4, base_channels: int = 8, depth: int = 3
    ) -> None:
        super().__init__()
        if box % 2**depth or box < 2**depth:
            raise ConfigError(f"box {box} must be a positive multiple of 2**depth = {2**depth}")
        self.box, self.latent_dim, self.depth = int(box), int(latent_dim), int(depth)
        chans = [base_channels * 2**i for i in range(depth)]
        self.bottom = box // 2**depth
        self.bottom_channels = chans[-1]
        flat = chans[-1] * self.bottom**3
        enc: list[nn.Module] = []
        c_in = 1
        for c in chans:
            enc += [nn.Conv3d(c_in, c, 3, padding=1), _act()]
            enc += [nn.Conv3d(c, c, 3, stride=2, padding=1), _act()]
            c_in = c
        self.encoder = nn.Sequential(*enc)
        self.to_latent = nn.Sequential(
            nn.Linear(flat, HIDDEN), _act(), nn.Linear(HIDDEN, latent_dim)
        )
        self.from_latent = nn.Sequential(
            nn.Linear(latent_dim, HIDDEN), _act(), nn.Linear(HIDDEN, flat), _act()
        )
        dec: list[nn.Module] = []
        rev = chans[::-1]
        for i, c in enumerate(rev):
            c_out = rev[i + 1] if i + 1 < len(rev) else chans[0]
            dec += [nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False)]
            dec += [nn.Conv3d(c, c_out, 3, padding=1), _act()]
        last = nn.Conv3d(chans[0], 1, 3, padding=1)
        dec += [last]
        self.decoder = nn.Sequential(*dec)
        self._initialise(last)
        self.register_buffer("average", torch.zeros((box,) * 3))
        self.register_buffer("mask", torch.ones((box,) * 3))
        self.register_buffer("anchor_mean", torch.zeros(box**3))
        self.register_buffer("anchor_axes", torch.zeros(latent_dim, box**3))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # checkpoints written before the PCA anchor existed: no anchor (zeros)
        for name in ("anchor_mean", "anchor_axes"):
            state_dict.setdefault(prefix + name, torch.zeros_like(getattr(self, name)))
        super()._load_from_state_dict(state_dict, prefix, *args)

    def _initialise(self, last: nn.Conv3d) -> None:
        # variance-preserving weights for LeakyReLU (PyTorch's default shrinks activations
        # about threefold per layer, so an untrained latent would be ~0); a small last layer,
        # so that an untrained decoder returns about the average
        for mod in self.modules():
            if isinstance(mod, nn.Conv3d | nn.Linear):
                nn.init.kaiming_normal_(mod.weight, a=SLOPE, nonlinearity="leaky_relu")
                if mod.bias is not None:
                    nn.init.zeros_(mod.bias)
        with torch.no_grad():
            last.weight.mul_(0.1)

    def set_frame_arrays(self, average: torch.Tensor, mask: torch.Tensor) -> None:
        """Store the working-grid consensus average and mask (``(b, b, b)`` each)."""
        for name, value in (("average", average), ("mask", mask)):
            t = torch.as_tensor(value, dtype=torch.float32)
            if tuple(t.shape) != (self.box,) * 3:
                raise ConfigError(f"{name} must be ({self.box},)*3, got {tuple(t.shape)}")
            getattr(self, name).copy_(t)

    def set_anchor(self, mean: torch.Tensor, axes: torch.Tensor) -> None:
        """Anchor the latent on a linear projection: ``mean`` ``(b^3,)``, ``axes`` ``(D, b^3)``
        (rows already scaled); the learned encoder's last layer is set to zero, so the latent
        starts as exactly ``axes @ (x - mean)``."""
        m = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        a = torch.as_tensor(axes, dtype=torch.float32)
        if tuple(m.shape) != (self.box**3,) or tuple(a.shape) != (self.latent_dim, self.box**3):
            raise ConfigError(
                f"anchor must be ({self.box**3},) and ({self.latent_dim}, {self.box**3}), got "
                f"{tuple(m.shape)} and {tuple(a.shape)}"
            )
        with torch.no_grad():
            self.anchor_mean.copy_(m.to(self.anchor_mean.device))
            self.anchor_axes.copy_(a.to(self.anchor_axes.device))
            last = cast(nn.Linear, self.to_latent[-1])
            last.weight.zero_()
            if last.bias is not None:
                last.bias.zero_()

    def encode_parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(n, 1, b, b, b)`` -> (anchor ``P (x - mu)``, learned correction ``f(x)``), ``(n, D)``
        each."""
        linear = (x.flatten(1) - self.anchor_mean) @ self.anchor_axes.T
        return linear, self.to_latent(self.encoder(x).flatten(1))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, 1, b, b, b)`` -> latent ``(n, D)``: ``P (x - mu) + f(x)``."""
        linear, correction = self.encode_parts(x)
        return linear + correction

    def correction_parameters(self) -> list[nn.Parameter]:
        """The parameters of the learned correction ``f`` (the encoder's)."""
        return [*self.encoder.parameters(), *self.to_latent.parameters()]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent ``(n, D)`` -> decoded volumes ``(n, b, b, b)`` (``mask * (average + residual)``)."""
        h = self.from_latent(z).reshape(-1, self.bottom_channels, *(self.bottom,) * 3)
        residual = self.decoder(h)[:, 0]
        return self.mask * (self.average + residual)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(latent (n, D), decoded (n, b, b, b))``."""
        z = self.encode(x)
        return z, self.decode(z)
