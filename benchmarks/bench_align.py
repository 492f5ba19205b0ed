"""Orientation scores per second per worker process, against a plain loop and the FFT ceiling.

One *score* is one (particle, orientation) pair with its translation search: the reference
rotated, correlated with the particle within the particle's wedge, and the best shift within
``--max-shift`` voxels found. Measured in one run, one thread (``torch.set_num_threads(1)``,
``OMP_NUM_THREADS=1``: one Dask worker process's share):

- ``cryoflow``: :func:`cryoflow.kernels.score.score_orientations`, a batch of particles against
  a chunk of orientations (the reference rotated once per orientation for the whole batch),
  full band (Nyquist) and at a 4-voxel band limit (an early round);
- ``plain``: per score, ``scipy.ndimage.affine_transform`` (order 1, the cheapest) of the
  reference, ``numpy.fft.rfftn`` of it, the product with the particle's wedge-masked transform,
  ``numpy.fft.irfftn``, the maximum within the shift ball and the normalisation;
- ``fft ceiling``: inverse real FFTs of that box per second (the faster of NumPy and torch,
  batched): the rate of a search that does nothing but one inverse FFT per score. cryoflow
  evaluates the correlation only at the shifts searched (a separable DFT), so it can pass it.

Run: ``nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/bench_align.py``.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy import ndimage  # noqa: E402

from cryoflow.geometry.rotation import matrix_zyx_from_euler, random_euler  # noqa: E402
from cryoflow.kernels.masks import spherical_mask  # noqa: E402
from cryoflow.kernels.score import (  # noqa: E402
    prepare_particles,
    prepare_reference,
    score_orientations,
    shift_window,
)
from cryoflow.kernels.wedge import wedge_mask  # noqa: E402
from cryoflow.simulate.subtomo import render_shape, ribosome_shape  # noqa: E402


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def plain_scores(particle, wedge, ref, rots, max_shift):
    """The reference loop: one orientation at a time, SciPy rotation, NumPy FFTs."""
    box = particle.shape[0]
    c = np.full(3, box // 2, dtype=float)
    p = np.fft.rfftn(particle) * wedge
    pn = np.sqrt(np.sum(np.abs(p) ** 2))
    ax = np.arange(-int(max_shift), int(max_shift) + 1)
    s = np.stack(np.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3)
    s = s[(s**2).sum(1) <= max_shift**2] % box
    out = []
    for m in rots:
        r = ndimage.affine_transform(ref, m.T, offset=c - m.T @ c, order=1)
        h = np.fft.rfftn(r)
        cc = np.fft.irfftn(p * np.conj(h), s=particle.shape, axes=(0, 1, 2))
        hn = np.sqrt(np.sum(np.abs(h * wedge) ** 2))
        out.append(cc[s[:, 0], s[:, 1], s[:, 2]].max() / (pn * hn + 1e-30))
    return np.array(out)


def fft_rate(box: int, n: int) -> tuple[float, float]:
    x = np.random.default_rng(0).normal(size=(n, box, box, box)).astype(np.float32)
    f = np.fft.rfftn(x, axes=(1, 2, 3)).astype(np.complex64)
    t_np = best_of(lambda: np.fft.irfftn(f, s=(box,) * 3, axes=(1, 2, 3)), 3)
    ft = torch.as_tensor(f)
    t_t = best_of(lambda: torch.fft.irfftn(ft, s=(box,) * 3, dim=(1, 2, 3)), 3)
    return n / t_np, n / t_t


def run(box: int, n_particles: int, n_orient: int, n_plain: int, max_shift: float) -> None:
    rng = np.random.default_rng(box)
    px = 14.0 * 32 / box  # the same ribosome-like particle in both boxes
    ref = render_shape(ribosome_shape(), box, px)
    parts = np.stack(
        [
            render_shape(ribosome_shape(), box, px, rotation_zyx=matrix_zyx_from_euler(e))
            + rng.normal(scale=0.3, size=(box,) * 3)
            for e in random_euler(rng, n_particles)
        ]
    ).astype(np.float32)
    tr = np.array([[-60.0, 60.0]] * n_particles)
    rots = matrix_zyx_from_euler(random_euler(rng, n_orient)).astype(np.float32)
    mask = torch.as_tensor(spherical_mask(box, box / 2 - 3, 2))
    ref_t = prepare_reference(torch.as_tensor(ref), mask, None)
    window = shift_window(max_shift, "cpu")
    rates = {}
    for band in (2.0, 4.0):
        ps = prepare_particles(torch.as_tensor(parts), tr, mask, band)
        rot_t = torch.as_tensor(rots)
        t = best_of(lambda ps=ps, rot_t=rot_t: score_orientations(ps, ref_t, rot_t, window), 2)
        rates[band] = n_particles * n_orient / t
    w = wedge_mask((box,) * 3, (-60.0, 60.0), rfft=True)
    t_plain = best_of(lambda: plain_scores(parts[0], w, ref, rots[:n_plain], max_shift), 2)
    plain = n_plain / t_plain
    np_rate, torch_rate = fft_rate(box, 64 if box <= 32 else 8)
    ceiling = max(np_rate, torch_rate)
    print(
        f"box {box}^3, shifts |s| <= {max_shift:g} ({window.offsets.shape[0]} per score), "
        f"{n_particles} particles x {n_orient} orientations"
    )
    print(f"  plain loop (scipy.ndimage + numpy.fft): {plain:10.1f} scores/s")
    print(
        f"  cryoflow, full band:                    {rates[2.0]:10.1f} scores/s  "
        f"= {rates[2.0] / plain:6.1f}x plain"
    )
    print(
        f"  cryoflow, band 4 px:                    {rates[4.0]:10.1f} scores/s  "
        f"= {rates[4.0] / plain:6.1f}x plain"
    )
    print(
        f"  fft ceiling (inverse FFTs/s: numpy {np_rate:.0f}, torch {torch_rate:.0f}): "
        f"{ceiling:10.1f} scores/s = {ceiling / plain:6.1f}x plain"
    )
    print(
        f"  fraction of the ceiling reached: full band {rates[2.0] / ceiling:.2f}, "
        f"band 4 px {rates[4.0] / ceiling:.2f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-shift", type=float, default=3.0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    run(32, 16, 256, 40, a.max_shift)
    run(64, 8, 32, 12, a.max_shift)


if __name__ == "__main__":
    main()
