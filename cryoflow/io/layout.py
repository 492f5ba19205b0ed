"""The dataset layout's constants and the shared steps of every store write.

See ``docs/design/store.md`` for the layout and :mod:`cryoflow.io.nodes` for the
temporary-node protocol. Public functions live in :mod:`cryoflow.io.store`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np
import zarr
from dask.base import tokenize
from zarr.codecs import BloscCodec, Crc32cCodec

from cryoflow.errors import GeometryError, NodeNotFoundError, StoreError
from cryoflow.io import nodes
from cryoflow.io.chunks import CheckedArray
from cryoflow.io.names import is_valid_name, validate_name
from cryoflow.io.nodes import ATTR, PendingWrite

TOMOGRAMS = "tomograms"
TILT_SERIES = "tilt_series"
VOLUMES = "volumes"
LABELS = "labels"
RESULTS = "results"
TILE_PX = 1024
VOLUME_CHUNK = 128
PYRAMID_LEVELS = 3
BLOSC = BloscCodec(cname="zstd", clevel=1, shuffle="bitshuffle", blocksize=2**20)
# The bytes-to-bytes codec chain of every array cryoflow writes (``compressors=COMPRESSOR``):
# Blosc/zstd, then a CRC-32C of the compressed chunk appended, so a flipped bit in a chunk
# file fails the read (CorruptChunkError, see cryoflow.io.chunks) instead of decoding to
# wrong-but-valid values. Stores written before the checksum still read (no crc32c codec).
COMPRESSOR = (BLOSC, Crc32cCodec())
DATASET_VERSION = 1


# ---------------------------------------------------------------------------- dataset
def create_dataset(store: object) -> zarr.Group:
    """Create (or open, when it already is one) a dataset at ``store``; returns its root group."""
    root = nodes.open_root(store, mode="a")
    if ATTR not in root.attrs and any(True for _ in root.keys()):
        raise StoreError(
            f"{nodes.store_label(store)}: a Zarr group that is not a cryoflow dataset; "
            "refusing to write into it"
        )
    if ATTR not in root.attrs:
        root.attrs[ATTR] = {"kind": "dataset", "version": DATASET_VERSION}
    if TOMOGRAMS not in root:
        root.create_group(TOMOGRAMS, attributes={ATTR: {"kind": "tomograms"}})
    return root


def open_dataset(store: object, mode: str = "r") -> zarr.Group:
    """Open an existing dataset's root group (``mode`` ``"r"`` or ``"r+"``).

    Raises
    ------
    NodeNotFoundError
        When ``store`` holds no cryoflow dataset.
    """
    if mode not in ("r", "r+"):
        raise StoreError(f"open_dataset mode must be 'r' or 'r+', got {mode!r}")
    root = nodes.open_root(store, mode=mode)
    kind = nodes.cryoflow_attrs(root).get("kind")
    if kind != "dataset":
        raise NodeNotFoundError(
            f"{nodes.store_label(store)}: not a cryoflow dataset (kind={kind!r})"
        )
    return root


def list_tomograms(store: object) -> list[str]:
    """Names of the tomograms in the dataset (published ones only), sorted."""
    root = open_dataset(store)
    if TOMOGRAMS not in root:
        return []
    return sorted(n for n in nodes.child_group(root, TOMOGRAMS).group_keys() if is_valid_name(n))


def tomogram_group(root: zarr.Group, name: str) -> zarr.Group:
    """The published group ``tomograms/<name>`` (NodeNotFoundError when missing)."""
    path = f"{TOMOGRAMS}/{validate_name(name, 'tomogram name')}"
    return nodes.open_node(root, path, what="tomogram", require_complete=False, deep=False)


# ---------------------------------------------------------------------------- writing core
def begin(
    store: object, name: str, parts: Sequence[str], *, overwrite: bool, what: str
) -> tuple[zarr.Group, str, str, zarr.Group, str]:
    """Prepare a temporary node for ``tomograms/<name>/<parts...>``.

    Returns ``(parent, leaf, tmp_leaf, holder, node_name)``: create the new node as
    ``holder[node_name]``; publishing renames ``parent/tmp_leaf`` to ``parent/leaf``. A tomogram
    that does not exist yet is written whole under a temporary name, so a failed first write
    leaves no trace under ``tomograms/``.
    """
    validate_name(name, "tomogram name")
    for p in parts:
        validate_name(p, "result name")
    root = create_dataset(store)
    tomos = nodes.child_group(root, TOMOGRAMS)
    *dirs, last = parts
    if name in tomos.group_keys():
        parent = nodes.child_group(tomos, name)
        for d in dirs:
            parent = parent.require_group(d)
        nodes.check_writable(parent, last, overwrite, what)
        tmp = nodes.temp_leaf(last)
        return parent, last, tmp, parent, tmp
    nodes.check_writable(tomos, name, overwrite, what)
    tmp = nodes.temp_leaf(name)
    holder = tomos.create_group(tmp, attributes={ATTR: {"kind": "tomogram", "complete": True}})
    for d in dirs:
        holder = holder.require_group(d)
    return tomos, name, tmp, holder, last


def node_attrs(kind: str, provenance: dict[str, Any] | None, step: str) -> dict[str, Any]:
    """The ``cryoflow`` attribute of a new node (``complete`` stays False until commit)."""
    return {
        "kind": kind,
        "complete": False,
        "write_id": uuid.uuid4().hex,
        "provenance": nodes.normalise_provenance(provenance, default_step=step),
    }


def finish(pending: PendingWrite, compute: bool) -> PendingWrite:
    if compute:
        pending.run()
    return pending


def check_dtype(dtype: Any, what: str) -> np.dtype:
    """Numeric or boolean dtype in native byte order (StoreError otherwise)."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "biufc":
        raise StoreError(f"{what} must have a numeric or boolean dtype, got {dtype}")
    return dtype.newbyteorder("=") if dtype.byteorder not in ("=", "|") else dtype


def check_pixel_size(pixel_size_angstrom: Any, what: str) -> float:
    try:
        pixel = float(pixel_size_angstrom)
    except (TypeError, ValueError) as exc:
        raise GeometryError(
            f"{what}: pixel size must be a number, got {pixel_size_angstrom!r}"
        ) from exc
    if not (np.isfinite(pixel) and pixel > 0):
        raise GeometryError(
            f"{what}: pixel size must be finite and > 0 Å, got {pixel_size_angstrom!r}"
        )
    return pixel


def tilt_series_chunks(shape: Sequence[int], tile_px: int = TILE_PX) -> tuple[int, int, int]:
    """Chunk shape of a tilt series ``(tilt, y, x)``: one tilt, tiles of ``tile_px`` at most."""
    return (1, max(1, min(int(shape[1]), tile_px)), max(1, min(int(shape[2]), tile_px)))


def volume_chunks(shape: Sequence[int], chunk: int = VOLUME_CHUNK) -> tuple[int, ...]:
    """3D chunk shape of a volume ``(z, y, x)``: ``chunk`` per axis, clipped to the shape."""
    return tuple(max(1, min(int(n), chunk)) for n in shape)


def lazy(arr: zarr.Array, label: str) -> da.Array:
    """A Dask view of a stored array; the task name changes whenever the node is rewritten.

    Reads go through :class:`~cryoflow.io.chunks.CheckedArray`: a damaged chunk raises
    ``CorruptChunkError`` naming the array and the chunk.
    """
    write_id = nodes.cryoflow_attrs(arr).get("write_id", "")
    token = tokenize(str(arr.store), arr.path, write_id, arr.shape, str(arr.dtype))
    return da.from_array(
        CheckedArray(arr),
        chunks=arr.chunks,
        name=f"open-{label}-{token}",
        asarray=True,
        lock=False,
        meta=np.empty((0,) * len(arr.shape), dtype=arr.dtype),
    )
