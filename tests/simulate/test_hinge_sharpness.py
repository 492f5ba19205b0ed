"""``body_sharpness``: in the arm's mask, the map of the arm at one swing beats a consensus
that averages the swings (FSC ignores a plain blur, a per-shell scale; motion smears phases)."""

from __future__ import annotations

import numpy as np

from cryoflow.simulate.hinge import body_sharpness, hinge_body_masks
from cryoflow.simulate.subtomo import hinge_shape, render_shape

BOX, PX = 20, 16.0


def test_the_arm_at_its_swing_is_sharper_than_the_swings_averaged() -> None:
    truth = render_shape(hinge_shape(15.0), BOX, PX)
    smeared = np.mean([render_shape(hinge_shape(a), BOX, PX) for a in (0, 10, 20, 30)], axis=0)
    noise = np.random.default_rng(0).normal(scale=0.03, size=(3, BOX, BOX, BOX))
    masks = hinge_body_masks(15.0, BOX, PX)
    bodies = (truth + noise[:2]).astype(np.float32)  # the same noise level in every map
    figs = body_sharpness(bodies, smeared + noise[2], masks, 15.0, PX, threshold=0.8)
    assert len(figs) == 2
    assert figs[1]["ratio"] < 0.95, figs  # the arm: its own pose beats the smeared consensus
    assert figs[0]["ratio"] < 1.05, figs  # the fixed body (its mask holds the hinge) no worse
    for f in figs:
        assert f["body_angstrom"] >= 2 * PX - 1e-9  # never past Nyquist
    same = body_sharpness(np.stack([smeared, smeared]), smeared, masks, 15.0, PX)
    assert all(abs(f["ratio"] - 1.0) < 1e-9 for f in same)
