"""Step adapters for ``cryoflow run``: what each pipeline step reads, computes and writes.

An adapter turns ``(store, tomogram, params)`` into a :class:`Plan`: the step's output as a
*lazy* Dask array (chunked as it will be stored), where it goes
(``tomograms/<name>/results/<step>/<key>``) and the identity of every input it reads. The run
engine (:mod:`cryoflow.pipelines.run`) owns execution: chunk-wise writes, progress, skipping.

Wired here: ``bin`` (built in) and ``reconstruct`` (``cryoflow.api.backproject``, the
contract's back-projection). ``lift`` (:mod:`.steps_lift`), ``edges`` (:mod:`.steps_edges`) and
``annotate`` (:mod:`.steps_annotate`), ``detect`` (:mod:`.steps_detect`) and ``localize``
(:mod:`.steps_localize`) live in modules of their own, imported on first use.
``ingest`` and ``simulate`` make tomograms rather than results; the engine runs them before the
stream (:mod:`.steps_simulate`).

A step may write several results (``Plan.more``): they share the run token, are written as one
unit of chunk tasks and are published together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize

from cryoflow.errors import ConfigError, InputFileError
from cryoflow.io.layout import RESULTS, TILT_SERIES, TOMOGRAMS, open_dataset
from cryoflow.io.names import validate_name
from cryoflow.io.nodes import ATTR, open_node


@dataclass(frozen=True)
class Output:
    """A further result of a step: ``results/<step>/<key>`` holding ``data`` (lazy, chunked as stored)."""

    key: str
    data: da.Array
    dims: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """One (tomogram, step) unit of work: its main result and any further ones.

    Attributes
    ----------
    step, key : str
        The main result lands at ``tomograms/<tomogram>/results/<step>/<key>``.
    data : dask.array.Array
        Lazy output, chunked exactly as stored (one write task per chunk).
    dims : tuple of str
        One name per axis, e.g. ``("tilt", "y", "x")`` or ``("z", "y", "x")``.
    inputs : dict
        Store path (or file) -> identity (``write_id`` or SHA-256) of everything read.
    attrs : dict
        Extra JSON attributes stored with the result.
    checkpoints : dict
        Checkpoint directory -> SHA-256 of its weights; part of the run token and provenance.
    resources : dict or None
        Dask resources each chunk task needs (``{"GPU": 1}`` for network inference).
    more : tuple of Output
        Further results of the same step (same token, published together with the main one).
    setup : callable or None
        ``setup(client)`` before the chunks are submitted (e.g. registering a model plugin on
        every worker); an error fails the tomogram like a planning error.
    tables, finish : tuple of str, callable or None
        Results whose size is known only at the end (e.g. 3D boxes): once every chunk is
        written, ``finish(client, {key: staged zarr.Array})`` returns ``{key: DataFrame}`` for
        each name in ``tables``; the engine stores them before it publishes the arrays.
    """

    step: str
    key: str
    data: da.Array
    dims: tuple[str, ...]
    inputs: dict[str, str]
    attrs: dict[str, Any] = field(default_factory=dict)
    checkpoints: dict[str, str] = field(default_factory=dict)
    resources: dict[str, float] | None = None
    more: tuple[Output, ...] = ()
    setup: Callable[[Any], None] | None = None
    tables: tuple[str, ...] = ()
    finish: Callable[[Any, dict[str, Any]], dict[str, Any]] | None = None

    @property
    def outputs(self) -> tuple[Output, ...]:
        """Every result of the unit, the main one first."""
        return (Output(self.key, self.data, self.dims, dict(self.attrs)), *self.more)


Adapter = Callable[[object, str, Any], Plan]


# ---------------------------------------------------------------------------- inputs
def node_identity(store: object, path: str, what: str) -> str:
    """The ``write_id`` of the complete, safe node at ``path`` (changes whenever it is rewritten)."""
    node = open_node(open_dataset(store), path, what=what)
    meta = node.attrs.get(ATTR, {}) or {}
    return str(meta.get("write_id") or meta.get("provenance", {}).get("created", ""))


def tilt_series_input(store: object, tomogram: str, source: str) -> tuple[Any, dict[str, str]]:
    """The lazy ``(tilt, y, x)`` images of ``source`` (``tilt_series`` or ``bin``) and identity."""
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


# ---------------------------------------------------------------------------- bin
def bin_image(block: np.ndarray, factor: int, first_tilt: int = 0) -> np.ndarray:
    """Mean-bin tilt images ``(n, Y, X)`` by ``factor`` (edges that do not fill a bin dropped).

    Returns
    -------
    ndarray of shape (n, Y // factor, X // factor), float32

    Raises
    ------
    TypeError
        For Dask input (kernels are eager).
    InputFileError
        When an image holds non-finite values (a corrupt tilt); tilts are numbered from
        ``first_tilt``.
    """
    if isinstance(block, da.Array):
        raise TypeError("bin_image is an eager kernel; map it over Dask blocks instead")
    if not np.all(np.isfinite(block)):
        bad = sorted({first_tilt + int(i) for i in np.argwhere(~np.isfinite(block))[:, 0]})
        raise InputFileError("tilt series", f"non-finite pixels in tilt image(s) {bad[:5]}")
    n, y, x = block.shape
    yb, xb = y // factor, x // factor
    cut = block[:, : yb * factor, : xb * factor].astype(np.float32)
    return cut.reshape(n, yb, factor, xb, factor).mean(axis=(2, 4), dtype=np.float32)


def _bin_block(block: np.ndarray, first: np.ndarray, factor: int) -> np.ndarray:
    return bin_image(block, factor, int(first.flat[0]))


def plan_bin(store: object, tomogram: str, params: Any) -> Plan:
    """Bin every tilt image by ``params.factor``: ``(n, Y, X) -> (n, Y//f, X//f)``, one tilt per chunk."""
    images, inputs = tilt_series_input(store, tomogram, "tilt_series")
    n, y, x = images.shape
    f = int(params.factor)
    if y < f or x < f:
        raise ConfigError(
            f"bin factor {f} is larger than tomogram {tomogram!r}'s images ({y} x {x})"
        )
    src = images.data.rechunk((1, y, x))
    first = da.arange(n, chunks=1).reshape(n, 1, 1)  # each block's tilt number, for messages
    out = da.map_blocks(
        _bin_block,
        src,
        first,
        f,
        dtype=np.float32,
        chunks=((1,) * n, (y // f,), (x // f,)),
        meta=np.empty((0, 0, 0), np.float32),
        name=f"bin:{tomogram}-{tokenize(src.name, f)}",
    )
    return Plan("bin", TILT_SERIES, out, ("tilt", "y", "x"), inputs, attrs={"bin_factor": f})


# ---------------------------------------------------------------------------- reconstruct
def plan_reconstruct(store: object, tomogram: str, params: Any) -> Plan:
    """Back-project into a ``(thickness, Y, X)`` volume with the contract's ``backproject``."""
    try:
        from cryoflow.api import backproject
    except ImportError as exc:
        raise ConfigError(
            f"step 'reconstruct' is not available in this build (cryoflow.api: {exc})"
        ) from exc
    from cryoflow.geometry.binning import bin_geometry
    from cryoflow.io.store import open_tilt_series, read_geometry

    images, inputs = tilt_series_input(store, tomogram, params.source)
    _, y, x = images.shape
    shape = (int(params.thickness), int(y), int(x))
    chunks = tuple(min(int(params.chunk), s) for s in shape)
    # the stored geometry (rotated axis, shifts) fits the raw images; binned ones bin it
    angles = read_geometry(store, tomogram)
    if params.source != "tilt_series":
        raw_shape = open_tilt_series(store, tomogram).shape[1:]
        angles = bin_geometry(angles, raw_shape, int(images.attrs.get("bin_factor", 1)))
    vol = backproject(images, angles, shape, chunks=chunks)
    data = getattr(vol, "data", vol)
    if not isinstance(data, da.Array):
        data = da.from_array(np.asarray(data), chunks=chunks)
    data = data.rechunk(chunks)  # no-op when the builder honoured ``chunks``
    return Plan(
        "reconstruct", "volume", data, ("z", "y", "x"), inputs, attrs={"source": params.source}
    )


ADAPTERS: dict[str, Adapter] = {
    "bin": plan_bin,
    "reconstruct": plan_reconstruct,
}
# adapters in modules of their own: "module:function", imported on first use
LAZY_ADAPTERS: dict[str, str] = {
    "lift": "cryoflow.pipelines.steps_lift:plan_lift",
    "edges": "cryoflow.pipelines.steps_edges:plan_edges",
    "annotate": "cryoflow.pipelines.steps_annotate:plan_annotate",
    "detect": "cryoflow.pipelines.steps_detect:plan_detect",
    "localize": "cryoflow.pipelines.steps_localize:plan_localize",
}
# steps that make tomograms (run before the stream) rather than results of one tomogram
SOURCE_STEPS: tuple[str, ...] = ("ingest", "simulate")


def get_adapter(step: str) -> Adapter:
    """The adapter of ``step`` (ConfigError naming the runnable steps when there is none)."""
    if step in ADAPTERS:
        return ADAPTERS[step]
    if step in LAZY_ADAPTERS:
        module, func = LAZY_ADAPTERS[step].split(":")
        adapter: Adapter = getattr(import_module(module), func)
        return adapter
    runnable = [*SOURCE_STEPS, *ADAPTERS, *LAZY_ADAPTERS]
    raise ConfigError(
        f"step {step!r} is valid configuration but not runnable by `cryoflow run`; "
        f"runnable steps: {', '.join(runnable)}"
    )
