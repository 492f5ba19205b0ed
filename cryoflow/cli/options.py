"""Options every command shares, declared once, and the bridge from a stage's parameter model
to its command-line options.

A command's own options derive from its stage's parameter model: the Python default is the
model's (``Params.default(field)``) and the help its field description, through
:func:`param`::

    threshold: Annotated[float | None, param(LiftParams, "threshold")] = LiftParams.default("threshold")
"""

from __future__ import annotations

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


def param(model: Any, field: str, *decls: str, **kwargs: Any) -> Any:
    """A ``typer.Option`` for ``field`` of a stage's parameter model: named ``--field-name``
    (or ``decls``), with the field's description as its help."""
    names = decls or ("--" + field.replace("_", "-"),)
    text = model.describe(field)
    option = typer.Option(
        *names, help=(text[:1].upper() + text[1:] + ".") if text else None, **kwargs
    )
    option.cryoflow_field = (model, field)  # type: ignore[attr-defined]  # read by the tests
    return option


def cluster(scheduler: str | None, workers: int | None, **more: Any) -> Any:
    """The :class:`~cryoflow.pipelines.cluster.connect.ClusterConfig` of ``--scheduler`` and
    ``--workers`` (then ``CRYOFLOW_SCHEDULER`` / ``CRYOFLOW_WORKERS``, then defaults)."""
    from cryoflow.pipelines.cluster.connect import ClusterConfig

    return ClusterConfig.from_env(scheduler=scheduler, n_workers=workers, **more)


def names_list(text: str | None) -> tuple[str, ...]:
    """``"a, b"`` -> ``("a", "b")`` (a comma-separated option); None -> ``()``."""
    return tuple(c.strip() for c in text.split(",") if c.strip()) if text else ()
