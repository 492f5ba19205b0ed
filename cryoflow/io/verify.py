"""Check a dataset store: leftovers of interrupted writes, stale results, damaged chunks.

A leftover is a temporary node (``.tmp-*``: a write that never published; ``.trash-*``: an
overwritten node whose deletion was interrupted), a cryoflow node that was never marked
complete, a node marked stale because an input it was computed from was replaced
(:mod:`cryoflow.io.lineage`), or an orphaned ``*.partial`` file inside a node (a process that
died while Zarr's local store was writing a chunk or ``zarr.json``: it writes
``<key>.<32 hex>.partial`` and renames it to ``<key>`` when complete). Do not clean a store
while another process writes to it: an in-progress write looks exactly like an interrupted one.

The deep check (``cryoflow verify --deep``) reads every storage chunk of every array and checks
it (:func:`cryoflow.io.chunks.check_chunk`: checksum, decoding, shape), and reports every chunk
recorded as stored when its result was published whose file is gone since
(:mod:`cryoflow.io.stored_chunks`: a deleted chunk file reads back as the fill value). It is split so that a
pipeline can spread it over a cluster: :func:`plan_deep_check` lists the work as
:class:`ChunkBatch` items (picklable: an array path and chunk indices), :func:`check_batch` is
the task that checks one batch (it opens the store itself), and :func:`deep_check` is the serial
driver that runs every batch here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import zarr
from zarr.core.sync import sync

from cryoflow.errors import StoreError
from cryoflow.io import nodes
from cryoflow.io.chunks import ChunkProblem, check_chunk, chunk_indices
from cryoflow.io.layout import open_dataset
from cryoflow.io.nodes import ATTR, STALE, TMP_PREFIX, TRASH_PREFIX
from cryoflow.io.stored_chunks import arrays_below, missing_chunks

PARTIAL = re.compile(r"\.[0-9a-f]{32}\.partial$")  # zarr LocalStore's in-flight file names


@dataclass(frozen=True)
class Leftover:
    """One leftover: ``path`` is store-relative; ``is_file`` for a single file (a
    ``*.partial`` chunk), else a whole node."""

    path: str
    reason: str
    is_file: bool = False


def find_leftovers(store: object) -> list[Leftover]:
    """Every temporary, incomplete or stale node in the dataset at ``store`` (outermost only),
    and every orphaned ``*.partial`` file inside the other nodes."""
    root = open_dataset(store, mode="r")
    base = nodes.local_root(root)
    found: list[Leftover] = []

    def walk(prefix: str) -> None:
        for child in nodes.list_dir(root, prefix):
            if child == "zarr.json":
                continue
            path = f"{prefix}/{child}" if prefix else child
            if PARTIAL.search(child):
                found.append(Leftover(path, _PARTIAL_REASON, is_file=True))
                continue
            if child.startswith(TMP_PREFIX):
                found.append(Leftover(path, "temporary node of a write that never published"))
                continue
            if child.startswith(TRASH_PREFIX):
                found.append(Leftover(path, "overwritten node whose deletion was interrupted"))
                continue
            meta = nodes.read_raw_metadata(root, path)
            if meta is None:
                continue  # not a node (e.g. a chunk folder)
            info = (meta.get("attributes", {}) or {}).get(ATTR, {}) or {}
            if "complete" in info and not info["complete"]:
                found.append(Leftover(path, f"{info.get('kind', 'node')} never marked complete"))
                continue
            if info.get(STALE):
                why = nodes.describe_stale(info[STALE]).split(";")[0]
                found.append(Leftover(path, f"stale {info.get('kind', 'node')}: {why}"))
                continue
            if meta.get("node_type") == "group":
                walk(path)
            elif base is not None:
                found.extend(_partial_files(base, path))

    walk(root.path)
    return found


_PARTIAL_REASON = "partial file of an interrupted chunk or metadata write"


def _partial_files(base: os.PathLike[str] | str, array_path: str) -> list[Leftover]:
    """``*.partial`` files anywhere below a local array's folder (its chunk folders)."""
    out = []
    top = os.path.join(base, array_path)
    for folder, _dirs, files in os.walk(top):
        for f in sorted(files):
            if PARTIAL.search(f):
                rel = os.path.relpath(os.path.join(folder, f), base).replace(os.sep, "/")
                out.append(Leftover(rel, _PARTIAL_REASON, is_file=True))
    return out


def verify_store(store: object, *, clean: bool = False) -> list[Leftover]:
    """Find leftovers; with ``clean`` delete them too. Returns what was found."""
    found = find_leftovers(store)
    if clean and found:
        root = nodes.open_root(store, mode="r+")
        for item in found:
            if item.is_file:
                sync(root.store.delete(item.path))
            else:
                sync(root.store.delete_dir(item.path))
    return found


# ---------------------------------------------------------------------------- deep check
@dataclass(frozen=True)
class ChunkBatch:
    """A piece of the deep check: storage chunks ``chunks`` (grid indices) of one array."""

    array: str  # store path
    chunks: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class DeepCheckPlan:
    """What :func:`plan_deep_check` found: the batches to check, the arrays that cannot be
    opened at all (``problems``, each with ``chunk == ()``), and the totals."""

    batches: tuple[ChunkBatch, ...]
    problems: tuple[ChunkProblem, ...]
    n_arrays: int
    n_chunks: int


def list_arrays(store: object) -> list[str]:
    """Store paths of every array in the dataset outside temporary (``.tmp-*``/``.trash-*``)
    nodes, in sorted order (published, incomplete and stale nodes alike)."""
    root = open_dataset(store, mode="r")
    return arrays_below(root, root.path, skip_hidden=True)


def open_checked_array(root: zarr.Group, path: str) -> zarr.Array:
    """The array at store path ``path``, opened only after its raw metadata passed
    :func:`cryoflow.io.safety.check_safe_metadata` (never through consolidated metadata)."""
    meta = nodes.read_raw_metadata(root, path)
    if meta is None:
        raise StoreError(f"{nodes.store_label(root)}: array {path!r} has no zarr.json")
    nodes.check_safe_metadata(meta, f"{nodes.store_label(root)}: array {path!r}")
    return nodes.child_array(nodes.open_root(root), path)


def plan_deep_check(store: object, *, chunks_per_batch: int = 16) -> DeepCheckPlan:
    """List the storage chunks of every array in batches of ``chunks_per_batch``.

    An array whose metadata is refused (unsafe data type or codec) or cannot be parsed is not
    read; it is returned in ``problems``.
    """
    if chunks_per_batch < 1:
        raise StoreError(f"chunks_per_batch must be >= 1, got {chunks_per_batch}")
    root = open_dataset(store, mode="r")
    batches: list[ChunkBatch] = []
    problems: list[ChunkProblem] = []
    paths = list_arrays(root)
    n_chunks = 0
    for path in paths:
        try:
            arr = open_checked_array(root, path)
        except (StoreError, ValueError, TypeError, KeyError) as exc:
            problems.append(ChunkProblem(path, (), f"{path}/zarr.json", _one_line(exc)))
            continue
        indices = list(chunk_indices(arr))
        n_chunks += len(indices)
        for i in range(0, len(indices), chunks_per_batch):
            batches.append(ChunkBatch(path, tuple(indices[i : i + chunks_per_batch])))
    return DeepCheckPlan(tuple(batches), tuple(problems), len(paths), n_chunks)


def check_batch(store: object, batch: ChunkBatch) -> list[ChunkProblem]:
    """Check every chunk of ``batch``; the damaged ones (empty when all are sound).

    The per-task kernel of the deep check: ``store`` is a path, URL or ``zarr.Group`` (pass a
    path or URL to a cluster), the array is opened here.
    """
    root = nodes.open_root(store, mode="r")
    try:
        arr = open_checked_array(root, batch.array)
    except (StoreError, ValueError, TypeError, KeyError) as exc:
        return [ChunkProblem(batch.array, (), f"{batch.array}/zarr.json", _one_line(exc))]
    # a chunk recorded as stored at publication whose file is gone reads back as the fill
    # value and would pass check_chunk: report it as missing instead
    missing = missing_chunks(arr, batch.chunks)
    gone = {p.chunk for p in missing}
    checked = [check_chunk(arr, idx) for idx in batch.chunks if tuple(idx) not in gone]
    return missing + [p for p in checked if p is not None]


def deep_check(
    store: object,
    *,
    chunks_per_batch: int = 16,
    progress: Callable[[int, int], object] | None = None,
) -> list[ChunkProblem]:
    """Read and check every chunk of every array here, serially; every problem found.

    ``progress(chunks_done, chunks_total)`` is called after each batch.
    """
    plan = plan_deep_check(store, chunks_per_batch=chunks_per_batch)
    found = list(plan.problems)
    done = 0
    for batch in plan.batches:
        found.extend(check_batch(store, batch))
        done += len(batch.chunks)
        if progress is not None:
            progress(done, plan.n_chunks)
    return found


def _one_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
