"""The rounds of ``cryoflow classify`` (``multiref`` and ``pca``): one resumable plan.

One :class:`~cryoflow.pipelines.engine.rounds.Rounds` plan whose state carries its phase
(:mod:`cryoflow.graph.heterogeneity`); :func:`update` is the client side of every round:

1. the consensus: with ``--reference``, ``align_rounds`` rounds of alignment to it (the first
   a global search when the set has no orientations, else all local around the set's poses;
   each round re-averages the two half sets, FSC-weighted), else one pass averaging the set's
   own poses (``CONSENSUS``). Its average, automatic mask and FSC-0.143 resolution follow;
2. seeds: ``pca`` (the method, or ``multiref``'s seed): ``1 + power_iterations`` sketch
   passes and one projection pass over wedge-filled features (``SKETCH``, ``PROJECT``), then
   k-means on the leading principal coordinates; ``random``: a seeded balanced split. Classes
   below the floor are reseeded;
3. ``SUMS``: the seed classes averaged (wedge-compensated, each class on its own particles)
   into the class maps and the next references; for ``pca`` the run ends here;
4. ``CLASSIFY`` (``multiref``): every particle scored against every class near its consensus
   pose (with ``realign_deg``: re-aligned locally to each class within that radius of its
   consensus pose, every round, in the same batch tasks), assigned to its best, classes re-averaged; a class that empties below the floor is
   reseeded (the next round re-averages, ``SUMS``); the run settles (``DONE``: the rounds
   left do nothing) once at most ``tolerance`` of the assignments change.

The number of rounds is fixed up front (every phase's count, ``iterations`` for
``CLASSIFY``), so a killed run resumes at its last recorded round, and a reseed uses one of
the ``iterations``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from cryoflow.errors import ConfigError
from cryoflow.graph.heterogeneity import (
    ALIGN,
    CLASSIFY,
    CONSENSUS,
    DONE,
    PROJECT,
    SKETCH,
    SUMS,
    BatchSource,
    Partial,
    State,
    active_phase,
    combine,
    map_batch,
)
from cryoflow.pipelines.stages.particle_inputs import SetInputs

KEYS = (
    "phase", "left", "cons_euler", "cons_shifts", "average", "mask", "highpass", "band",
    "refs", "supports", "pca_band", "probe", "sk_total", "sk_product", "sk_power", "sk_count",
    "coords", "eigen", "assign", "scores", "euler", "shifts", "class_maps", "counts",
    "resolution", "history", "n_classes", "bic",
)  # fmt: skip


def _settings(p: Any, k: int, device: str) -> dict[str, Any]:
    return {
        "n_groups": k,
        "symmetry": str(getattr(p, "symmetry", "C1")),
        "device": device,
        "align_rounds": int(p.align_rounds),
        "align_global": {
            "global_step_deg": float(p.global_step_deg),
            "local_levels": ((8.0, 16.0), (3.0, 6.0)),
            "max_shift_px": float(p.max_shift_px),
            "top_k": 5,
        },
        "align_local": {"local_levels": ((2.0, 5.0), (1.0, 2.0)), "max_shift_px": p.max_shift_px},
        "classify_search": classify_search(p),
        "pca_highpass_px": None,
    }


def classify_search(p: Any) -> dict[str, Any]:
    """Multiref's per-class search: with ``realign_global_deg`` G > 0 a global grid of step G
    (5 candidates) refined by the alignment's levels ``(8, 16), (3, 6)``; else
    :func:`realign_levels` of ``realign_deg`` around the consensus pose."""
    g = float(getattr(p, "realign_global_deg", 0.0))
    if g > 0:
        return {
            "global_step_deg": g,
            "local_levels": ((8.0, 16.0), (3.0, 6.0)),
            "max_shift_px": float(p.max_shift_px),
            "top_k": 5,
        }
    levels = realign_levels(float(getattr(p, "realign_deg", 0.0)))
    return {"local_levels": levels, "max_shift_px": float(p.max_shift_px)}


def realign_levels(radius_deg: float) -> tuple[tuple[float, float], ...]:
    """The local levels of ``--realign-deg R``: ``(R/2, R)`` then ``(R/6, R/2)`` (step, radius
    in degrees) around each particle's consensus pose, per class; ``()`` (the consensus pose
    itself, shifts searched) for ``R = 0``."""
    r = float(radius_deg)
    return () if r <= 0 else ((r / 2.0, r), (r / 6.0, r / 2.0))


def round_count(p: Any, aligning: bool, given: bool = False) -> int:
    """Rounds of a run (module docstring): consensus, seeds, class sums, classification;
    with ``given`` classes (another method's, e.g. the autoencoder's) consensus and sums."""
    n = int(p.align_rounds) if aligning else 1
    if given:
        return n + 1
    if p.method == "pca" or p.seed_method == "pca":
        n += 2 + int(p.power_iterations)
    n += 1
    return n + (int(p.iterations) if p.method == "multiref" else 0)


def build(
    inputs: SetInputs,
    p: Any,
    reference: np.ndarray | None,
    device: str,
    assignments: np.ndarray | None = None,
) -> Any:
    """The :class:`~cryoflow.pipelines.engine.rounds.Rounds` of a classification.

    ``assignments`` (n,) classes ``0 .. K-1`` found by another method: the rounds only make
    the consensus and average those classes (wedge-compensated) into the class maps.
    ``p.classes`` None (``--classes auto``): ``K`` is chosen by BIC on the principal
    coordinates (:func:`cryoflow.kernels.heterogeneity.kmeans.cluster`), at most
    ``p.max_classes`` and at most as many as the set fills with ``min_count`` each.
    ``p.mask`` (a soft mask MRC): the mask of every FSC, of the PCA's features and of the
    class scores, instead of the automatic one.
    """
    from cryoflow.kernels.fsc import lowpass
    from cryoflow.kernels.heterogeneity.features import feature_dimension
    from cryoflow.kernels.masks import spherical_mask
    from cryoflow.pipelines.cluster.connect import gpu_resources
    from cryoflow.pipelines.engine.rounds import Rounds

    n, box = inputs.n, inputs.box
    min_count = max(2, int(np.ceil(p.min_class_fraction * n)))
    auto = p.classes is None and assignments is None
    if auto and p.method == "multiref" and p.seed_method != "pca":
        raise ConfigError("--classes auto: multiref chooses K on its pca seeds (--seed-method pca)")
    k_all = min(int(p.max_classes), n // min_count) if auto else int(p.classes)
    if auto and k_all < 1:
        raise ConfigError(f"particle set {inputs.name!r} has {n} particles: too few to classify")
    if min_count * k_all > n:
        raise ConfigError(
            f"--classes {k_all}: particle set {inputs.name!r} has {n} particles, too few for "
            f"{k_all} classes of at least {min_count}"
        )
    aligning = reference is not None
    given = None if assignments is None else np.asarray(assignments, dtype=int).reshape(-1)
    if given is not None and (given.shape != (n,) or given.min() < 0 or given.max() >= k_all):
        raise ConfigError(f"need {n} given classes in 0 .. {k_all - 1}, got shape {given.shape}")
    src = BatchSource(
        inputs.store, inputs.name, inputs.tilt_ranges, inputs.half_ids, _settings(p, k_all, device)
    )
    # shifts are searched in a ball about the box centre: it must hold the set's own shifts
    reach = max(float(p.max_shift_px), float(np.abs(inputs.shifts_zyx_px).max(initial=0.0)) + 1.0)
    src.settings["classify_search"]["max_shift_px"] = reach
    src.settings["align_local"]["max_shift_px"] = reach
    if aligning and inputs.has_poses:  # no round is the global one: all local, around them
        src.settings["align_rounds"] = int(p.align_rounds) + 1
    voxel = inputs.voxel_size_angstrom
    user_mask = None
    if getattr(p, "mask", None) is not None:
        from cryoflow.pipelines.stages.particle_inputs import read_map

        user_mask = read_map(p.mask, box, voxel)

    def start() -> State:
        z3 = np.zeros((box,) * 3, np.float32)
        e0 = inputs.euler_deg if inputs.euler_deg is not None else np.zeros((n, 3))
        st: State = {key: np.zeros(1) for key in KEYS}
        st.update(
            phase=np.array([ALIGN if aligning else CONSENSUS]),
            left=np.array([int(p.align_rounds) if aligning else 1]),
            cons_euler=np.asarray(e0, float),
            cons_shifts=np.asarray(inputs.shifts_zyx_px, float),
            average=z3,
            mask=spherical_mask(box, box / 2.0 - 4.0, 3.0).astype(np.float32)
            if user_mask is None
            else user_mask,
            band=np.array([float(p.initial_resolution_px)]),
            highpass=np.array([0.0]),
            assign=np.zeros(n, int),
            scores=np.zeros((n, k_all)),
            euler=np.asarray(e0, float),
            shifts=np.asarray(inputs.shifts_zyx_px, float),
            history=np.zeros((0, 4)),
            n_classes=np.array([k_all]),
            bic=np.full(k_all, np.nan),
        )
        if aligning:
            assert reference is not None
            st["refs"] = np.stack([lowpass(reference, float(p.initial_resolution_px))] * 2)
            st["highpass"] = np.array([_highpass(st["mask"], p)])
        return st

    def update(state: State, part: Partial | None, k: int) -> State:
        phase = active_phase(state, part)
        if phase is None or part is None:  # nothing to do: the state as it is
            return dict(state)
        st = dict(state)
        if phase in (CONSENSUS, ALIGN):
            _consensus(st, part, phase, p, voxel, user_mask)
            if int(st["left"][0]) == 0:
                if given is not None:
                    st["assign"], st["phase"] = given, np.array([SUMS])
                else:
                    _start_seeds(st, p, n, k_all, min_count, feature_dimension)
        elif phase == SKETCH:
            _sketch(st, part)
        elif phase == PROJECT:
            _project(st, part, p, k_all, min_count, box, auto)
        elif phase == SUMS:
            _sums(st, part, p, voxel, given is not None)
        elif phase == CLASSIFY:
            _classify(st, part, p, voxel, min_count)
        return st

    return Rounds(
        f"classify-{inputs.name}",
        KEYS,
        n_items=n,
        batch_size=int(p.batch_size),
        rounds=round_count(p, aligning, given is not None),
        inputs={
            **inputs.identity(),
            **_reference_identity(reference),
            **_reference_identity(given, "assignments"),
            **_reference_identity(user_mask, "mask"),
            **_reference_identity(_poses(inputs), "poses"),
        },
        start=start,
        map=partial(map_batch, src),
        combine=combine,
        update=update,
        resources=gpu_resources(device),
    )


def _reference_identity(array: np.ndarray | None, key: str = "reference") -> dict[str, str]:
    """An input array's content in the run token (a changed file at the same path reruns)."""
    if array is None:
        return {}
    import hashlib

    digest = hashlib.sha256(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    return {key: digest.hexdigest()[:32]}


def _poses(inputs: SetInputs) -> np.ndarray | None:
    """The starting poses and halves (the set's, or its average's) for the run token."""
    if inputs.euler_deg is None:
        return None
    cols = [inputs.euler_deg, inputs.shifts_zyx_px, inputs.half_ids.reshape(-1, 1)]
    return np.concatenate([np.asarray(c, float).reshape(inputs.n, -1) for c in cols], axis=1)


def _highpass(mask: np.ndarray, p: Any) -> float:
    from cryoflow.kernels.masks import mask_radius_px

    return float(p.highpass_mask_factor) * max(mask_radius_px(mask), 2.0)


def _log(st: State, phase: int, changed: float = 0.0, reseeded: int = 0) -> None:
    row = [[phase, changed, reseeded, float(st["band"][0])]]
    st["history"] = np.vstack([st["history"].reshape(-1, 4), row])


def _consensus(
    st: State, part: Partial, phase: int, p: Any, voxel: float, mask: np.ndarray | None
) -> None:
    from cryoflow.kernels.finish import finish_round

    prev = float(st["band"][0]) if phase == ALIGN else None
    out = finish_round(part.sums, voxel_size_angstrom=voxel, mask=mask, previous_resolution_px=prev)
    if phase == ALIGN:
        st["cons_euler"], st["cons_shifts"] = part.rows["euler"], part.rows["shifts"]
        st["euler"], st["shifts"] = part.rows["euler"].copy(), part.rows["shifts"].copy()
    st["refs"] = out.references.maps
    st["band"] = np.array([float(out.references.resolution_px)])
    st["average"], st["mask"] = out.average, out.mask
    st["highpass"] = np.array([_highpass(out.mask, p)])
    st["pca_band"] = np.array([float(p.resolution_px or out.resolution_0143_px)])
    st["resolution"] = np.array([out.resolution_0143_px])
    st["left"] = np.array([int(st["left"][0]) - 1])
    _log(st, phase)


def _start_seeds(st: State, p: Any, n: int, k_all: int, min_count: int, dim_of: Any) -> None:
    from cryoflow.kernels.heterogeneity.multiref import reseed_assignments
    from cryoflow.kernels.heterogeneity.pca import initial_probe

    if p.method == "pca" or p.seed_method == "pca":
        box = st["average"].shape[0]
        dim = dim_of(box, float(st["pca_band"][0]), None)
        width = min(int(p.n_eigen) + 10, dim, max(n - 1, 1))
        if width < int(p.n_eigen):
            raise ConfigError(
                f"particle set {p.set!r}: {n} particles cannot give --n-eigen {p.n_eigen} "
                f"principal components (at most {width} here); give --n-eigen {max(width, 1)} "
                f"or fewer, or more particles"
            )
        st["probe"] = initial_probe(dim, width, int(p.seed))
        st["phase"] = np.array([SKETCH])
        st["left"] = np.array([1 + int(p.power_iterations)])
        return
    rng = np.random.default_rng([int(p.seed), 1])
    assign = rng.permutation(np.arange(n) % k_all)
    st["assign"], _ = reseed_assignments(assign, np.zeros((n, k_all)), min_count=min_count)
    st["phase"] = np.array([SUMS])


def _sketch(st: State, part: Partial) -> None:
    from cryoflow.kernels.heterogeneity.pca import sketch_range

    sk = part.sums
    st["probe"] = sketch_range(sk, st["probe"])
    st["sk_total"], st["sk_product"] = sk.total, sk.product
    st["sk_power"], st["sk_count"] = np.array([sk.power]), np.array([sk.count])
    st["left"] = np.array([int(st["left"][0]) - 1])
    if int(st["left"][0]) == 0:
        st["phase"] = np.array([PROJECT])
    _log(st, SKETCH)


def _project(
    st: State, part: Partial, p: Any, k_all: int, min_count: int, box: int, auto: bool
) -> None:
    from cryoflow.kernels.heterogeneity.features import features_to_volumes
    from cryoflow.kernels.heterogeneity.kmeans import cluster
    from cryoflow.kernels.heterogeneity.multiref import reseed_assignments
    from cryoflow.kernels.heterogeneity.pca import SketchSums, coordinates, finish_pca

    sk = SketchSums(
        st["sk_total"], st["sk_product"], float(st["sk_power"][0]), int(st["sk_count"][0])
    )
    basis = finish_pca(sk, part.sums, st["probe"], int(p.n_eigen))
    coords = coordinates(basis, part.rows["projected"])
    n_comp = 2 if auto else max(2, k_all - 1)
    n_comp = n_comp if p.n_components is None else int(p.n_components)
    lead = coords[:, : min(n_comp, coords.shape[1])]
    clusters = cluster(lead, None if auto else k_all, max_classes=k_all, seed=int(p.seed))
    k_all = clusters.n_classes
    st["n_classes"] = np.array([k_all])
    if auto:
        st["bic"] = np.asarray(clusters.bic, float)
    st["coords"] = coords
    st["eigen"] = features_to_volumes(basis.components, box, float(st["pca_band"][0]))
    n = len(coords)
    st["assign"], _ = reseed_assignments(clusters.labels, np.zeros((n, k_all)), min_count=min_count)
    st["phase"] = np.array([SUMS])
    _log(st, PROJECT)


def _finish(st: State, sums: Any, p: Any, voxel: float) -> None:
    from cryoflow.kernels.heterogeneity.multiref import finish_classes

    rnd = finish_classes(
        sums,
        voxel_size_angstrom=voxel,
        mask=st["mask"],
        highpass_px=float(st["highpass"][0]),
        resolution_px=p.resolution_px,
    )
    st["class_maps"], st["counts"] = rnd.maps, rnd.counts
    sup = rnd.references.supports
    st["refs"], st["supports"] = rnd.references.maps, np.ones(1) if sup is None else sup
    st["band"] = np.array([float(rnd.references.resolution_px)])
    st["resolution"] = np.array(
        [np.nan if o is None else o.resolution_0143_px for o in rnd.outcomes]
    )


def _sums(st: State, part: Partial, p: Any, voxel: float, last: bool) -> None:
    _finish(st, part.sums, p, voxel)
    st["phase"] = np.array([CLASSIFY if p.method == "multiref" and not last else DONE])
    _log(st, SUMS)


def _classify(st: State, part: Partial, p: Any, voxel: float, min_count: int) -> None:
    from cryoflow.kernels.heterogeneity.multiref import reseed_assignments

    new = part.rows["assign"].astype(int)
    changed = float(np.mean(new != st["assign"]))
    st["scores"] = part.rows["scores"]
    st["euler"], st["shifts"] = part.rows["euler"], part.rows["shifts"]
    assign, reseeded = reseed_assignments(new, st["scores"], min_count=min_count)
    st["assign"] = assign
    if reseeded:  # moved particles start again from their consensus pose; re-average next
        moved = assign != new
        st["euler"][moved] = st["cons_euler"][moved]
        st["shifts"][moved] = st["cons_shifts"][moved]
        st["phase"] = np.array([SUMS])
    else:
        _finish(st, part.sums, p, voxel)
        if changed <= float(p.tolerance):
            st["phase"] = np.array([DONE])
    _log(st, CLASSIFY, changed, len(reseeded))
