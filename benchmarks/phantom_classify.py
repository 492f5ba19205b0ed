"""Classification on two-conformation phantoms: multiref and PCA class accuracy side by side.

Simulates ``--n`` particles of two conformations (``--shapes ribosome``: the simulator's
ribosome-like particle in conformations 0 and 1; ``--shapes hinge``: the two-body hinge at 0
and ``--hinge-deg``) in random orientations at ``--snr`` with a ``--tilt`` wedge, aligns them
(``--consensus refine``: the averaging refinement from conformation 0 low-passed to
``--init-res``, as the averaging benchmark does; ``--consensus truth``: the true poses;
``--consensus perturb``: the true poses turned by random rotations of median angle
``--perturb-deg``, a consensus with a known error), then
classifies with ``multiref`` (PCA-split seeds, random seeds, and PCA seeds with a local
re-alignment per class within each ``--realign-deg`` radius, and with a global search per
class at each ``--global-deg`` grid step) and ``pca`` (K = 2 and K by
BIC), and prints each one's class accuracy against the truth (best matching of class numbers)
and its time: the demo's ``class_accuracy`` (multiref) and ``pca_class_accuracy``. The peer,
measured in the same run: plain k-means (scikit-learn, K = 2, 10 starts) on the particles'
raw voxels, no alignment and no wedge handling; the ratios ``multiref / kmeans_raw`` and
``pca / kmeans_raw`` are printed (accuracy is at least 0.5 by construction, chance).

Run: ``nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/phantom_classify.py``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from cryoflow.geometry.orientation_error import orientation_errors_deg
from cryoflow.geometry.rotation import matrix_xyz_from_euler
from cryoflow.kernels.fsc import lowpass
from cryoflow.kernels.heterogeneity.metrics import class_accuracy
from cryoflow.kernels.heterogeneity.multiref_loop import MultirefParams, classify_multiref
from cryoflow.kernels.heterogeneity.pca_classify import PcaParams, classify_pca
from cryoflow.kernels.refine import RefineParams, refine, split_halves
from cryoflow.pipelines.stages.classify_rounds import classify_search, realign_levels
from cryoflow.simulate.subtomo import hinge_shape, ribosome_shape, simulate_subtomograms


def perturbed(euler_deg: np.ndarray, median_deg: float, seed: int) -> np.ndarray:
    """The orientations turned by isotropic Gaussian rotation vectors whose angle has median
    ``median_deg`` (a Maxwell distribution: median = 1.538 sigma): a consensus with a known
    error, like the averaging stage's at the demo's sizes."""
    from scipy.spatial.transform import Rotation

    from cryoflow.geometry.rotation import euler_from_matrix_xyz

    rng = np.random.default_rng([seed, 7])
    turn = rng.normal(scale=np.radians(median_deg) / 1.538, size=(len(euler_deg), 3))
    m = matrix_xyz_from_euler(euler_deg) @ Rotation.from_rotvec(turn).as_matrix()
    return euler_from_matrix_xyz(m)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--box", type=int, default=32)
    ap.add_argument("--pixel", type=float, default=None, help="voxel size, Å (14 / 10)")
    ap.add_argument("--snr", type=float, default=0.5)
    ap.add_argument("--tilt", type=float, default=60.0, help="tilt range +-DEG")
    ap.add_argument("--shapes", choices=("ribosome", "hinge"), default="ribosome")
    ap.add_argument("--hinge-deg", type=float, default=40.0)
    ap.add_argument("--consensus", choices=("refine", "truth", "perturb"), default="refine")
    ap.add_argument(
        "--perturb-deg",
        type=float,
        default=12.5,
        help="--consensus perturb: median orientation error added to the true poses",
    )
    ap.add_argument("--rounds", type=int, default=4, help="consensus refinement rounds")
    ap.add_argument("--init-res", type=float, default=60.0, help="initial low-pass, Å")
    ap.add_argument("--global-step", type=float, default=20.0, help="consensus global grid")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--realign-deg",
        type=float,
        nargs="*",
        default=[6.0],
        help="multiref with local re-alignment per class within each radius (classify's "
        "--realign-deg)",
    )
    ap.add_argument(
        "--global-deg",
        type=float,
        nargs="*",
        default=[],
        help="multiref with a global search per class at each grid step (classify's "
        "--realign-global-deg)",
    )
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.shapes == "ribosome":
        shapes, px = [ribosome_shape(0), ribosome_shape(1)], a.pixel or 14.0
    else:
        shapes, px = [hinge_shape(0.0), hinge_shape(a.hinge_deg)], a.pixel or 10.0
    sim = simulate_subtomograms(
        shapes,
        a.n,
        box=a.box,
        pixel_size_angstrom=px,
        snr=a.snr,
        tilt_range_deg=(-a.tilt, a.tilt),
        seed=a.seed,
    )
    halves = split_halves(a.n, a.seed)
    out: dict[str, object] = {
        "n": a.n,
        "box": a.box,
        "pixel_angstrom": px,
        "snr": a.snr,
        "tilt": a.tilt,
        "shapes": a.shapes,
        "consensus": a.consensus,
        "class_sizes": np.bincount(sim.labels).tolist(),
    }
    t0 = time.perf_counter()
    if a.consensus == "truth":
        euler, shifts = sim.euler_deg, sim.shifts_zyx_px
    elif a.consensus == "perturb":
        euler, shifts = perturbed(sim.euler_deg, a.perturb_deg, a.seed), sim.shifts_zyx_px
        err, _ = orientation_errors_deg(
            matrix_xyz_from_euler(euler), matrix_xyz_from_euler(sim.euler_deg)
        )
        out["consensus_orientation_error_deg"] = round(float(np.median(err)), 2)
    else:
        res = refine(
            sim.volumes,
            sim.tilt_ranges,
            voxel_size_angstrom=px,
            params=RefineParams(
                rounds=a.rounds,
                initial_resolution_px=a.init_res / px,
                global_step_deg=a.global_step,
            ),
            reference=lowpass(sim.truth[0], a.init_res / px),
            half_ids=halves,
        )
        euler, shifts = res.alignment.euler_deg, res.alignment.shifts_zyx_px
        err, _ = orientation_errors_deg(
            matrix_xyz_from_euler(euler), matrix_xyz_from_euler(sim.euler_deg)
        )
        out["consensus_orientation_error_deg"] = round(float(np.median(err)), 2)
    out["consensus_seconds"] = round(time.perf_counter() - t0, 1)
    runs = {
        "multiref": MultirefParams(n_classes=2, seed=a.seed),
        "multiref_random_seeds": MultirefParams(n_classes=2, seed_method="random", seed=a.seed),
    }
    for r in a.realign_deg:
        runs[f"multiref_realign_{r:g}deg"] = MultirefParams(
            n_classes=2, seed=a.seed, local_levels=realign_levels(r)
        )
    for g in a.global_deg:
        runs[f"multiref_global_{g:g}deg"] = MultirefParams(
            n_classes=2,
            seed=a.seed,
            global_step_deg=g,
            local_levels=classify_search(
                argparse.Namespace(realign_global_deg=g, max_shift_px=3.0)
            )["local_levels"],
        )
    for name, params in runs.items():
        t0 = time.perf_counter()
        mr = classify_multiref(
            sim.volumes,
            sim.tilt_ranges,
            euler_deg=euler,
            shifts_zyx_px=shifts,
            voxel_size_angstrom=px,
            params=params,
            half_ids=halves,
        )
        out[name] = {
            "accuracy": round(class_accuracy(mr.assignments, sim.labels), 3),
            "seed_accuracy": round(class_accuracy(mr.seeds, sim.labels), 3),
            "rounds": len(mr.history),
            "changed": [round(float(h["changed"]), 3) for h in mr.history],
            "seconds": round(time.perf_counter() - t0, 1),
        }
        consensus = mr.consensus
    for name, k in (("pca", 2), ("pca_bic", None)):
        t0 = time.perf_counter()
        pc = classify_pca(
            sim.volumes,
            sim.tilt_ranges,
            euler_deg=euler,
            shifts_zyx_px=shifts,
            average=consensus.average,
            mask=consensus.mask,
            resolution_px=consensus.resolution_0143_px,
            params=PcaParams(n_classes=k, seed=a.seed),
        )
        out[name] = {
            "accuracy": round(class_accuracy(pc.labels, sim.labels), 3),
            "n_classes": pc.clusters.n_classes,
            "bic": [round(float(b), 1) for b in pc.clusters.bic],
            "explained": [round(float(v), 3) for v in pc.basis.explained_ratio[:4]],
            "seconds": round(time.perf_counter() - t0, 1),
        }
    from sklearn.cluster import KMeans

    t0 = time.perf_counter()
    raw = KMeans(2, n_init=10, random_state=a.seed).fit(sim.volumes.reshape(a.n, -1)).labels_
    peer = class_accuracy(raw, sim.labels)
    out["kmeans_raw"] = {"accuracy": round(peer, 3), "seconds": round(time.perf_counter() - t0, 1)}
    out["ratio_multiref_vs_kmeans_raw"] = round(out["multiref"]["accuracy"] / peer, 3)  # type: ignore[index]
    out["ratio_pca_vs_kmeans_raw"] = round(out["pca"]["accuracy"] / peer, 3)  # type: ignore[index]
    out["class_accuracy"] = out["multiref"]["accuracy"]  # type: ignore[index]
    out["pca_class_accuracy"] = out["pca"]["accuracy"]  # type: ignore[index]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
