"""``cryoflow multibody``: per-particle refinement of each body of a consensus.

``--bodies BODY1.mrc BODY2.mrc ...`` takes several files after one flag (the contract's form;
a command-line option takes one value, so the files after the first arrive as extra
arguments and join the bodies, in order); ``--bodies A.mrc --bodies B.mrc`` works too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cryoflow.cli import options as o
from cryoflow.errors import ConfigError
from cryoflow.pipelines.stages.multibody import MultibodyParams


def split_positionals(store: str, more: list[str] | None) -> tuple[str, list[str]]:
    """The store among the positional arguments (the one folder: a Zarr store is one) and the
    extra body files after ``--bodies``, in order."""
    args = [store, *(more or [])]
    if len(args) == 1:
        return store, []
    folders = [a for a in args if Path(a).is_dir()]
    if len(folders) != 1:
        raise ConfigError(
            f"cryoflow multibody: expected one STORE folder among the arguments {args}, found "
            f"{len(folders)}"
        )
    return folders[0], [a for a in args if a != folders[0]]


@o.with_params(MultibodyParams, skip=("bodies",))
def multibody(
    params: MultibodyParams,
    store: o.Store,
    bodies: Annotated[
        list[Path], typer.Option("--bodies", help="Body masks (MRC): --bodies A.mrc B.mrc ...")
    ],
    out: Annotated[
        str, typer.Option("--out", help="Output folder (body_<k>.mrc, particles.star).")
    ],
    more: Annotated[list[str] | None, typer.Argument(hidden=True, show_default=False)] = None,
    overwrite: o.Overwrite = False,
    scheduler: o.Scheduler = None,
    workers: o.Workers = None,
) -> None:
    """Refine each body per particle: writes OUT/body_<k>.mrc and OUT/particles.star."""
    from cryoflow.pipelines.cluster.connect import connect
    from cryoflow.pipelines.stages import multibody as stage

    store, extra = split_positionals(store, more)
    files = [str(b) for b in bodies] + extra
    p = MultibodyParams(**{**params.model_dump(), "bodies": tuple(files)})
    stage.preflight(store, p, out, overwrite)  # bad input fails before any cluster starts
    with connect(o.cluster(scheduler, workers)) as client:
        summary = stage.multibody(client, store, p, out, overwrite=overwrite)
    res = ", ".join(f"{v:.2f}" for v in summary["body_resolution_px"])
    print(f"cryoflow multibody: body FSC-0.143 (voxels) {res}; wrote {out}")


def register(app: typer.Typer) -> None:
    app.command("multibody")(multibody)
