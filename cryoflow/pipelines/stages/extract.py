"""The ``extract`` stage: particle boxes from many tomograms into a particle set, ``particles/<set>``.

``cryoflow extract STORE --particles FILE --box B --set SET [--key tomogram]`` (CONTRACT.md,
"Subtomograms"):

1. :func:`plan` (client side, nothing written, no cluster): read the particle file (STAR,
   CSV or copick JSON, :mod:`cryoflow.io.particles`; Ångström positions converted with each
   tomogram's shape and voxel size), check that every tomogram it names has volume ``key`` in
   the store, look up each tomogram's tilt range (its missing wedge,
   :func:`cryoflow.io.tomograms.tilt_range`; a tomogram without one is refused naming it and
   the three ways to give it), and build the lazy stack
   (:func:`cryoflow.graph.extract.extract_stack`: one task per batch of particles that share
   chunks, each reading only the chunks its boxes overlap);
2. :func:`run`: write the set on the client's cluster (``write_particle_set``: under a
   temporary name, each stack chunk written by the task that cuts it, published complete). An
   existing set is refused before any cluster work unless ``overwrite``; replacing one marks
   the dataset-level results derived from it stale.

Every row of the set's table carries the particle's input coordinates (``x, y, z``, unchanged),
``input_index`` (its row in the file), its tomogram's ``tilt_min_deg, tilt_max_deg`` and
``pixel_size_angstrom``, the box start and ``inside_fraction``, and the file's other columns.
Boxes over the volume border are padded with the mean of their inside voxels (``pad``).

``cryoflow run`` does not run this stage (its output is a dataset-level particle set, not a
per-tomogram result): it is a command, like ``train`` and ``export``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from cryoflow.pipelines.stages.base import StageParams
from cryoflow.pipelines.stages.eager import Target

NAME = "extract"

__all__ = [
    "NAME",
    "ExtractParams",
    "ExtractPlan",
    "plan",
    "check_box_size",
    "refuse_existing",
    "run",
    "tomogram_infos",
]


class ExtractParams(StageParams):
    """What to cut out and where it goes (the store and ``--overwrite`` are the command's)."""

    particles: str = Field(
        description="particle file: RELION .star, .csv (tomogram,x,y,z[,...]) or copick .json"
    )
    box: int = Field(ge=2, le=1024, description="box side B in voxels (centre voxel B // 2)")
    set: str = Field(description="name of the particle set to write (particles/<set>)")
    key: str = Field(default="tomogram", description="volume key of each tomogram to cut from")
    batch_size: int = Field(
        default=64, ge=1, le=100000, description="particles per task (and per stored chunk)"
    )
    pad: str = Field(
        default="mean",
        description="value of box voxels outside the volume: mean (of the box's inside "
        "voxels) or a number",
    )

    @field_validator("pad")
    @classmethod
    def _pad(cls, value: str) -> str:
        from cryoflow.kernels.extract import parse_pad

        parse_pad(value)
        return value

    @field_validator("set", "key")
    @classmethod
    def _name(cls, value: str) -> str:
        from cryoflow.io.names import validate_name

        return validate_name(value, "name")

    def with_base(self, base: Path) -> ExtractParams:
        p = self.particles if Path(self.particles).is_absolute() else str(base / self.particles)
        return self.model_copy(update={"particles": p})


@dataclass(frozen=True)
class ExtractPlan:
    """The lazy stack ``(n, B, B, B)``, its table (stack order), what was read, attributes."""

    stack: Any
    table: Any
    inputs: dict[str, str]
    attrs: dict[str, Any]


def _file_identity(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def tomogram_infos(store: object, key: str) -> dict[str, Any]:
    """Tomogram -> TomogramInfo of every complete tomogram that has volume ``key``."""
    from cryoflow.errors import NodeNotFoundError
    from cryoflow.io.layout import list_tomograms
    from cryoflow.io.tomograms import tomogram_info

    infos = {}
    for name in list_tomograms(store):
        try:
            infos[name] = tomogram_info(store, name, key)
        except NodeNotFoundError:
            continue
    return infos


def plan(store: object, params: ExtractParams) -> ExtractPlan:
    """Read and check everything, build the lazy stack; write nothing (module docstring).

    Raises
    ------
    InputFileError
        The particle file is missing or malformed (naming it and the line), or names a
        tomogram the store has no volume ``key`` for.
    MissingTiltRangeError
        A tomogram of the file has no recorded tilt range.
    """
    from cryoflow.errors import InputFileError
    from cryoflow.graph.extract import extract_stack
    from cryoflow.io.layout import TOMOGRAMS, VOLUMES
    from cryoflow.io.particles import read_particles
    from cryoflow.io.store import open_volume
    from cryoflow.io.tomograms import tilt_range
    from cryoflow.pipelines.stages.inputs import node_identity

    path = Path(params.particles)
    infos = tomogram_infos(store, params.key)
    default = next(iter(infos)) if len(infos) == 1 else None
    table = read_particles(path, tomograms=infos, default_tomogram=default)
    names = list(dict.fromkeys(table["tomogram"].astype(str)))
    unknown = [n for n in names if n not in infos]
    if unknown:
        have = ", ".join(sorted(infos)) or "none"
        raise InputFileError(
            path,
            f"names tomograms {unknown[:5]} that have no volume {params.key!r} in {store} "
            f"(tomograms with one: {have})",
        )
    check_box_size({n: infos[n].shape_zyx for n in names}, params.box)
    refuse_outside(path, table, infos, params.box)
    inputs = {str(path): _file_identity(path)}
    volumes, wedges = {}, {}
    for n in names:
        wedges[n] = tilt_range(store, n, params.key)
        volumes[n] = open_volume(store, n, params.key)
        where = f"{TOMOGRAMS}/{n}/{VOLUMES}/{params.key}"
        inputs[where] = node_identity(store, where, "volume")
    stack, planned = extract_stack(
        volumes, table, params.box, batch_size=params.batch_size, pad=params.pad, label="extract"
    )
    tomo = planned["tomogram"].astype(str)
    planned["tilt_min_deg"] = tomo.map({n: w.min_deg for n, w in wedges.items()}).astype(float)
    planned["tilt_max_deg"] = tomo.map({n: w.max_deg for n, w in wedges.items()}).astype(float)
    planned["pixel_size_angstrom"] = tomo.map(
        {n: infos[n].pixel_size_angstrom for n in names}
    ).astype(float)
    attrs = {
        "key": params.key,
        "pad": params.pad,
        "particles_file": str(path),
        "tomograms": names,
        "tilt_range_deg": {n: list(w.as_tuple) for n, w in wedges.items()},
        "tilt_range_source": {n: w.source for n, w in wedges.items()},
        "tilt_axis": "y",
    }
    return ExtractPlan(stack, planned, inputs, attrs)


def check_box_size(shapes: Mapping[str, Any], box: int) -> None:
    """Refuse a box larger than the smallest dimension of every tomogram; warn per tomogram.

    Raises ``GeometryError`` (naming each tomogram and its size) when ``box`` exceeds the
    smallest dimension of every tomogram the particles lie in: every box would then be
    padding on that axis. When only some tomograms are that small, a ``CryoflowWarning``
    names them and extraction goes on (their boxes are padded, ``--pad``).
    """
    import warnings

    from cryoflow.errors import CryoflowWarning, GeometryError

    def size(shape: Any) -> str:
        z, y, x = (int(v) for v in shape)
        return f"{x} x {y} x {z}"

    small = {n: s for n, s in shapes.items() if box > min(int(v) for v in s)}
    if not small:
        return
    listed = "; ".join(f"{n!r} is {size(s)}" for n, s in list(small.items())[:5])
    more = f" (and {len(small) - 5} more)" if len(small) > 5 else ""
    if len(small) == len(shapes):
        raise GeometryError(
            f"--box {box} is larger than the smallest dimension of every tomogram the "
            f"particles lie in ({listed}{more}; voxels, x x y x z): each box would be mostly "
            "padding; choose a box no larger than the smallest dimension"
        )
    warnings.warn(
        f"--box {box} is larger than the smallest dimension of {len(small)} of "
        f"{len(shapes)} tomograms ({listed}{more}; voxels, x x y x z): their boxes are "
        "padded on that axis (--pad)",
        CryoflowWarning,
        stacklevel=2,
    )


def refuse_outside(path: Path, table: Any, infos: Mapping[str, Any], box: int) -> None:
    """``InputFileError`` naming the first particle whose box has no voxel inside its
    tomogram (positions are voxels of the stored tomogram, level 0; a box partly outside is
    padded as ``--pad`` says)."""
    import numpy as np

    from cryoflow.errors import InputFileError
    from cryoflow.kernels.extract import box_starts

    names = table["tomogram"].astype(str).to_numpy()
    xyz = table[["x", "y", "z"]].to_numpy(np.float64)
    size = np.array([infos[n].shape_zyx for n in names], np.int64).reshape(-1, 3)
    starts = box_starts(xyz, box)
    bad = np.flatnonzero(((starts + box <= 0) | (starts >= size)).any(axis=1))
    if bad.size:
        k = int(bad[0])
        x, y, z = xyz[k]
        sz, sy, sx = (int(v) for v in size[k])
        raise InputFileError(
            path,
            f"particle {k + 1} of {len(table)} ({names[k]} x={x:g}, y={y:g}, z={z:g}) lies "
            f"outside its tomogram of {sx} x {sy} x {sz} voxels (x, y, z): no voxel of its "
            f"box {box} is inside; positions are voxels of the stored tomogram, 0-based "
            f"({bad.size} such particle(s))",
        )


def refuse_existing(store: object, name: str, overwrite: bool) -> None:
    """``AlreadyExistsError`` when particle set ``name`` exists and not ``overwrite``."""
    from cryoflow.errors import AlreadyExistsError, NodeNotFoundError
    from cryoflow.io.layout import open_dataset
    from cryoflow.io.nodes import exists
    from cryoflow.io.particleset import PARTICLES

    if overwrite:
        return
    try:
        root = open_dataset(store)
    except NodeNotFoundError:
        return
    if exists(root, f"{PARTICLES}/{name}"):
        raise AlreadyExistsError(
            f"{store}: particle set {name!r} already exists; pass --overwrite to replace it "
            "(results derived from it are then marked stale)"
        )


def run(
    client: Any, target: Target, params: ExtractParams, *, prepared: ExtractPlan | None = None
) -> dict[str, Any]:
    """Extract into particle set ``params.set`` of ``target.store`` on ``client``.

    ``prepared``: the :func:`plan` already made (e.g. before starting a cluster). Returns
    ``{"set", "n_particles", "box", "tomograms"}``.
    """
    from cryoflow.io.particleset import write_particle_set
    from cryoflow.pipelines.cluster.progress import runner
    from cryoflow.pipelines.engine.provenance import make_record

    refuse_existing(target.store, params.set, target.overwrite)
    p = prepared if prepared is not None else plan(target.store, params)
    record = make_record(NAME, params.to_dict(), p.inputs)
    pending = write_particle_set(
        target.store,
        params.set,
        p.table,
        p.stack,
        provenance=record,
        attrs=p.attrs,
        overwrite=target.overwrite,
        compute=False,
    )
    pending.run(runner(client, f"extract {params.set}", target.quiet))
    return {
        "set": params.set,
        "n_particles": len(p.table),
        "box": params.box,
        "tomograms": p.attrs["tomograms"],
    }
