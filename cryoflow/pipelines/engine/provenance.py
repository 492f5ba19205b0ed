"""Provenance records and the identity hashes that make reruns skip unchanged work.

A result's *run token* hashes exactly what determines its values: the step, its parameters and
the identity of its inputs (each input node's ``write_id``, which changes whenever that node is
rewritten). A rerun with the same token finds the published result and skips it; any change in
a parameter or an upstream result gives a new token, so only the affected results recompute.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

DEPENDENCIES: tuple[str, ...] = (
    "numpy",
    "scipy",
    "dask",
    "distributed",
    "zarr",
    "xarray",
    "numcodecs",
    "torch",
    "mrcfile",
)


def dependency_versions(names: tuple[str, ...] = DEPENDENCIES) -> dict[str, str]:
    """Installed versions of cryoflow's main dependencies (``"missing"`` when absent)."""
    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def canonical_json(value: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces) of a JSON-serialisable value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def run_token(
    step: str,
    parameters: Mapping[str, Any],
    inputs: Mapping[str, str],
    checkpoints: Mapping[str, str] | None = None,
) -> str:
    """SHA-256 (hex) of a step, its parameters, its inputs' and its checkpoints' identities.

    Parameters
    ----------
    step : str
    parameters : mapping, JSON-serialisable
    inputs : mapping of input path -> identity (a ``write_id`` or a file hash)
    checkpoints : mapping of checkpoint directory -> SHA-256 of its weights, optional
        (left out of the hash when empty, so steps without a network keep their tokens)
    """
    body: dict[str, Any] = {"step": step, "parameters": dict(parameters), "inputs": dict(inputs)}
    if checkpoints:
        body["checkpoints"] = dict(checkpoints)
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def file_sha256(path: str | Path, *, block: int = 1 << 20) -> str:
    """SHA-256 (hex) of a file's bytes, read in blocks (for checkpoints and raw inputs)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def make_record(
    step: str,
    parameters: Mapping[str, Any],
    inputs: Mapping[str, str],
    *,
    checkpoints: Mapping[str, str] | None = None,
    token: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A JSON-serialisable provenance record for one result.

    Returns
    -------
    dict
        ``step``, ``parameters``, ``inputs`` (path -> identity), ``checkpoints``
        (file -> SHA-256), ``cryoflow_version``, ``dependencies``, ``run_token``, ``created``.
    """
    from cryoflow import __version__

    record = {
        "step": step,
        "parameters": json.loads(canonical_json(dict(parameters))),
        "inputs": dict(inputs),
        "checkpoints": dict(checkpoints or {}),
        "cryoflow_version": __version__,
        "dependencies": dependency_versions(),
        "run_token": token or run_token(step, parameters, inputs, checkpoints),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if extra:
        record.update(json.loads(canonical_json(dict(extra))))
    return record
