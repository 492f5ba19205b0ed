"""``cryoflow verify``: find (and with --clean remove) leftovers of interrupted writes."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("verify")
    def verify(
        store: str = typer.Argument(..., help="Dataset store (STORE.zarr)."),
        clean: bool = typer.Option(
            False, "--clean", help="Delete the leftovers found (never while writing)."
        ),
    ) -> None:
        """Report temporary nodes (.tmp-*, .trash-*) and results never marked complete.

        Exit status 0 when the store is clean (or was cleaned), 1 when leftovers remain.
        """
        from cryoflow.io.verify import verify_store

        problems = verify_store(store, clean=clean)
        for p in problems:
            print(f"{'removed' if clean else 'leftover'}: {p.path} ({p.reason})")
        if not problems:
            print(f"cryoflow: {store} is clean")
        elif not clean:
            print(f"cryoflow: {len(problems)} leftover(s); run with --clean to remove them")
            raise typer.Exit(1)
