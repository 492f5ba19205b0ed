"""Find and remove leftovers of interrupted writes, and stale results, in a dataset store.

A leftover is a temporary node (``.tmp-*``: a write that never published; ``.trash-*``: an
overwritten node whose deletion was interrupted), a cryoflow node that was never marked
complete, or a node marked stale because an input it was computed from was replaced
(:mod:`cryoflow.io.lineage`). Do not clean a store while another process writes to it: an in-progress write looks
exactly like an interrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import zarr
from zarr.core.sync import sync

from cryoflow.io import nodes
from cryoflow.io.layout import open_dataset
from cryoflow.io.nodes import ATTR, STALE, TMP_PREFIX, TRASH_PREFIX


@dataclass(frozen=True)
class Leftover:
    path: str  # store-relative
    reason: str


def find_leftovers(store: object) -> list[Leftover]:
    """Every temporary, incomplete or stale node in the dataset at ``store`` (outermost only)."""
    root = open_dataset(store, mode="r")
    found: list[Leftover] = []

    def walk(prefix: str) -> None:
        for child in nodes.list_dir(root, prefix):
            if child == "zarr.json" or child == "c":
                continue
            path = f"{prefix}/{child}" if prefix else child
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

    base = root.path
    walk(base)
    return found


def verify_store(store: object, *, clean: bool = False) -> list[Leftover]:
    """Find leftovers; with ``clean`` delete them too. Returns what was found."""
    found = find_leftovers(store)
    if clean and found:
        root = zarr.open_group(store, mode="r+") if not isinstance(store, zarr.Group) else store
        for item in found:
            sync(root.store.delete_dir(item.path))
    return found
