"""Conformations from the latent space on phantoms: the figures the demo reports.

Simulates ``--n`` particles (equal numbers per conformation) of a two-body hinge
(``--shape hinge``, ``cryoflow.simulate.subtomo.hinge_shape``: an arm swinging about a hinge, a
non-linear change of the density) at the poses ``--angles``, or of the ribosome pair
(``--shape ribosome``, the demo's two conformations), or the hinge's arm anywhere in a
continuum (``--shape continuum``: ``--grid`` angles evenly in ``+-swing``, equal numbers each;
the truth is the angle's bin of ``--bins`` equal bins, so neighbours across a bin edge differ
little and no method reaches 1), in random orientations, at ``--snr`` with a ``+-tilt`` wedge. The alignments handed to the
autoencoder are the true ones, perturbed by ``--orientation-noise-deg`` (a random rotation of
that rms angle per particle) and ``--shift-noise-px`` to stand in for an aligner's errors.
Trains the autoencoder (``cryoflow.models.embed_fit``), embeds every particle with the per-batch
function, classifies the latent points, and in the same run PCA + k-means on the same prepared
particles (``cryoflow.kernels.wedge_pca``). Prints JSON:

- ``embed_class_accuracy`` (Gaussian mixture with K = the number of poses) and
  ``embed_kmeans_accuracy``; ``bic_classes``: K chosen by BIC;
- ``pca_class_accuracy``: PCA (``--latent`` components) + k-means;
- ``wedge_invariance``: for ``--pairs`` noise-free particles each seen in two orientations
  (so through two different wedges in the reference frame), the median latent distance of the
  pair over the median distance between class centres (0: the wedge leaves no trace);
- timings.

One JSON object per seed of ``--seeds`` (each seed simulates, trains and scores anew).

Run: ``nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/phantom_embed.py --angles=-30,0,30``;
the demo's set: ``--shape ribosome --n 64 --box 20 --pixel 20 --steps 120
--orientation-noise-deg 12.5 --resolution-px 3.5``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from cryoflow.geometry.rotation import euler_from_matrix_xyz, matrix_xyz_from_euler
from cryoflow.kernels.conformation_input import work_mask
from cryoflow.kernels.latent_classes import class_accuracy, classify_latent
from cryoflow.kernels.wedge_pca import wedge_pca_classes
from cryoflow.models.embed import embed_batch
from cryoflow.models.embed_fit import fit_embedding
from cryoflow.models.embed_train import EmbedTrainParams
from cryoflow.simulate.subtomo import hinge_shape, ribosome_shape, simulate_subtomograms


def perturbed(euler: np.ndarray, sd_deg: float, rng: np.random.Generator) -> np.ndarray:
    """Euler angles of ``R_i`` composed with a random rotation of rms angle ``sd_deg``."""
    if sd_deg <= 0:
        return euler
    vec = rng.normal(size=(len(euler), 3)) * np.radians(sd_deg) / np.sqrt(3.0)
    m = matrix_xyz_from_euler(euler) @ Rotation.from_rotvec(vec).as_matrix()
    return euler_from_matrix_xyz(m)


def invariance(trained, shapes, a, rng_seed: int) -> float:  # type: ignore[no-untyped-def]
    """Median latent distance of one noise-free particle seen through two wedges, over the
    median distance between the poses' centres."""
    sims = [
        simulate_subtomograms(
            shapes,
            a.pairs,
            box=a.box,
            pixel_size_angstrom=a.pixel,
            snr=None,
            tilt_range_deg=(-a.tilt, a.tilt),
            max_shift_px=0.0,
            labels=np.arange(a.pairs) % len(shapes),
            seed=rng_seed + k,
        )
        for k in range(2)
    ]
    z = [embed_batch(trained, s.volumes, s.euler_deg, s.shifts_zyx_px, s.tilt_ranges) for s in sims]
    pair = np.linalg.norm(z[0] - z[1], axis=1)
    lab = sims[0].labels
    centres = np.stack(
        [np.concatenate([z[0][lab == k], z[1][lab == k]]).mean(0) for k in range(len(shapes))]
    )
    d = [np.linalg.norm(centres[i] - centres[j]) for i in range(len(shapes)) for j in range(i)]
    return float(np.median(pair) / max(np.median(d), 1e-12))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--box", type=int, default=24)
    ap.add_argument("--pixel", type=float, default=14.0, help="voxel size, Å")
    ap.add_argument("--snr", type=float, default=0.5)
    ap.add_argument("--tilt", type=float, default=60.0, help="tilt range +-DEG")
    ap.add_argument("--angles", default="-30,30", help="hinge poses, degrees")
    ap.add_argument("--orientation-noise-deg", type=float, default=3.0)
    ap.add_argument("--shift-noise-px", type=float, default=0.3)
    ap.add_argument("--resolution-px", type=float, default=4.0)
    ap.add_argument("--latent", type=int, default=4)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--shape", choices=("hinge", "ribosome", "continuum"), default="hinge")
    ap.add_argument("--swing", type=float, default=60.0, help="continuum: arm angles +-DEG")
    ap.add_argument("--bins", type=int, default=3, help="continuum: classes (equal angle bins)")
    ap.add_argument("--grid", type=int, default=31, help="continuum: arm angles simulated")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds, one result each")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--margin-se", type=float, default=2.0, help="selection margin (1e9: the anchor only)"
    )
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    for seed in (int(x) for x in a.seeds.split(",")):
        a.seed = seed
        run(a)


def run(a: argparse.Namespace) -> None:
    """Simulate, train, embed and score one seed; print its JSON."""
    if a.shape == "ribosome":
        angles, shapes = [], [ribosome_shape(0), ribosome_shape(1)]
    elif a.shape == "continuum":
        # the arm anywhere in +-swing (a grid of angles), classes = equal bins of the angle
        grid = np.linspace(-a.swing, a.swing, a.grid)
        shapes = [hinge_shape(float(x)) for x in grid]
        edges = np.linspace(-a.swing, a.swing, a.bins + 1)
        angles = [float(x) for x in (edges[:-1] + edges[1:]) / 2]  # bin centres
    else:
        angles = [float(x) for x in a.angles.split(",")]
        shapes = [hinge_shape(x) for x in angles]
    labels = np.random.default_rng(a.seed).permutation(np.arange(a.n) % len(shapes))
    t0 = time.perf_counter()
    sim = simulate_subtomograms(
        shapes,
        a.n,
        box=a.box,
        pixel_size_angstrom=a.pixel,
        snr=a.snr,
        tilt_range_deg=(-a.tilt, a.tilt),
        labels=labels,
        seed=a.seed,
    )
    rng = np.random.default_rng(a.seed + 100)
    euler = perturbed(sim.euler_deg, a.orientation_noise_deg, rng)
    shifts = sim.shifts_zyx_px + rng.normal(size=sim.shifts_zyx_px.shape) * a.shift_noise_px
    truth = sim.labels
    if a.shape == "continuum":
        truth = np.clip(np.digitize(grid[sim.labels], edges[1:-1]), 0, a.bins - 1)
        shapes = [hinge_shape(x) for x in angles]  # the bins' centres: wedge invariance
    t1 = time.perf_counter()
    params = EmbedTrainParams(
        latent_dim=a.latent, steps=a.steps, batch_size=a.batch, seed=a.seed, margin_se=a.margin_se
    )
    trained, prep = fit_embedding(
        sim.volumes, euler, shifts, sim.tilt_ranges, params, resolution_px=a.resolution_px
    )
    t2 = time.perf_counter()
    z = np.concatenate(
        [
            embed_batch(
                trained,
                sim.volumes[s : s + 32],
                euler[s : s + 32],
                shifts[s : s + 32],
                sim.tilt_ranges[s : s + 32],
            )
            for s in range(0, a.n, 32)
        ]
    )
    t3 = time.perf_counter()
    k = len(angles) if a.shape == "continuum" else len(shapes)
    gmm = classify_latent(z, classes=k, seed=a.seed)
    km = classify_latent(z, classes=k, method="kmeans", seed=a.seed)
    bic = classify_latent(z, seed=a.seed)
    pca = wedge_pca_classes(
        prep.inputs.cpu().numpy(),
        k,
        n_components=a.latent,
        mask=work_mask(trained.frame),
        seed=a.seed,
    )
    inv = invariance(trained, shapes, a, a.seed + 1000)
    out = {
        "shape": a.shape,
        "seed": a.seed,
        "angles_deg": angles,
        "n": a.n,
        "box": a.box,
        "work_box": trained.frame.work_box,
        "snr": a.snr,
        "tilt_deg": a.tilt,
        "orientation_noise_deg": a.orientation_noise_deg,
        "steps": len(trained.history),
        "loss_first_last": [
            float(np.mean(trained.history[:10])),
            float(np.mean(trained.history[-20:])),
        ],
        "embed_class_accuracy": class_accuracy(gmm.labels, truth),
        "embed_kmeans_accuracy": class_accuracy(km.labels, truth),
        "bic_classes": bic.n_classes,
        "pca_class_accuracy": class_accuracy(pca.classes.labels, truth),
        "pca_explained": [round(float(x), 4) for x in pca.explained],
        "wedge_invariance": inv,
        "selection": {
            k: v for k, v in trained.config.params.get("selection", {}).items() if k != "scores"
        },
        "seconds": {"simulate": t1 - t0, "fit": t2 - t1, "embed": t3 - t2},
        "train_particles_per_s": len(trained.history) * a.batch / max(t2 - t1, 1e-9),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
