"""Class averages through the averaging kernels: per-class sums add as a tree."""

from __future__ import annotations

import numpy as np

from cryoflow.kernels.class_average import accumulate_classes, consensus_average, finish_classes
from cryoflow.simulate.subtomo import hinge_shape, simulate_subtomograms


def test_class_averages_follow_their_classes_and_sums_split_freely() -> None:
    shapes = [hinge_shape(-40.0), hinge_shape(40.0)]
    sim = simulate_subtomograms(shapes, 12, box=16, pixel_size_angstrom=22.0, snr=None, seed=2)
    args = (sim.volumes, sim.euler_deg, sim.shifts_zyx_px, sim.tilt_ranges, sim.labels, 2)
    whole = accumulate_classes(*args)
    a = accumulate_classes(*(x[:5] if i < 5 else x for i, x in enumerate(args)))
    b = accumulate_classes(*(x[5:] if i < 5 else x for i, x in enumerate(args)))
    np.testing.assert_allclose(finish_classes(a + b), finish_classes(whole), atol=1e-5)
    maps = finish_classes(whole)
    cc = np.corrcoef(maps.reshape(2, -1), sim.truth.reshape(2, -1))[:2, 2:]
    assert cc[0, 0] > cc[0, 1] and cc[1, 1] > cc[1, 0]
    assert cc[0, 0] > 0.8 and cc[1, 1] > 0.8
    avg = consensus_average(sim.volumes, sim.euler_deg, sim.shifts_zyx_px, sim.tilt_ranges)
    assert avg.shape == (16, 16, 16)
