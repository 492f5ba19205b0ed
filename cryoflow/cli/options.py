"""Options every command shares, declared once, and each stage command's options built from
its stage's parameter model.

:func:`with_params` gives a command one option per field of the model (named ``--field-name``
unless renamed, the field's default as its default, its description as its help) and hands
the command the built model as ``params``; a field added to the model is an option at once::

    @with_params(LiftParams, names={"masks": ("--maps",)})
    def lift(params: LiftParams, tomograms: Tomograms, out: Out = "lift", run: Run = RUN) -> None:
        done = run_stage(lift_stage, tomograms.target(run, out), params, run)

Options many commands share come as small frozen groups (:class:`Tomograms`: STORE, ``--name``,
``--all``; :class:`Run`: ``--overwrite``, ``--scheduler``, ``--workers``; :class:`Cluster`): a
parameter annotated with a group stands for the group's options, in the group's order, and the
command receives the built group (``with_params(None)`` for a command with no model).

The decorated function stays a plain function: ``lift(store, maps=...)`` or
``lift(store, params=LiftParams(...))``.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any

import typer

Store = Annotated[str, typer.Argument(help="Dataset store (STORE.zarr).", show_default=False)]
Name = Annotated[str | None, typer.Option("--name", help="Tomogram name.")]
All = Annotated[bool, typer.Option("--all", help="Every tomogram of the dataset.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace earlier results.")]
Scheduler = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        help="Address of a Dask scheduler (tcp://HOST:PORT or tls://...); default: "
        "CRYOFLOW_SCHEDULER, else a local cluster on 127.0.0.1.",
    ),
]
Workers = Annotated[
    int | None, typer.Option("--workers", help="Local worker processes (default 2).")
]


# ---------------------------------------------------------------------------- option groups
class OptionGroup:
    """Base of a frozen dataclass whose fields are options a command takes together."""


@dataclasses.dataclass(frozen=True)
class Tomograms(OptionGroup):
    """The tomograms a stage command works on: STORE, and ``--name`` or ``--all``."""

    store: Store
    name: Name = None
    all_: All = False

    def target(self, run: Run, out: str | None = None) -> Any:
        """The stage's :class:`~cryoflow.pipelines.stages.eager.Target`, writing ``out``."""
        return target(self.store, self.name, self.all_, out, run.overwrite)


@dataclasses.dataclass(frozen=True)
class Cluster(OptionGroup):
    """Where a command computes: ``--scheduler`` and ``--workers``."""

    scheduler: Scheduler = None
    workers: Workers = None

    @property
    def named(self) -> bool:
        """Whether ``--scheduler`` or ``--workers`` was given."""
        return self.scheduler is not None or self.workers is not None

    def config(self, **more: Any) -> Any:
        """Its :class:`~cryoflow.pipelines.cluster.connect.ClusterConfig` (see :func:`cluster`)."""
        return cluster(self.scheduler, self.workers, **more)


@dataclasses.dataclass(frozen=True)
class Run(OptionGroup):
    """How a stage command writes and where it computes: ``--overwrite`` earlier results,
    ``--scheduler``, ``--workers``."""

    overwrite: Overwrite = False
    scheduler: Scheduler = None
    workers: Workers = None

    def cluster(self, **more: Any) -> Any:
        """Its :class:`~cryoflow.pipelines.cluster.connect.ClusterConfig`."""
        return Cluster(self.scheduler, self.workers).config(**more)


LOCAL = Cluster()
"""No ``--scheduler``/``--workers``: the default of a :class:`Cluster` parameter."""
RUN = Run()
"""No ``--overwrite``/``--scheduler``/``--workers``: the default of a :class:`Run` parameter."""


def _group_parameters(
    func: Callable[..., Any], hints: Mapping[str, Any]
) -> tuple[list[inspect.Parameter], dict[str, tuple[type[OptionGroup], list[str]]]]:
    """``func``'s parameters but ``params``, each group expanded into its options, and the
    groups (parameter name -> group, option names)."""
    parameters: list[inspect.Parameter] = []
    groups: dict[str, tuple[type[OptionGroup], list[str]]] = {}
    for name, p in inspect.signature(func).parameters.items():
        if name == "params":
            continue
        group = hints.get(name)
        if not (isinstance(group, type) and issubclass(group, OptionGroup)):
            parameters.append(p.replace(annotation=hints.get(name, p.annotation)))
            continue
        fields = dataclasses.fields(group)  # type: ignore[arg-type]
        group_hints = typing.get_type_hints(group, include_extras=True)
        groups[name] = (group, [f.name for f in fields])
        for f in fields:
            default = inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default
            parameters.append(
                inspect.Parameter(f.name, p.kind, default=default, annotation=group_hints[f.name])
            )
    return parameters, groups


# ---------------------------------------------------------------------------- model options
def _cli_type(annotation: Any) -> tuple[Any, bool]:
    """The command-line type of a field, and whether it is a comma-separated list
    (``tuple[str, ...]``, optional or not, given as ``"a,b"``)."""
    inner = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(inner) == 1:
        annotation = inner[0]
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is tuple and len(args) == 2 and args[1] is Ellipsis:
        return str | None, True
    return annotation, False


def _choices(annotation: Any) -> list[str]:
    """The values of a ``Literal`` of strings (empty for any other type)."""
    if typing.get_origin(annotation) is not typing.Literal:
        return []
    values = typing.get_args(annotation)
    return [str(v) for v in values] if all(isinstance(v, str) for v in values) else []


def _help(model: Any, field: str) -> str | None:
    text = model.describe(field)
    return (text[:1].upper() + text[1:] + ".") if text else None


def with_params(
    model: Any,
    *,
    names: Mapping[str, Sequence[str]] | None = None,
    skip: Sequence[str] = (),
    types_: Mapping[str, Any] | None = None,
    arguments: Sequence[str] = (),
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a command taking ``params`` with one option per field of ``model``.

    ``names``: option names of a field (default ``--field-name``); ``skip``: fields that are
    no option (``params`` has their defaults; the command may set them from its own options);
    ``types_``: a field's command-line type when it is not the model's (e.g. ``list[Path]``
    for a repeated path); ``arguments``: fields that are positional arguments, not options.
    With ``model`` None the command has no parameter model: only its option groups are built.
    """
    names = dict(names or {})
    types_ = dict(types_ or {})

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        own = inspect.signature(func)
        hints = typing.get_type_hints(func, include_extras=True)
        fields = [f for f in model.model_fields if f not in skip] if model is not None else []
        lists = set()
        field_params = []
        for f in fields:
            info = model.model_fields[f]
            kind, is_list = _cli_type(types_.get(f, info.annotation))
            if is_list:
                lists.add(f)
            if f in arguments:
                option = typer.Argument(help=_help(model, f), show_default=False)
            else:
                decls = tuple(names.get(f, ("--" + f.replace("_", "-"),)))
                choices = _choices(kind)
                if choices:  # a Literal field: its values in --help (the model checks them)
                    kind = str
                option = typer.Option(
                    *decls, help=_help(model, f), metavar="|".join(choices) if choices else None
                )
            option.cryoflow_field = (model, f)  # type: ignore[attr-defined]  # for the tests
            default: Any = inspect.Parameter.empty if info.is_required() else model.default(f)
            if is_list and default is not inspect.Parameter.empty:
                default = ",".join(default) if default else None
            field_params.append(
                inspect.Parameter(
                    f,
                    inspect.Parameter.KEYWORD_ONLY,
                    default=default,
                    annotation=Annotated[kind, option],
                )
            )
        rest, groups = _group_parameters(func, hints)
        required = [p for p in rest if p.default is inspect.Parameter.empty]
        optional = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in rest if p not in required
        ]
        required_fields = [p for p in field_params if p.default is inspect.Parameter.empty]
        optional_fields = [p for p in field_params if p not in required_fields]
        parameters = [*required, *required_fields, *optional_fields, *optional]
        signature = own.replace(parameters=parameters, return_annotation=None)

        @functools.wraps(func)
        def command(*args: Any, **kwargs: Any) -> Any:
            kwargs = {**signature.bind_partial(*args).arguments, **kwargs}
            if model is not None and "params" not in kwargs:
                given = {f: kwargs.pop(f) for f in fields if f in kwargs}
                for f in lists & set(given):
                    if given[f] is None:  # not given: the model's default
                        del given[f]
                    elif isinstance(given[f], str):
                        given[f] = names_list(given[f])
                kwargs["params"] = model(**given)
            for name, (group, options) in groups.items():
                kwargs[name] = group(**{n: kwargs.pop(n) for n in options if n in kwargs})
            return func(**kwargs)

        command.__signature__ = signature  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in parameters}
        return command

    return decorate


# ---------------------------------------------------------------------------- running
def cluster(scheduler: str | None, workers: int | None, **more: Any) -> Any:
    """The :class:`~cryoflow.pipelines.cluster.connect.ClusterConfig` of ``--scheduler`` and
    ``--workers`` (then ``CRYOFLOW_SCHEDULER`` / ``CRYOFLOW_WORKERS``, then defaults)."""
    from cryoflow.pipelines.cluster.connect import ClusterConfig

    return ClusterConfig.from_env(scheduler=scheduler, n_workers=workers, **more)


def target(
    store: str, name: str | None, all_: bool, out: str | None = None, overwrite: bool = False
) -> Any:
    """A stage command's :class:`~cryoflow.pipelines.stages.eager.Target`: ``--name`` or
    ``--all`` of ``store``, ``--out``, ``--overwrite``."""
    from cryoflow.pipelines.stages.eager import Target
    from cryoflow.pipelines.stages.inputs import pick_tomograms

    return Target(store, tuple(pick_tomograms(store, name, all_)), out=out, overwrite=overwrite)


def run_stage(stage: types.ModuleType, where: Any, params: Any, run: Run, **options: Any) -> Any:
    """What a stage command does: build every plan and refuse existing outputs before any
    cluster starts, then run the stage's entry point on the cluster of ``run``."""
    from cryoflow.pipelines.cluster.connect import connect
    from cryoflow.pipelines.stages.eager import prepare

    prepare(stage.STAGE, where, params)
    with connect(run.cluster()) as client:
        return stage.run(client, where, params, **options)


def names_list(text: str | None) -> tuple[str, ...]:
    """``"a, b"`` -> ``("a", "b")`` (a comma-separated option); None -> ``()``."""
    return tuple(c.strip() for c in text.split(",") if c.strip()) if text else ()


__all__ = [
    "LOCAL",
    "RUN",
    "All",
    "Cluster",
    "Name",
    "OptionGroup",
    "Overwrite",
    "Run",
    "Scheduler",
    "Store",
    "Tomograms",
    "Workers",
    "cluster",
    "names_list",
    "run_stage",
    "target",
    "with_params",
]
