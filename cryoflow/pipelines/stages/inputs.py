"""What stages read: which tomograms, their tilt series, the identity of every input.

Plans record ``{store path: identity}`` for everything they read; the identity (a node's
``write_id``) changes whenever the node is rewritten, so a run token over it changes too and
``cryoflow run`` recomputes exactly what depends on a changed input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cryoflow.errors import ConfigError
from cryoflow.io.names import validate_name

# the store's modules (zarr, xarray) are imported where they are used: stage modules, and so
# the command line that builds its options from them, stay quick to import

__all__ = [
    "block_chunks",
    "node_identity",
    "pick_tomograms",
    "result_input",
    "select_tomograms",
    "tilt_series_input",
    "volume_shape",
]


def select_tomograms(store: object, names: Sequence[str] | None = None) -> list[str]:
    """The tomograms to work on: ``names`` (validated, in order) or every complete one.

    An empty store gives an empty list (``cryoflow run`` may be about to ingest into it).
    """
    from cryoflow.io.layout import list_tomograms

    if names is not None:
        return [validate_name(n, "tomogram name") for n in names]
    return list(list_tomograms(store))


def pick_tomograms(store: object, name: str | None, all_: bool) -> list[str]:
    """A command's ``--name TOMO`` or ``--all`` (exactly one) as a list of tomograms."""
    if bool(name) == bool(all_):
        raise ConfigError("give exactly one of --name TOMO or --all")
    names = select_tomograms(store, [name] if name else None)
    if not names:
        raise ConfigError(f"{store}: the dataset holds no complete tomogram")
    if name:
        from cryoflow.errors import NodeNotFoundError
        from cryoflow.io.layout import list_tomograms

        present = list_tomograms(store)
        if name not in present:
            raise NodeNotFoundError(
                f"{store}: no tomogram {name!r}; the dataset holds "
                + (", ".join(present) if present else "no tomograms")
            )
    return names


def node_identity(store: object, path: str, what: str) -> str:
    """The ``write_id`` of the complete, safe node at ``path`` (changes whenever it is rewritten)."""
    from cryoflow.io.layout import open_dataset
    from cryoflow.io.nodes import ATTR, open_node

    node = open_node(open_dataset(store), path, what=what)
    meta = node.attrs.get(ATTR, {}) or {}
    return str(meta.get("write_id") or meta.get("provenance", {}).get("created", ""))


def result_input(
    store: object, tomogram: str, step: str, key: str, inputs: dict[str, str], what: str = "result"
) -> Any:
    """``results/<step>/<key>`` of ``tomogram`` as a lazy DataArray; records its identity."""
    from cryoflow.errors import NodeNotFoundError
    from cryoflow.io.layout import RESULTS, TOMOGRAMS
    from cryoflow.io.store import open_result

    path = f"{TOMOGRAMS}/{tomogram}/{RESULTS}/{step}/{key}"
    try:
        data = open_result(store, tomogram, step, key)
    except NodeNotFoundError as exc:
        raise NodeNotFoundError(
            f"{exc}; {tomogram} has {existing_results(store, tomogram)}"
        ) from exc
    inputs[path] = node_identity(store, path, what)
    return data


def existing_results(store: object, tomogram: str) -> str:
    """``"results reconstruct/volume, truth/masks2d"`` (or ``"no results"``), for messages."""
    from cryoflow.io.layout import RESULTS, TOMOGRAMS, open_dataset
    from cryoflow.io.names import is_valid_name
    from cryoflow.io.nodes import child_group

    try:
        group = child_group(
            child_group(child_group(open_dataset(store), TOMOGRAMS), tomogram), RESULTS
        )
        found = [
            f"{step}/{key}"
            for step in sorted(group.group_keys())
            if is_valid_name(step)
            for key in sorted(child_group(group, step).array_keys())
            if is_valid_name(key)
        ]
    except Exception:  # a message helper: never hide the error it explains
        found = []
    return ("results " + ", ".join(found)) if found else "no results"


def tilt_series_input(store: object, tomogram: str, source: str) -> tuple[Any, dict[str, str]]:
    """The lazy ``(tilt, y, x)`` images of ``source`` (``tilt_series`` or ``bin``) and identity.

    A binned series keeps the raw series' angles and has ``pixel_size_angstrom`` times the
    bin factor.
    """
    from cryoflow.io.layout import RESULTS, TILT_SERIES, TOMOGRAMS
    from cryoflow.io.store import open_result, open_tilt_series

    name = validate_name(tomogram, "tomogram name")
    if source == "tilt_series":
        path = f"{TOMOGRAMS}/{name}/{TILT_SERIES}"
        ident = node_identity(store, path, "tilt series")
        return open_tilt_series(store, name), {path: ident}
    path = f"{TOMOGRAMS}/{name}/{RESULTS}/{source}/tilt_series"
    ident = node_identity(store, path, "result")
    images = open_result(store, name, source, "tilt_series")
    raw = open_tilt_series(store, name)
    images = images.assign_coords(angle=("tilt", raw.coords["angle"].values))
    images.attrs["pixel_size_angstrom"] = raw.attrs["pixel_size_angstrom"] * images.attrs.get(
        "bin_factor", 1
    )
    return images, {path: ident}


def volume_shape(tilts: Any, thickness: int | None) -> tuple[int, int, int]:
    """``(Z, Y, X)`` of the volume behind a tilt series ``(n, Y, U)`` (X = U).

    ``thickness`` None takes the series' ``volume_shape`` attribute (the simulator records
    it), else the detector width.
    """
    _, Y, U = (int(s) for s in tilts.shape)
    if thickness is not None:
        return (int(thickness), Y, U)
    vs = tilts.attrs.get("volume_shape") if hasattr(tilts, "attrs") else None
    if vs is not None:
        return tuple(int(s) for s in vs)  # type: ignore[return-value]
    return (U, Y, U)


def block_chunks(shape: Sequence[int], chunk: int) -> tuple[int, ...]:
    """Blocks of edge ``chunk``, clipped to ``shape``."""
    return tuple(min(int(chunk), int(s)) for s in shape)
