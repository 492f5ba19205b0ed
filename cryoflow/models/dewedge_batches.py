"""Training batches for missing-wedge filling: rotated, re-wedged boxes and their targets.

:class:`TrainingBatches` holds the pool's boxes (an input copy that wedge updates change, and
the raw targets) and draws batches (steps 1-3 of :mod:`cryoflow.models.dewedge_train`):

1. ``batch_size`` boxes at random; with even/odd halves the input half is drawn at random and
   the other half is the target, else the box is its own target;
2. input and target rotated alike (:mod:`cryoflow.models.dewedge_rotate`);
3. the tomogram's own wedge imposed on the rotated input; the loss weights from the target's
   rotated wedge and the input's wedge (:func:`cryoflow.models.dewedge_loss.loss_weights`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from cryoflow.kernels.wedge import wedge_mask
from cryoflow.models.dewedge_loss import impose_wedge, loss_weights, replace_wedge
from cryoflow.models.dewedge_rotate import (
    cube_rotations,
    random_rotations,
    rotate_cube,
    rotate_resample,
    rotated_wedge,
)
from cryoflow.models.dewedge_sampling import BoxPool
from cryoflow.models.unet3d import UNet3D

if TYPE_CHECKING:
    from cryoflow.models.dewedge_train import DewedgeTrainConfig


def _as_tensor(a: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).to(device)


class TrainingBatches:
    """Draws rotated, re-wedged training batches from a pool (steps 1-3 of the module doc)."""

    def __init__(
        self,
        pool: BoxPool,
        cfg: DewedgeTrainConfig,
        halves: Sequence[bool],
        rng: np.random.Generator,
        device: torch.device,
    ) -> None:
        self.cfg, self.rng, self.device, self.halves = cfg, rng, device, list(halves)
        self.inputs = [pool.first.copy(), pool.second.copy()]  # wedge-updated copies
        self.targets = [pool.first, pool.second]
        self.tomogram = pool.tomogram
        self.ranges = pool.tilt_ranges_deg
        b = cfg.box
        self.wedges = [
            torch.as_tensor(wedge_mask((b, b, b), r, rfft=True), device=device) for r in self.ranges
        ]
        self.cube = [cube_rotations(r, b) for r in self.ranges]

    def draw(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cfg, b = self.cfg, self.cfg.box
        idx = self.rng.integers(0, len(self.tomogram), size=cfg.batch_size)
        ins, tgts, w_in, w_tgt = [], [], [], []
        mats = random_rotations(self.rng, cfg.batch_size) if cfg.rotations == "random" else None
        for n, i in enumerate(idx):
            t = int(self.tomogram[i])
            side = int(self.rng.integers(2)) if self.halves[t] else 0
            x = self.inputs[side][i]
            y = self.targets[1 - side][i] if self.halves[t] else self.targets[0][i]
            if mats is None:
                rots = self.cube[t]
                r = rots[int(self.rng.integers(len(rots)))]
                xr = rotate_cube(_as_tensor(x, self.device), r)
                yr = rotate_cube(_as_tensor(y, self.device), r)
            else:
                r = mats[n]
                pair = _as_tensor(np.stack([x, y])[:, None], self.device)
                rr = np.repeat(r[None], 2, axis=0)
                xr, yr = rotate_resample(pair, rr, b)[:, 0]
            ins.append(xr)
            tgts.append(yr)
            w_in.append(self.wedges[t])
            w_tgt.append(
                torch.as_tensor(rotated_wedge((b, b, b), self.ranges[t], r), device=self.device)
            )
        measured_in = torch.stack(w_in)
        x = impose_wedge(torch.stack(ins)[:, None].contiguous(), measured_in)
        y = torch.stack(tgts)[:, None].contiguous()
        weights = loss_weights(torch.stack(w_tgt), measured_in, cfg.wedge_weight)
        return x, y, weights

    def update_wedges(self, model: UNet3D, chunk: int = 8) -> None:
        """Replace each input box's missing wedge by the network's prediction (no gradients)."""
        side = self.inputs[0].shape[-1]
        shape = (side, side, side)
        wedges = [
            torch.as_tensor(wedge_mask(shape, r, rfft=True), device=self.device)
            for r in self.ranges
        ]
        m = model.multiple
        pad = (-side) % m
        sides = self.inputs if any(self.halves) else self.inputs[:1]
        with torch.inference_mode():
            for boxes in sides:
                for a in range(0, len(boxes), chunk):
                    x = _as_tensor(boxes[a : a + chunk], self.device)[:, None]
                    xp = torch.nn.functional.pad(x, (0, pad) * 3)
                    pred = model(xp)[..., :side, :side, :side]
                    meas = torch.stack([wedges[int(t)] for t in self.tomogram[a : a + chunk]])
                    boxes[a : a + chunk] = replace_wedge(x, pred, meas)[:, 0].cpu().numpy()
