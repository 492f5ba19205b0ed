"""The batch tasks of a heterogeneity run's rounds (classification, PCA, multi-body).

A run is a sequence of map-reduce rounds (:func:`cryoflow.graph.rounds.map_reduce_graph`,
driven by :func:`cryoflow.pipelines.engine.rounds.run_rounds`). Every round's state, a
``{name: ndarray}`` mapping broadcast once per worker, carries its ``phase``; the one batch
task :func:`map_batch` reads its particles ``start:stop`` from the particle set in the store
and runs the kernel of that phase on them:

========== ==================================================== ==============================
phase      batch task (kernel)                                  partial
========== ==================================================== ==============================
CONSENSUS  the consensus sums at the set's poses (accumulate)   ``HalfSums``
ALIGN      consensus alignment to the state's half references   ``HalfSums`` + pose rows
SKETCH     wedge-filled features, randomized PCA sketch         ``SketchSums``
PROJECT    features projected on the sketch's basis             ``ProjectionSums`` + rows
SUMS       every particle into its class's (group's) sums       ``GroupSums``
CLASSIFY   scored against every class near its consensus pose   ``GroupSums`` + class rows
BODIES     per-body subtraction and local refinement            ``GroupSums`` + body rows
DONE       nothing (the run settled early)                      None
========== ==================================================== ==============================

:class:`Partial` (associative ``+``: sums added, rows joined in item order) is what every
task returns, so one :func:`combine` serves every phase. Nothing here computes a graph; these
functions run inside its tasks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cryoflow.errors import GeometryError

CONSENSUS, ALIGN, SKETCH, PROJECT, SUMS, CLASSIFY, BODIES, DONE = range(8)
PHASES = ("consensus", "align", "sketch", "project", "sums", "classify", "bodies", "done")

State = dict[str, np.ndarray]


@dataclass(frozen=True)
class Partial:
    """A batch's (or several batches') result: ``sums`` (anything with an associative
    ``+``, or None) and ``rows`` (per-particle arrays, joined along axis 0 in item order)."""

    sums: Any = None
    rows: dict[str, np.ndarray] = field(default_factory=dict)

    def __add__(self, other: Partial) -> Partial:
        if not isinstance(other, Partial):
            return NotImplemented
        if self.sums is None or other.sums is None:
            sums = self.sums if other.sums is None else other.sums
        else:
            sums = self.sums + other.sums
        if set(self.rows) != set(other.rows):
            raise GeometryError(f"cannot join rows {sorted(self.rows)} and {sorted(other.rows)}")
        rows = {k: np.concatenate([self.rows[k], other.rows[k]]) for k in self.rows}
        return Partial(sums, rows)


def combine(a: Partial | None, b: Partial | None) -> Partial | None:
    """``a + b`` (None is the empty partial of a settled run)."""
    if a is None or b is None:
        return a if b is None else b
    return a + b


def active_phase(state: State, part: Partial | None) -> int | None:
    """The phase a round's ``update`` must act on, or None when there is nothing to do (no
    partial, or the run settled: ``DONE``)."""
    phase = int(state["phase"][0])
    return None if part is None or phase == DONE else phase


@dataclass(frozen=True)
class BatchSource:
    """Where a batch task reads its particles, and the run's fixed settings.

    ``store``/``set``: the particle set (``particles/<set>/stack``); ``tilt_ranges`` (n, 2)
    and ``half_ids`` (n,) 0/1 per particle; ``settings`` the run's fixed values (classes,
    symmetry, searches, band, device) as plain Python values.
    """

    store: Any
    set: str
    tilt_ranges: np.ndarray
    half_ids: np.ndarray
    settings: dict[str, Any]

    def read(self, start: int, stop: int) -> np.ndarray:
        """Particles ``start:stop`` (float32, (m, B, B, B)), checksums verified."""
        from cryoflow.io.chunks import read_checked
        from cryoflow.io.layout import open_dataset
        from cryoflow.io.nodes import child_array, open_node
        from cryoflow.io.particleset import PARTICLES, STACK

        group = open_node(open_dataset(self.store), f"{PARTICLES}/{self.set}", what="particle set")
        arr = child_array(group, STACK)
        return np.asarray(read_checked(arr, slice(start, stop)), dtype=np.float32)


def _search(spec: dict[str, Any], highpass: float | None) -> Any:
    from cryoflow.kernels.align import SearchParams

    return SearchParams(
        spec.get("global_step_deg"),
        tuple(tuple(v) for v in spec.get("local_levels", ())),
        float(spec.get("max_shift_px", 3.0)),
        int(spec.get("top_k", 1)),
        highpass,
        local_shift_windows=tuple(tuple(v) for v in spec.get("local_shift_windows", ())),
        prior_sigma_deg=spec.get("prior_sigma_deg"),
    )


def _features(src: BatchSource, state: State, vols: np.ndarray, sl: slice) -> np.ndarray:
    from cryoflow.kernels.heterogeneity.features import features_batch

    hp = src.settings.get("pca_highpass_px")
    return features_batch(
        vols,
        state["cons_euler"][sl],
        state["cons_shifts"][sl],
        src.tilt_ranges[sl],
        average=state["average"],
        mask=state["mask"],
        resolution_px=float(state["pca_band"][0]),
        highpass_px=None if hp is None else float(hp),
        device=src.settings.get("device", "cpu"),
    )


def map_batch(src: BatchSource, state: State, start: int, stop: int) -> Partial | None:
    """The partial of particles ``start:stop`` in the state's phase (module docstring)."""
    phase = int(state["phase"][0])
    if phase == DONE:
        return None
    from cryoflow.kernels.average import accumulate_batch

    sl = slice(start, stop)
    vols = src.read(start, stop)
    tr, halves = src.tilt_ranges[sl], src.half_ids[sl]
    dev = src.settings.get("device", "cpu")
    sym = src.settings.get("symmetry", "C1")
    if phase == CONSENSUS:
        e, s = state["cons_euler"][sl], state["cons_shifts"][sl]
        return Partial(accumulate_batch(vols, e, s, tr, halves, symmetry=sym, device=dev))
    if phase == ALIGN:
        from cryoflow.kernels.align import RoundReferences, align_batch

        refs = RoundReferences(state["refs"], state["mask"], float(state["band"][0]))
        global_round = int(state["left"][0]) == int(src.settings["align_rounds"])
        spec = src.settings["align_global" if global_round else "align_local"]
        res = align_batch(
            vols,
            tr,
            refs,
            _search(spec, float(state["highpass"][0])),
            half_ids=halves,
            priors_euler_deg=None if global_round else state["cons_euler"][sl],
            priors_shifts_zyx_px=None if global_round else state["cons_shifts"][sl],
            device=dev,
        )
        sums = accumulate_batch(
            vols, res.euler_deg, res.shifts_zyx_px, tr, halves, symmetry=sym, device=dev
        )
        return Partial(sums, {"euler": res.euler_deg, "shifts": res.shifts_zyx_px})
    if phase == SKETCH:
        from cryoflow.kernels.heterogeneity.pca import sketch_batch

        return Partial(sketch_batch(_features(src, state, vols, sl), state["probe"]))
    if phase == PROJECT:
        from cryoflow.kernels.heterogeneity.pca import project_batch

        proj, psums = project_batch(_features(src, state, vols, sl), state["probe"])
        return Partial(psums, {"projected": proj})
    if phase == SUMS:
        from cryoflow.kernels.heterogeneity.groups import accumulate_groups

        groups = accumulate_groups(
            vols,
            state["assign"][sl],
            state["euler"][sl],
            state["shifts"][sl],
            tr,
            halves,
            n_groups=int(
                state["n_classes"][0] if "n_classes" in state else src.settings["n_groups"]
            ),
            symmetry=sym,
            device=dev,
        )
        return Partial(groups)
    if phase == CLASSIFY:
        return _classify(src, state, vols, sl, tr, halves)
    if phase == BODIES:
        return _bodies(src, state, vols, sl, tr, halves)
    raise GeometryError(f"unknown round phase {phase}")


def _classify(
    src: BatchSource, state: State, vols: np.ndarray, sl: slice, tr: np.ndarray, h: np.ndarray
) -> Partial:
    from cryoflow.kernels.heterogeneity.multiref import ClassReferences, classify_batch

    refs = ClassReferences(
        state["refs"],
        state["mask"],
        float(state["band"][0]),
        state["supports"] if state["supports"].ndim == 4 else None,
        float(state["highpass"][0]),
    )
    out = classify_batch(
        vols,
        tr,
        refs,
        _search(src.settings["classify_search"], None),
        euler_deg=state["cons_euler"][sl],
        shifts_zyx_px=state["cons_shifts"][sl],
        half_ids=h,
        symmetry=src.settings.get("symmetry", "C1"),
        device=src.settings.get("device", "cpu"),
    )
    rows = {
        "assign": out.assignments,
        "scores": out.scores,
        "euler": out.euler_deg,
        "shifts": out.shifts_zyx_px,
    }
    return Partial(out.sums, rows)


def _bodies(
    src: BatchSource, state: State, vols: np.ndarray, sl: slice, tr: np.ndarray, h: np.ndarray
) -> Partial:
    from cryoflow.kernels.heterogeneity.multibody import multibody_batch

    bodies = state_bodies(state)
    first = int(state["body_round"][0]) == 0
    spec = src.settings["body_first" if first else "body_later"]
    out = multibody_batch(
        vols,
        tr,
        bodies,
        _search(spec, None),
        euler_deg=state["body_euler"][sl],
        shifts_zyx_px=state["body_shifts"][sl],
        half_ids=h,
        consensus_euler_deg=state["cons_euler"][sl],
        device=src.settings.get("device", "cpu"),
    )
    rows = {"euler": out.euler_deg, "shifts": out.shifts_zyx_px, "scores": out.scores}
    return Partial(out.sums, rows)


def state_bodies(state: State) -> Any:
    """The :class:`~cryoflow.kernels.heterogeneity.multibody.BodyReferences` a multi-body
    round state carries (``body_refs``, ``body_masks``, ``body_centres``, ``body_band``,
    ``body_highpass``)."""
    from cryoflow.kernels.heterogeneity.multibody import BodyReferences

    return BodyReferences(
        state["body_refs"],
        state["body_masks"],
        state["body_centres"].astype(int),
        state["body_band"],
        state["body_highpass"],
    )
