"""``cryoflow verify``: find (and with --clean remove) leftovers of interrupted writes; with
--deep also read every chunk and check it."""

from __future__ import annotations

from typing import Annotated

import typer

from cryoflow.cli import options as o


@o.with_params(None)
def verify(
    store: o.Store,
    deep: Annotated[
        bool,
        typer.Option(
            "--deep",
            help="Also read every chunk of every array and check it (checksum, decoding, "
            "shape), naming each array and chunk that fails; on a Dask cluster for a big "
            "store or when --scheduler/--workers is given.",
        ),
    ] = False,
    clean: Annotated[
        bool, typer.Option("--clean", help="Delete the leftovers found (never while writing).")
    ] = False,
    cluster: o.Cluster = o.LOCAL,
) -> None:
    """Report temporary nodes (.tmp-*, .trash-*), results never marked complete or stale, and
    orphaned *.partial files; with --deep, damaged chunks too.

    Exit status 0 when the store is sound (or was cleaned), 1 when leftovers remain or a chunk
    is damaged (--clean never removes a damaged chunk: it is data).
    """
    from cryoflow.pipelines.stages.verify import deep_verify, verify_store

    problems = verify_store(store, clean=clean)
    for p in problems:
        print(f"{'removed' if clean else 'leftover'}: {p.path} ({p.reason})")
    remaining = 0 if clean else len(problems)
    damaged = 0
    if deep:
        use_cluster = True if cluster.named else None
        report = deep_verify(store, cluster.config(), use_cluster=use_cluster)
        for d in report.problems:
            print(f"damaged: {d}")
        damaged = len(report.problems)
        print(
            f"cryoflow: deep check read {report.n_chunks} chunk(s) of {report.n_arrays} "
            f"array(s){' on the cluster' if report.on_cluster else ''}: "
            + (f"{damaged} damaged" if damaged else "all sound")
        )
    if remaining:
        print(f"cryoflow: {remaining} leftover(s); run with --clean to remove them")
    if damaged:
        print(
            f"cryoflow: {damaged} damaged chunk(s) or array(s); recompute or restore the "
            "arrays named above (reading them fails)"
        )
    if remaining or damaged:
        raise typer.Exit(1)
    print(f"cryoflow: {store} is {'clean' if not problems else 'cleaned'}")


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)
