"""The ``pick`` stage: network-assisted picking from a few example particles.

``cryoflow pick STORE (--name NAME | --all) --examples FILE --out FILE [--negatives FILE]``
(CONTRACT.md, "Subtomograms") and :func:`find_particles` (what the browser picker calls):

1. **scale**: the particle diameter is ``diameter_angstrom`` or estimated from the examples
   (:func:`cryoflow.models.picktrain.estimate_diameter_px`, first on the coarsest pyramid
   level, again one level finer while the particle is under 6 voxels wide there); the level
   the network runs at is the coarsest where the particle is at least
   :data:`~cryoflow.models.picktrain.MIN_DIAMETER_PX` voxels wide (``level`` overrides);
2. **training** on the client (``device``): the example tomograms at that level, positives at
   the examples, negatives at ``negatives`` and sampled away from the examples
   (:func:`cryoflow.models.picktrain.train_picker`); the checkpoint goes to ``save_model`` or
   to a temporary directory beside the store (so that workers sharing the store's file system
   read it), removed afterwards;
3. **apply** on the cluster: every selected tomogram's score map block by block (with
   ``search="candidates"`` (the default) only at the local maxima of the blob response and
   their neighbours, :mod:`cryoflow.kernels.candidates`; ``"dense"`` every voxel; see
   docs/design/picking-search.md)
   (:func:`cryoflow.graph.pick.score_map`: the network loaded once per worker by a
   :class:`~cryoflow.models.loader.ModelPlugin`; tasks ask for ``GPU=1`` when ``device`` is
   CUDA), its local maxima at least half a diameter apart above ``threshold``
   (:func:`cryoflow.graph.pick.picks_lazy`, chunkwise with a halo: a particle on a block
   border is found once);
4. **picks**: ``tomogram, x, y, z, score`` in level-0 voxels of the stored tomogram, best
   first within each tomogram; the command writes them as STAR, CSV or copick JSON by the
   ``--out`` suffix (:func:`cryoflow.io.particles.write_particles`).

``cryoflow run`` does not run this stage (its output is a particle file): it is a command.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from cryoflow.pipelines.stages.base import StageParams
from cryoflow.pipelines.stages.eager import Target
from cryoflow.pipelines.stages.fields import Device, VolumeKey

NAME = "pick"

__all__ = ["NAME", "PickParams", "PickSettings", "find_particles", "run"]

#: picks table columns (level-0 voxels of the stored tomogram)
COLUMNS = ["tomogram", "x", "y", "z", "score"]


class PickSettings(StageParams):
    """How the picker is trained and applied (what :func:`find_particles` takes as ``**params``)."""

    key: VolumeKey = Field(default="tomogram", description="volume key of each tomogram to pick in")
    diameter_angstrom: float | None = Field(
        default=None,
        gt=0,
        description="particle diameter in Å (default: estimated from the examples)",
    )
    level: int | None = Field(
        default=None, ge=0, le=8, description="pyramid level to run at (default: from the diameter)"
    )
    threshold: float = Field(
        default=0.5, gt=0, lt=1, description="calibrated score a pick must reach (0.5: midway)"
    )
    steps: int = Field(default=1500, ge=1, description="training steps of the network's head")
    shells: int = Field(default=6, ge=2, le=16, description="descriptor shells (radii)")
    degree: int = Field(default=6, ge=1, le=10, description="descriptor spherical-harmonic degree")
    n_random_negatives: int = Field(
        default=10000, ge=1, description="negatives sampled at random away from the examples"
    )
    search: Literal["candidates", "dense"] = Field(
        default="candidates",
        description="score only the blob response's local maxima and their neighbours "
        "(candidates, default) or every voxel (dense)",
    )
    block: int = Field(
        default=48, ge=8, le=512, description="score-map block edge per task (voxels)"
    )
    device: Device = Field(default="cpu", description="cpu or cuda[:N] (apply tasks ask for GPU=1)")
    seed: int = Field(default=0, description="random seed of sampling and training")
    save_model: str | None = Field(
        default=None, description="keep the trained picker in this directory (a checkpoint)"
    )


class PickParams(PickSettings):
    """The command's files (the store, ``--name``/``--all`` and ``--overwrite`` are its own)."""

    examples: str = Field(description="particle file of example particles (positions only)")
    out: str = Field(description="picks to write: .star, .csv or copick .json (by suffix)")
    negatives: str | None = Field(
        default=None, description="particle file of positions that are not the particle"
    )

    def settings(self) -> PickSettings:
        return PickSettings(**{k: getattr(self, k) for k in PickSettings.model_fields})


# ---------------------------------------------------------------------------- helpers
def _n_levels(store: object, name: str, key: str) -> int:
    from cryoflow.errors import NodeNotFoundError
    from cryoflow.io.layout import PYRAMID_LEVELS
    from cryoflow.io.store import open_volume

    n = 1
    for level in range(1, PYRAMID_LEVELS + 6):
        try:
            open_volume(store, name, key, level)
        except NodeNotFoundError:
            break
        n = level + 1
    return n


def _marks(table: Any, name: str) -> Any:
    import numpy as np

    if table is None or not len(table):
        return np.zeros((0, 3))
    rows = table[table["tomogram"].astype(str) == name]
    return rows[["x", "y", "z"]].to_numpy(np.float64)


def _level_and_scale(
    store: object, names: Sequence[str], examples: Any, s: PickSettings, levels: int
) -> tuple[int, float | None, float | None, float]:
    """``(level, diameter at level or None, polarity or None, level-0 pixel size)``."""
    import numpy as np

    from cryoflow.io.store import open_volume
    from cryoflow.models.picktrain import choose_level, estimate_diameter_px, voxels_to_level

    pixel0 = float(open_volume(store, names[0], s.key).attrs["pixel_size_angstrom"])
    if s.diameter_angstrom is not None:
        d0 = s.diameter_angstrom / pixel0
        level = s.level if s.level is not None else choose_level(d0, levels)
        return level, d0 / 2.0**level, None, pixel0
    level_est = levels - 1
    while True:
        ds, ps, ws = [], [], []
        for n in names:
            pts = _marks(examples, n)
            if not len(pts):
                continue
            vol = np.asarray(open_volume(store, n, s.key, level_est).values, np.float32)
            vol = (vol - vol.mean()) / (vol.std() or 1.0)
            d, pol = estimate_diameter_px(vol, voxels_to_level(pts, level_est)[:, ::-1])
            ds.append(d)
            ps.append(pol)
            ws.append(len(pts))
        d_est = float(np.average(ds, weights=ws))
        if d_est >= 6.0 or level_est == 0:
            break
        level_est -= 1
    polarity = float(np.sign(np.average(ps, weights=ws)) or 1.0)
    d0 = d_est * 2.0**level_est
    level = s.level if s.level is not None else choose_level(d0, levels)
    return level, d0 / 2.0**level, polarity, pixel0


@contextlib.contextmanager
def _model_dir(store: object, keep: str | None) -> Iterator[Path]:
    if keep is not None:
        Path(keep).mkdir(parents=True, exist_ok=True)
        yield Path(keep)
        return
    parent = Path(str(store)).resolve().parent if "://" not in str(store) else None
    with tempfile.TemporaryDirectory(prefix=".cryoflow-pick-", dir=parent) as d:
        yield Path(d)


def _check_gpu(client: Any, resources: dict[str, float] | None) -> None:
    from cryoflow.errors import ConfigError

    if not resources:
        return
    workers = client.scheduler_info().get("workers", {}).values()
    if not any(w.get("resources", {}).get("GPU", 0) >= 1 for w in workers):
        raise ConfigError(
            "pick device 'cuda' needs workers started with the resource GPU=1 "
            "(dask worker --resources GPU=1); none is connected"
        )


# ---------------------------------------------------------------------------- the stage
def find_particles(
    store: Any,
    names: Sequence[str],
    examples: Any,
    negatives: Any = None,
    *,
    client: Any = None,
    **params: Any,
) -> Any:
    """Train the picker on ``examples`` and return its picks in every tomogram of ``names``.

    Parameters
    ----------
    store : the dataset store (path or URL)
    names : tomograms to pick in (the examples may come from others of the store)
    examples : pandas.DataFrame with ``tomogram, x, y, z`` (level-0 voxels) of example particles
    negatives : pandas.DataFrame of the same columns, positions that are not the particle
    client : a ``distributed.Client`` to apply on (``None``: this process, threads)
    params : :class:`PickSettings` fields (``threshold``, ``diameter_angstrom``, ``device`` ...)

    Returns
    -------
    pandas.DataFrame with columns ``tomogram, x, y, z, score`` (level-0 voxels; best first
    within each tomogram, tomograms in the order of ``names``).

    Raises
    ------
    ConfigError
        No example in the store's tomograms, a bad parameter, or ``cuda`` without a GPU worker.
    """
    import dask
    import pandas as pd

    from cryoflow.errors import ConfigError
    from cryoflow.graph.pick import picks_lazy, score_map, volume_stats
    from cryoflow.io.particles import validate_particles
    from cryoflow.io.store import open_volume
    from cryoflow.models.checkpoint import save_checkpoint
    from cryoflow.models.loader import ModelHandle, ModelPlugin
    from cryoflow.models.picktrain import PickExamples, PickTrainParams, train_picker
    from cryoflow.pipelines.cluster.connect import gpu_resources
    from cryoflow.pipelines.stages.inputs import select_tomograms

    s = PickSettings(**params)
    names = select_tomograms(store, list(names))
    if not names:
        raise ConfigError("find_particles: no tomogram to pick in")
    ex = validate_particles(examples, "examples")
    neg = validate_particles(negatives, "negatives") if negatives is not None else None
    known = set(select_tomograms(store))
    train_names = [n for n in dict.fromkeys(ex["tomogram"].astype(str)) if n in known]
    unknown = sorted(set(ex["tomogram"].astype(str)) - known)
    if unknown or not train_names:
        raise ConfigError(
            f"examples name tomograms {unknown[:5]} that {store} does not hold"
            if unknown
            else "no example particles given: mark at least one"
        )
    if neg is not None:
        bad = sorted(set(neg["tomogram"].astype(str)) - known)
        if bad:
            raise ConfigError(f"negatives name tomograms {bad[:5]} that {store} does not hold")
    levels = min(_n_levels(store, n, s.key) for n in [*train_names, *names])
    level, d_level, polarity, pixel0 = _level_and_scale(store, train_names, ex, s, levels)
    volumes = {
        n: open_volume(store, n, s.key, level).values for n in train_names
    }  # the example tomograms at the picker's level, in memory for training
    marks = [PickExamples(n, _marks(ex, n), _marks(neg, n)) for n in train_names]
    shared = {k: v for k, v in s.to_dict().items() if k in PickTrainParams.__dataclass_fields__}
    train = PickTrainParams(**{**shared, "level": level})
    model, config = train_picker(
        volumes,
        marks,
        train,
        level=level,
        pixel_size_angstrom=pixel0,
        diameter_px=d_level,
        polarity=polarity,
    )
    del volumes
    resources = gpu_resources(s.device)
    with _model_dir(store, s.save_model) as directory:
        save_checkpoint(directory, model, config)
        handle = ModelHandle.from_directory(directory, device=s.device)
        vols = {n: open_volume(store, n, s.key, level) for n in names}
        stats_lazy = [volume_stats(v) for v in vols.values()]
        if client is not None:
            _check_gpu(client, resources)
            client.register_plugin(ModelPlugin(handle), name=handle.plugin_name)
            stats = client.gather(client.compute(stats_lazy))
        else:
            stats = dask.compute(*stats_lazy)
        ctx = dask.annotate(resources=resources) if resources else contextlib.nullcontext()
        parts = []
        with ctx:
            for (n, v), (mean, std) in zip(vols.items(), stats, strict=True):
                scores = score_map(
                    v,
                    handle,
                    mean=float(mean),
                    std=float(std),
                    block=s.block,
                    config=config,
                    label=f"pick-{n}",
                )
                parts.append(picks_lazy(scores, config, n, threshold=s.threshold))
        if client is not None:
            tables = client.gather(client.compute(parts, optimize_graph=False))
        else:
            tables = dask.compute(*parts, scheduler="threads")
    out = pd.concat([t[COLUMNS] for t in tables], ignore_index=True) if tables else None
    return out if out is not None else pd.DataFrame(columns=COLUMNS)


def _read(path: str, infos: dict[str, Any]) -> Any:
    from cryoflow.io.particles import read_particles

    default = next(iter(infos)) if len(infos) == 1 else None
    return read_particles(path, tomograms=infos, default_tomogram=default)


def prepare(target: Target, params: PickParams) -> tuple[Any, Any, dict[str, Any]]:
    """Read the example (and negative) files, refuse an existing ``--out``; no cluster.

    Returns ``(examples, negatives or None, tomogram infos)``.
    """
    from cryoflow.errors import AlreadyExistsError
    from cryoflow.pipelines.stages.extract import tomogram_infos

    out = Path(params.out)
    if out.exists() and not target.overwrite:
        raise AlreadyExistsError(f"{out} already exists; pass --overwrite to replace it")
    from cryoflow.io.particles import _suffix

    _suffix(out)  # a particle-file suffix, before any work
    infos = tomogram_infos(target.store, params.key)
    examples = _read(params.examples, infos)
    negatives = _read(params.negatives, infos) if params.negatives else None
    return examples, negatives, infos


def run(client: Any, target: Target, params: PickParams) -> dict[str, Any]:
    """Pick in ``target.names`` and write ``params.out``; returns ``{"out", "n_picks",
    "per_tomogram"}``."""
    from cryoflow.io.particles import write_particles

    examples, negatives, infos = prepare(target, params)
    picks = find_particles(
        target.store,
        target.names,
        examples,
        negatives,
        client=client,
        **params.settings().to_dict(),
    )
    tmp = Path(params.out).with_name(f".{Path(params.out).name}.partial{Path(params.out).suffix}")
    write_particles(tmp, picks, tomograms={n: infos[n] for n in target.names if n in infos})
    tmp.replace(params.out)  # never a partial file under the final name
    counts = picks.groupby("tomogram").size().to_dict() if len(picks) else {}
    return {"out": params.out, "n_picks": len(picks), "per_tomogram": counts}
