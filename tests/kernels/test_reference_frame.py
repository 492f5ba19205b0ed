"""Particles brought into the reference frame match the truth there; Fourier crops keep values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryoflow.errors import GeometryError
from cryoflow.geometry.rotation import matrix_zyx_from_euler
from cryoflow.kernels.fourier_crop import resize_spectra, resize_volumes
from cryoflow.kernels.fourier_rotate import centred_rfft
from cryoflow.kernels.reference_frame import reference_frame_spectra
from cryoflow.kernels.wedge import wedge_mask
from cryoflow.simulate.subtomo import hinge_shape, simulate_subtomograms

BOX, PX = 24, 14.0


def _band(box: int, cut: float) -> np.ndarray:
    k = np.meshgrid(np.fft.fftfreq(box), np.fft.fftfreq(box), np.fft.rfftfreq(box), indexing="ij")
    r = np.sqrt(sum(g**2 for g in k))
    return (r > 0) & (r <= cut)


def test_particle_in_reference_frame_matches_truth_on_its_wedge() -> None:
    sim = simulate_subtomograms(
        [hinge_shape(20.0)], 3, box=BOX, pixel_size_angstrom=PX, snr=None, max_shift_px=2.0, seed=3
    )
    fs = reference_frame_spectra(sim.volumes, sim.euler_deg, sim.shifts_zyx_px, sim.tilt_ranges)
    truth = centred_rfft(torch.as_tensor(sim.truth[0])[None])[0].numpy()
    band = _band(BOX, 0.25)
    for i in range(3):
        w = wedge_mask(
            (BOX,) * 3,
            sim.tilt_ranges[i],
            rotation_zyx=matrix_zyx_from_euler(sim.euler_deg[i]),
            rfft=True,
        )
        assert np.array_equal(fs.wedges[i].numpy() > 0, w)
        x = fs.spectra[i].numpy()
        sel = w & band
        cc = np.real(np.vdot(truth[sel], x[sel])) / np.sqrt(
            np.vdot(truth[sel], truth[sel]).real * np.vdot(x[sel], x[sel]).real
        )
        assert cc > 0.95, (i, cc)
        assert np.all(x[~w] == 0)  # nothing outside what it measured
        # the wrong orientation matches far less
    e_wrong = sim.euler_deg[[1, 2, 0]]
    bad = reference_frame_spectra(sim.volumes, e_wrong, sim.shifts_zyx_px, sim.tilt_ranges)
    x, w = bad.spectra[0].numpy(), bad.wedges[0].numpy() > 0
    sel = w & band
    cc = np.real(np.vdot(truth[sel], x[sel])) / np.sqrt(
        np.vdot(truth[sel], truth[sel]).real * np.vdot(x[sel], x[sel]).real
    )
    assert cc < 0.9


def test_cropped_grid_equals_crop_of_full_grid() -> None:
    sim = simulate_subtomograms(
        [hinge_shape(0.0)], 2, box=BOX, pixel_size_angstrom=PX, snr=1.0, seed=1
    )
    full = reference_frame_spectra(sim.volumes, sim.euler_deg, sim.shifts_zyx_px, sim.tilt_ranges)
    crop = reference_frame_spectra(
        sim.volumes, sim.euler_deg, sim.shifts_zyx_px, sim.tilt_ranges, box_out=16
    )
    want = resize_spectra(full.spectra, BOX, 16)
    # compare away from the cropped grid's Nyquist planes (dropped by resize_spectra)
    keep = torch.as_tensor(_band(16, 0.45))
    np.testing.assert_allclose(
        crop.spectra[:, keep].numpy(), want[:, keep].numpy(), rtol=1e-4, atol=1e-3
    )


def test_resize_keeps_values_and_round_trips_band_limited_volumes() -> None:
    rng = np.random.default_rng(0)
    v = torch.as_tensor(rng.normal(size=(2, BOX, BOX, BOX)).astype(np.float32))
    spec = centred_rfft(v) * torch.as_tensor(_band(BOX, 0.2))  # band-limited, no DC
    from cryoflow.kernels.fourier_rotate import centred_irfft

    v = centred_irfft(spec, BOX) + 3.0
    small = resize_volumes(v, 16)
    assert abs(float(small.mean()) - 3.0) < 1e-4  # a constant stays the same constant
    back = resize_volumes(small, BOX)
    np.testing.assert_allclose(back.numpy(), v.numpy(), atol=1e-4)
    with pytest.raises(GeometryError):
        resize_spectra(spec, 16, 8)
