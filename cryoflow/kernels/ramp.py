"""Ramp (Ram-Lak) filtering of tilt images across the tilt axis, for weighted back-projection.

The filter
----------
One kernel: the Ram-Lak kernel ``h[0] = 1/4, h[k] = -1/(pi k)^2 (k odd), 0 (k even, k != 0)``
truncated to ``|k| < L/2``, whose response is the ramp ``|f|`` (``f`` in cycles per pixel) with
a small positive value at ``f = 0`` (no DC hole, hence no cupping). Each image ``t`` is filtered
along its own detector direction ``d_t = (dv, du)`` (unit; from
:func:`cryoflow.geometry.tilt_axis.filter_directions`, across the tilt axis), i.e. its 2D
spectrum is multiplied by ``H(fv*dv + fu*du)``: the 2D form of convolving every line along
``d_t`` with the kernel. ``d = (0, 1)`` is the classic filter along image rows.

- Along rows (``|dv|`` < 1e-9) or columns (``|du|`` < 1e-9): a 1-D FFT per row (column) with
  ``H`` the DFT of the truncated kernel, ``L`` = the padded row (column) length.
- Any other direction: a 2-D FFT with ``H`` interpolated from the same kernel's DFT on an 8x
  finer grid (exact at the 1-D grid points), ``L`` = the padded length of the image's extent
  along ``d``; beyond Nyquist (diagonal frequencies) ``H`` keeps rising as ``|f|`` plus the
  kernel's correction at Nyquist.

The padding rule
----------------
Every filtered axis of ``size`` pixels is padded to ``max(64, next power of two >= 2*size)``,
centred, with the image's **edge values** (``numpy.pad(mode="edge")``), never zeros: real tilt
images sit on a bright, non-zero background, and a zero pad would turn each image border into
a strong step that the ramp filter smears across the reconstruction (the ramp's response to a
constant is ~0, so the background itself drops out). The padding makes the convolution
non-circular over the image. Back-projecting the result and scaling by ``pi / n_tilts`` gives
filtered back-projection.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.fft

from cryoflow.kernels._guards import eager_stack

FILTERS = ("ramp", "none")
#: a direction component below this counts as zero (the 1-D row/column path)
AXIS_TOL = 1e-9
_FINE = 8  # oversampling of the kernel's response table for the 2-D path


def parse_filter(value: str) -> str:
    """Return ``value`` if it is a known filter, else raise ``ValueError`` naming them."""
    if value not in FILTERS:
        raise ValueError(f"filter must be one of {FILTERS}, got {value!r}")
    return value


def padded_length(size: int) -> int:
    """The padding rule: ``max(64, next power of two >= 2*size)`` samples for ``size`` pixels."""
    return max(64, 1 << int(np.ceil(np.log2(max(2 * int(size), 1)))))


def ram_lak_kernel(length: int) -> np.ndarray:
    """ndarray of shape (length,): the Ram-Lak kernel in FFT order, truncated to ``|k| < length/2``."""
    k = np.concatenate([np.arange(0, length // 2 + 1), np.arange(-(length // 2) + 1, 0)])
    h = np.zeros(length)
    h[0] = 0.25
    odd = k % 2 == 1
    h[odd] = -1.0 / (np.pi * k[odd]) ** 2
    return h


def ramp_response(width: int) -> tuple[np.ndarray, int]:
    """Frequency response of the ramp kernel for rows of ``width`` pixels.

    Returns
    -------
    response : ndarray of shape (n_pad // 2 + 1,), float64 (for ``numpy.fft.rfft``)
    n_pad : int
        Padded row length (:func:`padded_length`).
    """
    n_pad = padded_length(width)
    return np.fft.rfft(ram_lak_kernel(n_pad)).real, n_pad


@functools.lru_cache(maxsize=8)
def _fine_table(length: int) -> np.ndarray:
    """``H`` of the kernel truncated to ``length`` at ``j / (_FINE * length)``, j = 0.._FINE*length/2."""
    fine = np.zeros(_FINE * length)
    h = ram_lak_kernel(length)
    half = length // 2
    fine[: half + 1] = h[: half + 1]
    fine[-(half - 1) :] = h[half + 1 :]
    table = np.fft.rfft(fine).real
    table.flags.writeable = False
    return table


def ramp_at(freq: np.ndarray, length: int) -> np.ndarray:
    """The response ``H`` of the kernel truncated to ``length`` at any frequencies (cycles/px).

    Exactly :func:`ramp_response`'s values at ``j / length``; in between, linear interpolation
    on an 8x finer grid; for ``|f| > 1/2``, ``|f|`` plus the kernel's correction at ``f = 1/2``.
    Returns float64 of ``freq``'s shape.
    """
    table = _fine_table(int(length))
    f = np.abs(np.asarray(freq, dtype=np.float64))
    pos = np.minimum(f, 0.5) * (_FINE * length)  # uniform grid: index arithmetic, no search
    i0 = np.minimum(pos.astype(np.int64), table.size - 2)
    w = pos - i0
    inside = table[i0] * (1.0 - w) + table[i0 + 1] * w
    return np.where(f > 0.5, f + (table[-1] - 0.5), inside)


def _pad_widths(size: int, n_pad: int) -> tuple[int, int]:
    left = (n_pad - size) // 2
    return left, n_pad - size - left


def _filter_axis(images: np.ndarray, axis: int) -> np.ndarray:
    """1-D path: filter every line along ``axis`` (1 = columns/v, 2 = rows/u)."""
    size = images.shape[axis]
    response, n_pad = ramp_response(size)
    left, right = _pad_widths(size, n_pad)
    pad = [(0, 0)] * 3
    pad[axis] = (left, right)
    padded = np.pad(images, pad, mode="edge")
    spectrum = scipy.fft.rfft(padded, axis=axis, workers=1)
    shape = [1, 1, 1]
    shape[axis] = response.size
    spectrum *= response.astype(np.float32).reshape(shape)
    out = scipy.fft.irfft(spectrum, n=n_pad, axis=axis, workers=1)
    return np.take(out, np.arange(left, left + size), axis=axis)


@functools.lru_cache(maxsize=2)
def _response_2d(nv: int, nu: int, dv: float, du: float, length: int) -> np.ndarray:
    """``H(fv*dv + fu*du)`` on the ``rfft2`` grid, shape (nv, nu // 2 + 1), float32.

    A Nyquist frequency (``fv = -1/2`` row, ``fu = 1/2`` column) is one sample for both signs,
    where the ramp of a tilted direction differs; it gets the mean of the two, which keeps the
    filter real and symmetric (flipping or rotating an image by 90 degrees commutes with it).
    """
    fv = np.fft.fftfreq(nv)
    fu = np.fft.rfftfreq(nu)
    response = np.empty((nv, fu.size), dtype=np.float64)
    step = max(1, (1 << 15) // fu.size)  # row blocks of ~32k values: small, reused temporaries
    for r0 in range(0, nv, step):
        r1 = min(nv, r0 + step)
        response[r0:r1] = ramp_at(fv[r0:r1, None] * dv + fu[None, :] * du, length)
    row, col = nv // 2, fu.size - 1  # fv = -1/2 and fu = +1/2 (both lengths are even)
    response[row] = 0.5 * (
        ramp_at(fu * du - 0.5 * dv, length) + ramp_at(fu * du + 0.5 * dv, length)
    )
    response[:, col] = 0.5 * (
        ramp_at(fv * dv + 0.5 * du, length) + ramp_at(fv * dv - 0.5 * du, length)
    )
    corners = np.array([0.5 * (dv + du), 0.5 * (dv - du)])
    response[row, col] = float(np.mean(ramp_at(corners, length)))
    out = response.astype(np.float32)
    out.flags.writeable = False  # cached: the tilts of one series share it
    return out


def _filter_2d(image: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """2-D path: one image ``(V, U)`` filtered along ``direction = (dv, du)``."""
    V, U = image.shape
    nv, nu = padded_length(V), padded_length(U)
    (tv, bv), (lu, ru) = _pad_widths(V, nv), _pad_widths(U, nu)
    padded = np.pad(image, ((tv, bv), (lu, ru)), mode="edge")
    # rounded to 1e-9 so that the tilts of one series (equal directions up to rounding) share
    # one cached response, whatever the cache holds
    dv, du = (round(float(c), 9) for c in direction)
    length = padded_length(int(np.ceil(abs(dv) * V + abs(du) * U)))
    response = _response_2d(nv, nu, dv, du, length)
    spectrum = scipy.fft.rfft2(padded, workers=1)
    spectrum *= response
    out = scipy.fft.irfft2(spectrum, s=(nv, nu), workers=1)
    return out[tv : tv + V, lu : lu + U]


def ramp_filter(images: np.ndarray, directions: np.ndarray | None = None) -> np.ndarray:
    """Ramp-filter every tilt image across its tilt axis.

    Parameters
    ----------
    images : ndarray of shape (n_tilts, V, U)
        Any real dtype. Whole lines along each filter direction are needed: whole rows for
        ``(0, 1)``, whole columns for ``(1, 0)``, whole images otherwise.
    directions : ndarray of shape (n_tilts, 2), optional
        Unit detector direction ``(dv, du)`` to filter along, per tilt
        (:func:`cryoflow.geometry.tilt_axis.filter_directions`); default ``(0, 1)``: rows.

    Returns
    -------
    ndarray of shape (n_tilts, V, U), float32
    """
    images = eager_stack(images, "images")
    n = images.shape[0]
    if directions is None:
        d = np.tile([0.0, 1.0], (n, 1))
    else:
        d = np.asarray(directions, dtype=np.float64)
        if d.shape != (n, 2) or not np.all(np.isfinite(d)):
            raise ValueError(
                f"directions must be finite with shape ({n}, 2) for {n} images, got {d.shape}"
            )
        norm = np.linalg.norm(d, axis=1)
        if np.any(norm < 1e-9):
            raise ValueError("directions must be non-zero (dv, du) vectors")
        d = d / norm[:, None]
    rows = np.abs(d[:, 0]) < AXIS_TOL
    cols = ~rows & (np.abs(d[:, 1]) < AXIS_TOL)
    out = np.empty_like(images)
    if rows.any():
        out[rows] = _filter_axis(images[rows], axis=2)
    if cols.any():
        out[cols] = _filter_axis(images[cols], axis=1)
    for t in np.flatnonzero(~rows & ~cols):
        out[t] = _filter_2d(images[t], d[t])
    return out
