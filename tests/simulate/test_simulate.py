"""The cellular simulator's kernels: phantoms, projections, masks, noise, missing wedge."""

from __future__ import annotations

import numpy as np
import pytest

from cryoflow.errors import ConfigError
from cryoflow.geometry import TiltGeometry
from cryoflow.simulate import classes as C
from cryoflow.simulate.dataset import (
    SimulationConfig,
    simulate_phantom,
    simulate_tilts,
    simulate_tomogram,
)
from cryoflow.simulate.phantom import make_phantom, render_particle
from cryoflow.simulate.recon import fbp
from cryoflow.simulate.tilts import (
    EM_ABSORPTION,
    EM_BACKGROUND,
    add_noise,
    class_masks2d,
    project_any,
    project_sum,
)


@pytest.fixture(scope="module")
def tiny() -> tuple[SimulationConfig, object]:
    cfg = SimulationConfig.preset("tiny", n_tomograms=2, seed=7)
    return cfg, simulate_tomogram(cfg, 0)


def _any_projection_loop(mask: np.ndarray, angles: np.ndarray, width: int) -> np.ndarray:
    """The contract's binary forward projection, voxel by voxel (independent reference)."""
    Z, Y, X = mask.shape
    out = np.zeros((len(angles), Y, width), dtype=bool)
    for i, a in enumerate(np.deg2rad(angles)):
        for z, y, x in zip(*np.nonzero(mask), strict=True):
            uc = (x - (X - 1) / 2) * np.cos(a) + (z - (Z - 1) / 2) * np.sin(a)
            u = int(np.rint(uc + (width - 1) / 2))
            if 0 <= u < width:
                out[i, y, u] = True
    return out


def test_shapes_and_dtypes(tiny):
    cfg, sim = tiny
    Z, Y, X = cfg.shape
    n = cfg.angles_deg.size
    assert (n, Z, Y, X) == (21, 32, 64, 64)
    assert sim.phantom.density.shape == (Z, Y, X) and sim.phantom.density.dtype == np.float32
    assert sim.phantom.labels.shape == (Z, Y, X) and sim.phantom.labels.dtype == np.uint8
    assert sim.tilt_series.shape == (n, Y, X) and sim.tilt_series.dtype == np.float32
    assert sim.tomogram.shape == (Z, Y, X)
    assert set(sim.masks2d) == set(C.FOREGROUND_CLASSES)
    assert all(m.shape == (n, Y, X) and m.dtype == bool for m in sim.masks2d.values())
    # every class is present in the phantom
    assert set(np.unique(sim.phantom.labels)) == set(range(7))
    assert list(sim.phantom.particles.columns[:9]) == [
        "x",
        "y",
        "z",
        "class",
        "class_id",
        "conformation",
        "rot",
        "tilt",
        "psi",
    ]
    assert set(sim.phantom.particles["class"]) == {"ribosome", "rubisco"}


def test_deterministic_and_independent_of_dataset_size(tiny):
    cfg, sim = tiny
    again = simulate_tomogram(SimulationConfig.preset("tiny", n_tomograms=1, seed=7), 0)
    np.testing.assert_array_equal(sim.phantom.labels, again.phantom.labels)
    np.testing.assert_array_equal(sim.tilt_series, again.tilt_series)
    assert sim.phantom.particles.equals(again.phantom.particles)
    other = simulate_tomogram(cfg, 1)
    assert not np.array_equal(sim.phantom.labels, other.phantom.labels)
    reseeded = simulate_tomogram(cfg.with_(seed=8), 0)
    assert not np.array_equal(sim.phantom.labels, reseeded.phantom.labels)


def test_tilt_chunking_does_not_change_images(tiny):
    cfg, sim = tiny
    parts = [simulate_tilts(cfg, 0, sim.phantom, idx) for idx in ([0, 1, 2], range(3, 21))]
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), sim.tilt_series)
    for c in cfg.classes:
        np.testing.assert_array_equal(np.concatenate([p[1][c] for p in parts]), sim.masks2d[c])


def test_masks2d_are_any_projections_of_the_3d_masks(tiny):
    cfg, sim = tiny
    angles = cfg.angles_deg[::4]
    for c in ("granule", "ribosome", "membrane"):
        mask3d = sim.phantom.labels == C.CLASS_IDS[c]
        expected = _any_projection_loop(mask3d, angles, cfg.shape[2])
        np.testing.assert_array_equal(sim.masks2d[c][::4], expected)
        assert expected.any()


def test_projection_follows_contract_geometry():
    Z, Y, X = 9, 5, 13
    vol = np.zeros((Z, Y, X), np.float32)
    vol[7, 2, 3] = 1.0  # zc = 3, xc = -3
    angles = np.array([-50.0, 0.0, 35.0])
    sums = project_sum(vol, angles, width=15)
    anys = project_any(vol, angles, width=15)
    for i, a in enumerate(np.deg2rad(angles)):
        u = -3 * np.cos(a) + 3 * np.sin(a) + 7
        np.testing.assert_allclose(sums[i].sum(), 1.0, rtol=1e-6)
        np.testing.assert_allclose((sums[i, 2] * np.arange(15)).sum(), u, atol=1e-5)
        assert np.flatnonzero(anys[i, 2]).tolist() == [int(np.rint(u))]
        assert not anys[i, [0, 1, 3, 4]].any()


def test_granules_lie_inside_mitochondria(tiny):
    _, sim = tiny
    labels = sim.phantom.labels
    granule = labels == C.GRANULE
    assert granule.any() and len(sim.phantom.mito_boxes) >= 1
    in_box = np.zeros_like(granule)
    for b in sim.phantom.mito_boxes.itertuples():
        in_box[b.z0 : b.z1, b.y0 : b.y1, b.x0 : b.x1] = True
    assert not (granule & ~in_box).any()
    # walking out of a granule along y or x always crosses the mitochondrial membrane
    mito = labels == C.MITO_MEMBRANE
    for z, y, x in zip(*np.nonzero(granule), strict=True):
        for line in (mito[z, y, x:], mito[z, y, x::-1], mito[z, y:, x], mito[z, y::-1, x]):
            assert line.any()


def test_particle_table_matches_label_volume(tiny):
    cfg, sim = tiny
    labels = sim.phantom.labels
    counted = {c: 0 for c in C.PARTICLE_CLASSES}
    for _, row in sim.phantom.particles.iterrows():
        sl, mask = render_particle(row, cfg.shape, cfg.pixel_size_angstrom)
        assert (labels[sl][mask] == row["class_id"]).all()
        assert C.CLASS_IDS[row["class"]] == row["class_id"]
        counted[row["class"]] += int(mask.sum())
    for c, n in counted.items():
        assert n == int((labels == C.CLASS_IDS[c]).sum())
    ribosomes = sim.phantom.particles[sim.phantom.particles["class"] == "ribosome"]
    assert set(ribosomes["conformation"]) <= {0, 1}


def test_both_ribosome_conformations_occur():
    cfg = SimulationConfig.preset("tiny", classes=("ribosome",), seed=2)
    table = simulate_tomogram(cfg, 0).phantom.particles
    assert set(table["conformation"]) == {0, 1}
    assert set(table["class"]) == {"ribosome"}


@pytest.mark.parametrize("snr", [0.1, 1.0, 5.0])
def test_noise_reaches_the_requested_snr(snr):
    rng = np.random.default_rng(0)
    clean = rng.normal(size=(4, 48, 48)).cumsum(axis=2).astype(np.float32)
    seeds = [np.random.SeedSequence(3, spawn_key=(k,)) for k in range(4)]
    noisy = add_noise(clean, snr, seeds)
    for t in range(4):
        achieved = clean[t].var() / (noisy[t] - clean[t]).var()
        assert achieved == pytest.approx(snr, rel=0.1)
    np.testing.assert_array_equal(add_noise(clean, None, seeds), clean)


def test_missing_wedge_follows_the_tilt_range():
    # white noise reconstructed from tilts -30..60: Fourier power only near sampled directions
    rng = np.random.default_rng(1)
    vol = rng.normal(size=(48, 4, 48)).astype(np.float32)
    angles = np.arange(-30.0, 61.0, 2.0)
    rec = fbp(project_sum(vol, angles), angles, vol.shape)
    power = (np.abs(np.fft.fft2(rec, axes=(0, 2))) ** 2).sum(axis=1)  # (kz, kx)
    kz = np.fft.fftfreq(48)[:, None]
    kx = np.fft.fftfreq(48)[None, :]
    direction = np.rad2deg(np.arctan2(kz, kx))  # a tilt t samples direction t (mod 180)
    direction = (direction + 90) % 180 - 90
    ring = (np.hypot(kz, kx) > 0.1) & (np.hypot(kz, kx) < 0.4)
    sampled = ring & (direction > -25) & (direction < 55)
    wedge = ring & (direction > -80) & (direction < -40)
    assert power[wedge].mean() < 0.05 * power[sampled].mean()
    assert angles.min() == -30 and angles.max() == 60


def test_config_validation():
    assert SimulationConfig.preset("demo").angles_deg.size == 41
    assert SimulationConfig.preset("realistic").angles_deg.size == 61
    assert SimulationConfig(tilt_min_deg=-45, tilt_max_deg=30, tilt_step_deg=5).angles_deg[-1] == 30
    with pytest.raises(ConfigError, match="valid: tiny, demo, realistic"):
        SimulationConfig.preset("huge")
    with pytest.raises(ConfigError, match="unknown class 'ribosomes'"):
        SimulationConfig(classes=("ribosomes",))
    with pytest.raises(ConfigError, match="needs 'mito_membrane'"):
        SimulationConfig(classes=("granule",))
    with pytest.raises(ConfigError, match="tilt range"):
        SimulationConfig(tilt_min_deg=10, tilt_max_deg=-10)
    with pytest.raises(ConfigError, match="snr"):
        SimulationConfig(snr=0.0)
    with pytest.raises(ConfigError, match="tilt_axis_deg"):
        SimulationConfig(tilt_axis_deg=float("nan"))
    with pytest.raises(ConfigError, match="contrast must be one of em, mass, got 'dark'"):
        SimulationConfig(contrast="dark")
    with pytest.raises(TypeError):
        import dask.array as da

        project_sum(da.zeros((8, 8, 8)), [0.0])


def test_class_subset_only_paints_those_classes():
    rng = np.random.default_rng(5)
    ph = make_phantom((16, 40, 40), 20.0, ("membrane", "filament"), rng)
    assert set(np.unique(ph.labels)) <= {0, C.MEMBRANE, C.FILAMENT}
    assert ph.particles.empty and ph.mito_boxes.empty
    masks = class_masks2d(ph.labels, [0.0], {"membrane": C.MEMBRANE})
    np.testing.assert_array_equal(masks["membrane"][0], (ph.labels == C.MEMBRANE).any(axis=0))


def test_blurs_keep_shape_and_act_as_filters():
    from cryoflow.simulate.tilts import apply_blur, ctf_2d

    rng = np.random.default_rng(4)
    img = rng.normal(size=(2, 32, 40)).astype(np.float32) + 3.0
    gauss = apply_blur(img, kind="gaussian", pixel_size_angstrom=10.0, sigma_px=1.5)
    assert gauss.shape == img.shape and gauss.var() < 0.3 * img.var()
    np.testing.assert_allclose(gauss.mean(), img.mean(), rtol=1e-4)
    ctf = ctf_2d((32, 40), 10.0, 3.0)
    assert ctf[0, 0] == pytest.approx(-0.07)  # amplitude contrast at zero frequency
    assert (np.diff(np.sign(ctf[0])) != 0).any()  # oscillates (zero crossings) at 10 A, 3 um
    assert apply_blur(img, kind="ctf", pixel_size_angstrom=10.0).shape == img.shape
    with pytest.raises(ConfigError, match="valid: none, gaussian, ctf"):
        apply_blur(img, kind="airy", pixel_size_angstrom=10.0)


@pytest.mark.parametrize("blur", ["none", "ctf"])
def test_em_contrast_is_dense_dark_on_a_bright_background(tiny, blur):
    cfg, sim = tiny
    idx = [0, 10, 20]
    em, masks = simulate_tilts(cfg.with_(snr=None, blur=blur, contrast="em"), 0, sim.phantom, idx)
    mass, _ = simulate_tilts(cfg.with_(snr=None, blur=blur, contrast="mass"), 0, sim.phantom, idx)
    # em = background - k * (blurred projected mass); the truth density stays mass
    k = EM_ABSORPTION / cfg.shape[0]
    np.testing.assert_allclose(em, EM_BACKGROUND - k * mass, atol=1e-5)
    assert sim.phantom.density.min() >= 0
    # granules (densest) are bright in mass images, dark in em images (also through the CTF:
    # underfocus at 20 A/px keeps low frequencies in phase, so dense matter darkens)
    g = masks["granule"]
    assert g.any()
    assert mass[g].mean() > mass[~g].mean()
    assert em[g].mean() < em[~g].mean()
    if blur == "none":
        assert 0 < em.min() and em.max() <= EM_BACKGROUND


def test_em_noise_snr_is_measured_on_the_signal(tiny):
    cfg, sim = tiny
    clean, _ = simulate_tilts(cfg.with_(snr=None, contrast="em"), 0, sim.phantom, [5, 15])
    noisy, _ = simulate_tilts(cfg.with_(snr=0.5, contrast="em"), 0, sim.phantom, [5, 15])
    for t in range(2):
        # the background dominates the mean but carries no signal variance
        assert clean[t].mean() > 5 * clean[t].std()
        achieved = clean[t].var() / (noisy[t] - clean[t]).var()
        assert achieved == pytest.approx(0.5, rel=0.1)


def test_rotated_tilt_axis_projects_where_the_geometry_says():
    Z, Y, X = 9, 15, 17
    vol = np.zeros((Z, Y, X), np.float32)
    vol[6, 3, 12] = 1.0  # (zc, yc, xc) = (2, -4, 4)
    geom = TiltGeometry.single_axis([-40.0, 0.0, 50.0], tilt_axis_deg=30.0)
    images = project_sum(vol, geom)
    masks = project_any(vol, geom)
    vv, uu = np.meshgrid(np.arange(Y) - (Y - 1) / 2, np.arange(X) - (X - 1) / 2, indexing="ij")
    for t, m in enumerate(geom.matrix_array):
        vc, uc = m @ np.array([2.0, -4.0, 4.0])
        assert images[t].sum() == pytest.approx(1.0, rel=1e-5)
        centroid = ((images[t] * vv).sum(), (images[t] * uu).sum())
        np.testing.assert_allclose(centroid, (vc, uc), atol=1e-4)
        hit = np.argwhere(masks[t])
        np.testing.assert_array_equal(hit, [[np.rint(vc + 7), np.rint(uc + 8)]])
    # a zero rotation through the general projector agrees with the single-axis path
    from cryoflow.simulate.tilts import project_general

    rng = np.random.default_rng(2)
    blob = rng.random((Z, Y, X)).astype(np.float32)
    plain = TiltGeometry.single_axis([-40.0, 10.0])
    np.testing.assert_allclose(
        project_general(blob, plain, X, mode="sum", interpolation="linear"),
        project_sum(blob, plain),
        atol=1e-4,
    )


def test_rotated_tilt_axis_is_recovered_with_the_stored_geometry():
    import cryoflow

    cfg = SimulationConfig(
        shape=(12, 32, 32),
        tilt_min_deg=-60,
        tilt_max_deg=60,
        tilt_step_deg=15,
        tilt_axis_deg=25.0,
        snr=None,
        contrast="em",
        seed=4,
        pixel_size_angstrom=25.0,
        classes=("membrane", "mito_membrane"),
    )
    assert cfg.geometry.tilt_axis_deg == 25.0 and not cfg.geometry.is_simple
    phantom = simulate_phantom(cfg, 0)
    images, masks = simulate_tilts(cfg, 0, phantom)
    fp = cryoflow.project(phantom.labels == C.MEMBRANE, cfg.geometry, 32, mode="any")
    np.testing.assert_array_equal(masks["membrane"], np.asarray(fp))
    centred = images - images.mean(axis=(1, 2), keepdims=True)
    recovered = {}
    for label, geom in (
        ("stored", cfg.geometry),
        ("zero", TiltGeometry.single_axis(cfg.angles_deg)),
    ):
        bp = np.asarray(cryoflow.backproject(centred, geom, cfg.shape))
        # em contrast: dense matter is dark, so the match is a negative correlation
        recovered[label] = -np.corrcoef(bp.ravel(), phantom.density.ravel())[0, 1]
    assert recovered["stored"] > 0.4
    assert recovered["stored"] > 2 * recovered["zero"]
