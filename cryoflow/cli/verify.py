"""``cryoflow verify``: find (and with --clean remove) leftovers of interrupted writes."""

from __future__ import annotations

from typing import Annotated

import typer

from cryoflow.cli.options import Store


def verify(
    store: Store,
    clean: Annotated[
        bool, typer.Option("--clean", help="Delete the leftovers found (never while writing).")
    ] = False,
) -> None:
    """Report temporary nodes (.tmp-*, .trash-*) and results never marked complete.

    Exit status 0 when the store is clean (or was cleaned), 1 when leftovers remain.
    """
    from cryoflow.pipelines.stages.verify import verify_store

    problems = verify_store(store, clean=clean)
    for p in problems:
        print(f"{'removed' if clean else 'leftover'}: {p.path} ({p.reason})")
    if not problems:
        print(f"cryoflow: {store} is clean")
    elif not clean:
        print(f"cryoflow: {len(problems)} leftover(s); run with --clean to remove them")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)
