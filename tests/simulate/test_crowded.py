"""Crowded tomograms: decoys of the target's size and mass, no overlaps, a real missing wedge."""

from __future__ import annotations

import numpy as np
import pytest

from cryoflow.errors import ConfigError
from cryoflow.simulate.crowded import CrowdedConfig, crowded_density, simulate_crowded
from cryoflow.simulate.molecules import SHAPES, molecule, molecule_size, reference_volume
from cryoflow.simulate.particles import render


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_shape_has_the_reference_mass(shape: str) -> None:
    tmpl = molecule(shape, 200.0)
    volume, size = molecule_size(tmpl, 200.0)
    assert volume == pytest.approx(reference_volume(200.0), rel=0.01)
    assert 190 <= size <= 260  # the ball about the centre of mass that holds it
    # body origin at the centre of mass
    sl, mask = render(tmpl, (64, 64, 64), (31.5, 31.5, 31.5), 4.0, np.eye(3))
    com = np.argwhere(mask).mean(axis=0) + [s.start for s in sl]
    assert np.allclose(com, 31.5, atol=0.5)


def test_molecules_differ_in_shape() -> None:
    a = molecule("dimer", 200.0)
    b = molecule("rod", 200.0)
    _, ma = render(a, (40, 40, 40), (20, 20, 20), 6.0, np.eye(3))
    _, mb = render(b, (40, 40, 40), (20, 20, 20), 6.0, np.eye(3))
    assert abs(int(ma.sum()) - int(mb.sum())) < 0.05 * ma.sum()
    assert ma.shape != mb.shape or not np.array_equal(ma, mb)
    with pytest.raises(ConfigError):
        molecule("banana", 200.0)


def test_crowded_density_is_deterministic_and_truth_is_inside() -> None:
    cfg = CrowdedConfig(
        shape=(32, 48, 48),
        pixel_size_angstrom=20.0,
        diameter_angstrom=160.0,
        n_targets=6,
        n_decoys=6,
        clutter_fraction=0.02,
        seed=5,
    )
    d1, t1 = crowded_density(cfg)
    d2, t2 = crowded_density(cfg)
    assert np.array_equal(d1, d2) and t1.equals(t2)
    assert (t1["kind"] == "target").sum() == 6 and (t1["kind"] == "decoy").sum() == 6
    assert set(t1[t1.kind == "decoy"]["shape"]) == set(cfg.decoys)
    for ax, n in zip(("z", "y", "x"), cfg.shape, strict=True):
        assert (t1[ax] >= 0).all() and (t1[ax] <= n - 1).all()
    # every truth centre sits on protein density
    idx = np.rint(t1[["z", "y", "x"]].to_numpy()).astype(int)
    assert (d1[tuple(idx.T)] == 1.0).mean() >= 0.9
    with pytest.raises(ConfigError):
        CrowdedConfig(target="rod", decoys=("rod",))


def test_reconstruction_has_the_missing_wedge() -> None:
    cfg = CrowdedConfig(
        shape=(32, 32, 32),
        pixel_size_angstrom=20.0,
        diameter_angstrom=160.0,
        n_targets=3,
        n_decoys=3,
        clutter_fraction=0.0,
        snr=None,
        blur="none",
        tilt_min_deg=-45,
        tilt_max_deg=45,
        tilt_step_deg=3,
        seed=1,
    )
    tomo = simulate_crowded(cfg)
    f = np.abs(np.fft.fftn(tomo.tomogram))
    kz, kx = np.meshgrid(np.fft.fftfreq(32), np.fft.fftfreq(32), indexing="ij")
    ang = np.degrees(np.arctan2(np.abs(kz), np.abs(kx)))
    r = np.hypot(kz, kx)
    band = (r > 0.1) & (r < 0.4)
    measured = f[:, 0, :][band & (ang < 35)].mean()
    missing = f[:, 0, :][band & (ang > 55)].mean()
    assert missing < 0.25 * measured  # little signal beyond the tilt range (0.13 measured)
    assert tomo.tilt_series.shape == (31, 32, 32)
