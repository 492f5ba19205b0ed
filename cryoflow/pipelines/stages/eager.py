"""The thin eager entry point every stage shares: run a stage's plans on a client.

``cryoflow <stage>`` (and the Python API) run exactly the plans ``cryoflow run`` runs; only
where they are written differs. For each tomogram:

1. :func:`prepare` builds the plan (lazy; nothing computed) and refuses, before any cluster
   work, an output that exists unless ``overwrite``;
2. :func:`write_plan` writes every output with the store's writers under temporary names
   (``results/<out>/<key>``; an output marked ``volume`` as the OME-Zarr ``volumes/<out>`` or
   ``labels/<out>``) in one computation, so shared intermediates are computed once; then the
   plan's ``finish`` adds tables and attributes, and everything is published together.

Provenance is the engine's record (step, parameters, input identities, checkpoints, versions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cryoflow.errors import AlreadyExistsError, ConfigError, NodeNotFoundError
from cryoflow.pipelines.stages.base import Output, Plan, Stage, StageParams

# the store's modules (zarr) are imported where they are used: stage modules, and so the
# command line that builds its options from them, stay quick to import

__all__ = ["Target", "Written", "location", "prepare", "run_stage", "write_plan"]


@dataclass(frozen=True)
class Target:
    """Where a stage's command works: which tomograms of which store, where their outputs go
    (``out``: the result step, and the key of a volume output; default the stage's name),
    whether existing outputs may be replaced, whether to show progress. What is computed is
    the stage's parameters, apart from this."""

    store: Any
    names: tuple[str, ...]
    out: str | None = None
    overwrite: bool = False
    quiet: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.names))


@dataclass(frozen=True)
class Written:
    """What a stage's command wrote for one tomogram: its plan, where each output went
    (result key -> store path below the tomogram) and the tables ``finish`` made."""

    plan: Plan
    out: str
    locations: dict[str, str]
    tables: dict[str, Any] = field(default_factory=dict)


def location(output: Output, out: str) -> str:
    """Where a stage's command writes ``output``, below ``tomograms/<name>/``."""
    from cryoflow.io.layout import LABELS, RESULTS, VOLUMES

    if output.volume == "label":
        return f"{LABELS}/{out}"
    if output.volume == "image":
        return f"{VOLUMES}/{out}"
    return f"{RESULTS}/{out}/{output.key}"


def _exists(store: object, tomogram: str, rel: str) -> bool:
    """Whether a node the writers would refuse to replace is at ``rel`` (stale ones are not)."""
    from cryoflow.io.layout import TOMOGRAMS, open_dataset
    from cryoflow.io.nodes import exists, is_stale

    try:
        root = open_dataset(store)
    except NodeNotFoundError:
        return False
    path = f"{TOMOGRAMS}/{tomogram}/{rel}"
    return exists(root, path) and not is_stale(root, path)


def prepare(stage: Stage, target: Target, params: StageParams) -> dict[str, Plan]:
    """Every tomogram's plan (lazy), refusing existing outputs unless ``target.overwrite``.

    Raises
    ------
    AlreadyExistsError
        Naming the first output that exists (nothing is written).
    """
    from cryoflow.io.layout import RESULTS

    if stage.plan is None:
        raise ConfigError(f"stage {stage.name!r} has no per-tomogram plan")
    store = target.store
    plans = {name: stage.plan(store, name, params) for name in target.names}
    if not target.overwrite:
        for name, plan in plans.items():
            where = target.out or plan.step
            rels = [location(o, where) for o in plan.outputs]
            rels += [f"{RESULTS}/{where}/{key}" for key in plan.tables]
            for rel in rels:
                if _exists(store, name, rel):
                    raise AlreadyExistsError(
                        f"{store}: {name}/{rel} already exists; pass --overwrite to replace it"
                    )
    return plans


def write_plan(
    client: Any, target: Target, tomogram: str, plan: Plan, params: StageParams
) -> Written:
    """Write every output of ``plan`` for ``tomogram``, then its tables; publish together."""
    from cryoflow.io import store as S
    from cryoflow.io.nodes import ATTR, cryoflow_attrs, run_together
    from cryoflow.pipelines.cluster.progress import runner
    from cryoflow.pipelines.engine.provenance import make_record

    store, overwrite, where = target.store, target.overwrite, target.out or plan.step
    record = make_record(plan.step, params.to_dict(), plan.inputs, checkpoints=plan.checkpoints)
    pendings = []
    try:
        for o in plan.outputs:
            pendings.append(_pending(store, tomogram, plan, o, where, record, overwrite))
    except BaseException:
        for p in pendings:
            p.abort()
        raise
    tables: dict[str, Any] = {}

    def finish() -> None:
        if plan.finish is None:
            return
        written = {o.key: _array(p.node) for o, p in zip(plan.outputs, pendings, strict=True)}
        done = plan.finish(client, written)
        for o, p in zip(plan.outputs, pendings, strict=True):
            if o.key in done.attrs and o.volume is None:
                meta = cryoflow_attrs(p.node)
                meta["attrs"] = {**meta.get("attrs", {}), **done.attrs[o.key]}
                p.node.attrs[ATTR] = meta
        for key in plan.tables:
            S.write_table(
                store,
                tomogram,
                where,
                key,
                done.tables[key],
                provenance=record,
                overwrite=overwrite,
            )
            tables[key] = done.tables[key]

    compute = runner(client, f"{plan.step} {tomogram}", target.quiet, resources=plan.resources)
    if plan.setup is not None:
        plan.setup(client)
    run_together(pendings, compute, before_commit=finish)
    locations = {o.key: location(o, where) for o in plan.outputs}
    return Written(plan, where, locations, tables)


def _array(node: Any) -> Any:
    """The written array of a pending node (level 0 of a volume)."""
    import zarr

    return node if isinstance(node, zarr.Array) else node["0"]


def _pending(
    store: object,
    tomogram: str,
    plan: Plan,
    o: Output,
    where: str,
    record: dict[str, Any],
    overwrite: bool,
) -> Any:
    from cryoflow.io import store as S

    if o.volume is not None:
        if plan.pixel_size_angstrom is None:
            raise ConfigError(f"{plan.step} plan: volume output {o.key!r} needs a pixel size")
        return S.write_volume(
            store,
            tomogram,
            where,
            o.data,
            pixel_size_angstrom=plan.pixel_size_angstrom,
            provenance={**record, "attrs": dict(o.attrs)},
            kind=o.volume,
            overwrite=overwrite,
            compute=False,
        )
    return S.write_result(
        store,
        tomogram,
        where,
        o.key,
        o.data,
        dims=o.dims,
        provenance=record,
        attrs=o.attrs,
        overwrite=overwrite,
        compute=False,
    )


def run_stage(client: Any, stage: Stage, target: Target, params: StageParams) -> dict[str, Written]:
    """:func:`prepare` then :func:`write_plan` for each tomogram, in order."""
    plans = prepare(stage, target, params)
    return {name: write_plan(client, target, name, plan, params) for name, plan in plans.items()}
