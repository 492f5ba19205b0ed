"""EMAN2 tomoseg-style convnet (Chen et al. 2017, Nat. Methods).

What we took from EMAN2's ``e2tomoseg_convnet.py`` design: three convolution layers with
15x15 kernels, few channels (EMAN2 uses 40, 40, 1), ReLU after the hidden layers, one 2x2
max-pool after the first layer, and a single-channel output layer that scores every pixel.

What differs: EMAN2 trains on 64x64 boxes and predicts at half resolution (its target is the
mask shrunk by the pool). Here the convolutions are zero-padded ("same") and the half-size
score map is bilinearly upsampled back, so the network maps ``(B, 1, H, W)`` images to
``(B, 1, H, W)`` logits for any ``H, W`` (even sizes keep pixel alignment exact). The output
is a raw logit (trained with a logistic loss) instead of EMAN2's clipped linear output, and
the channel counts default to 16 to keep training to minutes on a CPU.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class TomosegNet(nn.Module):
    """Three 15x15 convolutions with a 2x2 max-pool: ``(B, 1, H, W) -> (B, 1, H, W)`` logits.

    Parameters
    ----------
    channels : tuple of int, length 2
        Channels of the two hidden convolution layers (EMAN2: ``(40, 40)``).
    kernel_size : int
        Odd convolution kernel size (EMAN2: 15).
    """

    def __init__(self, channels: tuple[int, int] = (16, 16), kernel_size: int = 15) -> None:
        super().__init__()
        c1, c2 = (int(c) for c in channels)
        pad = kernel_size // 2
        self.conv1 = nn.Conv2d(1, c1, kernel_size, padding=pad)
        self.pool = nn.MaxPool2d(2, ceil_mode=True)
        self.conv2 = nn.Conv2d(c1, c2, kernel_size, padding=pad)
        self.out = nn.Conv2d(c2, 1, kernel_size, padding=pad)

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, 1, H, W) -> (B, 1, H, W)
        size = images.shape[-2:]
        # 1. first feature layer at full resolution, then pool to half size
        h = self.pool(F.relu(self.conv1(images)))  # (B, c1, H/2, W/2)
        # 2. second feature layer and the output layer at half size
        h = F.relu(self.conv2(h))  # (B, c2, H/2, W/2)
        logits_half = self.out(h)  # (B, 1, H/2, W/2)
        # 3. back to the input grid
        return F.interpolate(logits_half, size=size, mode="bilinear", align_corners=False)
