"""Conformations from ``cryoflow embed`` itself (the stage, on a local cluster) on hinge phantoms.

Like ``phantom_embed.py`` but through the stage with its defaults (band from the consensus
halves' FSC, training sample, per-batch embedding on workers, classes): ``--n`` particles of
the hinge at the poses ``--angles`` in random orientations at ``--snr`` behind a ``+-tilt``
wedge, written as a particle set with their (true) orientations and RELION origins, embedded
into ``--out``. Prints JSON:

- ``embed_class_accuracy``: the stage's classes (Gaussian mixture, K = the number of poses);
- ``kmeans_raw_latent_accuracy``: k-means on ``latent.csv``'s raw z columns (what an outside
  user would do with the file);
- ``bic_classes``: K chosen by BIC on the same latent points;
- ``pca_class_accuracy``: PCA + k-means on the same prepared inputs (the stage's frame);
- timings and the band the stage chose.

Run: ``nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/phantom_embed_stage.py --angles=-30,0,30``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=240)
    ap.add_argument("--box", type=int, default=24)
    ap.add_argument("--pixel", type=float, default=14.0)
    ap.add_argument("--snr", type=float, default=0.5)
    ap.add_argument("--tilt", type=float, default=60.0)
    ap.add_argument("--angles", default="-30,30")
    ap.add_argument("--latent", type=int, default=4)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    import dask.array as da
    import pandas as pd
    from sklearn.cluster import KMeans

    from cryoflow.io.particleset import write_particle_set
    from cryoflow.io.provenance import make_provenance
    from cryoflow.kernels.conformation_input import work_mask
    from cryoflow.kernels.latent_classes import class_accuracy, classify_latent
    from cryoflow.kernels.wedge_pca import wedge_pca_classes
    from cryoflow.models.embed import as_embedder
    from cryoflow.models.embed_fit import prepare_all
    from cryoflow.models.loader import ModelHandle
    from cryoflow.pipelines.cluster.connect import ClusterConfig, connect
    from cryoflow.pipelines.stages.embed import EmbedParams, embed
    from cryoflow.simulate.subtomo import hinge_shape, simulate_subtomograms

    angles = [float(x) for x in a.angles.split(",")]
    t0 = time.perf_counter()
    sim = simulate_subtomograms(
        [hinge_shape(x) for x in angles],
        a.n,
        box=a.box,
        pixel_size_angstrom=a.pixel,
        snr=a.snr,
        tilt_range_deg=(-a.tilt, a.tilt),
        seed=a.seed,
    )
    rot, tilt, psi = sim.euler_deg.T
    sz, sy, sx = sim.shifts_zyx_px.T
    table = pd.DataFrame(
        {
            "tomogram": "t",
            "x": np.arange(a.n, dtype=float),
            "y": 0.0,
            "z": 0.0,
            "rot": rot,
            "tilt": tilt,
            "psi": psi,
            "origin_x_angstrom": -sx * a.pixel,
            "origin_y_angstrom": -sy * a.pixel,
            "origin_z_angstrom": -sz * a.pixel,
            "tilt_min_deg": -a.tilt,
            "tilt_max_deg": a.tilt,
            "pixel_size_angstrom": a.pixel,
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        stack = da.from_array(sim.volumes, chunks=(64, a.box, a.box, a.box))
        write_particle_set(d / "s.zarr", "p", table, stack, provenance=make_provenance("bench"))
        t1 = time.perf_counter()
        params = EmbedParams(latent=a.latent, classes=len(angles), steps=a.steps, seed=a.seed)
        with connect(ClusterConfig(n_workers=a.workers, dashboard=False), quiet=True) as client:
            res = embed(client, d / "s.zarr", "p", params, d / "out")
        t2 = time.perf_counter()
        lat = pd.read_csv(d / "out" / "latent.csv")
        z = lat[[f"z{i}" for i in range(a.latent)]].to_numpy()
        raw = KMeans(len(angles), n_init=10, random_state=0).fit(z).labels_
        emb = as_embedder(ModelHandle.from_directory(d / "out"))
        prep = prepare_all(
            sim.volumes,
            sim.euler_deg,
            sim.shifts_zyx_px,
            sim.tilt_ranges,
            emb.frame,
            emb.model.average,
        )
        pca = wedge_pca_classes(
            prep.inputs.numpy(),
            len(angles),
            n_components=a.latent,
            mask=work_mask(emb.frame),
            seed=a.seed,
        )
    bic = classify_latent(res.latent, seed=a.seed)
    out = {
        "angles_deg": angles,
        "n": a.n,
        "box": a.box,
        "snr": a.snr,
        "tilt_deg": a.tilt,
        "steps": a.steps,
        "workers": a.workers,
        "band": res.record["band"],
        "work_box": res.record["frame"]["work_box"],
        "embed_class_accuracy": class_accuracy(res.table["class"].to_numpy() - 1, sim.labels),
        "kmeans_raw_latent_accuracy": class_accuracy(raw, sim.labels),
        "bic_classes": bic.n_classes,
        "pca_class_accuracy": class_accuracy(pca.classes.labels, sim.labels),
        "training": res.record["training"],
        "seconds": {"simulate": t1 - t0, "stage": t2 - t1, **res.record["seconds"]},
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
