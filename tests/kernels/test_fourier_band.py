"""The band-only transform equals the full oversampled one inside the band; normalised
interpolation removes the wedge-edge dip of plain trilinear samples."""

from __future__ import annotations

import numpy as np
import torch

from cryoflow.kernels.fourier_band import band_half_width, band_transform
from cryoflow.kernels.fourier_rotate import centred_rfft, padded_transform
from cryoflow.kernels.reference_frame import reference_frame_spectra
from cryoflow.simulate.subtomo import hinge_shape, simulate_subtomograms

BOX, PX = 24, 14.0


def _sim(n: int, snr: float | None, seed: int):  # type: ignore[no-untyped-def]
    return simulate_subtomograms(
        [hinge_shape(10.0)], n, box=BOX, pixel_size_angstrom=PX, snr=snr, seed=seed
    )


def test_band_cube_equals_the_padded_transform_at_its_frequencies() -> None:
    v = torch.as_tensor(
        np.random.default_rng(0).normal(size=(2, BOX, BOX, BOX)), dtype=torch.float32
    )
    full = padded_transform(v, 2)  # (n, 2, P, P, P), DC at P // 2
    k_max = 0.2
    cube = band_transform(v, k_max, 2)
    p, h = 2 * BOX, band_half_width(k_max, 2 * BOX)
    assert cube.shape == (2, 2 * h + 1, 2 * h + 1, 2 * h + 1)
    sl = slice(p // 2 - h, p // 2 + h + 1)
    want = torch.complex(full[:, 0, sl, sl, sl], full[:, 1, sl, sl, sl])
    scale = float(want.abs().max())
    assert float((cube - want).abs().max()) < 1e-5 * scale


def test_band_path_equals_the_full_path_inside_the_band() -> None:
    sim = _sim(5, 1.0, 1)
    args = (sim.volumes, sim.euler_deg, sim.shifts_zyx_px, sim.tilt_ranges)
    full = reference_frame_spectra(*args, box_out=16)
    band = reference_frame_spectra(*args, box_out=16, max_freq=0.2)
    q = torch.linalg.vector_norm(
        torch.as_tensor(
            np.stack(
                np.meshgrid(
                    np.fft.fftfreq(16), np.fft.fftfreq(16), np.fft.rfftfreq(16), indexing="ij"
                ),
                -1,
            )
        )
        * 16
        / BOX,
        dim=-1,
    )
    inside = q <= 0.2
    assert torch.equal(full.wedges, band.wedges)  # the contract's rule, exactly
    scale = float(full.spectra.abs().max())
    assert float((full.spectra - band.spectra)[:, inside].abs().max()) < 1e-5 * scale
    assert float(band.spectra[:, ~inside].abs().max()) == 0.0


def test_normalised_interpolation_matches_the_truth_better_at_the_wedge_edges() -> None:
    sim = _sim(6, None, 2)  # noise-free
    args = (sim.volumes, sim.euler_deg, sim.shifts_zyx_px, sim.tilt_ranges)
    plain = reference_frame_spectra(*args, max_freq=0.25)
    norm = reference_frame_spectra(*args, max_freq=0.25, normalise=True)
    truth = centred_rfft(torch.as_tensor(sim.truth[0])[None])[0]
    errs = []
    for fs in (plain, norm):
        sel = (fs.wedges > 0) & (truth.abs() > 0)
        k = torch.linalg.vector_norm(
            torch.as_tensor(
                np.stack(
                    np.meshgrid(
                        np.fft.fftfreq(BOX),
                        np.fft.fftfreq(BOX),
                        np.fft.rfftfreq(BOX),
                        indexing="ij",
                    ),
                    -1,
                )
            ),
            dim=-1,
        )
        sel = sel & (k > 0) & (k <= 0.25)
        num = ((fs.spectra - truth) * sel).abs().pow(2).sum()
        errs.append(float(num / (truth * sel).abs().pow(2).sum()))
    assert errs[1] < 0.8 * errs[0], errs
    # the measured region is the interpolated wedge thresholded at a half: inside the band it
    # differs from the exact rule only on a thin edge (beyond the band nothing is computed)
    agree = float((norm.wedges == plain.wedges)[:, (k > 0) & (k <= 0.25)].float().mean())
    assert agree > 0.9, agree
