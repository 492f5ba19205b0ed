"""Multiref with a global search per class: particles whose consensus pose is wrong.

Tiny (16^3 boxes, 8 noiseless particles, a 30-degree grid): each particle is given a
consensus pose turned far from its true one, so scoring at that pose cannot say which class
it is; the global search per class finds each particle's pose in each class and classifies it.
"""

from __future__ import annotations

import numpy as np
import pytest

from cryoflow.kernels.align import SearchParams
from cryoflow.kernels.fsc import lowpass
from cryoflow.kernels.heterogeneity.multiref import ClassReferences, classify_batch
from cryoflow.kernels.masks import spherical_mask
from cryoflow.pipelines.stages.base import ParamsError
from cryoflow.pipelines.stages.classify import ClassifyParams
from cryoflow.pipelines.stages.classify_rounds import _settings
from cryoflow.simulate.subtomo import ribosome_shape, simulate_subtomograms

N, BOX, PX = 8, 16, 24.0


def test_a_global_search_per_class_classifies_particles_with_wrong_consensus_poses() -> None:
    sim = simulate_subtomograms(
        [ribosome_shape(0), ribosome_shape(1)],
        N,
        box=BOX,
        pixel_size_angstrom=PX,
        snr=None,
        tilt_range_deg=(-60.0, 60.0),
        seed=3,
    )
    refs = ClassReferences(
        np.stack([lowpass(t, 3.0) for t in sim.truth]), spherical_mask(BOX, 6.0, 2.0), 3.0
    )
    wrong = np.random.default_rng(5).uniform(0.0, 360.0, size=(N, 3))
    wrong[:, 1] %= 180.0
    search = SearchParams(30.0, ((8.0, 16.0), (3.0, 6.0)), 2.0, top_k=5)
    out = classify_batch(
        sim.volumes,
        sim.tilt_ranges,
        refs,
        search,
        euler_deg=wrong,
        shifts_zyx_px=sim.shifts_zyx_px,
        half_ids=np.zeros(N, dtype=int),
    )
    np.testing.assert_array_equal(out.assignments, sim.labels)
    assert out.euler_deg.shape == (N, 3)


def test_the_stage_option_sets_a_global_class_search() -> None:
    on = _settings(ClassifyParams(set="s", classes=2, realign_global_deg=25.0), 2, "cpu")
    assert on["classify_search"]["global_step_deg"] == 25.0
    assert on["classify_search"]["top_k"] == 5
    off = _settings(ClassifyParams(set="s", classes=2), 2, "cpu")
    assert "global_step_deg" not in off["classify_search"]
    with pytest.raises(ParamsError, match="realign"):
        ClassifyParams(set="s", classes=2, realign_global_deg=-5.0)
