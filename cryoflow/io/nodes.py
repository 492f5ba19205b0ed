"""Low-level store mechanics: opening, temporary nodes, publishing, completeness, safety.

Every node cryoflow writes (a tilt series, a volume, a result, a table) follows one protocol:

1. it is created under a temporary sibling name ``.tmp-<leaf>-<token>`` (names on the
   allow-list never start with ``.``, so temporary nodes cannot collide with real ones);
2. all chunks are written (possibly by many Dask workers);
3. its attributes get ``cryoflow.complete = true``, last;
4. it is published under its final name: one directory rename on a local file system, or a
   store-level copy (chunks first, each ``zarr.json`` last, the node's own one very last)
   followed by deleting the temporary prefix on any other Zarr store.

Readers (:func:`open_node`) refuse temporary and incomplete nodes and any array whose data
type or codecs could execute code or produce Python objects.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import LocalStore

from cryoflow.errors import (
    AlreadyExistsError,
    NodeNotFoundError,
    StoreError,
    UnsafeStoreError,
)

ATTR = "cryoflow"  # namespace of cryoflow's own attributes on every node
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"

# Data types and codecs a reader accepts. Anything else (object / variable-length types,
# pickle or other code-carrying codecs) is refused with UnsafeStoreError.
SAFE_DATA_TYPES = frozenset(
    {
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
        "complex64",
        "complex128",
        "fixed_length_utf32",
    }
)
SAFE_CODECS = frozenset(
    {"bytes", "blosc", "zstd", "gzip", "crc32c", "transpose", "sharding_indexed"}
)


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
        return store
    if not isinstance(store, str | os.PathLike):
        raise StoreError(f"store must be a path, URL or zarr.Group, got {type(store).__name__}")
    try:
        return zarr.open_group(str(store), mode=mode, zarr_format=3)  # type: ignore[arg-type]
    except (FileNotFoundError, KeyError) as exc:
        raise NodeNotFoundError(f"{store}: no cryoflow dataset (Zarr v3 group) here") from exc
    except ValueError as exc:  # zarr raises ValueError/ContainsArrayError for a non-group
        raise NodeNotFoundError(f"{store}: not a Zarr v3 group: {exc}") from exc


def node_path(group: zarr.Group, *parts: str) -> str:
    """Path of a node below ``group`` relative to the store root."""
    return "/".join(p for p in (group.path, *parts) if p)


def _local_root(group: zarr.Group) -> Path | None:
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


def check_safe_metadata(meta: dict[str, Any], where: str) -> None:
    """Refuse array metadata whose data type or codecs cryoflow will not load.

    Raises
    ------
    UnsafeStoreError
        Naming the node, the offending data type or codec and the allowed ones.
    """
    if meta.get("node_type") != "array":
        return
    if meta.get("zarr_format") != 3:
        raise UnsafeStoreError(
            f"{where}: only Zarr v3 arrays are read, got {meta.get('zarr_format')}"
        )
    dtype = meta.get("data_type")
    dname = dtype.get("name") if isinstance(dtype, dict) else dtype
    if dname not in SAFE_DATA_TYPES:
        raise UnsafeStoreError(
            f"{where}: refusing data type {dname!r}; allowed: {', '.join(sorted(SAFE_DATA_TYPES))}"
        )
    for codec in _codec_names(meta.get("codecs", [])):
        if codec not in SAFE_CODECS:
            raise UnsafeStoreError(
                f"{where}: refusing codec {codec!r}; allowed: {', '.join(sorted(SAFE_CODECS))}"
            )


def _codec_names(codecs: object) -> list[str]:
    names: list[str] = []
    if not isinstance(codecs, list):
        return ["<malformed codecs>"]
    for c in codecs:
        name = c.get("name") if isinstance(c, dict) else c
        names.append(str(name))
        if isinstance(c, dict) and name == "sharding_indexed":
            conf = c.get("configuration", {})
            names += _codec_names(conf.get("codecs", []))
            names += _codec_names(conf.get("index_codecs", []))
    return names


def open_node(
    group: zarr.Group, path: str, *, what: str, require_complete: bool = True, deep: bool = True
) -> Any:
    """Open a complete, safe node at ``path`` below ``group``.

    Raises
    ------
    NodeNotFoundError
        The node is missing, temporary, or not marked complete (message names store and key).
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
    attrs = meta.get("attributes", {}) or {}
    if require_complete and not (attrs.get(ATTR, {}) or {}).get("complete", False):
        raise NodeNotFoundError(
            f"{where} is incomplete (never marked complete; an interrupted write?)"
        )
    if deep and meta.get("node_type") == "group":
        _check_children(group, full, where)
    return group[path]


def _check_children(group: zarr.Group, prefix: str, where: str) -> None:
    """Check every array below ``prefix`` from its raw metadata, before zarr parses it."""
    for child in list_dir(group, prefix):
        if child in ("zarr.json", "c"):
            continue
        path = f"{prefix}/{child}"
        meta = read_raw_metadata(group, path)
        if meta is None:
            continue
        check_safe_metadata(meta, f"{where}/{child}")
        if meta.get("node_type") == "group":
            _check_children(group, path, f"{where}/{child}")


def is_complete(node: zarr.Array | zarr.Group) -> bool:
    return bool(cryoflow_attrs(node).get("complete", False))


def cryoflow_attrs(node: zarr.Array | zarr.Group) -> dict[str, Any]:
    """The node's ``cryoflow`` attribute as a dict (empty when absent or malformed)."""
    value = node.attrs.get(ATTR)
    return dict(value) if isinstance(value, dict) else {}


def child_group(parent: zarr.Group, name: str) -> zarr.Group:
    """The sub-group ``name`` of ``parent`` (StoreError when it is an array)."""
    node = parent[name]
    if not isinstance(node, zarr.Group):
        raise StoreError(f"{store_label(parent)}: {node_path(parent, name)!r} is not a group")
    return node


def child_array(parent: zarr.Group, name: str) -> zarr.Array:
    """The array ``name`` of ``parent`` (StoreError when it is a group)."""
    node = parent[name]
    if not isinstance(node, zarr.Array):
        raise StoreError(f"{store_label(parent)}: {node_path(parent, name)!r} is not an array")
    return node


def exists(group: zarr.Group, path: str) -> bool:
    return read_raw_metadata(group, node_path(group, path)) is not None


# ---------------------------------------------------------------------------- provenance
def make_provenance(
    step: str,
    parameters: dict[str, Any] | None = None,
    inputs: dict[str, Any] | Sequence[Any] | None = None,
) -> dict[str, Any]:
    """A provenance record: step, parameters, cryoflow version, input identity, created time."""
    from cryoflow import __version__

    return normalise_provenance(
        {
            "step": step,
            "parameters": dict(parameters or {}),
            "inputs": inputs or {},
            "cryoflow_version": __version__,
        }
    )


def normalise_provenance(
    provenance: dict[str, Any] | None, default_step: str = "unknown"
) -> dict[str, Any]:
    """Fill the required provenance fields; values must be JSON-serialisable."""
    from cryoflow import __version__

    prov = dict(provenance or {})
    prov.setdefault("step", default_step)
    prov.setdefault("parameters", {})
    prov.setdefault("inputs", {})
    prov.setdefault("cryoflow_version", __version__)
    prov.setdefault("created", datetime.now(UTC).isoformat(timespec="seconds"))
    try:
        return json.loads(json.dumps(prov, default=_jsonable, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise StoreError(f"provenance and attributes must be JSON-serialisable: {exc}") from exc


def _jsonable(value: Any) -> Any:
    """NumPy scalars/arrays and paths as plain JSON values (json.dumps ``default``)."""
    import numpy as np

    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"{type(value).__name__} {value!r:.80} is not JSON-serialisable")


# ---------------------------------------------------------------------------- temp + publish
@dataclass
class PendingWrite:
    """A node being written under a temporary name, published by :meth:`commit`.

    ``stages`` are callables returning lists of Dask ``Delayed`` chunk writes; each stage
    must be computed before the next is built (a pyramid level reads the previous one).
    Run them with :meth:`run`, passing the pipeline's compute function (for example one that
    uses ``cryoflow.pipelines.cluster.compute_with_progress`` on a Client).
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
        """Mark the node complete and publish it under its final name."""
        attrs = cryoflow_attrs(self.node)
        attrs.update(self.final_attrs)
        attrs["complete"] = True
        self.node.attrs[ATTR] = attrs
        publish(self.parent, self.tmp_leaf, self.leaf, overwrite=self.overwrite)
        self.done = True

    def abort(self) -> None:
        """Delete the temporary node (best effort; ``cryoflow verify --clean`` finds leftovers)."""
        if not self.done:
            delete_node(self.parent, self.tmp_leaf)
            self.done = True


def temp_leaf(leaf: str) -> str:
    return f"{TMP_PREFIX}{leaf}-{uuid.uuid4().hex[:12]}"


def check_writable(parent: zarr.Group, leaf: str, overwrite: bool, what: str) -> None:
    if exists(parent, leaf) and not overwrite:
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
    root = _local_root(parent)
    path = node_path(parent, leaf)
    if root is not None:
        shutil.rmtree(root / path, ignore_errors=True)
    else:
        sync(parent.store.delete_dir(path))


def publish(parent: zarr.Group, tmp_leaf: str, leaf: str, *, overwrite: bool) -> None:
    """Move the finished node ``tmp_leaf`` to ``leaf`` (both children of ``parent``)."""
    src = node_path(parent, tmp_leaf)
    dst = node_path(parent, leaf)
    root = _local_root(parent)
    replaced = exists(parent, leaf)
    if replaced and not overwrite:
        delete_node(parent, tmp_leaf)
        raise AlreadyExistsError(
            f"{store_label(parent)}: {dst!r} appeared while writing; not replaced"
        )
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
