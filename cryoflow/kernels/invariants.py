"""Rotation-invariant shape descriptors of a volume at every voxel: spherical-harmonic Gram features.

Around a voxel ``x`` the density on shells of radius ``r_s`` (``s = 0 .. S-1``, from 0 to
``reach * D``, ``D`` the particle diameter in voxels; Gaussian radial profile of width half the
shell spacing, weights summing to 1) is expanded in real spherical harmonics ``Y_lm`` up to
degree ``L``:

    c_lms(x) = sum_o v(x + o) w_s(|o|) Y_lm(o / |o|)

(a correlation; ``Y_lm`` of the centre voxel is 0 for ``l >= 1``). A rotation of the density
about ``x`` mixes the ``c_lms`` of one ``l`` by an orthogonal matrix (the same for every
shell), so for each ``l >= 1`` the Gram matrix across shells ``G_l[s, t] = sum_m c_lms c_lmt``
is rotation invariant, and so are the shell means ``c_00s``. The features are

    [c_00s for every s]  +  [sign(G) sqrt|G| for l = 1..L, s <= t]

``S + L * S (S + 1) / 2`` numbers per voxel (66 + 6 for ``S = L = 6``): a description of the
shape around ``x`` that does not change when the particle turns (the missing wedge, fixed in
the tomogram frame, is what still differs between orientations). Two molecules of the same
size and mass but different shapes differ in them; a blob detector (one LoG scale) does not
see the difference.

:func:`dense_features` evaluates them at every voxel of a block by FFT correlation (torch, on
any device); :func:`point_features` at chosen voxels from patches (for training). Both give
the same values: outside the block the volume counts as 0 (the normalised mean), so a block
read with a halo of :func:`halo` voxels gives its core exactly the whole volume's features.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from scipy import special

from cryoflow.errors import ConfigError
from cryoflow.kernels._guards import refuse_lazy

__all__ = ["InvariantSpec", "dense_features", "halo", "point_features", "shell_kernels"]


@dataclass(frozen=True)
class InvariantSpec:
    """The descriptor's geometry: particle diameter (voxels), shells, degree, reach (x D)."""

    diameter_px: float
    shells: int = 6
    degree: int = 6
    reach: float = 0.8

    def __post_init__(self) -> None:
        if not (np.isfinite(self.diameter_px) and 2.0 <= self.diameter_px <= 256.0):
            raise ConfigError(f"diameter_px must be in [2, 256] voxels, got {self.diameter_px!r}")
        if not 2 <= int(self.shells) <= 16 or not 1 <= int(self.degree) <= 10:
            raise ConfigError(
                f"shells must be 2..16 and degree 1..10, got {self.shells}, {self.degree}"
            )
        if not 0.2 <= self.reach <= 1.5:
            raise ConfigError(f"reach must be in [0.2, 1.5] diameters, got {self.reach}")
        object.__setattr__(self, "diameter_px", float(self.diameter_px))
        object.__setattr__(self, "shells", int(self.shells))
        object.__setattr__(self, "degree", int(self.degree))
        object.__setattr__(self, "reach", float(self.reach))

    @property
    def n_features(self) -> int:
        s = self.shells
        return s + self.degree * s * (s + 1) // 2


def halo(spec: InvariantSpec) -> int:
    """Half the kernel side: the voxels a block needs around its core."""
    return int(np.ceil(spec.reach * spec.diameter_px)) + 1


def _real_sh(degree: int, m: int, theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    y = special.sph_harm_y(degree, abs(m), theta, phi)
    if m > 0:
        return np.sqrt(2.0) * (-1) ** m * y.real
    if m < 0:
        return np.sqrt(2.0) * (-1) ** m * y.imag
    return y.real


@lru_cache(maxsize=8)
def shell_kernels(spec: InvariantSpec) -> tuple[np.ndarray, ...]:
    """Per degree ``l = 0..L``: ndarray (S, 2l+1, K, K, K) float32, ``K = 2 * halo + 1``.

    Offsets ``o = (dz, dy, dx)`` from the centre voxel; ``Y_lm`` with polar angle from ``z``.
    """
    r_max = halo(spec)
    ax = np.arange(-r_max, r_max + 1, dtype=np.float64)
    dz, dy, dx = np.meshgrid(ax, ax, ax, indexing="ij")
    r = np.sqrt(dz**2 + dy**2 + dx**2)
    theta = np.arccos(np.clip(np.where(r > 0, dz / np.maximum(r, 1e-12), 1.0), -1.0, 1.0))
    phi = np.arctan2(dy, dx)
    radii = np.linspace(0.0, spec.reach * spec.diameter_px, spec.shells)
    sigma = max(float(radii[1] - radii[0]), 1.0) / 2.0
    weights = []
    for rs in radii:
        w = np.exp(-((r - rs) ** 2) / (2 * sigma**2)) * (r <= r_max)
        weights.append(w / w.sum())
    out = []
    for deg in range(spec.degree + 1):
        ylm = [
            np.ones_like(r) if deg == 0 else np.where(r > 0, _real_sh(deg, m, theta, phi), 0.0)
            for m in range(-deg, deg + 1)
        ]
        out.append(np.stack([np.stack([w * y for y in ylm]) for w in weights]).astype(np.float32))
    return tuple(out)


def _gram(coeffs: torch.Tensor) -> torch.Tensor:
    """(S, M, ...) coefficients of one degree -> (S(S+1)/2, ...) signed-sqrt Gram features."""
    s = coeffs.shape[0]
    iu = torch.triu_indices(s, s)
    g = torch.einsum("am...,bm...->ab...", coeffs, coeffs)[iu[0], iu[1]]
    return torch.sign(g) * torch.sqrt(torch.abs(g))


def point_features(
    volume: np.ndarray, points_zyx: np.ndarray, spec: InvariantSpec, *, batch: int = 512
) -> np.ndarray:
    """ndarray (n, n_features) float32: the features at integer voxels ``(z, y, x)`` of a volume.

    ``volume`` is the whole (normalised) volume ``(Z, Y, X)``; outside it counts as 0.
    ``batch`` points are cut out and expanded at a time.
    """
    refuse_lazy(volume, "point_features")
    vol = np.asarray(volume, dtype=np.float32)
    r = halo(spec)
    padded = np.pad(vol, r, mode="constant")
    pts = np.asarray(points_zyx, dtype=np.int64).reshape(-1, 3) + r
    k = 2 * r + 1
    kernels = [
        torch.from_numpy(kern.reshape(kern.shape[0], kern.shape[1], -1))
        for kern in shell_kernels(spec)
    ]
    out = np.zeros((len(pts), spec.n_features), np.float32)
    for i in range(0, len(pts), batch):  # patches of one batch at a time: memory bounded
        part = pts[i : i + batch]
        patches = np.stack(
            [padded[a - r : a + r + 1, b - r : b + r + 1, c - r : c + r + 1] for a, b, c in part]
        )
        flat = torch.from_numpy(patches.reshape(len(part), k**3))
        feats = []
        for deg, kt in enumerate(kernels):
            coeffs = torch.einsum("smv,nv->smn", kt, flat)
            feats.append(coeffs[:, 0] if deg == 0 else _gram(coeffs))
        out[i : i + len(part)] = torch.cat(feats, dim=0).T.numpy()
    return out


def dense_features(
    block: np.ndarray | torch.Tensor, spec: InvariantSpec, *, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Tensor (n_features, z - 2h, y - 2h, x - 2h) float32: the features at every core voxel.

    ``block`` (normalised) must reach ``h = halo(spec)`` voxels beyond its core on every side
    (zeros where the volume ends); the result is on ``device``.
    """
    refuse_lazy(block, "dense_features")
    b = torch.as_tensor(
        np.asarray(block, dtype=np.float32) if not isinstance(block, torch.Tensor) else block,
        device=device,
    )
    h = halo(spec)
    core = tuple(int(n) - 2 * h for n in b.shape)
    if min(core) < 1:
        raise ConfigError(f"block {tuple(b.shape)} is smaller than twice the halo ({h}) plus one")
    size = tuple(int(n) for n in b.shape)
    fb = torch.fft.rfftn(b, s=size)
    feats = []
    for deg, kern in enumerate(shell_kernels(spec)):
        s_, m_ = kern.shape[:2]
        k = torch.as_tensor(kern, device=device)
        # correlation = convolution with the flipped kernel, placed with its centre at the origin
        flipped = torch.flip(k, dims=(-3, -2, -1))
        fk = torch.fft.rfftn(flipped.reshape(s_ * m_, *flipped.shape[-3:]), s=size)
        full = torch.fft.irfftn(fb[None] * fk, s=size)  # element [i] = sum_o b[i - K + 1 + ... ]
        k_side = flipped.shape[-1]
        coeffs = full[
            :,
            k_side - 1 : k_side - 1 + core[0],
            k_side - 1 : k_side - 1 + core[1],
            k_side - 1 : k_side - 1 + core[2],
        ]
        coeffs = coeffs.reshape(s_, m_, *core)
        feats.append(coeffs[:, 0] if deg == 0 else _gram(coeffs))
    return torch.cat(feats, dim=0)
