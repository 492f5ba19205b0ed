"""A small residual 3D U-Net for missing-wedge filling (no normalisation layers).

Shape contract: ``(B, 1, Z, Y, X) -> (B, 1, Z, Y, X)``, with ``Z, Y, X`` multiples of
``2**depth`` (callers pad; :mod:`cryoflow.models.dewedge_predict` does). The output is the input
plus a learned correction (``residual=True``), so an untrained network starts near identity.

No BatchNorm/InstanceNorm/GroupNorm: each of those would make a block's output depend on the
statistics of the block it sees, so a tomogram processed in blocks would differ from the same
tomogram processed whole (seams). With plain convolutions, a block whose origin is a multiple
of ``2**depth`` and whose margin covers the receptive field gives the whole-volume result.
"""

from __future__ import annotations

import torch
from torch import nn


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(c_in, c_out, 3, padding=1),
        nn.LeakyReLU(0.05, inplace=True),
        nn.Conv3d(c_out, c_out, 3, padding=1),
        nn.LeakyReLU(0.05, inplace=True),
    )


class UNet3D(nn.Module):
    """3D U-Net: ``depth`` 2x poolings, channels doubling per level, a residual output.

    Parameters
    ----------
    base_channels : int
        Channels of the first level (level ``i`` has ``base_channels * 2**i``).
    depth : int
        Number of 2x2x2 max-poolings; inputs must be multiples of ``2**depth`` on every axis.
    residual : bool
        Add the input to the network's output.
    """

    def __init__(self, base_channels: int = 8, depth: int = 2, residual: bool = True) -> None:
        super().__init__()
        chans = [int(base_channels) * 2**i for i in range(depth + 1)]
        self.depth = int(depth)
        self.residual = bool(residual)
        self.down = nn.ModuleList(
            [_block(1, chans[0])] + [_block(chans[i], chans[i + 1]) for i in range(depth)]
        )
        self.up = nn.ModuleList(
            [
                nn.ConvTranspose3d(chans[i + 1], chans[i], 2, stride=2)
                for i in reversed(range(depth))
            ]
        )
        self.merge = nn.ModuleList([_block(2 * chans[i], chans[i]) for i in reversed(range(depth))])
        self.head = nn.Conv3d(chans[0], 1, 1)
        if self.residual:  # start at the identity: the correction is zero until trained
            nn.init.zeros_(self.head.weight)
            if self.head.bias is not None:
                nn.init.zeros_(self.head.bias)

    @property
    def multiple(self) -> int:
        """Every input size must be a multiple of this (``2**depth``)."""
        return 2**self.depth

    def forward(self, volumes: torch.Tensor) -> torch.Tensor:  # (B, 1, Z, Y, X)
        # 1. encoder: keep each level's features for the skip connections
        skips = []
        h = volumes
        for i, block in enumerate(self.down):
            if i > 0:
                h = nn.functional.max_pool3d(h, 2)
            h = block(h)
            skips.append(h)
        # 2. decoder: upsample, concatenate the skip, convolve
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1]), strict=True):
            h = merge(torch.cat([skip, up(h)], dim=1))
        out = self.head(h)
        # 3. the correction is added to the input
        return volumes + out if self.residual else out
