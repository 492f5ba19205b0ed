"""Ingest MRC tilt series (or reconstructed tomograms) into a dataset store on a Dask cluster
(the ``ingest`` stage's planning and writing).

Two phases, so that bad input never changes the store:

1. :func:`plan_ingest` (client side, no store writes): expand the inputs, read and check every
   MRC header and angle file, resolve names, pixel sizes and geometry, refuse existing names
   unless overwriting. All or nothing: every file is checked, and if any is unusable nothing
   is written; one bad file raises its own typed error naming the file, several raise one
   :class:`~cryoflow.errors.InputFilesError` naming each file and its problem.
2. :func:`write_ingest` (on a Client): every file becomes a pending store write whose tasks each
   memory-map and read one tilt (or tile, or 3D chunk) and write it to its own Zarr chunk;
   all files run together under one progress bar; each node is published when complete.
"""

from __future__ import annotations

import glob
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryoflow.errors import (
    AlreadyExistsError,
    ConfigError,
    CryoflowError,
    InputFileError,
    InputFilesError,
    NonStandardInputWarning,
)
from cryoflow.geometry import TiltGeometry
from cryoflow.io import angles as angle_io
from cryoflow.io import mrc, nodes
from cryoflow.io.layout import (
    TILE_PX,
    TILT_SERIES,
    TOMOGRAMS,
    VOLUMES,
    open_dataset,
    tilt_series_chunks,
    volume_chunks,
)
from cryoflow.io.names import validate_name
from cryoflow.io.store import PendingWrite, write_tilt_series, write_volume
from cryoflow.io.tomograms import HOW_TO_GIVE, TiltRange, resolve_tilt_range, tilt_range_attrs
from cryoflow.pipelines.stages.ingest import IngestParams
from cryoflow.pipelines.stages.ingest_meta import SeriesMeta, resolve_series, resolve_volume_pixel

__all__ = [
    "IngestItem",
    "IngestPlan",
    "describe_item",
    "expand_inputs",
    "plan_ingest",
    "write_ingest",
]

MRC_SUFFIXES = (".mrc", ".mrcs", ".st", ".ali", ".rec", ".map")
TOMOGRAM_KEY = "tomogram"


@dataclass(frozen=True)
class IngestItem:
    """One validated input: everything needed to write it, nothing written yet."""

    source: str  # the file as given (maybe compressed)
    info: mrc.MrcInfo  # the readable MRC (maybe a decompressed temporary copy)
    name: str
    pixel_size_angstrom: float
    geometry: TiltGeometry | None  # None for --tomogram
    angles_file: str | None
    notes: tuple[str, ...] = ()
    meta: SeriesMeta | None = None  # what was decided about a tilt series, and from where
    tilt_range: TiltRange | None = None  # --tomogram: the missing wedge's tilt range


@dataclass
class IngestPlan:
    """Every checked input, and where it goes (nothing written yet)."""

    params: IngestParams
    out: str
    overwrite: bool
    items: list[IngestItem]
    tempdir: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    def cleanup(self) -> None:
        if self.tempdir is not None:
            self.tempdir.cleanup()
            self.tempdir = None


# ---------------------------------------------------------------------------- inputs
def expand_inputs(inputs: Sequence[str]) -> list[Path]:
    """Files named, MRC files in named directories, or matches of glob patterns (sorted)."""
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            matches = sorted(c for c in p.iterdir() if c.is_file() and _is_mrc_name(c.name))
            if not matches:
                raise InputFileError(p, f"directory holds no MRC files ({', '.join(MRC_SUFFIXES)})")
            found += matches
        elif any(ch in item for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(item) if Path(m).is_file())
            if not matches:
                raise InputFileError(item, "pattern matches no files")
            found += matches
        elif p.is_file():
            found.append(p)
        else:
            raise InputFileError(p, "no such file or directory")
    # as named, links not resolved: a link is ingested under its own stem, with its neighbours
    unique = list(dict.fromkeys(angle_io.input_path(f) for f in found))
    return unique


def _is_mrc_name(name: str) -> bool:
    low = name.lower()
    for comp in mrc.COMPRESSED_SUFFIXES:
        low = low.removesuffix(comp)
    return low.endswith(MRC_SUFFIXES)


# ---------------------------------------------------------------------------- planning
def plan_ingest(out: str, params: IngestParams, *, overwrite: bool = False) -> IngestPlan:
    """Validate every input and the store; write nothing to the store.

    Raises
    ------
    InputFileError, AngleFileError
        A file is missing, malformed, truncated, absurd, or its angles do not match.
    InputFilesError
        More than one input file has a problem; ``.errors`` holds each file's error.
    InvalidNameError, ConfigError, AlreadyExistsError, NodeNotFoundError
    """
    out = str(out)
    files = expand_inputs(params.inputs)
    if len(files) > 1 and params.name is not None:
        raise ConfigError(f"--name applies to one input file, got {len(files)} files")
    if len(files) > 1 and params.angles is not None:
        raise ConfigError(f"--angles applies to one input file, got {len(files)} files")
    _check_series_options(params, len(files))
    existing = _existing_names(out, tomogram=params.tomogram)
    plan = IngestPlan(params, out, overwrite, [])
    problems: list[CryoflowError] = []
    try:
        seen: dict[str, Path] = {}
        for f in files:
            try:
                plan.items.append(_check_one(f, plan, seen, existing))
            except CryoflowError as exc:  # go on, so that every bad file is named at once
                problems.append(exc)
    except BaseException:
        plan.cleanup()
        raise
    if problems:
        plan.cleanup()
        if len(problems) == 1:
            raise problems[0]
        raise InputFilesError(problems, len(files))
    return plan


def _check_series_options(params: IngestParams, n_files: int) -> None:
    """``--alignment`` (one input only) and ``--tilt-axis`` describe tilt series only."""
    if n_files > 1 and params.alignment is not None:
        raise ConfigError(f"--alignment applies to one input file, got {n_files} files")
    if params.tomogram and (params.alignment is not None or params.tilt_axis is not None):
        raise ConfigError(
            "--tilt-axis and --alignment describe tilt series, not --tomogram volumes"
        )


def _check_one(f: Path, plan: IngestPlan, seen: dict[str, Path], existing: set[str]) -> IngestItem:
    """Plan one file and check its name against the other inputs and the store."""
    item = _plan_one(f, plan.params, plan)
    if item.name in seen:
        raise ConfigError(f"{f}: tomogram name {item.name!r} is also the name of {seen[item.name]}")
    seen[item.name] = f
    if item.name in existing and not plan.overwrite:
        what = "tomogram volume" if plan.params.tomogram else "tilt series"
        raise AlreadyExistsError(
            f"{plan.out}: {what} {item.name!r} already exists; pass --overwrite to replace it"
        )
    return item


def _existing_names(out: str, *, tomogram: bool) -> set[str]:
    """Names in ``out`` that already hold what this ingest would write (empty if no store)."""
    if "://" not in out and not Path(out).exists():
        return set()
    root = open_dataset(out)
    if TOMOGRAMS not in root:
        return set()
    leaf = f"{VOLUMES}/{TOMOGRAM_KEY}" if tomogram else TILT_SERIES
    return {
        n
        for n in nodes.child_group(root, TOMOGRAMS).group_keys()
        if nodes.exists(root, f"{TOMOGRAMS}/{n}/{leaf}")
    }


def _default_name(path: Path) -> str:
    """The file's stem as a tomogram name; one that is not a valid name suggests ``--name``."""
    import re

    from cryoflow.errors import InvalidNameError
    from cryoflow.io.names import NAME_RULE, is_valid_name

    stem = angle_io.input_stem(path)
    if is_valid_name(stem):
        return stem
    hint = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-").replace("..", ".") or "TS_01"
    raise InvalidNameError(
        f"{path}: its stem {stem!r} is not a valid tomogram name ({NAME_RULE}); pass --name {hint}"
    )


def _plan_one(path: Path, config: IngestParams, plan: IngestPlan) -> IngestItem:
    name = validate_name(
        config.name if config.name is not None else _default_name(path), "tomogram name"
    )
    readable = path
    if path.suffix.lower() in mrc.COMPRESSED_SUFFIXES:
        if plan.tempdir is None:
            plan.tempdir = tempfile.TemporaryDirectory(prefix="cryoflow-ingest-")
        readable = mrc.decompress_mrc(
            path,
            Path(plan.tempdir.name) / f"{name}.mrc",
            max_expanded_bytes=config.max_expanded_bytes or mrc.MAX_EXPANDED_BYTES,
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NonStandardInputWarning)
        info = mrc.read_mrc_header(readable)
    notes = tuple(str(w.message).replace(str(readable), str(path)) for w in caught)
    for note in notes:
        warnings.warn(note, NonStandardInputWarning, stacklevel=3)
    if config.tomogram:
        if info.shape[0] < 2:
            raise InputFileError(
                path,
                f"holds a single {info.shape[1]} x {info.shape[2]} image, not a volume; "
                "--tomogram needs a (z, y, x) volume of 2 or more sections",
            )
        tilt = _tomogram_tilt_range(path, config)
        angles = None if tilt is None or tilt.source == "--tilt-range" else tilt.source
        pixel, _ = resolve_volume_pixel(path, info)
        return IngestItem(str(path), info, name, pixel, None, angles, notes, tilt_range=tilt)
    if config.tilt_range is not None:
        raise ConfigError(
            f"{path}: --tilt-range applies to --tomogram volumes; a tilt series' angles come "
            "from --angles or a .mdoc/.rawtlt/.tlt beside it"
        )
    meta = resolve_series(
        path,
        info,
        angles=config.angles,
        tilt_axis=config.tilt_axis,
        alignment=config.alignment,
    )
    return IngestItem(
        str(path),
        info,
        name,
        meta.pixel_size_angstrom,
        meta.geometry,
        meta.angles_file,
        notes,
        meta,
    )


def describe_item(item: IngestItem) -> list[str]:
    """What ingest decided for one input, for the terminal (first line: name and file)."""
    lines = [f"{item.name} <- {item.source}"]
    if item.meta is not None:
        return lines + ["  " + line for line in item.meta.summary(item.info.shape)]
    z, y, x = item.info.shape
    lines.append(f"  volume {z} x {y} x {x}, pixel size {item.pixel_size_angstrom:.4g} Å")
    if item.tilt_range is not None:
        lo, hi = item.tilt_range.as_tuple
        lines.append(f"  tilt range {lo:g} .. {hi:g} deg (from {item.tilt_range.source})")
    return lines


def _tomogram_tilt_range(path: Path, config: IngestParams) -> TiltRange | None:
    """The tilt range of a tomogram MRC: ``--tilt-range``, ``--angles``, or the angle file
    beside it; none is a warning (steps needing the missing wedge refuse it later)."""
    found = resolve_tilt_range(path, angles=config.angles, tilt_range_deg=config.tilt_range)
    if found is None:
        warnings.warn(
            f"{path}: no tilt range, so its missing wedge is unknown and steps that need it "
            f"(extract, average) will refuse it; {HOW_TO_GIVE}",
            NonStandardInputWarning,
            stacklevel=4,
        )
    return found


# ---------------------------------------------------------------------------- running
def _provenance(item: IngestItem, config: IngestParams) -> dict[str, Any]:
    st = os.stat(item.source)
    inputs: dict[str, Any] = {
        "mrc": {
            "path": item.source,
            "bytes": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "mode": item.info.mode,
            "shape": list(item.info.shape),
        },
    }
    if item.angles_file:
        inputs["angles"] = {"path": item.angles_file, "bytes": os.stat(item.angles_file).st_size}
    if config.alignment and item.meta is not None and item.meta.alignment is not None:
        inputs["alignment"] = {"path": config.alignment, "bytes": os.stat(config.alignment).st_size}
    return {
        "step": "ingest",
        "parameters": {
            "tomogram": config.tomogram,
            "tile_px": config.tile_px or TILE_PX,
            **({"tilt_range": list(item.tilt_range.as_tuple)} if item.tilt_range else {}),
        },
        "inputs": inputs,
        "notes": list(item.notes),
        **({"decisions": item.meta.record()} if item.meta is not None else {}),
    }


def _pending(item: IngestItem, plan: IngestPlan) -> PendingWrite:
    config = plan.params
    prov = _provenance(item, config)
    if config.tomogram:
        source = mrc.mrc_dask_array(
            item.info, volume_chunks(item.info.shape), name=f"ingest-read-{item.name}"
        )
        return write_volume(
            plan.out,
            item.name,
            TOMOGRAM_KEY,
            source,
            pixel_size_angstrom=item.pixel_size_angstrom,
            provenance=prov,
            kind="image",
            overwrite=plan.overwrite,
            compute=False,
            attrs=tilt_range_attrs(item.tilt_range) if item.tilt_range is not None else None,
        )
    chunks = tilt_series_chunks(item.info.shape, config.tile_px or TILE_PX)
    source = mrc.mrc_dask_array(item.info, chunks, name=f"ingest-read-{item.name}")
    if item.meta is not None and item.meta.kept is not None:  # e.g. AreTomo's dark frames
        source = source[list(item.meta.kept)]
    if item.geometry is None:
        raise ConfigError(f"{item.source}: no geometry planned for a tilt series")
    return write_tilt_series(
        plan.out,
        item.name,
        source,
        item.geometry,
        item.pixel_size_angstrom,
        overwrite=plan.overwrite,
        provenance=prov,
        compute=False,
        tile_px=config.tile_px or TILE_PX,
    )


def write_ingest(client: Any, plan: IngestPlan, *, quiet: bool = False) -> list[str]:
    """Write every planned input through ``client`` (one progress bar), then clean the plan
    up; returns the tomogram names written."""
    from cryoflow.pipelines.cluster.progress import runner

    try:
        pendings = []
        try:
            for item in plan.items:
                pendings.append(_pending(item, plan))
        except BaseException:
            for p in pendings:
                p.abort()
            raise
        what = "tomograms" if plan.params.tomogram else "tilt series"
        nodes.run_together(pendings, runner(client, f"ingest {len(pendings)} {what}", quiet))
    finally:
        plan.cleanup()
    return [item.name for item in plan.items]
