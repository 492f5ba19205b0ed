"""A small 2D U-Net (Ronneberger et al. 2015), sized for few-shot training on a CPU."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class UNet2D(nn.Module):
    """U-Net with ``depth`` poolings: ``(B, 1, H, W) -> (B, 1, H, W)`` logits.

    Parameters
    ----------
    base_channels : int
        Channels of the first level; each level doubles them.
    depth : int
        Number of 2x2 poolings. Inputs of any size work (skip connections are cropped/padded).
    """

    def __init__(self, base_channels: int = 8, depth: int = 2) -> None:
        super().__init__()
        chans = [int(base_channels) * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList(
            [_double_conv(1, chans[0])]
            + [_double_conv(chans[i], chans[i + 1]) for i in range(depth)]
        )
        self.up = nn.ModuleList(
            [
                nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2)
                for i in reversed(range(depth))
            ]
        )
        self.merge = nn.ModuleList(
            [_double_conv(2 * chans[i], chans[i]) for i in reversed(range(depth))]
        )
        self.head = nn.Conv2d(chans[0], 1, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, 1, H, W) -> (B, 1, H, W)
        # 1. encoder: keep each level's features for the skip connections
        skips = []
        h = images
        for i, block in enumerate(self.down):
            if i > 0:
                h = F.max_pool2d(h, 2, ceil_mode=True)
            h = block(h)
            skips.append(h)
        # 2. decoder: upsample, match the skip's size, concatenate, convolve
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1]), strict=True):
            h = up(h)
            h = h[..., : skip.shape[-2], : skip.shape[-1]]
            h = F.pad(h, (0, skip.shape[-1] - h.shape[-1], 0, skip.shape[-2] - h.shape[-2]))
            h = merge(torch.cat([skip, h], dim=1))
        return self.head(h)
