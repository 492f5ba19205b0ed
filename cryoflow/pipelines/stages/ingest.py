"""The ``ingest`` stage: MRC tilt series (or reconstructed tomograms) into a dataset store.

Bad input never changes the store: every file is checked first
(:func:`cryoflow.pipelines.stages.ingestion.plan_ingest`: headers, angle files, names, pixel
sizes, geometry; all or nothing), then written on the cluster
(:func:`~cryoflow.pipelines.stages.ingestion.write_ingest`), each node published when
complete. A source stage: in ``cryoflow run`` it makes the tomograms before any other step,
file by file, skipping files already in the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import Field

from cryoflow.errors import ConfigError
from cryoflow.pipelines.stages.base import CheckContext, SourceReport, Stage, StageParams
from cryoflow.pipelines.stages.eager import Target
from cryoflow.pipelines.stages.fields import Texts

NAME = "ingest"


class IngestParams(StageParams):
    """What to ingest (the store and ``--overwrite`` are the command's).

    In a pipeline file ``inputs`` is relative to the file and files already in the store are
    skipped (see :func:`ingest_step`).
    """

    inputs: Texts = Field(
        min_length=1,
        description="MRC file(s), directories or glob patterns (TILTS.mrc|DIR|GLOB); angles "
        "come from the .mdoc/.rawtlt/.tlt beside each file",
    )
    name: str | None = Field(
        default=None, description="tomogram name (one input only); default: the file's stem"
    )
    angles: str | None = Field(
        default=None, description="IMOD .tlt/.rawtlt or SerialEM .mdoc (one input only)"
    )
    tomogram: bool = Field(
        default=False, description="ingest reconstructed volumes (to volumes/tomogram)"
    )
    tilt_axis: float | None = Field(
        default=None,
        ge=-360.0,
        le=360.0,
        allow_inf_nan=False,
        description="tilt-axis angle DEG from the image y axis, IMOD/SerialEM sign (as an "
        ".mdoc's 'Tilt axis angle'); default: the .mdoc's, else the MRC extended header's, else 0",
    )
    alignment: str | None = Field(
        default=None,
        description="an alignment made elsewhere for the raw stack: IMOD .xf (with the .tlt "
        "beside it, or --angles) or AreTomo .aln (one input only)",
    )
    tilt_range: tuple[float, float] | None = Field(
        default=None,
        description="with --tomogram: the tilt range MIN MAX (degrees) the volumes were "
        "reconstructed from (default: --angles, else a .tlt/.rawtlt/.mdoc beside each MRC)",
    )
    max_expanded_bytes: int | None = Field(
        default=None,
        ge=1,
        description="refuse compressed (.gz/.bz2) input that would expand past this many "
        "bytes (default: cryoflow.io.mrc.MAX_EXPANDED_BYTES, 64 GiB)",
    )
    tile_px: int | None = Field(
        default=None,
        ge=1,
        description="tilt series chunk tile edge (default: cryoflow.io.layout.TILE_PX)",
    )

    def with_base(self, base: Path) -> IngestParams:
        paths = tuple(p if Path(p).is_absolute() else str(base / p) for p in self.inputs)
        return self.model_copy(update={"inputs": paths})


def with_limit(params: IngestParams, max_expanded_bytes: int) -> IngestParams:
    """``params`` refusing compressed input that expands past ``max_expanded_bytes``."""
    return IngestParams(**{**params.to_dict(), "max_expanded_bytes": max_expanded_bytes})


def run(client: Any, target: Target, params: IngestParams, *, plan: Any = None) -> list[str]:
    """Ingest every input of ``params`` into ``target.store`` through ``client``; returns the
    tomogram names written (``target.names`` is not used: the inputs name the tomograms).

    ``plan`` (from :func:`~cryoflow.pipelines.stages.ingestion.plan_ingest`, e.g. made before
    starting a cluster) is used and cleaned up; without it the inputs are planned here.
    """
    from cryoflow.pipelines.stages.ingestion import plan_ingest, write_ingest

    if plan is None:
        plan = plan_ingest(str(target.store), params, overwrite=target.overwrite)
    return write_ingest(client, plan, quiet=target.quiet)


def ingest_step(
    client: Any,
    store: str,
    params: IngestParams,
    *,
    tomograms: Sequence[str] | None = None,
    log: Any = None,
) -> SourceReport:
    """``cryoflow run``'s ingest: every input file whose tomogram is not in the store yet, one
    file at a time.

    A file that cannot be ingested is recorded as failed (keyed by its tomogram name, the
    file's stem) and the others go on. Ingest writes publish whole tilt series (temporary node,
    then rename), so an interrupted ingest leaves only a leftover for ``cryoflow verify``.
    ``tomograms``: only these names (the pipeline's dataset selection).
    """
    import time

    from cryoflow.io import angles as angle_io
    from cryoflow.io.layout import create_dataset, list_tomograms
    from cryoflow.pipelines.stages.ingestion import expand_inputs

    report = SourceReport()
    create_dataset(store)
    present = set(list_tomograms(store))
    wanted = set(tomograms) if tomograms is not None else None
    files = expand_inputs(params.inputs)
    if params.alignment is not None and len(files) != 1:
        raise ConfigError(f"ingest: alignment applies to one input file, got {len(files)} files")
    for path in files:
        name = angle_io._stem(path)  # the name ingest gives it
        if (wanted is not None and name not in wanted) or name in present:
            report.skipped += 1
            continue
        t0 = time.perf_counter()
        one = params.model_copy(update={"inputs": (str(path),), "name": None, "angles": None})
        try:
            run(client, Target(store, (), quiet=True), one)
        except Exception as exc:  # one bad file is recorded; the others still ingest
            report.failures[name] = f"ingest: {type(exc).__name__}: {exc}"
            if log is not None:
                log(f"cryoflow: FAILED {name} ({report.failures[name]})")
            continue
        report.made.append(name)
        report.seconds += time.perf_counter() - t0
    return report


def check(params: IngestParams, ctx: CheckContext) -> list[str]:
    """Read (header only) every MRC file the inputs name; one line each."""
    from cryoflow.io.mrc import read_mrc_header
    from cryoflow.pipelines.stages.ingestion import expand_inputs

    lines = []
    for path in expand_inputs(params.inputs):
        info = read_mrc_header(path, warn=False)
        n, y, x = info.shape
        lines.append(f"{path}: MRC {n} x {y} x {x}, mode {info.mode}")
    return lines


STAGE = Stage(NAME, IngestParams, source=ingest_step, check=check)
