"""Tilt series from a phantom: projection, CTF-like blur, contrast, noise at a set SNR, masks.

Projection is the project's own projector, :func:`cryoflow.kernels.project.project_block`,
for any geometry (the contract's single-axis tilt about ``y``, where voxel ``(z, y, x)`` falls
on ``uc = xc*cos(t) + zc*sin(t)`` plus the tilt's ``du`` shift; a rotated tilt axis; ``v``
shifts; a :class:`TiltGeometry`):

- :func:`project_sum` is its bilinear ``"sum"`` projector (its transpose is
  :func:`backproject_linear`, the kernels' bilinear back-projector);
- :func:`project_any` and :func:`class_masks2d` are its binary forward projection (``"any"``)
  with the nearest-neighbour rule ``u = rint(uc + (U-1)/2)``; voxels with ``u`` outside
  ``[0, U)`` fall off the detector.

Image formation (:func:`apply_blur`, :func:`apply_contrast`, :func:`add_noise`): projected
mass ``P`` is blurred by a transfer ``T`` that passes mass with a positive sign at zero
frequency (``"none"``: 1, ``"gaussian"``: a Gaussian, ``"ctf"``: minus the phase-contrast CTF).
Contrast ``"mass"`` keeps ``T * P`` (dense = bright); ``"em"`` gives ``1 - k (T * P)`` with
``k = EM_ABSORPTION / Z`` (dense = dark on a bright background, as microscopes record it; with
``"ctf"`` this is the usual weak-phase image ``1 + k CTF * P``). Noise is added last; its SNR is
measured on the signal part (the constant background has no variance).

All functions are eager kernels on NumPy arrays and raise ``TypeError`` for Dask input.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from cryoflow.errors import ConfigError, GeometryError
from cryoflow.geometry import TiltGeometry, as_geometry
from cryoflow.kernels._guards import refuse_lazy

#: image polarities: ``"em"`` dense = dark (microscope images), ``"mass"`` dense = bright
CONTRASTS = ("em", "mass")
#: ``"em"`` images: intensity of the unscattered beam (no specimen)
EM_BACKGROUND = 1.0
#: ``"em"`` images: fraction of the beam a column of unit mass density removes over the whole
#: volume thickness (linearised Beer-Lambert law ``exp(-k P) ~ 1 - k P``, ``k = this / Z``)
EM_ABSORPTION = 0.5


def require_numpy(x: object, name: str) -> np.ndarray:
    """``numpy.asarray(x)``, refusing lazy (Dask) input with ``TypeError``."""
    refuse_lazy(x, name)
    return np.asarray(x)


def project_general(
    volume: np.ndarray, geometry: TiltGeometry, width: int, *, mode: str, interpolation: str
) -> np.ndarray:
    """Project a whole volume with any geometry (the general projector, one thread).

    Parameters
    ----------
    volume : ndarray of shape (Z, Y, X)
    geometry : TiltGeometry
    width : int
        Detector width ``U``; the detector has ``Y`` rows.
    mode : {"sum", "any"}
    interpolation : {"linear", "nearest"}

    Returns
    -------
    ndarray of shape (n_tilts, Y, U): float32 (``"sum"``) or bool (``"any"``)
    """
    # imported here: the general projector needs torch, the single-axis path does not
    from cryoflow.kernels.project import project_block

    vol = require_numpy(volume, "volume")
    if vol.ndim != 3:
        raise GeometryError(f"volume must be (Z, Y, X), got shape {vol.shape}")
    Z, Y, X = vol.shape
    whole = (slice(0, Z), slice(0, Y), slice(0, X))
    out = project_block(
        vol,
        geometry,
        (Z, Y, X),
        (Y, int(width)),
        whole,
        mode=mode,
        interpolation=interpolation,
        n_threads=1,
    )
    return out if mode == "any" else out.astype(np.float32, copy=False)


def project_sum(volume: np.ndarray, angles: object, width: int | None = None) -> np.ndarray:
    """Linear-interpolation sum projection (the kernels' ``"sum"`` projector with bilinear taps).

    Parameters
    ----------
    volume : ndarray of shape (Z, Y, X)
    angles : ndarray of shape (n_tilts,) in degrees, or a TiltGeometry (any)
    width : int, optional
        Detector width ``U`` (default ``X``).

    Returns
    -------
    ndarray of float32, shape (n_tilts, Y, U)
    """
    vol = require_numpy(volume, "volume")
    U = vol.shape[-1] if width is None else int(width)
    vol32 = vol.astype(np.float32, copy=False)
    return project_general(vol32, as_geometry(angles), U, mode="sum", interpolation="linear")


def backproject_linear(images: np.ndarray, angles: object, shape: Sequence[int]) -> np.ndarray:
    """Adjoint of :func:`project_sum` (the kernels' bilinear back-projector):
    ``(n_tilts, V, U)`` -> ``(Z, Y, X)`` float32."""
    from cryoflow.kernels.backproject import backproject_block

    img = require_numpy(images, "images").astype(np.float32, copy=False)
    geometry = as_geometry(angles)
    Z, Y, X = (int(s) for s in shape)
    if img.ndim != 3 or img.shape[0] != geometry.n_tilts:
        raise GeometryError(
            f"images must be ({geometry.n_tilts}, V, U) for {geometry.n_tilts} angles, "
            f"got {img.shape}"
        )
    whole = (slice(0, Z), slice(0, Y), slice(0, X))
    return backproject_block(
        img, geometry, (Z, Y, X), img.shape[1:], whole, interpolation="linear", n_threads=1
    ).astype(np.float32, copy=False)


def project_any(mask: np.ndarray, angles: object, width: int | None = None) -> np.ndarray:
    """Binary forward projection (contract ``mode="any"``, nearest-neighbour rule).

    Parameters
    ----------
    mask : ndarray of shape (Z, Y, X)
        Non-zero voxels count as true.
    angles : ndarray of shape (n_tilts,) in degrees, or a TiltGeometry (any)
    width : int, optional
        Detector width ``U`` (default ``X``).

    Returns
    -------
    ndarray of bool, shape (n_tilts, Y, U)
    """
    m = require_numpy(mask, "mask")
    return class_masks2d(m != 0, angles, {"mask": 1}, width)["mask"]


def class_masks2d(
    labels: np.ndarray, angles: object, class_ids: Mapping[str, int], width: int | None = None
) -> dict[str, np.ndarray]:
    """Per-class binary forward projections of a label volume.

    Parameters
    ----------
    labels : ndarray of int or bool, shape (Z, Y, X)
    angles : ndarray of shape (n_tilts,) in degrees, or a TiltGeometry (any)
    class_ids : mapping of name -> label id
    width : int, optional
        Detector width ``U`` (default ``X``).

    Returns
    -------
    dict of name -> ndarray of bool, shape (n_tilts, Y, U)
        ``out[name][t, y, u]`` is true when any voxel labelled ``class_ids[name]`` in row ``y``
        falls on detector column ``u`` at tilt ``t`` (for a general geometry: falls on pixel
        ``(y, u)`` under the nearest-neighbour rule in both detector axes).
    """
    lab = require_numpy(labels, "labels")
    if lab.ndim != 3:
        raise GeometryError(f"labels must be (Z, Y, X), got shape {lab.shape}")
    U = lab.shape[2] if width is None else int(width)
    geom = as_geometry(angles)
    names = list(class_ids)
    # one pass projects several classes: voxels of the k-th class of a group carry base**k,
    # base exceeding the most voxels any detector pixel receives (a nearest-rule count), so
    # each class's count is one base-``base`` digit of the exact (float64) sum projection
    base = _pixel_count_bound(lab, geom, U) + 1
    per_pass = max(1, int(EXACT_BITS * math.log(2) / math.log(max(base, 2))))
    out: dict[str, np.ndarray] = {}
    for start in range(0, len(names), per_pass):
        group = names[start : start + per_pass]
        code = np.zeros(lab.shape, dtype=np.int64)
        for k, name in enumerate(group):
            code[lab == class_ids[name]] = base**k
        counts = _exact_counts(code, geom, U)
        for k, name in enumerate(group):
            out[name] = (counts // base**k) % base > 0
    return out


def _pixel_count_bound(labels: np.ndarray, geometry: TiltGeometry, width: int) -> int:
    """At most how many voxels of ``labels`` any detector pixel receives (nearest rule).

    Single-axis tilts (row ``v`` sees row ``y`` only): in each z slice, the ``x`` with
    ``rint(a x + c) == u`` number at most ``floor(1 / |a|) + 1``, so ``Z`` times that over
    the tilts. Other geometries: measured, one sum projection of the labelled voxels.
    """
    Z, _, X = labels.shape
    if geometry.is_simple:
        a = np.abs(geometry.matrix_array[:, 1, 2])
        per_slice = np.where(a > 0, np.floor(1.0 / np.maximum(a, 1e-300)) + 1, X)
        return int(Z * np.minimum(per_slice, X).max())
    counts = project_general(labels != 0, geometry, width, mode="sum", interpolation="nearest")
    return int(counts.max())


#: integers a float64 sum holds exactly (2**52 and below, with a bit to spare)
EXACT_BITS = 52


def _exact_counts(code: np.ndarray, geometry: TiltGeometry, width: int) -> np.ndarray:
    """The nearest-rule sum projection of an int64 volume, as int64 (exact below 2**52)."""
    from cryoflow.kernels.project import project_block

    Z, Y, X = code.shape
    whole = (slice(0, Z), slice(0, Y), slice(0, X))
    out = project_block(
        code, geometry, (Z, Y, X), (Y, int(width)), whole,
        mode="sum", interpolation="nearest", n_threads=1,
    )  # fmt: skip
    return np.asarray(out, dtype=np.int64)


def electron_wavelength_angstrom(voltage_kv: float) -> float:
    """Relativistic electron wavelength in Å for an acceleration voltage in kV."""
    v = voltage_kv * 1e3
    return float(12.2643 / np.sqrt(v * (1 + 0.978466e-6 * v)))


def ctf_2d(
    shape: Sequence[int],
    pixel_size_angstrom: float,
    defocus_um: float,
    *,
    voltage_kv: float = 300.0,
    amplitude_contrast: float = 0.07,
    bfactor_angstrom2: float = 0.0,
) -> np.ndarray:
    """Radially symmetric phase-contrast CTF (no astigmatism, no Cs) on an rfft2 grid.

    ``CTF(k) = -(sqrt(1-A^2) sin(chi) + A cos(chi)) * exp(-B k^2 / 4)``,
    ``chi = pi * lambda * defocus * k^2`` (underfocus positive).

    Returns
    -------
    ndarray of shape (Y, U//2 + 1)
    """
    Y, U = (int(s) for s in shape)
    ky = np.fft.fftfreq(Y, d=pixel_size_angstrom)[:, None]
    ku = np.fft.rfftfreq(U, d=pixel_size_angstrom)[None, :]
    k2 = ky**2 + ku**2
    chi = np.pi * electron_wavelength_angstrom(voltage_kv) * defocus_um * 1e4 * k2
    a = amplitude_contrast
    return -(np.sqrt(1 - a**2) * np.sin(chi) + a * np.cos(chi)) * np.exp(
        -bfactor_angstrom2 * k2 / 4
    )


def apply_blur(
    images: np.ndarray,
    *,
    kind: str,
    pixel_size_angstrom: float,
    defocus_um: float = 3.0,
    sigma_px: float = 1.0,
) -> np.ndarray:
    """Blur each tilt image: ``kind`` is ``"none"``, ``"gaussian"`` or ``"ctf"``.

    Every kernel passes zero frequency with a positive sign: ``"ctf"`` multiplies by
    ``-ctf_2d`` (``+A`` at zero frequency), so blurred mass stays mass-like and
    :func:`apply_contrast` alone decides the polarity.

    Parameters
    ----------
    images : ndarray of shape (n_tilts, Y, U)

    Returns
    -------
    ndarray of float32, shape (n_tilts, Y, U)
    """
    img = require_numpy(images, "images").astype(np.float32, copy=False)
    if kind == "none":
        return img
    Y, U = img.shape[1:]
    if kind == "ctf":
        # minus the CTF: mass passes with a positive sign at low frequency (see the module doc)
        h = -ctf_2d((Y, U), pixel_size_angstrom, defocus_um)
    elif kind == "gaussian":
        ky = np.fft.fftfreq(Y)[:, None]
        ku = np.fft.rfftfreq(U)[None, :]
        h = np.exp(-2 * np.pi**2 * sigma_px**2 * (ky**2 + ku**2))
    else:
        raise ConfigError(f"unknown blur {kind!r}; valid: none, gaussian, ctf")
    out = np.fft.irfft2(np.fft.rfft2(img, axes=(1, 2)) * h, s=(Y, U), axes=(1, 2))
    return out.astype(np.float32)


def apply_contrast(images: np.ndarray, contrast: str, thickness_px: int) -> np.ndarray:
    """Turn blurred projected mass into image intensities.

    Parameters
    ----------
    images : ndarray of shape (n_tilts, Y, U)
        Blurred projected mass (mass per voxel summed along the beam).
    contrast : {"em", "mass"}
        ``"mass"``: unchanged (dense = bright). ``"em"``: ``EM_BACKGROUND - k * images`` with
        ``k = EM_ABSORPTION / thickness_px`` (dense = dark on a bright background).
    thickness_px : int
        Volume thickness ``Z`` in voxels.

    Returns
    -------
    ndarray of float32, shape (n_tilts, Y, U)
    """
    img = require_numpy(images, "images").astype(np.float32, copy=False)
    if contrast == "mass":
        return img
    if contrast == "em":
        k = np.float32(EM_ABSORPTION / int(thickness_px))
        return (np.float32(EM_BACKGROUND) - k * img).astype(np.float32)
    raise ConfigError(f"unknown contrast {contrast!r}; valid: {', '.join(CONTRASTS)}")


def add_noise(
    images: np.ndarray, snr: float | None, seeds: Sequence[np.random.SeedSequence]
) -> np.ndarray:
    """Add white Gaussian noise so that each tilt has ``var(signal) / var(noise) = snr``.

    Parameters
    ----------
    images : ndarray of shape (n_tilts, Y, U)
        Noise-free images.
    snr : float or None
        Variance ratio per tilt; ``None`` or ``inf`` adds nothing.
    seeds : sequence of numpy.random.SeedSequence, length n_tilts
        One per tilt, so a tilt's noise does not depend on how tilts are chunked.

    Returns
    -------
    ndarray of float32, shape (n_tilts, Y, U)
    """
    img = require_numpy(images, "images").astype(np.float32, copy=True)
    if snr is None or np.isinf(snr):
        return img
    if not snr > 0:
        raise ConfigError(f"snr must be > 0 (or None for no noise), got {snr}")
    if len(seeds) != img.shape[0]:
        raise ConfigError(f"need one seed per tilt ({img.shape[0]}), got {len(seeds)}")
    for i, seed in enumerate(seeds):
        sigma = float(np.sqrt(img[i].var(dtype=np.float64) / snr))
        img[i] += np.random.default_rng(seed).normal(0.0, sigma, img[i].shape).astype(np.float32)
    return img
