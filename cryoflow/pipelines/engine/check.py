"""``cryoflow check``: validate a pipeline and every input it names, computing nothing."""

from __future__ import annotations

from cryoflow.errors import NodeNotFoundError
from cryoflow.io.layout import open_dataset
from cryoflow.pipelines.engine.config import PipelineConfig
from cryoflow.pipelines.engine.run import selected_tomograms
from cryoflow.pipelines.stages import get_stage
from cryoflow.pipelines.stages.base import CheckContext

__all__ = ["VOLUME_ONLY_STEPS", "check_pipeline"]

#: steps that read only a tomogram's volume and its tilt range, never its tilt series: a
#: pipeline of only these checks an ingested tomogram (MRC + tilt range) without one
VOLUME_ONLY_STEPS = frozenset({"dewedge"})


def _store_exists(store: str) -> bool:
    try:
        open_dataset(store)
    except NodeNotFoundError:
        return False
    return True


def check_pipeline(config: PipelineConfig) -> list[str]:
    """Validate everything a run needs without computing; return one line per checked item.

    Checks the store is a cryoflow dataset and every selected tomogram's tilt series opens
    (complete, safe dtype and codecs) with a sane shape, then asks every step's stage to check
    its parameters against what exists (``Stage.check``: an ingest step reads every input MRC
    header, an annotate step every checkpoint's ``model.json``, a bin step compares its factor
    with the images). With a simulate step the tilt series do not exist yet (or will be
    replaced), so they are not opened. A tomogram without a tilt series passes when every step
    is one of :data:`VOLUME_ONLY_STEPS` and its volume (each step's ``key``) and tilt range
    are stored (:func:`_volume_line`).

    Raises
    ------
    ConfigError, InputFileError, StoreError, CheckpointError
        The first problem found, naming the file or node.
    """
    from cryoflow.io.store import open_tilt_series

    names = [s.name for s in config.steps]
    lines: list[str] = []
    images: dict[str, tuple[int, int, int]] = {}
    creates = "ingest" in names and not _store_exists(config.dataset.store)
    if "simulate" not in names and not creates:
        volume_only = all(n in VOLUME_ONLY_STEPS for n in names)
        for tomogram in selected_tomograms(config):
            try:
                ts = open_tilt_series(config.dataset.store, tomogram)
            except NodeNotFoundError:
                if not volume_only:
                    raise
                lines += [_volume_line(config, tomogram, step) for step in config.steps]
                continue
            n, y, x = (int(s) for s in ts.shape)
            images[tomogram] = (n, y, x)
            lines.append(
                f"{tomogram}: tilt series {n} x {y} x {x} {ts.dtype}, "
                f"{ts.attrs['pixel_size_angstrom']:.3g} Å/px"
            )
    if creates:
        lines.append(f"{config.dataset.store}: will be created by ingest")
    ctx = CheckContext(source=config.source, images=images)
    for step in config.steps:
        stage = get_stage(step.name)
        if stage.check is not None:
            lines += stage.check(step.params, ctx)
    if images:
        lines += memory_lines(config, next(iter(images)))
    return lines


def _volume_line(config: PipelineConfig, tomogram: str, step: object) -> str:
    """The volume a volume-only step reads and its tilt range, or the error naming them."""
    from cryoflow.io.tomograms import tilt_range, tomogram_info

    key = str(getattr(getattr(step, "params", None), "key", "tomogram"))
    info = tomogram_info(config.dataset.store, tomogram, key)
    tr = tilt_range(config.dataset.store, tomogram, key)
    z, y, x = info.shape_zyx
    return (
        f"{tomogram}: no tilt series; volume {key!r} {z} x {y} x {x}, tilt range "
        f"{tr.min_deg:g}..{tr.max_deg:g} deg ({tr.source})"
    )


def memory_lines(config: PipelineConfig, tomogram: str) -> list[str]:
    """Each per-tomogram step's estimated per-task memory on ``tomogram``
    (:mod:`cryoflow.pipelines.engine.memory`); a step that cannot fit in a worker's
    ``memory_limit`` is refused. A step whose plan needs an earlier step's results (not
    made yet) is not estimated."""
    from cryoflow.pipelines.engine.memory import parse_memory_limit, task_memory

    limit_text = config.cluster.memory_limit
    limit = parse_memory_limit(limit_text)
    lines = []
    for step in config.steps:
        stage = get_stage(step.name)
        if stage.plan is None:
            continue
        try:
            plan = stage.plan(config.dataset.store, tomogram, step.params)
        except Exception:  # its inputs come from an earlier step of this pipeline
            lines.append(f"memory: {step.name}: not estimated (its inputs are not made yet)")
            continue
        est = task_memory(plan)
        if est is not None:
            est.check(limit, limit_text)
            lines.append(f"memory: {est.describe()}, memory_limit {limit_text}")
    return lines
