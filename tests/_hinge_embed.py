"""The tiny two-pose hinge set the autoencoder tests train on, and the wedge contract they share:
one particle seen through two wedge orientations lands (nearly) on one latent point."""

from __future__ import annotations

import numpy as np

from cryoflow.models.embed import embed_batch
from cryoflow.models.embed_train import TrainedEmbedding
from cryoflow.simulate.subtomo import SubtomoSet, hinge_shape, simulate_subtomograms

BOX, PX = 24, 14.0
SHAPES = [hinge_shape(-40.0), hinge_shape(40.0)]


def hinge_sim(n: int, seed: int, snr: float | None = 2.0, **kw: object) -> SubtomoSet:
    """``n`` particles of the two hinge poses, ``BOX``^3 at ``PX`` Å."""
    return simulate_subtomograms(
        SHAPES, n, box=BOX, pixel_size_angstrom=PX, snr=snr, seed=seed, **kw
    )  # type: ignore[arg-type]


def assert_two_wedges_land_together(model: TrainedEmbedding) -> None:
    """Noise-free particles, each shape seen in two random orientations (in the reference frame
    their wedges point in different directions): each pair's latent distance is a small part of
    the distance between the two poses' centres."""
    a = hinge_sim(8, seed=21, snr=None, max_shift_px=0.0, labels=np.arange(8) % 2)
    b = hinge_sim(8, seed=22, snr=None, max_shift_px=0.0, labels=np.arange(8) % 2)
    za = embed_batch(model, a.volumes, a.euler_deg, a.shifts_zyx_px, a.tilt_ranges)
    zb = embed_batch(model, b.volumes, b.euler_deg, b.shifts_zyx_px, b.tilt_ranges)
    lab = a.labels
    centres = np.stack([np.concatenate([za[lab == k], zb[lab == k]]).mean(0) for k in (0, 1)])
    between = float(np.linalg.norm(centres[0] - centres[1]))
    pair = np.linalg.norm(za - zb, axis=1)
    assert float(np.median(pair)) < 0.25 * between, (pair, between)
