"""``cryoflow lift --masks MASKS.mrc``: Algorithm 1 on a user's own 2D masks.

The masks are an MRC stack ``(tilt, y, x)`` of exactly the tilt series' shape: zero outside,
non-zero inside. Integer values (any integer dtype, or floats that are all whole numbers) are
classes: each distinct positive value ``v`` is lifted on its own and labelled ``v`` in the 3D
label volume; masks with fractional values are one class (non-zero inside), labelled 1.

Steps:

1. :func:`check_masks_file` (before any cluster starts): the MRC header is read and checked
   (not an MRC file, truncated, axis order: :func:`cryoflow.io.mrc.read_mrc_header`) and its
   shape compared with the tilt series'; a mismatch names the file and both shapes;
2. :func:`import_masks` (on the cluster): the classes found (refused when negative or more
   than :data:`MAX_CLASSES`), and each class's binary masks copied into the store as
   ``results/<MASKS_STEP>/<out>_<v>`` (uint8, 0/1), with the file's identity as provenance.
   This copy of the named file is replaced whenever the command runs again;
3. the ``lift`` stage itself on those maps (:mod:`cryoflow.pipelines.stages.lift`), so the
   label volume ``labels/<out>`` (default ``labels/lift``, ``cryoflow export --key lift``),
   the vote maps and the score curves are exactly what ``cryoflow run``'s lift writes.

Without ``--thickness`` the volume is as deep as the tomogram already reconstructed from the
series (``volumes/tomogram``, same ``(y, x)``), else as deep as ``cryoflow reconstruct`` would
choose (:func:`cryoflow.pipelines.stages.reconstruct.default_thickness`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

from cryoflow.errors import AlreadyExistsError, ConfigError, InputFileError
from cryoflow.pipelines.stages.eager import Target
from cryoflow.pipelines.stages.lift import LABELS, LiftParams

MASKS_STEP = "masks"  # results/masks/<out>_<class>: the imported copy of the user's masks
MAX_CLASSES = 64

__all__ = ["MASKS_STEP", "MAX_CLASSES", "MasksFile", "check_masks_file", "import_masks", "run"]


@dataclass(frozen=True)
class MasksFile:
    """A checked masks MRC and the tilt series it belongs to."""

    path: str
    info: Any  # cryoflow.io.mrc.MrcInfo
    tomogram: str


def check_masks_file(store: object, target: Target, path: str | os.PathLike[str]) -> MasksFile:
    """Read and check ``path`` against the one tomogram of ``target`` (nothing computed).

    Raises
    ------
    ConfigError
        Not exactly one tomogram (use ``--name``), or the shapes differ (naming both).
    InputFileError
        Not a readable MRC file.
    AlreadyExistsError
        ``labels/<out>`` exists and ``target.overwrite`` is not set.
    """
    from cryoflow.io.angles import input_path
    from cryoflow.io.mrc import read_mrc_header
    from cryoflow.io.store import open_tilt_series
    from cryoflow.pipelines.stages.eager import _exists

    if len(target.names) != 1:
        raise ConfigError(f"--masks {path} belongs to one tilt series: give --name, not --all")
    (name,) = target.names
    p = input_path(path)
    if not p.is_file():
        raise InputFileError(p, "no such file (--masks expects an MRC stack (tilt, y, x))")
    info = read_mrc_header(p)
    tilts = open_tilt_series(store, name)
    want = tuple(int(s) for s in tilts.shape)
    if tuple(info.shape) != want:
        raise ConfigError(
            f"{p}: masks of shape {tuple(info.shape)} (tilt, y, x) do not match tilt series "
            f"{name!r} of shape {want}"
        )
    out = target.out or "lift"
    rel = f"{LABELS}/{out}"
    if not target.overwrite and _exists(store, name, rel):
        raise AlreadyExistsError(f"{store}: {name}/{rel} already exists; pass --overwrite")
    return MasksFile(str(p), info, name)


def _classes(client: Any, masks: Any, path: str) -> tuple[list[int], bool]:
    """The positive class values in ``masks`` (a Dask array), and whether they are integers."""
    import dask.array as da
    import numpy as np

    if masks.dtype.kind == "f":
        finite, whole = client.compute(
            [da.isfinite(masks).all(), (masks == da.rint(masks)).all()], sync=True
        )
        if not bool(finite):
            raise InputFileError(path, "masks hold NaN or infinite values")
        if not bool(whole):
            return [1], False
    values = np.asarray(client.compute(da.unique(masks), sync=True))
    if values.size and float(values.min()) < 0:
        raise InputFileError(
            path, f"masks hold the negative value {values.min():g}; classes are positive integers"
        )
    found = [int(v) for v in values if v != 0]
    if found and max(found) > 255:
        raise InputFileError(
            path, f"masks hold the value {max(found)}; class values must be 1..255 (uint8 labels)"
        )
    if len(found) > MAX_CLASSES:
        raise InputFileError(
            path,
            f"masks hold {len(found)} distinct non-zero values (at most {MAX_CLASSES} classes); "
            "is this an image rather than masks?",
        )
    if not found:
        raise InputFileError(path, "masks are zero everywhere: nothing to lift")
    return found, True


def import_masks(client: Any, store: object, masks: MasksFile, out: str) -> list[int]:
    """Copy each class's binary masks into ``results/<MASKS_STEP>/<out>_<v>``; the classes."""
    from cryoflow.io import store as S
    from cryoflow.io.layout import tilt_series_chunks
    from cryoflow.io.mrc import mrc_dask_array
    from cryoflow.io.nodes import run_together
    from cryoflow.pipelines.cluster.progress import runner
    from cryoflow.pipelines.engine.provenance import make_record

    data = mrc_dask_array(masks.info, tilt_series_chunks(masks.info.shape), name="masks-read")
    classes, integer = _classes(client, data, masks.path)
    st = os.stat(masks.path)
    identity = f"{st.st_size}:{st.st_mtime_ns}"
    record = make_record(MASKS_STEP, {"file": masks.path}, {masks.path: identity})
    pendings = []
    try:
        for v in classes:
            inside = (data == v) if integer else (data != 0)
            pendings.append(
                S.write_result(
                    store,
                    masks.tomogram,
                    MASKS_STEP,
                    f"{out}_{v}",
                    inside.astype("uint8"),
                    dims=("tilt", "y", "x"),
                    provenance=record,
                    attrs={"file": masks.path, "class": v},
                    overwrite=True,  # the copy of the file named by this command
                    compute=False,
                )
            )
    except BaseException:
        for p in pendings:
            p.abort()
        raise
    run_together(pendings, runner(client, f"masks {masks.tomogram}", True))
    return classes


def masks_thickness(client: Any, store: object, tomogram: str) -> tuple[int, str]:
    """The depth of the tomogram reconstructed from the series, else reconstruct's default."""
    from cryoflow.errors import NodeNotFoundError
    from cryoflow.io.store import open_tilt_series, open_volume
    from cryoflow.pipelines.stages.reconstruct import ReconstructParams, default_thickness

    _, Y, U = open_tilt_series(store, tomogram).shape
    try:
        vol = open_volume(store, tomogram, "tomogram")
    except (NodeNotFoundError, KeyError, FileNotFoundError):
        vol = None
    if vol is not None and tuple(vol.shape[1:]) == (Y, U):
        return int(vol.shape[0]), "the depth of volumes/tomogram"
    return default_thickness(client, store, tomogram, ReconstructParams())


def run(
    client: Any, target: Target, params: LiftParams, masks: MasksFile
) -> dict[str, dict[str, Any]]:
    """Import ``masks`` and run the lift stage on them (module docstring); the lift summary
    of the tomogram, plus its ``classes`` and where its thickness came from."""
    from cryoflow.pipelines.stages import lift

    out = target.out or lift.NAME
    classes = import_masks(client, target.store, masks, out)
    why = "--thickness"
    if params.thickness is None:
        z, why = masks_thickness(client, target.store, masks.tomogram)
        params = params.model_copy(update={"thickness": z})
    chosen = params.model_copy(
        update={"masks": f"{MASKS_STEP}/{out}", "classes": tuple(str(v) for v in classes)}
    )
    chosen = LiftParams(**chosen.to_dict())  # validated as a command line would be
    done = lift.run(client, replace(target, out=out), chosen)
    for summary in done.values():
        summary["classes"] = classes
        summary["thickness"] = int(chosen.thickness or 0)
        summary["thickness_from"] = why
        summary["labels_at"] = f"{LABELS}/{out}"
    return done
