"""Options every command shares, declared once, and each stage command's options built from
its stage's parameter model.

:func:`with_params` gives a command one option per field of the model (named ``--field-name``
unless renamed, the field's default as its default, its description as its help) and hands
the command the built model as ``params``; a field added to the model is an option at once::

    @with_params(LiftParams, names={"masks": ("--maps",)})
    def lift(params: LiftParams, store: Store, name: Name = None, all_: All = False, ...) -> None:
        done = run_stage(lift_stage, target(store, name, all_, out, overwrite), params, ...)

The decorated function stays a plain function: ``lift(store, maps=...)`` or
``lift(store, params=LiftParams(...))``.
"""

from __future__ import annotations

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
    """
    names = dict(names or {})
    types_ = dict(types_ or {})

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        own = inspect.signature(func)
        hints = typing.get_type_hints(func, include_extras=True)
        fields = [f for f in model.model_fields if f not in skip]
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
                option = typer.Option(*decls, help=_help(model, f))
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
        rest = [p for n, p in own.parameters.items() if n != "params"]
        required = [p for p in rest if p.default is inspect.Parameter.empty]
        optional = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in rest if p not in required
        ]
        required_fields = [p for p in field_params if p.default is inspect.Parameter.empty]
        optional_fields = [p for p in field_params if p not in required_fields]
        parameters = [
            *(p.replace(annotation=hints.get(p.name, p.annotation)) for p in required),
            *required_fields,
            *optional_fields,
            *(p.replace(annotation=hints.get(p.name, p.annotation)) for p in optional),
        ]
        signature = own.replace(parameters=parameters, return_annotation=None)

        @functools.wraps(func)
        def command(*args: Any, **kwargs: Any) -> Any:
            if "params" not in kwargs:
                given = {f: kwargs.pop(f) for f in fields if f in kwargs}
                for f in lists & set(given):
                    if given[f] is None:  # not given: the model's default
                        del given[f]
                    elif isinstance(given[f], str):
                        given[f] = names_list(given[f])
                kwargs["params"] = model(**given)
            return func(*args, **kwargs)

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


def run_stage(
    stage: types.ModuleType,
    where: Any,
    params: Any,
    scheduler: str | None,
    workers: int | None,
    **options: Any,
) -> Any:
    """What a stage command does: build every plan and refuse existing outputs before any
    cluster starts, then run the stage's entry point on a cluster."""
    from cryoflow.pipelines.cluster.connect import connect
    from cryoflow.pipelines.stages.eager import prepare

    prepare(stage.STAGE, where, params)
    with connect(cluster(scheduler, workers)) as client:
        return stage.run(client, where, params, **options)


def names_list(text: str | None) -> tuple[str, ...]:
    """``"a, b"`` -> ``("a", "b")`` (a comma-separated option); None -> ``()``."""
    return tuple(c.strip() for c in text.split(",") if c.strip()) if text else ()


__all__ = [
    "All",
    "Name",
    "Overwrite",
    "Scheduler",
    "Store",
    "Workers",
    "cluster",
    "names_list",
    "run_stage",
    "target",
    "with_params",
]
