"""Lineage inside a tomogram: which stored results derive from a node, and marking them stale.

When a node of tomogram ``<name>`` is replaced (a tilt series ingested again with
``--overwrite``, a volume reconstructed again, a result recomputed), every volume, label image,
result or table of that tomogram whose provenance ``inputs`` refer to the old node, directly or
through another such node, is marked stale *before* the new node is published. Readers
(:func:`cryoflow.io.nodes.open_node`) refuse stale nodes with
:class:`~cryoflow.errors.StaleResultError`; writing the result again replaces a stale node
without ``overwrite``; ``cryoflow verify --clean`` deletes them.

An input refers to node ``<rel>`` (a path below ``tomograms/<name>/``, e.g. ``tilt_series``,
``volumes/tomogram``, ``results/annotate/membrane``) when the ``inputs`` record holds, as a
value anywhere in it or as a path-like key (one with a ``/``):

1. the old node's ``write_id`` (the run engine's ``{store path: write_id}`` records);
2. its path: ``tomograms/<name>/<rel>``, ``<name>/<rel>`` or ``<rel>``; for results also
   ``<step>/<key>``;
3. for the tilt series, the pair ``"tilt_series": "<name>"``.

Results whose ``inputs`` name nothing of this tomogram (an ingested ``--tomogram`` volume, a
simulator's ground truth recording only its seed) are independent and stay valid.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from cryoflow.io import nodes
from cryoflow.io.layout import LABELS, RESULTS, TILT_SERIES, TOMOGRAMS, VOLUMES, open_dataset
from cryoflow.io.names import is_valid_name
from cryoflow.io.nodes import ATTR, STALE, PendingWrite


@dataclass(frozen=True)
class StoredNode:
    """A published node of one tomogram, as its raw metadata describes it."""

    rel: str  # path below tomograms/<name>, e.g. "results/annotate/membrane"
    write_id: str
    inputs: Any  # the provenance ``inputs`` record (any JSON value)
    stale: bool


def stored_nodes(root: zarr.Group, name: str) -> list[StoredNode]:
    """The tilt series, volumes, label images, results and tables of tomogram ``name``.

    Temporary and incomplete nodes are left out (``cryoflow verify`` reports those).
    """
    base = nodes.node_path(root, TOMOGRAMS, name)
    found = (read_stored_node(root, f"{base}/{rel}", rel) for rel in _candidate_paths(root, base))
    return [node for node in found if node is not None]


def read_stored_node(root: zarr.Group, path: str, rel: str) -> StoredNode | None:
    """The node at store ``path`` (named ``rel``) from its raw metadata; None unless it is
    complete."""
    meta = nodes.read_raw_metadata(root, path)
    attrs = (meta or {}).get("attributes", {}) or {}
    info = attrs.get(ATTR, {}) if isinstance(attrs, dict) else {}
    if not isinstance(info, dict) or not info.get("complete"):
        return None
    prov = info.get("provenance", {})
    inputs = prov.get("inputs", {}) if isinstance(prov, dict) else {}
    return StoredNode(rel, str(info.get("write_id", "")), inputs, bool(info.get(STALE)))


def _candidate_paths(root: zarr.Group, base: str) -> Iterator[str]:
    yield TILT_SERIES
    for section in (VOLUMES, LABELS):
        for key in nodes.list_dir(root, f"{base}/{section}"):
            if is_valid_name(key):
                yield f"{section}/{key}"
    for step in nodes.list_dir(root, f"{base}/{RESULTS}"):
        if not is_valid_name(step):
            continue
        for key in nodes.list_dir(root, f"{base}/{RESULTS}/{step}"):
            if is_valid_name(key):
                yield f"{RESULTS}/{step}/{key}"


def references(inputs: Any, name: str, stored: list[StoredNode]) -> set[str]:
    """The nodes of tomogram ``name`` (paths below ``tomograms/<name>``) that ``inputs`` names.

    Parameters
    ----------
    inputs : the provenance ``inputs`` record of a node (dict, list or string)
    stored : the tomogram's nodes (their paths and write ids are what can be referred to)
    """
    rels = {n.rel for n in stored}
    by_id = {n.write_id: n.rel for n in stored if n.write_id}
    found: set[str] = set()
    for text in _texts(inputs):
        if text in by_id:
            found.add(by_id[text])
        for cand in _path_forms(text, name):
            if cand in rels:
                found.add(cand)
            elif f"{RESULTS}/{cand}" in rels:
                found.add(f"{RESULTS}/{cand}")
    if _names_tilt_series(inputs, name):
        found.add(TILT_SERIES)
    return found


def _texts(value: Any) -> Iterator[str]:
    """Every string value in a JSON value, and every dict key that looks like a path."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            if "/" in str(k):
                yield str(k)
            yield from _texts(v)
    elif isinstance(value, list):
        for v in value:
            yield from _texts(v)


def _path_forms(text: str, name: str) -> set[str]:
    text = text.strip("/")
    forms = {text}
    for prefix in (f"{TOMOGRAMS}/{name}/", f"{name}/"):
        if text.startswith(prefix):
            forms.add(text[len(prefix) :])
    return forms


def _names_tilt_series(value: Any, name: str) -> bool:
    if isinstance(value, dict):
        if value.get(TILT_SERIES) == name:
            return True
        return any(_names_tilt_series(v, name) for v in value.values())
    if isinstance(value, list):
        return any(_names_tilt_series(v, name) for v in value)
    return False


def dependents(root: zarr.Group, name: str, rel: str) -> dict[str, str]:
    """Nodes of tomogram ``name`` derived from node ``rel``, directly or transitively.

    Returns
    -------
    dict
        ``{path below tomograms/<name>: the input it was found through}``; ``rel`` itself is
        not included. Nodes already stale are included too.
    """
    stored = stored_nodes(root, name)
    refs = {n.rel: references(n.inputs, name, stored) for n in stored if n.rel != rel}
    found: dict[str, str] = {}
    tainted = {rel}
    changed = True
    while changed:
        changed = False
        for node, inputs in refs.items():
            hit = sorted(inputs & tainted)
            if node not in found and hit:
                found[node] = hit[0]
                tainted.add(node)
                changed = True
    return found


def mark_dependents_stale(store: object, name: str, rel: str) -> list[str]:
    """Mark every node derived from ``tomograms/<name>/<rel>`` stale; returns their store paths.

    Dataset-level nodes (a particle set cut from this tomogram, see
    :mod:`cryoflow.io.dataset_lineage`) derived from it or from its dependents are marked too.

    Call it just before replacing that node (it is a no-op when the node does not exist).
    Each stale node gets ``cryoflow.stale = {input, via, replaced_write_id, at}`` in its
    ``zarr.json``; nodes already stale keep their first record.
    """
    root = open_dataset(store, mode="r+")
    base = nodes.node_path(root, TOMOGRAMS, name)
    old = nodes.read_raw_metadata(root, f"{base}/{rel}")
    if old is None:
        return []
    info = (old.get("attributes", {}) or {}).get(ATTR, {}) or {}
    record = {
        "input": f"{TOMOGRAMS}/{name}/{rel}",
        "replaced_write_id": str(info.get("write_id", "")) if isinstance(info, dict) else "",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    marked = []
    for node, via in sorted(dependents(root, name, rel).items()):
        path = f"{base}/{node}"
        if _set_stale(root, path, {**record, "via": f"{TOMOGRAMS}/{name}/{via}"}):
            marked.append(path)
    # dataset-level nodes (particle sets, ...) computed from this node or its dependents
    from cryoflow.io.dataset_lineage import mark_dataset_dependents_stale

    via_nodes = {f"{TOMOGRAMS}/{name}/{n}": "" for n in dependents(root, name, rel)}
    marked += mark_dataset_dependents_stale(store, f"{TOMOGRAMS}/{name}/{rel}", via=via_nodes)
    return marked


def _set_stale(root: zarr.Group, path: str, record: dict[str, Any]) -> bool:
    """Add the stale record to the node's raw ``zarr.json`` (False when already stale)."""
    meta = nodes.read_raw_metadata(root, path)
    if meta is None:
        return False
    attrs = meta.setdefault("attributes", {})
    info = attrs.setdefault(ATTR, {})
    if info.get(STALE):
        return False
    info[STALE] = record
    buf = default_buffer_prototype().buffer.from_bytes(json.dumps(meta, indent=2).encode())
    sync(root.store.set(f"{path}/zarr.json", buf))
    return True


def stale_on_replace(pending: PendingWrite, store: object, name: str, rel: str) -> PendingWrite:
    """Make ``pending`` mark the dependents of the node it replaces stale, just before publish.

    Only an overwriting write can replace a node, so other writes are left as they are.
    """
    if pending.overwrite:
        pending.before_publish.append(lambda: _report_stale(store, name, rel))
    return pending


def _report_stale(store: object, name: str, rel: str) -> list[str]:
    """:func:`mark_dependents_stale`, saying which results it marked (a ``CryoflowWarning``)."""
    import warnings

    from cryoflow.errors import CryoflowWarning

    marked = mark_dependents_stale(store, name, rel)
    if marked:
        shown = ", ".join(p.split(f"{TOMOGRAMS}/{name}/", 1)[-1] for p in marked)
        warnings.warn(
            f"{nodes.store_label(store)}: replacing {name}/{rel} marked {len(marked)} result(s) "
            f"derived from it stale: {shown} (rerun their steps; cryoflow verify --clean "
            "removes them)",
            CryoflowWarning,
            stacklevel=2,
        )
    return marked
