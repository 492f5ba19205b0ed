"""The ``classify`` stage: a particle set's conformations as ``K`` classes (``cryoflow classify``).

Methods are a small table, :data:`METHODS`: name -> a function ``(client, inputs, params,
reference) -> ClassOutcome``. ``multiref`` (reference-based multi-class refinement, the
default) and ``pca`` (wedge-filled PCA + k-means) run the resumable rounds of
:mod:`cryoflow.pipelines.stages.classify_rounds` on the cluster; ``autoencoder``
clusters the latent space of ``cryoflow embed``'s conformation autoencoder
(:func:`cryoflow.pipelines.stages.embed.classify_latent`) and averages those classes with
:func:`given_classes`.

Outputs in ``--out`` (:mod:`cryoflow.pipelines.stages.particle_inputs`): ``class_<k>.mrc``
(``k = 1 .. K``, the tomogram's voxel size, box centre ``B // 2``), ``particles.star``
(every input column and coordinate, ``rlnClassNumber`` 1..K, each particle's pose in its
class as contract ZYZ angles and RELION origins, ``rlnRandomSubset``) and ``classify.json``
(method, class sizes and resolutions, the rounds; with ``--classes auto`` the BIC curve); with
``pca`` also ``eigen_<j>.mrc``, the principal coordinates ``pca.csv`` and their scatter
``pca_scatter.png``.

``--classes auto`` (or none): ``K`` of the lowest BIC (``docs/design/classification.md``);
``--mask``: the user's soft mask instead of the automatic one; ``--symmetry``: the
averaging kernels' point group. The starting poses are those of the set's current
published average when there is one (:mod:`.average_poses`), else the set's table.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, Field

from cryoflow.errors import ConfigError
from cryoflow.pipelines.stages.base import Stage, StageParams
from cryoflow.pipelines.stages.fields import ClassCount, relative_to
from cryoflow.pipelines.stages.particle_inputs import (
    SetInputs,
    check_out,
    load_set,
    posed_table,
    read_map,
    require_poses,
    write_map,
    write_table,
)

NAME = "classify"


def _symmetry(value: str) -> str:
    from cryoflow.geometry.symmetry import parse_symmetry

    return parse_symmetry(value).name


class ClassifyParams(StageParams):
    """Classification of a particle set's conformations."""

    set: str = Field(description="particle set (particles/<set> of the store)")
    classes: ClassCount = Field(
        default=None,
        description="number of classes K, or auto (the default): the K of 1 .. --max-classes "
        "with the lowest BIC of Gaussian mixtures on the leading principal coordinates "
        "(pca, multiref's pca seeds) or on the latent points (autoencoder)",
    )
    max_classes: int = Field(default=6, ge=1, le=64, description="largest K tried for auto")
    method: Literal["multiref", "pca", "autoencoder"] = Field(
        default="multiref", description="multiref, pca or autoencoder"
    )
    reference: str | None = Field(
        default=None, description="MRC map to align the set to first (its frame is kept)"
    )
    mask: str | None = Field(
        default=None,
        description="soft mask MASK.mrc over the consensus (box and voxel size of the set) "
        "the FSCs, PCA and class scores look in; default automatic",
    )
    symmetry: Annotated[str, AfterValidator(_symmetry)] = Field(
        default="C1", description="point group C1, Cn or Dn of every class map (as average)"
    )
    iterations: int = Field(default=10, ge=1, le=200, description="multiref rounds at most")
    seed_method: Literal["pca", "random"] = Field(
        default="pca", description="multiref's first classes: pca split or random subsets"
    )
    realign_deg: float = Field(
        default=0.0,
        ge=0,
        le=45,
        description="multiref: each round re-align every particle to every class within this "
        "radius (deg) of its consensus pose; 0: score the consensus pose",
    )
    realign_global_deg: float = Field(
        default=0.0,
        ge=0,
        le=90,
        description="multiref: each round align every particle to every class by a global "
        "search at this grid step (deg), then locally (instead of --realign-deg); 0: off",
    )
    align_rounds: int = Field(default=3, ge=1, le=50, description="alignment rounds (reference)")
    global_step_deg: float = Field(default=20.0, gt=0, le=180, description="global grid step")
    max_shift_px: float = Field(default=3.0, ge=0, description="largest shift searched (voxels)")
    initial_resolution_px: float = Field(
        default=4.0, gt=0, description="the reference's low-pass period (voxels)"
    )
    resolution_px: float | None = Field(
        default=None, gt=0, description="fixed band limit (voxels); default the FSC's"
    )
    highpass_mask_factor: float = Field(default=1.3, gt=0, description="high-pass / mask radius")
    min_class_fraction: float = Field(
        default=0.02, ge=0, lt=1, description="classes smaller than this share are reseeded"
    )
    tolerance: float = Field(default=0.005, ge=0, lt=1, description="settled: changed share")
    n_eigen: int = Field(default=6, ge=1, le=64, description="principal components kept")
    n_components: int | None = Field(
        default=None, ge=1, description="coordinates k-means uses (default max(2, K-1))"
    )
    power_iterations: int = Field(default=1, ge=0, le=10, description="PCA power iterations")
    batch_size: int = Field(default=16, ge=1, description="particles per task")
    latent_steps: int = Field(
        default=400, ge=1, description="autoencoder training steps (--method autoencoder)"
    )
    seed: int = Field(default=0, description="random seed (half sets, seeds, k-means)")
    device: str = Field(default="cpu", description="torch device of the batch tasks")

    def with_base(self, base: Path) -> ClassifyParams:
        """Relative ``reference`` / ``mask`` paths made relative to ``base``."""
        out: ClassifyParams = relative_to(self, base, ("reference", "mask"))
        return out


@dataclass(frozen=True)
class ClassOutcome:
    """What a method returns: ``assign`` (n,) classes ``0 .. K-1``; ``maps`` (K, B, B, B);
    ``euler_deg``/``shifts_zyx_px`` (n, 3) each particle's pose in its class; ``scores``
    (n, K) or None; ``summary`` JSON-able figures; ``extra`` file name -> writer(path)."""

    assign: np.ndarray
    maps: np.ndarray
    euler_deg: np.ndarray
    shifts_zyx_px: np.ndarray
    scores: np.ndarray | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Callable[[Path], None]] = field(default_factory=dict)


MethodFn = Callable[[Any, SetInputs, ClassifyParams, "np.ndarray | None"], ClassOutcome]


def _rounds(
    client: Any,
    inputs: SetInputs,
    p: ClassifyParams,
    ref: np.ndarray | None,
    assignments: np.ndarray | None = None,
) -> Any:
    from cryoflow.pipelines.engine.rounds import run_rounds
    from cryoflow.pipelines.stages.classify_rounds import KEYS, build

    if ref is None:
        require_poses(inputs, "cryoflow classify")
    plan = build(inputs, p, ref, p.device, assignments)
    done = run_rounds(client, inputs.store, plan, p.to_dict())
    if done.skipped:  # the published result of these very parameters and inputs
        from cryoflow.io.chunks import read_checked
        from cryoflow.io.layout import RESULTS, open_dataset
        from cryoflow.io.nodes import open_node

        root = open_dataset(inputs.store)
        return {
            k: read_checked(open_node(root, f"{RESULTS}/{plan.step}/{k}", what="result"))
            for k in KEYS
        }
    return done.state


def _outcome(st: dict[str, np.ndarray], method: str) -> ClassOutcome:
    from cryoflow.graph.heterogeneity import PHASES

    hist = st["history"].reshape(-1, 4)
    summary = {
        "method": method,
        "class_sizes": np.bincount(st["assign"].astype(int), minlength=len(st["class_maps"]))
        .astype(int)
        .tolist(),
        "class_resolution_px": [None if not np.isfinite(r) else float(r) for r in st["resolution"]],
        "rounds": [
            {"phase": PHASES[int(h[0])], "changed": float(h[1]), "reseeded": int(h[2])}
            for h in hist
        ],
    }
    bic = np.asarray(st.get("bic", np.zeros(0)), float).reshape(-1)
    if np.isfinite(bic).any():  # --classes auto: K of the lowest BIC(k), k = 1 ..
        summary["classes_chosen_by"] = "BIC (principal coordinates)"
        summary["bic"] = [float(b) for b in bic]
    return ClassOutcome(
        st["assign"].astype(int),
        st["class_maps"],
        st["euler"],
        st["shifts"],
        st["scores"] if method == "multiref" else None,
        summary,
    )


def _multiref(client: Any, inputs: SetInputs, p: ClassifyParams, ref: Any) -> ClassOutcome:
    return _outcome(_rounds(client, inputs, p, ref), "multiref")


def _pca(client: Any, inputs: SetInputs, p: ClassifyParams, ref: Any) -> ClassOutcome:
    from cryoflow.pipelines.stages.classify_report import pca_files

    st = _rounds(client, inputs, p, ref)
    out = _outcome(st, "pca")
    out.extra.update(pca_files(st, inputs))
    return out


def given_classes(
    client: Any, inputs: SetInputs, p: ClassifyParams, ref: Any, assignments: np.ndarray
) -> ClassOutcome:
    """Class maps and outputs for classes another method found (``assignments`` (n,), 0 ..
    K-1, e.g. in the autoencoder's latent space): the consensus and one pass of
    wedge-compensated class sums on the cluster. A new method's runner calls this."""
    return _outcome(_rounds(client, inputs, p, ref, assignments), p.method)


def _autoencoder(client: Any, inputs: SetInputs, p: ClassifyParams, ref: Any) -> ClassOutcome:
    """Classes found in the latent space of ``cryoflow embed``'s autoencoder (trained on the
    cluster), then averaged into class maps like the other methods' classes."""
    from cryoflow.pipelines.stages.embed import classify_latent

    table = classify_latent(
        inputs.store,
        p.set,
        p.classes,
        max_classes=p.max_classes,
        client=client,
        steps=p.latent_steps,
        seed=p.seed,
        device=p.device,
    )
    if len(table) != inputs.n:
        raise ConfigError(
            f"--method autoencoder: the latent table of set {p.set!r} has {len(table)} rows, "
            f"the set {inputs.n}"
        )
    assignments = table["class"].to_numpy(np.int64) - 1
    k = int(assignments.max()) + 1
    out = given_classes(client, inputs, p.model_copy(update={"classes": k}), ref, assignments)
    out.summary["classes_chosen_by"] = "--classes" if p.classes else "BIC (latent space)"
    return out


#: method name -> runner; a new method is one line here
METHODS: dict[str, MethodFn] = {"multiref": _multiref, "pca": _pca, "autoencoder": _autoencoder}
#: methods of the contract that this build lacks, and why
UNAVAILABLE: dict[str, str] = {}


def method_runner(method: str) -> MethodFn:
    """The runner of ``--method`` (``ConfigError`` naming the option otherwise)."""
    if method in METHODS:
        return METHODS[method]
    why = UNAVAILABLE.get(method, "unknown method")
    raise ConfigError(
        f"--method {method}: not available in this build ({why}); available: {', '.join(METHODS)}"
    )


def out_names(k: int | None, out: str | Path | None = None) -> list[str]:
    """The contract's files of ``K`` classes (what ``--out`` must not already hold), and any
    other ``class_<j>.mrc`` already in ``out`` (an earlier run's; ``K`` None: auto)."""
    names = [f"class_{j}.mrc" for j in range(1, (k or 0) + 1)]
    if out is not None and Path(out).is_dir():
        names += sorted({f.name for f in Path(out).glob("class_*.mrc")} - set(names))
    return [*names, "particles.star"]


def _drop_stale_maps(d: Path, k: int) -> None:
    """Remove ``class_<j>.mrc``, ``j > K``, an overwritten earlier run's (not this run's)."""
    for f in d.glob("class_*.mrc"):
        j = f.stem.removeprefix("class_")
        if j.isdigit() and int(j) > k:
            f.unlink()


def preflight(
    store: object, params: ClassifyParams, out: str | Path, overwrite: bool
) -> tuple[MethodFn, SetInputs, Path, np.ndarray | None]:
    """Every check that needs no cluster (method, set, ``--out``, reference, poses), in the
    order a user fixes them; returns the runner, the set, the folder and the reference."""
    runner = method_runner(params.method)
    inputs, ref = _inputs(store, params, "cryoflow classify")
    d = check_out(out, out_names(params.classes, out), overwrite)
    return runner, inputs, d, ref


def _inputs(store: object, params: ClassifyParams, command: str) -> tuple[SetInputs, Any]:
    """The set (its published average's poses when current), the reference, the mask's
    check (box and voxel size; the rounds read it again)."""
    from cryoflow.pipelines.stages.average_poses import with_average_poses

    inputs = with_average_poses(load_set(store, params.set, seed=params.seed))
    ref = None
    if params.reference is not None:
        ref = read_map(params.reference, inputs.box, inputs.voxel_size_angstrom)
    else:  # every method averages its classes in the particles' poses
        require_poses(inputs, command)
    if params.mask is not None:
        read_map(params.mask, inputs.box, inputs.voxel_size_angstrom)
    if params.classes is None and params.method == "multiref" and params.seed_method != "pca":
        raise ConfigError(
            "--classes auto: multiref chooses K on its pca seeds; give --classes K with "
            "--seed-method random"
        )
    return inputs, ref


def classify(
    client: Any, store: object, params: ClassifyParams, out: str | Path, *, overwrite: bool = False
) -> ClassOutcome:
    """Classify ``params.set`` of ``store`` on ``client`` and write ``out`` (module docstring)."""
    runner, inputs, d, ref = preflight(store, params, out, overwrite)
    res = runner(client, inputs, params, ref)
    for k, vol in enumerate(res.maps, start=1):
        write_map(d / f"class_{k}.mrc", vol, inputs.voxel_size_angstrom)
    _drop_stale_maps(d, len(res.maps))
    for fname, writer in res.extra.items():
        writer(d / fname)
    table = posed_table(inputs, res.euler_deg, res.shifts_zyx_px)
    table["class"] = res.assign + 1
    if res.scores is not None:
        table["class_score"] = res.scores[np.arange(len(res.assign)), res.assign]
    summary = {**res.summary, "set": params.set, "n_particles": inputs.n}
    (d / "classify.json").write_text(json.dumps(summary, indent=1) + "\n")
    write_table(d / "particles.star", table)
    return res


def plan(store: object, names: list[str], params: ClassifyParams) -> Any:
    """The rounds of ``cryoflow run`` (``multiref``/``pca``; results/classify-<set>/...)."""
    from cryoflow.pipelines.stages.classify_rounds import build

    method_runner(params.method)
    if params.method not in ("multiref", "pca"):
        raise ConfigError(f"--method {params.method}: cryoflow run takes multiref or pca")
    inputs, ref = _inputs(store, params, "classify")
    return build(inputs, params, ref, params.device)


STAGE = Stage(NAME, ClassifyParams, dataset=plan)
