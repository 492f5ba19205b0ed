"""Lineage of dataset-level nodes: results that span tomograms (particle sets, averages, ...).

Per-tomogram lineage (:mod:`cryoflow.io.lineage`) searches one tomogram's nodes. A particle set
(``particles/<set>``) and anything later computed from one (an average, a classification, an
embedding, each under its own top-level section such as ``averages/<name>``) lives beside
``tomograms/``: a *dataset-level node* is any group ``<section>/<leaf>`` at the store's top
level, ``<section>`` other than ``tomograms`` and ``runs``, that carries cryoflow attributes.

Such a node derives from a store path when its provenance ``inputs`` name that path
(``particles/<set>``, ``tomograms/<name>/volumes/<key>``, ...), as a value or as a key with a
``/``, or the replaced node's ``write_id``. :func:`mark_dataset_dependents_stale` marks every
dataset-level node derived from a replaced node stale, transitively (a set -> its average ->
a classification of the average), with the same ``cryoflow.stale`` record the per-tomogram
sweep writes; readers then refuse them with :class:`~cryoflow.errors.StaleResultError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import zarr

from cryoflow.io import nodes
from cryoflow.io.layout import TOMOGRAMS, open_dataset
from cryoflow.io.lineage import StoredNode, _set_stale, _texts, read_stored_node
from cryoflow.io.names import is_valid_name
from cryoflow.io.nodes import ATTR

__all__ = ["dataset_nodes", "dataset_dependents", "mark_dataset_dependents_stale"]

#: top-level groups that do not hold dataset-level nodes
NOT_DATASET_LEVEL = (TOMOGRAMS, "runs")


def _sections(root: zarr.Group) -> Iterator[str]:
    for section in nodes.list_dir(root, root.path):
        if is_valid_name(section) and section not in NOT_DATASET_LEVEL:
            yield section


def dataset_nodes(root: zarr.Group) -> list[StoredNode]:
    """The complete dataset-level nodes (``rel`` is their store path, e.g. ``particles/a``)."""
    found = []
    for section in _sections(root):
        for leaf in nodes.list_dir(root, nodes.node_path(root, section)):
            if not is_valid_name(leaf):
                continue
            rel = f"{section}/{leaf}"
            node = read_stored_node(root, nodes.node_path(root, rel), rel)
            if node is not None:
                found.append(node)
    return found


def _refers(inputs: Any, targets: set[str]) -> str | None:
    for text in _texts(inputs):
        t = text.strip("/")
        if t in targets:
            return t
    return None


def dataset_dependents(
    root: zarr.Group, paths: Iterable[str], write_ids: Iterable[str] = ()
) -> dict[str, str]:
    """Dataset-level nodes derived from any of ``paths`` (store paths) or ``write_ids``.

    Returns ``{node store path: the path or write id it was found through}``, transitively.
    """
    stored = dataset_nodes(root)
    tainted = {p.strip("/") for p in paths} | {w for w in write_ids if w}
    start = set(tainted)
    found: dict[str, str] = {}
    changed = True
    while changed:
        changed = False
        for node in stored:
            if node.rel in found or node.rel in start:
                continue
            hit = _refers(node.inputs, tainted)
            if hit is not None:
                found[node.rel] = hit
                tainted.add(node.rel)
                if node.write_id:
                    tainted.add(node.write_id)
                changed = True
    return found


def mark_dataset_dependents_stale(
    store: object, path: str, *, via: dict[str, str] | None = None
) -> list[str]:
    """Mark every dataset-level node derived from store path ``path`` stale; returns them.

    Call it just before ``path`` is replaced. ``via`` adds nodes already found stale by the
    per-tomogram sweep (``{their store path: ...}``), whose dataset-level dependents are
    marked too. Nodes already stale keep their first record.
    """
    root = open_dataset(store, mode="r+")
    old = nodes.read_raw_metadata(root, nodes.node_path(root, path))
    if old is None:
        return []
    info = (old.get("attributes", {}) or {}).get(ATTR, {}) or {}
    write_id = str(info.get("write_id", "")) if isinstance(info, dict) else ""
    record = {
        "input": path,
        "replaced_write_id": write_id,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    sources = [path, *(via or {})]
    marked = []
    for node, through in sorted(dataset_dependents(root, sources, [write_id]).items()):
        if _set_stale(root, nodes.node_path(root, node), {**record, "via": through}):
            marked.append(node)
    return marked
