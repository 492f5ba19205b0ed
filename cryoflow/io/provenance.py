"""The provenance record every stored node carries: step, parameters, inputs, version, time.

``inputs`` names what the node was computed from (store paths such as
``tomograms/<name>/tilt_series``, optionally mapped to the input's ``write_id``); see
``docs/design/store.md`` for how :mod:`cryoflow.io.lineage` reads it to mark results stale when
an input is replaced. Run tokens for skipping unchanged work live in
:mod:`cryoflow.pipelines.engine.provenance`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from cryoflow.errors import StoreError


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
