"""Cell models: the default one makes the same volumes as before; the neuron one (the paper
preset's) makes many mitochondria full of dense granules that stand out in a single tilt."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from scipy import ndimage

from cryoflow.errors import ConfigError
from cryoflow.simulate import classes as C
from cryoflow.simulate.cell import CELLS, CellModel, cell_model, relative_density
from cryoflow.simulate.dataset import SimulationConfig, simulate_phantom
from cryoflow.simulate.phantom import make_phantom

#: sha256 prefixes of (density, labels) of the demo and tiny presets' phantoms, seed 0,
#: recorded from the simulator before cell models existed (main at 9b23d64)
_BEFORE = {
    ("demo", 0): ("cff49c9afa4be219", "2f01327de9a0fda1"),
    ("demo", 1): ("4a9823a8f549e607", "d942d78bf21e3ece"),
    ("tiny", 0): ("f9b67ae75bc461df", "cfc517d0e26fc742"),
    ("tiny", 1): ("a9104bc344c9d2d1", "60b7192432620d0f"),
}


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


@pytest.mark.parametrize(("preset", "index"), sorted(_BEFORE))
def test_the_default_cell_model_makes_the_same_volumes_as_before(preset: str, index: int) -> None:
    cfg = SimulationConfig.preset(preset, seed=0, n_tomograms=2)
    assert cfg.cell == "default"
    p = simulate_phantom(cfg, index)
    assert (_digest(p.density), _digest(p.labels)) == _BEFORE[(preset, index)]


def test_densities_follow_the_stated_physical_values() -> None:
    assert relative_density(1.35) == pytest.approx(1.0)  # protein
    assert relative_density(1.0) == pytest.approx(0.0)  # water
    neuron = CELLS["neuron"]
    assert neuron.granule_density == pytest.approx((2.6 - 1.0) / 0.35)
    # amorphous calcium phosphate lies between 2.3 and 2.9 g/cm^3, below hydroxyapatite
    assert relative_density(2.3) < neuron.granule_density < relative_density(2.9)
    assert neuron.granule_density < relative_density(3.16)


def test_unknown_or_bad_cell_models_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="unknown cell model 'yeast'; valid: default, neuron"):
        cell_model("yeast")
    with pytest.raises(ConfigError, match="cell must be one of default, neuron, got 'x'"):
        SimulationConfig(cell="x")
    with pytest.raises(ConfigError, match="granules_per_mito"):
        CellModel(granules_per_mito=(5, 5))
    with pytest.raises(ConfigError, match="granule_density"):
        CellModel(granule_density=0.0)


def test_the_neuron_model_makes_many_mitochondria_and_granules() -> None:
    # a quarter of the paper preset's section (256 x 256 at 20 A), its full thickness
    rng = np.random.default_rng(3)
    p = make_phantom((128, 256, 256), 20.0, C.FOREGROUND_CLASSES, rng, CELLS["neuron"])
    granules, n_granules = ndimage.label(p.labels == C.GRANULE)
    assert len(p.mito_boxes) >= 2
    assert n_granules >= 15 * len(p.mito_boxes) // 2
    # every granule lies inside a mitochondrion's box
    centres = ndimage.center_of_mass(np.ones_like(granules), granules, range(1, n_granules + 1))
    boxes = p.mito_boxes.to_numpy()
    for c in centres:
        assert any((b[:3] <= c).all() and (c < b[3:]).all() for b in boxes)
    # granule voxels carry the calcium-phosphate density, far above protein's
    dens = p.density[p.labels == C.GRANULE]
    assert np.allclose(dens, CELLS["neuron"].granule_density)
    assert dens.min() > 4 * p.density[p.labels == C.RIBOSOME].max()


def test_paper_granules_stand_out_in_a_single_noisy_tilt() -> None:
    """In the 0-degree tilt of a paper-like tomogram (its thickness, pixel size, SNR 0.2 and
    CTF), pixels over granules are brighter than the rest of the mitochondria's pixels by
    several noise standard deviations after a light smoothing."""
    from cryoflow.simulate.dataset import simulate_tilts

    cfg = SimulationConfig.preset("paper", shape=(128, 192, 192), seed=1)
    p = simulate_phantom(cfg, 0)
    mid = int(np.argmin(np.abs(cfg.angles_deg)))
    image, masks = simulate_tilts(cfg, 0, p, [mid])
    img = ndimage.gaussian_filter(image[0].astype(float), 1.0)
    granule = masks["granule"][0]
    mito = ndimage.binary_fill_holes(masks["mito_membrane"][0]) & ~ndimage.binary_dilation(
        granule, iterations=3
    )
    assert granule.sum() > 50 and mito.sum() > 500
    gap = img[granule].mean() - img[mito].mean()
    assert gap > 2.0 * img[mito].std()
