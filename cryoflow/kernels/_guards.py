"""The one guard every kernel uses against lazy input (kernels take one eager chunk)."""

from __future__ import annotations

import numpy as np

from cryoflow.errors import GeometryError


def refuse_lazy(array: object, name: str) -> None:
    """Raise ``TypeError`` when ``array`` is a lazy Dask collection.

    Kernels run on one in-memory chunk; Dask input belongs to the matching ``cryoflow.graph``
    builder (or ``cryoflow.api``), which maps the kernel over blocks.
    """
    graph = getattr(array, "__dask_graph__", None)
    if callable(graph) and graph() is not None:
        raise TypeError(
            f"{name} is a kernel and takes in-memory NumPy arrays, got a lazy Dask array "
            f"({type(array).__name__}); use the matching cryoflow.graph builder for lazy input"
        )


def eager_volume(
    volume: object, name: str, *, error: type[ValueError] = GeometryError
) -> np.ndarray:
    """``volume`` as an in-memory float32 ``(Z, Y, X)`` array for kernel ``name``.

    Lazy input raises ``TypeError`` (:func:`refuse_lazy`); another number of axes raises
    ``error`` naming the shape received.
    """
    refuse_lazy(volume, name)
    vol = np.asarray(volume, dtype=np.float32)
    if vol.ndim != 3:
        raise error(f"{name} expects a (Z, Y, X) volume, got shape {vol.shape}")
    return vol


def eager_stack(
    images: object,
    name: str,
    dims: str = "(n_tilts, V, U)",
    *,
    error: type[ValueError] = ValueError,
) -> np.ndarray:
    """``images`` as an in-memory float32 stack of 2D images (three axes).

    Lazy input raises ``TypeError`` (:func:`refuse_lazy`); another number of axes raises
    ``error`` naming ``dims`` (how the caller calls the three axes) and the shape received.
    """
    refuse_lazy(images, name)
    stack = np.asarray(images, dtype=np.float32)
    if stack.ndim != 3:
        raise error(f"{name} must be {dims}, got shape {stack.shape}")
    return stack
