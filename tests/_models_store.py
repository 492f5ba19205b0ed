"""A small simulated dataset for the model pipeline tests.

Built from the simulator's phantoms and the contract's projector, with the layout the
simulation pipeline writes: tilt series, ``results/truth/masks2d_<class>``,
``volumes/truth_labels`` and a (plain back-projection) ``volumes/tomogram``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import cryoflow
from cryoflow.io import store as S
from cryoflow.simulate.classes import CLASS_IDS
from cryoflow.simulate.phantom import make_phantom

CLASSES = ("membrane", "mito_membrane", "granule")


def write_simulated(
    store: Path, name: str, seed: int, shape=(24, 48, 48), n_tilts: int = 15, noise: float = 0.5
) -> None:
    """Simulate one tomogram into ``store`` under ``name`` (shape ``(Z, Y, X)``)."""
    rng = np.random.default_rng(seed)
    ph = make_phantom(shape, 30.0, CLASSES, rng)
    angles = np.linspace(-60, 60, n_tilts)
    clean = np.asarray(cryoflow.project(ph.density, angles, shape[2], mode="sum"), dtype=np.float32)
    images = clean + noise * clean.std() * rng.standard_normal(clean.shape).astype(np.float32)
    S.write_tilt_series(store, name, images, angles, 30.0, provenance={"step": "simulate"})
    for c in CLASSES:
        m = np.asarray(cryoflow.project(ph.labels == CLASS_IDS[c], angles, shape[2], mode="any"))
        S.write_result(
            store,
            name,
            "truth",
            f"masks2d_{c}",
            m.astype(np.uint8),
            dims=("tilt", "y", "x"),
            provenance={"step": "simulate"},
        )
    S.write_volume(
        store,
        name,
        "truth_labels",
        ph.labels,
        pixel_size_angstrom=30.0,
        provenance={"step": "simulate"},
        kind="label",
        multiscale=False,
    )
    tomo = np.asarray(cryoflow.backproject(images - images.mean(), angles, shape), dtype=np.float32)
    S.write_volume(
        store,
        name,
        "tomogram",
        tomo,
        pixel_size_angstrom=30.0,
        provenance={"step": "simulate"},
        multiscale=False,
    )
