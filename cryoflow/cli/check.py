"""``cryoflow check PIPELINE.yaml``: validate a pipeline and every input header, computing nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def check(
    pipeline: Annotated[Path, typer.Argument(help="PIPELINE.yaml to validate.")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only problems.")] = False,
) -> None:
    """Validate PIPELINE.yaml (keys, values, steps) and every input's header; exit 2 on a problem."""
    from cryoflow.pipelines.engine.check import check_pipeline
    from cryoflow.pipelines.engine.config import load_pipeline

    config = load_pipeline(pipeline)
    lines = check_pipeline(config)
    if not quiet:
        for line in lines:
            typer.echo(line)
        steps = ", ".join(s.name for s in config.steps)
        typer.echo(f"cryoflow: {pipeline} is valid ({steps}; {len(lines)} input(s) checked)")


def register(app: typer.Typer) -> None:
    app.command("check")(check)
