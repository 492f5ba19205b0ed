"""Low-level store mechanics: opening nodes, temporary nodes, publishing, completeness.

Every node cryoflow writes (a tilt series, a volume, a result, a table) follows one protocol:

1. it is created under a temporary sibling name ``.tmp-<leaf>-<token>`` (names on the
   allow-list never start with ``.``, so temporary nodes cannot collide with real ones);
2. all chunks are written (possibly by many Dask workers);
3. its attributes get ``cryoflow.complete = true``, last;
4. it is published under its final name: one directory rename on a local file system, or a
   store-level copy (chunks first, each ``zarr.json`` last, the node's own one very last)
   followed by deleting the temporary prefix on any other Zarr store.

Readers (:func:`open_node`) refuse temporary, incomplete and stale nodes (see
:mod:`cryoflow.io.lineage`) and any array whose data type or codecs could execute code or
produce Python objects (:mod:`cryoflow.io.safety`). Provenance records are built in
:mod:`cryoflow.io.provenance`; both are re-exported here for existing callers.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import LocalStore

from cryoflow.errors import AlreadyExistsError, NodeNotFoundError, StaleResultError, StoreError
from cryoflow.io.provenance import make_provenance, normalise_provenance
from cryoflow.io.safety import SAFE_CODECS, SAFE_DATA_TYPES, check_safe_metadata

__all__ = [
    "ATTR",
    "SAFE_CODECS",
    "SAFE_DATA_TYPES",
    "STALE",
    "TMP_PREFIX",
    "TRASH_PREFIX",
    "PendingWrite",
    "check_safe_metadata",
    "check_writable",
    "child_array",
    "child_group",
    "cryoflow_attrs",
    "delete_node",
    "describe_stale",
    "exists",
    "is_complete",
    "is_stale",
    "list_dir",
    "local_root",
    "make_provenance",
    "node_path",
    "normalise_provenance",
    "open_node",
    "open_root",
    "publish",
    "read_raw_metadata",
    "removed_on_error",
    "stale_record",
    "store_label",
    "temp_leaf",
    "without_consolidated",
]

ATTR = "cryoflow"  # namespace of cryoflow's own attributes on every node
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
STALE = "stale"  # key of the stale record in a node's ``cryoflow`` attribute


# ---------------------------------------------------------------------------- opening
def store_label(store: object) -> str:
    """A short human-readable identity of ``store`` for error messages."""
    if isinstance(store, zarr.Group):
        base = str(store.store.root) if isinstance(store.store, LocalStore) else str(store.store)
        return f"{base}/{store.path}".rstrip("/")
    return str(store)


def open_root(store: object, mode: str = "r") -> zarr.Group:
    """Open the dataset's root group (path, fsspec URL or ``zarr.Group``).

    Raises
    ------
    NodeNotFoundError
        When the store does not exist or is not a Zarr v3 group (mode ``"r"``/``"r+"``).
    """
    if isinstance(store, zarr.Group):
        return without_consolidated(store)
    if not isinstance(store, str | os.PathLike):
        raise StoreError(f"store must be a path, URL or zarr.Group, got {type(store).__name__}")
    try:
        return zarr.open_group(
            str(store),
            mode=mode,  # type: ignore[arg-type]
            zarr_format=3,
            use_consolidated=False,
        )
    except (FileNotFoundError, KeyError) as exc:
        raise NodeNotFoundError(f"{store}: no cryoflow dataset (Zarr v3 group) here") from exc
    except ValueError as exc:  # zarr raises ValueError/ContainsArrayError for a non-group
        raise NodeNotFoundError(f"{store}: not a Zarr v3 group: {exc}") from exc


def without_consolidated(group: zarr.Group) -> zarr.Group:
    """``group`` reopened from its own ``zarr.json``, ignoring any consolidated metadata.

    Consolidated metadata (a copy of every child's metadata inside a group's ``zarr.json``)
    would let ``group[path]`` build a node from that copy instead of the node's own
    ``zarr.json``, the one :func:`check_safe_metadata` checked. cryoflow never writes it and
    never reads through it.
    """
    if group.metadata.consolidated_metadata is None:
        return group
    mode: Literal["r", "r+"] = "r" if group.store.read_only else "r+"
    return zarr.open_group(store=group.store_path, mode=mode, use_consolidated=False)


def node_path(group: zarr.Group, *parts: str) -> str:
    """Path of a node below ``group`` relative to the store root."""
    return "/".join(p for p in (group.path, *parts) if p)


def local_root(group: zarr.Group) -> Path | None:
    store = group.store
    if isinstance(store, LocalStore):
        return Path(store.root)
    return None


def read_raw_metadata(group: zarr.Group, path: str) -> dict[str, Any] | None:
    """The parsed ``zarr.json`` of the node at ``path`` (store-relative), or ``None``."""
    key = f"{path}/zarr.json" if path else "zarr.json"
    buf = sync(group.store.get(key, prototype=default_buffer_prototype()))
    if buf is None:
        return None
    try:
        meta = json.loads(buf.to_bytes())
    except ValueError as exc:
        raise StoreError(f"{store_label(group)}: malformed metadata at {key}: {exc}") from exc
    if not isinstance(meta, dict):
        raise StoreError(f"{store_label(group)}: malformed metadata at {key}")
    return meta


def list_dir(group: zarr.Group, prefix: str) -> list[str]:
    """Names directly below the store-relative ``prefix`` (sorted)."""

    async def collect() -> list[str]:
        return [k async for k in group.store.list_dir(prefix)]

    return sorted(sync(collect()))


def open_node(
    group: zarr.Group, path: str, *, what: str, require_complete: bool = True, deep: bool = True
) -> Any:
    """Open a complete, current, safe node at ``path`` below ``group``.

    Raises
    ------
    NodeNotFoundError
        The node is missing, temporary, or not marked complete (message names store and key).
    StaleResultError
        The node is marked stale: an input it was computed from has been replaced.
    UnsafeStoreError
        An array in it uses a refused data type or codec.
    """
    full = node_path(group, path)
    where = f"{store_label(group)}: {what} {path!r}"
    if any(p.startswith(".") for p in path.split("/")):
        raise NodeNotFoundError(f"{where} is a temporary node and cannot be opened")
    meta = read_raw_metadata(group, full)
    if meta is None:
        raise NodeNotFoundError(f"{where} does not exist")
    check_safe_metadata(meta, where)
    info = _info(meta)
    if require_complete and not info.get("complete", False):
        raise NodeNotFoundError(
            f"{where} is incomplete (never marked complete; an interrupted write?)"
        )
    if require_complete and info.get(STALE):
        raise StaleResultError(f"{where} is stale: {describe_stale(info[STALE])}")
    if deep and meta.get("node_type") == "group":
        _check_children(group, full, where)
    node = without_consolidated(group)[path]  # read from the node's own zarr.json
    return without_consolidated(node) if isinstance(node, zarr.Group) else node


def _check_children(group: zarr.Group, prefix: str, where: str) -> None:
    """Check every array below ``prefix`` from its raw metadata, before zarr parses it."""
    for child in list_dir(group, prefix):
        if child == "zarr.json":  # (only groups are walked: no chunk folders here)
            continue
        path = f"{prefix}/{child}"
        meta = read_raw_metadata(group, path)
        if meta is None:
            continue
        check_safe_metadata(meta, f"{where}/{child}")
        if meta.get("node_type") == "group":
            _check_children(group, path, f"{where}/{child}")


def _info(meta: dict[str, Any]) -> dict[str, Any]:
    """The ``cryoflow`` attribute of raw node metadata (empty when absent or malformed)."""
    attrs = meta.get("attributes", {})
    info = attrs.get(ATTR, {}) if isinstance(attrs, dict) else {}
    return info if isinstance(info, dict) else {}


def stale_record(group: zarr.Group, path: str) -> dict[str, Any] | None:
    """The stale record of the node at ``path`` below ``group`` (``None`` when current/absent)."""
    meta = read_raw_metadata(group, node_path(group, path))
    record = _info(meta).get(STALE) if meta is not None else None
    return dict(record) if isinstance(record, dict) else ({"input": "?"} if record else None)


def is_stale(group: zarr.Group, path: str) -> bool:
    """Whether the node at ``path`` is marked stale (an input of it was replaced)."""
    return stale_record(group, path) is not None


def describe_stale(record: object) -> str:
    """One sentence saying why a node is stale, from its stale record."""
    if not isinstance(record, dict):
        return "an input it was computed from has been replaced; recompute it"
    via = record.get("via")
    chain = f" (through {via!r})" if via and via != record.get("input") else ""
    return (
        f"its input {record.get('input', '?')!r}{chain} was replaced at "
        f"{record.get('at', '?')}; recompute it (or remove it with `cryoflow verify --clean`)"
    )


def is_complete(node: zarr.Array | zarr.Group) -> bool:
    return bool(cryoflow_attrs(node).get("complete", False))


def cryoflow_attrs(node: zarr.Array | zarr.Group) -> dict[str, Any]:
    """The node's ``cryoflow`` attribute as a dict (empty when absent or malformed)."""
    value = node.attrs.get(ATTR)
    return dict(value) if isinstance(value, dict) else {}


def child_group(parent: zarr.Group, name: str) -> zarr.Group:
    """The sub-group ``name`` of ``parent`` (StoreError when it is an array).

    Read from its own ``zarr.json``, never from consolidated metadata.
    """
    node = without_consolidated(parent)[name]
    if not isinstance(node, zarr.Group):
        raise StoreError(f"{store_label(parent)}: {node_path(parent, name)!r} is not a group")
    return without_consolidated(node)


def child_array(parent: zarr.Group, name: str) -> zarr.Array:
    """The array ``name`` of ``parent`` (StoreError when it is a group), from its own metadata."""
    node = without_consolidated(parent)[name]
    if not isinstance(node, zarr.Array):
        raise StoreError(f"{store_label(parent)}: {node_path(parent, name)!r} is not an array")
    return node


def exists(group: zarr.Group, path: str) -> bool:
    return read_raw_metadata(group, node_path(group, path)) is not None


# ---------------------------------------------------------------------------- temp + publish
@dataclass
class PendingWrite:
    """A node being written under a temporary name, published by :meth:`commit`.

    ``stages`` are callables returning lists of Dask ``Delayed`` chunk writes; each stage
    must be computed before the next is built (a pyramid level reads the previous one).
    Run them with :meth:`run`, passing the pipeline's compute function (for example one that
    uses ``cryoflow.pipelines.cluster.progress.compute_with_progress`` on a Client).
    """

    parent: zarr.Group
    leaf: str
    tmp_leaf: str
    overwrite: bool
    node: zarr.Array | zarr.Group
    stages: list[Callable[[], list[Any]]] = field(default_factory=list)
    final_attrs: dict[str, Any] = field(default_factory=dict)
    description: str = "write"
    done: bool = False
    before_publish: list[Callable[[], Any]] = field(default_factory=list)

    def run(self, compute: Callable[[list[Any]], Any] | None = None) -> None:
        """Compute every stage with ``compute`` (default ``dask.compute``) then commit."""
        import dask

        do = compute or (lambda tasks: dask.compute(*tasks))
        try:
            for stage in self.stages:
                tasks = stage()
                if tasks:
                    do(tasks)
        except BaseException:
            self.abort()
            raise
        self.commit()

    def commit(self) -> None:
        """Mark the node complete, run the ``before_publish`` hooks, publish under the final name.

        The hooks run while the new node is still invisible (e.g. marking the results derived
        from the node being replaced stale, see :mod:`cryoflow.io.lineage`).
        """
        attrs = cryoflow_attrs(self.node)
        attrs.update(self.final_attrs)
        attrs["complete"] = True
        self.node.attrs[ATTR] = attrs
        for hook in self.before_publish:
            hook()
        publish(self.parent, self.tmp_leaf, self.leaf, overwrite=self.overwrite)
        self.done = True

    def abort(self) -> None:
        """Delete the temporary node (best effort; ``cryoflow verify --clean`` finds leftovers)."""
        if not self.done:
            delete_node(self.parent, self.tmp_leaf)
            self.done = True


def run_together(
    pendings: list[PendingWrite] | tuple[PendingWrite, ...],
    compute: Callable[[list[Any]], Any],
    *,
    before_commit: Callable[[], Any] | None = None,
) -> None:
    """Run several pending writes stage by stage (stage ``k`` of all of them in one
    ``compute``, then ``k + 1``: a pyramid level reads the level before), then commit each.

    ``before_commit`` runs once everything is written and nothing is published yet (e.g. a
    reduction over the written arrays whose result must be stored with them).
    On any failure every unpublished temporary node is deleted and the error re-raised.
    """
    try:
        for k in range(max((len(p.stages) for p in pendings), default=0)):
            tasks = [t for p in pendings if k < len(p.stages) for t in p.stages[k]()]
            if tasks:
                compute(tasks)
        if before_commit is not None:
            before_commit()
        for p in pendings:
            p.commit()
    except BaseException:
        for p in pendings:
            p.abort()
        raise


def temp_leaf(leaf: str) -> str:
    return f"{TMP_PREFIX}{leaf}-{uuid.uuid4().hex[:12]}"


def check_writable(parent: zarr.Group, leaf: str, overwrite: bool, what: str) -> None:
    """Refuse to replace an existing node unless ``overwrite`` (stale nodes are always replaced).

    Raises
    ------
    AlreadyExistsError
    """
    if exists(parent, leaf) and not overwrite and not is_stale(parent, leaf):
        raise AlreadyExistsError(
            f"{store_label(parent)}: {what} {node_path(parent, leaf)!r} already exists; "
            "pass overwrite=True (--overwrite) to replace it"
        )


@contextlib.contextmanager
def removed_on_error(parent: zarr.Group, tmp_leaf: str) -> Iterator[None]:
    """Delete the temporary node ``tmp_leaf`` if the body raises (then re-raise)."""
    try:
        yield
    except BaseException:
        delete_node(parent, tmp_leaf)
        raise


def delete_node(parent: zarr.Group, leaf: str) -> None:
    """Remove the node ``leaf`` below ``parent`` and everything in it."""
    root = local_root(parent)
    path = node_path(parent, leaf)
    if root is not None:
        shutil.rmtree(root / path, ignore_errors=True)
    else:
        sync(parent.store.delete_dir(path))


def publish(parent: zarr.Group, tmp_leaf: str, leaf: str, *, overwrite: bool) -> None:
    """Move the finished node ``tmp_leaf`` to ``leaf`` (both children of ``parent``), first
    recording which chunks its arrays have stored (:mod:`cryoflow.io.stored_chunks`)."""
    from cryoflow.io.stored_chunks import record_stored_chunks

    src = node_path(parent, tmp_leaf)
    dst = node_path(parent, leaf)
    root = local_root(parent)
    replaced = exists(parent, leaf)
    if replaced and not overwrite and not is_stale(parent, leaf):
        delete_node(parent, tmp_leaf)
        raise AlreadyExistsError(
            f"{store_label(parent)}: {dst!r} appeared while writing; not replaced"
        )
    record_stored_chunks(parent, src)
    if root is not None:
        trash = root / node_path(parent, f"{TRASH_PREFIX}{leaf}-{uuid.uuid4().hex[:12]}")
        if (root / dst).exists():
            os.rename(root / dst, trash)  # the old node disappears in one step...
        os.rename(root / src, root / dst)  # ...and the new one appears in one step
        shutil.rmtree(trash, ignore_errors=True)
        return
    if replaced:
        sync(parent.store.delete_dir(dst))
    _copy_prefix(parent.store, src, dst)
    sync(parent.store.delete_dir(src))


def _copy_prefix(store: Any, src: str, dst: str) -> None:
    """Store-level copy of every key under ``src`` to ``dst``; metadata last, root node's last."""

    async def keys() -> list[str]:
        return [k async for k in store.list_prefix(src + "/")]

    all_keys = sync(keys())
    meta = sorted((k for k in all_keys if k.endswith("zarr.json")), key=lambda k: -k.count("/"))
    chunks = [k for k in all_keys if not k.endswith("zarr.json")]
    proto = default_buffer_prototype()
    for k in chunks + meta:
        buf = sync(store.get(k, prototype=proto))
        if buf is not None:
            sync(store.set(dst + k[len(src) :], buf))
