"""A tiny particle set of two hinge conformations in a real store, for ``cryoflow embed`` tests.

Particles are simulated through their tomogram's missing wedge with noise
(:func:`cryoflow.simulate.subtomo.simulate_subtomograms`), tiled into tomogram volumes (one
box per grid cell), the tomograms written to the store with their tilt ranges, the picks
written as a STAR file (orientations and RELION origins) and read back, and the set extracted
from the stored volumes with the particles' own extraction code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cryoflow.graph.extract import extract_stack
from cryoflow.io.particles import read_particles, write_particles
from cryoflow.io.particleset import write_particle_set
from cryoflow.io.provenance import make_provenance
from cryoflow.io.store import open_volume, write_volume
from cryoflow.io.tomograms import TiltRange, tilt_range_attrs
from cryoflow.simulate.subtomo import hinge_shape, simulate_subtomograms


def phantom_set(
    tmp: Path,
    *,
    n: int = 48,
    box: int = 16,
    pixel: float = 20.0,
    snr: float = 2.0,
    angles: tuple[float, ...] = (-35.0, 35.0),
    set_name: str = "hinges",
    seed: int = 0,
) -> tuple[Path, np.ndarray, Path]:
    """``(store, true labels in input order, STAR file)``; two tomograms with different tilt
    ranges, ``n`` particles in input order alternating between them."""
    tilts = [(-60.0, 60.0), (-50.0, 65.0)]
    halves = [np.arange(n)[i::2] for i in range(2)]
    labels = np.zeros(n, int)
    store = tmp / "d.zarr"
    rows = []
    for t, idx in enumerate(halves):
        sim = simulate_subtomograms(
            [hinge_shape(a) for a in angles],
            len(idx),
            box=box,
            pixel_size_angstrom=pixel,
            snr=snr,
            tilt_range_deg=tilts[t],
            max_shift_px=1.0,
            seed=seed + t,
        )
        labels[idx] = sim.labels
        per = int(np.ceil(np.sqrt(len(idx))))
        vol = np.zeros((box, per * box, per * box), np.float32)
        for j, i in enumerate(idx):
            gy, gx = divmod(j, per)
            vol[:, gy * box : (gy + 1) * box, gx * box : (gx + 1) * box] = sim.volumes[j]
            rot, tilt, psi = sim.euler_deg[j]
            sz, sy, sx = sim.shifts_zyx_px[j]
            rows.append(
                (
                    i,
                    f"tomo{t}",
                    gx * box + box // 2,
                    gy * box + box // 2,
                    box // 2,
                    rot,
                    tilt,
                    psi,
                    -sx * pixel,
                    -sy * pixel,
                    -sz * pixel,
                )
            )
        write_volume(
            store,
            f"tomo{t}",
            "tomogram",
            vol,
            pixel_size_angstrom=pixel,
            provenance=make_provenance("ingest"),
            multiscale=False,
            chunk=box * 2,
            attrs=tilt_range_attrs(TiltRange(*tilts[t], "phantom")),
        )
    rows.sort()
    import pandas as pd

    table = pd.DataFrame(
        [r[1:] for r in rows],
        columns=[
            "tomogram",
            "x",
            "y",
            "z",
            "rot",
            "tilt",
            "psi",
            "origin_x_angstrom",
            "origin_y_angstrom",
            "origin_z_angstrom",
        ],
    )
    star = tmp / "picks.star"
    write_particles(star, table)
    picks = read_particles(star)
    # the stored volumes, read back (extract_stack does not take a checked stored array yet:
    # it asks it for ``.path``)
    vols = {f"tomo{t}": np.asarray(open_volume(store, f"tomo{t}", "tomogram")) for t in range(2)}
    stack, planned = extract_stack(vols, picks, box, batch_size=16)
    write_particle_set(
        store,
        set_name,
        planned,
        stack,
        provenance=make_provenance("extract", {"box": box}, {str(star): ""}),
    )
    return store, labels, star
