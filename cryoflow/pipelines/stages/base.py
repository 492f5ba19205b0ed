"""The stage pattern: one parameter model, one lazy plan, one thin eager entry point.

A stage module (``cryoflow/pipelines/stages/<name>.py``) holds exactly:

1. ``<Name>Params(StageParams)``: a frozen, typed pydantic model and the only place the stage's
   defaults live. ``cryoflow <name>``'s options (generated from it by
   ``cryoflow.cli.options.with_params``), a pipeline file's step mapping (validated by it), the
   Python API and the demo all build one. Shared field types: :mod:`.fields`.
2. ``plan(store, tomogram, params) -> Plan``: the stage's lazy Dask graph for one tomogram,
   built with :mod:`cryoflow.graph` builders and chunked as it will be stored. It reads
   metadata, never computes.
3. ``run(client, target, params)``: the thin eager entry point, which runs those same plans on
   a client for the tomograms of a :class:`~cryoflow.pipelines.stages.eager.Target`
   (:func:`cryoflow.pipelines.stages.eager.run_stage`) and returns a short summary per
   tomogram.
4. ``STAGE = Stage(NAME, Params, plan=plan)``, listed by one line in
   :data:`cryoflow.pipelines.stages.STAGES`; ``cryoflow run`` (the engine) writes the same
   plans chunk by chunk, resumably. So ``cryoflow <name>`` and ``cryoflow run`` cannot
   disagree.

A stage whose unit is not a tomogram gives ``source=`` (it makes tomograms: ingest, simulate)
or ``dataset=`` (many tomograms in, one result out, in map-reduce rounds:
:mod:`cryoflow.pipelines.engine.rounds`) instead of ``plan=``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, ValidationError

from cryoflow.errors import ConfigError

if TYPE_CHECKING:  # stage modules stay light to import: the CLI builds its options from them
    import dask.array as da

__all__ = [
    "CheckContext",
    "Finished",
    "Output",
    "ParamsError",
    "Plan",
    "SourceReport",
    "Stage",
    "StageParams",
    "explain",
    "params_validation",
]


# ---------------------------------------------------------------------------- parameters
class ParamsError(ConfigError):
    """Bad stage parameters: the message names command-line options; ``validation`` holds
    pydantic's errors, for callers that name the values otherwise (a pipeline file's keys)."""

    def __init__(self, message: str, validation: ValidationError) -> None:
        super().__init__(message)
        self.validation = validation


def params_validation(exc: ValidationError) -> ValidationError:
    """The field errors behind ``exc``: validating a :class:`StageParams` (``model_validate``
    runs its ``__init__``) reports a :class:`ParamsError` as one error, which holds them."""
    for err in exc.errors():
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, ParamsError):
            return cause.validation
    return exc


class StageParams(BaseModel):
    """Base of every stage's parameter model: frozen, unknown keys refused.

    Building one (the CLI, the Python API, a pipeline file's step) raises
    :class:`ParamsError` (a :class:`~cryoflow.errors.ConfigError`) naming each bad value as
    its command-line option (``--filter must be one of ramp, none (got 'cubic')``); the
    pipeline parser explains its ``validation`` with the file's keys instead.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ParamsError(explain(exc, type(self), options=True), exc) from None

    @classmethod
    def default(cls, name: str) -> Any:
        """The default of field ``name`` (what a command-line option defaults to)."""
        info = cls.model_fields[name]
        if info.is_required():
            raise KeyError(f"{cls.__name__}.{name} has no default")
        return info.get_default(call_default_factory=True)

    @classmethod
    def describe(cls, name: str) -> str:
        """The field's description (a command-line option's help)."""
        return cls.model_fields[name].description or ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (what provenance records and run tokens hash)."""
        return self.model_dump(mode="json")

    def with_base(self, base: Path) -> StageParams:
        """A copy whose relative file paths are made relative to ``base`` (a pipeline file's
        folder). Stages with path fields override it; the default returns ``self``."""
        return self


def _choices(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[str, ...]:
    """The values of a ``Literal`` field (``Literal | None`` too), for messages."""
    info = model.model_fields.get(str(loc[0])) if loc else None
    args: list[Any] = []
    for arg in get_args(getattr(info, "annotation", None)):
        args.extend(get_args(arg) if getattr(arg, "__origin__", None) is Literal else [arg])
    return tuple(str(a) for a in args if a is not type(None))


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel]:
    for part in loc:
        info = model.model_fields.get(str(part))
        ann = getattr(info, "annotation", None)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
    return model


def _own_words(msg: str, loc: tuple[Any, ...], got: Any) -> str:
    """A validator's message said once: without a leading repeat of the field's own name
    (``"symmetry must be ..."`` under ``--symmetry``) and with the received value shown once
    (``(got ...)`` is added only when the message neither says ``got <value>`` nor quotes the
    received text itself)."""
    name = str(loc[-1])
    said = "|".join(re.escape(v) for v in {name, name.replace("_", " "), name.replace("_", "-")})
    msg = re.sub(rf"^(?:{said}):? ", "", msg, count=1, flags=re.IGNORECASE)
    shown = f"got {got!r}" in msg or f"got {got}" in msg
    quoted = isinstance(got, str) and bool(got) and repr(got) in msg
    if isinstance(got, dict | list | tuple) or shown or quoted:
        return msg
    return f"{msg} (got {got!r})"


def explain(exc: ValidationError, model: type[BaseModel], *, options: bool = False) -> str:
    """One line naming every bad key or value of ``exc`` and what is allowed there.

    ``options=True`` names fields as command-line options (``--denoise-size``), else as the
    dotted keys of a pipeline file (``cluster.max_in_flight``).
    """
    parts = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        where = ".".join(str(p) for p in loc) or "(top level)"
        if options and loc:
            where = "--" + str(loc[-1]).replace("_", "-")
        got = err.get("input")
        shown = "" if isinstance(got, dict | list | tuple) else f" (got {got!r})"
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(_model_at(model, loc[:-1]).model_fields)
            parts.append(f"unknown key {where!r}; allowed: {allowed}")
        elif err["type"] == "missing":
            parts.append(
                f"missing required option {where}" if options else f"missing required key {where!r}"
            )
        elif err["type"] == "literal_error":
            choices = ", ".join(_choices(_model_at(model, loc[:-1]), loc[-1:]))
            parts.append(f"{where}{' ' if options else ': '}must be one of {choices}{shown}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if loc:
                msg = _own_words(msg, loc, got)
            if options:
                msg = msg.replace("Input should be", "must be")
                parts.append(f"{where} {msg}" if loc else msg)
            else:
                parts.append(f"{where}: {msg}")
    return "; ".join(parts)


# ---------------------------------------------------------------------------- plans
@dataclass(frozen=True)
class Output:
    """One result of a stage: ``results/<step>/<key>`` holding ``data`` (lazy, chunked as stored).

    ``volume`` (``"image"`` or ``"label"``): when the stage's own command runs the plan, this
    output is written as the OME-Zarr volume ``volumes/<out>`` or label image ``labels/<out>``
    (what ``cryoflow export --key <out>`` reads); ``cryoflow run`` keeps it a result.
    """

    key: str
    data: da.Array
    dims: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    volume: str | None = None


@dataclass(frozen=True)
class Finished:
    """What a plan's ``finish`` adds once every chunk is written: ``tables`` (results whose
    length is known only at the end, e.g. 3D boxes) and ``attrs`` (per result key, attributes
    that depend on computed values, e.g. the chosen threshold)."""

    tables: dict[str, Any] = field(default_factory=dict)
    attrs: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """One (tomogram, stage) unit of work: every result it writes, lazily.

    Attributes
    ----------
    step : str
        Results land at ``tomograms/<tomogram>/results/<step>/<key>`` (``cryoflow run``).
    outputs : tuple of Output
        The main result first; all share the run token and are published together.
    inputs : dict
        Store path (or file) -> identity (``write_id`` or SHA-256) of everything read.
    checkpoints : dict
        Checkpoint directory -> SHA-256 of its weights; part of the run token and provenance.
    resources : dict or None
        Dask resources each chunk task needs (``{"GPU": 1}`` for network inference).
    setup : callable or None
        ``setup(client)`` before the chunks are submitted (e.g. registering a model plugin).
    tables : tuple of str
        Names of the tables ``finish`` returns.
    finish : callable or None
        ``finish(client, {key: written zarr.Array}) -> Finished`` once every chunk is written.
    pixel_size_angstrom : float or None
        Voxel size of the ``volume`` outputs.
    """

    step: str
    outputs: tuple[Output, ...]
    inputs: dict[str, str]
    checkpoints: dict[str, str] = field(default_factory=dict)
    resources: dict[str, float] | None = None
    setup: Callable[[Any], None] | None = None
    tables: tuple[str, ...] = ()
    finish: Callable[[Any, dict[str, Any]], Finished] | None = None
    pixel_size_angstrom: float | None = None

    def __post_init__(self) -> None:
        if not self.outputs:
            raise ValueError(f"a {self.step} plan needs at least one output")
        keys = [o.key for o in self.outputs] + list(self.tables)
        if len(set(keys)) != len(keys):
            raise ValueError(f"{self.step} plan: result keys repeat: {keys}")

    @property
    def key(self) -> str:
        """The main result's key."""
        return self.outputs[0].key


# ---------------------------------------------------------------------------- stages
PlanFn = Callable[[Any, str, Any], Plan]
SourceFn = Callable[..., Any]
DatasetFn = Callable[[Any, list[str], Any], Any]
CheckFn = Callable[[Any, "CheckContext"], list[str]]
OrderFn = Callable[[Any, list[str], list[str]], "str | None"]


@dataclass
class SourceReport:
    """What a source stage did: the tomograms it made, how many were current (skipped), and
    the failures (tomogram -> reason) that do not stop the run."""

    made: list[str] = field(default_factory=list)
    skipped: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(frozen=True)
class CheckContext:
    """What ``cryoflow check`` knows when it asks a stage to check its parameters.

    source : the pipeline file (relative paths are relative to its folder), or None;
    images : ``{tomogram: (n_tilts, Y, X)}`` of the stored tilt series (empty before they
    exist, e.g. with a simulate step).
    """

    source: str | None = None
    images: dict[str, tuple[int, int, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Stage:
    """A stage as the registry and the engine see it.

    Exactly one of ``plan`` (unit: one tomogram), ``source`` (makes tomograms, runs before
    the others) and ``dataset`` (unit: the dataset, in rounds) is set. ``check`` adds lines
    (and raises on problems) for ``cryoflow check``; ``order`` returns a message when the
    steps before (``before``) or after (``after``) this one in a pipeline cannot work.
    ``train`` (with ``plan`` only): ``train(store, tomograms, params) -> Rounds | None``, a
    dataset-level step ``cryoflow run`` runs over the tomograms before their plans (dewedge's
    network, learned from all of them; None: nothing to train, e.g. a given checkpoint).
    """

    name: str
    params: type[StageParams]
    plan: PlanFn | None = None
    source: SourceFn | None = None
    dataset: DatasetFn | None = None
    check: CheckFn | None = None
    order: OrderFn | None = None
    train: DatasetFn | None = None

    def __post_init__(self) -> None:
        if sum(f is not None for f in (self.plan, self.source, self.dataset)) != 1:
            raise ValueError(f"stage {self.name!r}: give exactly one of plan, source, dataset")
        if self.train is not None and self.plan is None:
            raise ValueError(f"stage {self.name!r}: train= runs before a per-tomogram plan=")

    @property
    def unit(self) -> str:
        """``"tomogram"``, ``"source"`` or ``"dataset"``."""
        if self.plan is not None:
            return "tomogram"
        return "source" if self.source is not None else "dataset"
