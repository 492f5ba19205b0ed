"""Multi-reference classification on two-conformation phantoms (SNR 0.5, +-60 degree wedge).

Tiny on purpose (20^3 boxes, 36 particles, true consensus poses); the demo-sized figures come
from ``benchmarks/phantom_classify.py`` (32^3, 100 particles, refined consensus).
"""

from __future__ import annotations

import numpy as np
import pytest

from cryoflow.errors import ConfigError, GeometryError
from cryoflow.kernels.align import AlignResult, SearchParams
from cryoflow.kernels.fsc import lowpass
from cryoflow.kernels.heterogeneity.metrics import class_accuracy
from cryoflow.kernels.heterogeneity.multiref import (
    ClassReferences,
    classify_batch,
    reseed_assignments,
)
from cryoflow.kernels.heterogeneity.multiref_loop import MultirefParams, classify_multiref
from cryoflow.kernels.heterogeneity.pca_classify import PcaParams, classify_pca, consensus_round
from cryoflow.kernels.masks import spherical_mask
from cryoflow.kernels.refine import split_halves
from cryoflow.simulate.subtomo import SubtomoSet, hinge_shape, simulate_subtomograms

N, BOX, PX = 36, 20, 16.0


@pytest.fixture(scope="module")
def two_states() -> SubtomoSet:
    return simulate_subtomograms(
        [hinge_shape(0.0), hinge_shape(45.0)],
        N,
        box=BOX,
        pixel_size_angstrom=PX,
        snr=0.5,
        tilt_range_deg=(-60.0, 60.0),
        seed=11,
    )


def test_classify_batch_assigns_each_particle_to_its_own_state(two_states: SubtomoSet) -> None:
    sim = two_states
    refs = ClassReferences(
        np.stack([lowpass(t, 4.0) for t in sim.truth]), spherical_mask(BOX, 7.0, 2.0), 4.0
    )
    halves = split_halves(N, 0)
    out = classify_batch(
        sim.volumes,
        sim.tilt_ranges,
        refs,
        SearchParams(None, (), 3.0),
        euler_deg=sim.euler_deg,
        shifts_zyx_px=sim.shifts_zyx_px,
        half_ids=halves,
    )
    assert out.scores.shape == (N, 2)
    assert class_accuracy(out.assignments, sim.labels) == 1.0
    np.testing.assert_array_equal(out.assignments, sim.labels)  # references in truth order
    assert out.sums is not None
    assert out.sums.counts.tolist() == np.bincount(out.assignments, minlength=2).tolist()
    # swapped references swap every assignment: the score tells the states apart
    swapped = ClassReferences(refs.maps[::-1].copy(), refs.mask, 4.0)
    out2 = classify_batch(
        sim.volumes,
        sim.tilt_ranges,
        swapped,
        SearchParams(None, (), 3.0),
        euler_deg=sim.euler_deg,
        shifts_zyx_px=sim.shifts_zyx_px,
        half_ids=halves,
        accumulate=False,
    )
    np.testing.assert_array_equal(out2.assignments, 1 - sim.labels)
    with pytest.raises(GeometryError):
        classify_batch(
            sim.volumes,
            sim.tilt_ranges,
            refs,
            SearchParams(None, ()),
            euler_deg=sim.euler_deg[:3],
            shifts_zyx_px=sim.shifts_zyx_px,
            half_ids=halves,
        )


@pytest.mark.parametrize("seeds", ["pca", "random"])
def test_multiref_recovers_the_two_states(two_states: SubtomoSet, seeds: str) -> None:
    sim = two_states
    res = classify_multiref(
        sim.volumes,
        sim.tilt_ranges,
        euler_deg=sim.euler_deg,
        shifts_zyx_px=sim.shifts_zyx_px,
        voxel_size_angstrom=PX,
        params=MultirefParams(n_classes=2, seed_method=seeds, iterations=8),
    )
    assert class_accuracy(res.assignments, sim.labels) >= 0.95
    assert res.last.maps.shape == (2, BOX, BOX, BOX)
    assert res.history[-1]["changed"] <= 0.005 or len(res.history) == 8
    if seeds == "random":  # random seeds start near chance; the rounds do the work
        assert class_accuracy(res.seeds, sim.labels) < 0.8


def test_pca_recovers_the_two_states_and_bic_finds_two(two_states: SubtomoSet) -> None:
    sim = two_states
    halves = split_halves(N, 0)
    cons = consensus_round(
        sim.volumes,
        sim.tilt_ranges,
        AlignResult(sim.euler_deg, sim.shifts_zyx_px, np.zeros(N)),
        halves,
        voxel_size_angstrom=PX,
        mask=None,
    )
    kw = dict(
        euler_deg=sim.euler_deg,
        shifts_zyx_px=sim.shifts_zyx_px,
        average=cons.average,
        mask=cons.mask,
        resolution_px=4.0,
    )
    res = classify_pca(sim.volumes, sim.tilt_ranges, params=PcaParams(n_classes=None), **kw)
    assert res.clusters.n_classes == 2
    assert class_accuracy(res.labels, sim.labels) >= 0.9
    assert res.eigenvolumes.shape == (6, BOX, BOX, BOX)
    assert np.all(np.diff(res.basis.variances) <= 1e-9)
    # the first component is where the states differ: its coordinate alone separates them
    c1 = res.coords[:, 0]
    gap = abs(c1[sim.labels == 0].mean() - c1[sim.labels == 1].mean())
    assert gap > 2.0 * c1[sim.labels == 0].std()


def test_reseeding_and_too_many_classes(two_states: SubtomoSet) -> None:
    a = np.array([0, 0, 0, 0, 0, 0, 2, 2])
    sc = np.array(
        [
            [0.9, 0, 0],
            [0.1, 0, 0],
            [0.5, 0, 0],
            [0.3, 0, 0],
            [0.8, 0, 0],
            [0.2, 0, 0],
            [0, 0, 1],
            [0, 0, 1],
        ]
    )
    new, which = reseed_assignments(a, sc, min_count=2)
    assert which == [1]
    assert sorted(np.nonzero(new == 1)[0].tolist()) == [1, 3, 5]  # the worst-fitting half
    with pytest.raises(ConfigError):
        reseed_assignments(a, sc, min_count=3)
    # three classes of two states: no class ends below its floor
    sim = two_states
    res = classify_multiref(
        sim.volumes,
        sim.tilt_ranges,
        euler_deg=sim.euler_deg,
        shifts_zyx_px=sim.shifts_zyx_px,
        voxel_size_angstrom=PX,
        params=MultirefParams(
            n_classes=3, seed_method="random", iterations=4, min_class_fraction=0.1
        ),
    )
    assert np.bincount(res.assignments, minlength=3).min() >= 4
    with pytest.raises(ConfigError):
        MultirefParams(seed_method="kmeans")
