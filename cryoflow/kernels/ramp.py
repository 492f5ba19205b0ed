"""Ramp (Ram-Lak) filtering of tilt images along the detector rows, for weighted back-projection.

Each row ``images[t, v, :]`` is convolved with the discrete ramp kernel
``h[0] = 1/4, h[k] = -1/(pi k)^2 (k odd), 0 (k even, k != 0)`` through an FFT of length the
next power of two >= 2U, so the convolution is not circular. Rows are padded on both sides with
their edge values, not zeros: real tilt images sit on a bright, non-zero background, and a zero
pad would turn each image border into a strong step that the ramp filter smears across the
reconstruction (the ramp's response to a constant is ~0, so the background itself drops out). Back-projecting the
result and scaling by ``pi / n_tilts`` (quadrature weights that sum to pi, as if the tilts
covered the half-circle, so densities keep their scale despite the missing wedge) gives
filtered back-projection.
"""

from __future__ import annotations

import numpy as np

from cryoflow.kernels.backproject import ensure_eager

FILTERS = ("ramp", "none")


def parse_filter(value: str) -> str:
    """Return ``value`` if it is a known filter, else raise ``ValueError`` naming them."""
    if value not in FILTERS:
        raise ValueError(f"filter must be one of {FILTERS}, got {value!r}")
    return value


def ramp_response(width: int) -> tuple[np.ndarray, int]:
    """Frequency response of the ramp kernel for rows of ``width`` pixels.

    Returns
    -------
    response : ndarray of shape (n_pad // 2 + 1,), float64 (for ``numpy.fft.rfft``)
    n_pad : int
        Padded row length.
    """
    n_pad = max(64, 1 << int(np.ceil(np.log2(2 * width))))
    k = np.concatenate([np.arange(0, n_pad // 2 + 1), np.arange(-(n_pad // 2) + 1, 0)])
    h = np.zeros(n_pad)
    h[0] = 0.25
    odd = k % 2 == 1
    h[odd] = -1.0 / (np.pi * k[odd]) ** 2
    return np.fft.rfft(h).real, n_pad


def ramp_filter(images: np.ndarray) -> np.ndarray:
    """Ramp-filter every detector row.

    Parameters
    ----------
    images : ndarray of shape (n_tilts, V, U)
        Any real dtype; whole rows (all ``U`` columns) are needed.

    Returns
    -------
    ndarray of shape (n_tilts, V, U), float32
    """
    ensure_eager(images, "images")
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3:
        raise ValueError(f"images must be (n_tilts, V, U), got shape {images.shape}")
    width = images.shape[-1]
    response, n_pad = ramp_response(width)
    left = (n_pad - width) // 2
    padded = np.pad(images, ((0, 0), (0, 0), (left, n_pad - width - left)), mode="edge")
    spectrum = np.fft.rfft(padded, axis=-1)
    spectrum *= response
    filtered = np.fft.irfft(spectrum, n=n_pad, axis=-1)[..., left : left + width]
    return filtered.astype(np.float32)
