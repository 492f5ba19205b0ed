"""The picking network: rotation-invariant shape descriptors, then a small learned head.

``PickNet`` maps a normalised volume block to the probability, at every core voxel, that a
particle of the trained kind is centred there:

1. descriptors (:mod:`cryoflow.kernels.invariants`): spherical-harmonic Gram features on
   shells out to ``reach`` x the diameter, fixed (not trained), rotation invariant: a few
   examples teach every orientation;
2. standardisation with the training samples' mean and standard deviation (buffers);
3. a per-voxel multilayer perceptron ``F -> hidden -> hidden -> 1`` (trained; dropout 0.2);
4. a calibration ``score = sigmoid(scale * (logit - offset))`` (buffers set after training,
   :func:`cryoflow.models.picktrain.calibrate`): a score of 0.5 lies between the logits of
   the background and those of the marked examples, so one threshold (0.5) means the same
   for every trained network.

5. the **search** (buffers set after training): ``candidate_polarity`` 0 scores every voxel
   (dense: the descriptors by FFT correlation over the block); +1 or -1 scores only the
   candidate voxels of :mod:`cryoflow.kernels.candidates` (local maxima of the blob response
   of that polarity at or above ``candidate_threshold``), every other voxel scoring 0: the
   descriptors are then evaluated at those voxels alone, a small fraction of the block.
   Checkpoints written before the search existed load as dense.

``forward`` takes descriptor rows ``(N, F)`` and returns raw logits (training);
:meth:`PickNet.score` calibrates them; :meth:`PickNet.score_block` takes a block with its
halo and returns the scores of its core. The weights and buffers are a plain
``state_dict``: checkpoints follow :mod:`cryoflow.models.checkpoint` (arch ``"picker"``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from cryoflow.kernels.candidates import candidate_voxels, response_radius
from cryoflow.kernels.invariants import InvariantSpec, dense_features, halo, point_features
from cryoflow.models.arch import ModelSpec

__all__ = ["PickNet", "invariant_spec"]


def invariant_spec(spec: ModelSpec) -> InvariantSpec:
    """The descriptor geometry of a picker spec."""
    return InvariantSpec(spec.diameter_px, spec.shells, spec.degree, spec.reach)


class PickNet(nn.Module):
    """Descriptors -> standardise -> MLP -> logit (see the module docstring)."""

    feature_mean: torch.Tensor
    feature_std: torch.Tensor
    logit_offset: torch.Tensor
    logit_scale: torch.Tensor
    candidate_polarity: torch.Tensor
    candidate_threshold: torch.Tensor

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.invariants = invariant_spec(spec)
        n = self.invariants.n_features
        h = int(spec.hidden)
        self.register_buffer("feature_mean", torch.zeros(n))
        self.register_buffer("feature_std", torch.ones(n))
        self.register_buffer("logit_offset", torch.zeros(()))
        self.register_buffer("logit_scale", torch.ones(()))
        self.register_buffer("candidate_polarity", torch.zeros(()))
        self.register_buffer("candidate_threshold", torch.zeros(()))
        self.head = nn.Sequential(
            nn.Linear(n, h), nn.ReLU(), nn.Dropout(0.2), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 1)
        )

    @property
    def halo(self) -> int:
        return halo(self.invariants)

    def _load_from_state_dict(self, state: dict[str, Any], prefix: str, *args: Any) -> None:
        for name in ("candidate_polarity", "candidate_threshold"):  # older checkpoints: dense
            state.setdefault(prefix + name, torch.zeros(()))
        super()._load_from_state_dict(state, prefix, *args)

    def candidates(self, block: np.ndarray, margin: int) -> np.ndarray:
        """``(n, 3)`` voxels ``z, y, x`` of ``block`` this network scores in candidate search:
        the candidates (:func:`cryoflow.kernels.candidates.candidate_voxels`) and their 26
        neighbours (the blob response's maximum may sit a voxel or two off the network's),
        at least ``margin`` voxels inside the block (candidates found up to one voxel beyond
        that, so a neighbour in the core is scored whichever block holds its candidate)."""
        d = self.invariants.diameter_px
        pts, _ = candidate_voxels(
            block,
            d,
            float(self.candidate_polarity),
            float(self.candidate_threshold),
            radius=response_radius(d, self.halo),
            margin=max(margin - 1, 0),
        )
        r = np.arange(-1, 2)
        near = np.stack(np.meshgrid(r, r, r, indexing="ij"), axis=-1).reshape(-1, 3)
        pts = np.unique((pts[:, None, :] + near[None]).reshape(-1, 3), axis=0)
        inside = np.all((pts >= margin) & (pts < np.asarray(block.shape) - margin), axis=1)
        return pts[inside]

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # (N, F) -> (N,) logits
        z = (features - self.feature_mean) / self.feature_std
        return self.head(z)[:, 0]

    def score(self, features: torch.Tensor) -> torch.Tensor:  # (N, F) -> (N,) in (0, 1)
        return torch.sigmoid(self.logit_scale * (self(features) - self.logit_offset))

    @torch.no_grad()
    def score_block(self, block: np.ndarray, *, rows_per_pass: int = 1 << 18) -> np.ndarray:
        """ndarray (z - 2h, y - 2h, x - 2h) float32: calibrated scores at the core of a normalised
        block that reaches ``h = self.halo`` voxels beyond its core (zeros outside the volume)."""
        device = self.feature_mean.device
        if float(self.candidate_polarity) != 0.0:
            h = self.halo
            core = tuple(int(n) - 2 * h for n in block.shape)
            out_c = np.zeros(core, np.float32)
            pts = self.candidates(block, h)
            if len(pts):
                feats_c = torch.from_numpy(point_features(block, pts, self.invariants))
                scored = self.score(feats_c.to(device)).cpu().numpy()
                out_c[tuple((pts - h).T)] = scored
            return out_c
        feats = dense_features(block, self.invariants, device=device)  # (F, z, y, x)
        core = feats.shape[1:]
        rows = feats.reshape(feats.shape[0], -1).T
        out = torch.cat(
            [self.score(rows[i : i + rows_per_pass]) for i in range(0, len(rows), rows_per_pass)]
        )
        return out.reshape(core).cpu().numpy().astype(np.float32)
