"""The lazy graph of one averaging round over a particle set, batch by batch (never computes).

A round of ``cryoflow average`` (:mod:`cryoflow.pipelines.stages.average`) maps one task per
batch of particles of the set ``particles/<set>`` and reduces their partials in a fixed tree
(:func:`cryoflow.graph.rounds.map_reduce_graph`):

- :class:`AverageBatch` ``(state, start, stop)``: the worker reads its own boxes from the
  store (checked reads), aligns them (:func:`cryoflow.kernels.align.align_batch`) to the
  state's references, each particle to its own half's (gold standard), then accumulates them
  (:func:`cryoflow.kernels.average.accumulate_batch`) and returns a :class:`Partial`: the
  batch's two half sums (Fourier data and wedge weights) and its orientation rows;
- :func:`combine` adds two partials' sums and joins their rows in item order.

What a round does is told by the state's ``round`` (the rounds finished before it) and the
round's :class:`Phase` (:func:`phase_of`): a template-free start first averages the particles
in random orientations (``blob``), then aligns all of them to one model (``initial``, the
:func:`cryoflow.kernels.initial_model.initial_model` steps), then the gold-standard rounds
(``gold``: the first ``global_rounds`` with a global search, the rest local around the last
orientations). With a reference only ``gold`` rounds run.

The state (broadcast once per round: every batch task depends on its single task) holds the
references and mask, a few maps of ``B^3`` floats, and per-particle arrays of length ``n``;
a task holds one batch and one partial, whatever the number of particles.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from cryoflow.kernels.align import AlignResult, RoundReferences, SearchParams, align_batch
from cryoflow.kernels.average import HalfSums, accumulate_batch
from cryoflow.kernels.refine import RefineParams

__all__ = [
    "AverageBatch",
    "Partial",
    "Phase",
    "combine",
    "phase_of",
    "read_batch",
]


@dataclass(frozen=True)
class Phase:
    """What round ``k`` does: ``kind`` ``blob`` | ``initial`` | ``gold``; ``index`` the round's
    place within its kind (0-based; a gold round's index selects its search)."""

    kind: str
    index: int


def phase_of(k: int, n_initial: int) -> Phase:
    """The phase of round ``k`` (1-based) when ``n_initial`` template-free rounds come first
    (0 with a reference; else ``1 + initial_rounds``: the blob, then the initial rounds)."""
    if n_initial and k == 1:
        return Phase("blob", 0)
    if k <= n_initial:
        return Phase("initial", k - 2)
    return Phase("gold", k - n_initial - 1)


@dataclass(frozen=True)
class Partial:
    """A batch's (or several batches') contribution: half sums and orientation rows
    ``start .. start + len(scores)``."""

    sums: HalfSums
    start: int
    euler_deg: np.ndarray
    shifts_zyx_px: np.ndarray
    scores: np.ndarray


def combine(a: Partial | None, b: Partial | None) -> Partial | None:
    """Two adjacent partials as one (sums added, rows joined in item order)."""
    if a is None or b is None:
        return a if b is None else b
    first, second = (a, b) if a.start <= b.start else (b, a)
    return Partial(
        a.sums + b.sums,
        first.start,
        np.concatenate([first.euler_deg, second.euler_deg]),
        np.concatenate([first.shifts_zyx_px, second.shifts_zyx_px]),
        np.concatenate([first.scores, second.scores]),
    )


def read_batch(store: object, set_name: str, start: int, stop: int) -> np.ndarray:
    """Boxes ``start:stop`` of particle set ``set_name``, float32 ``(n, B, B, B)`` (checked)."""
    from cryoflow.io import nodes
    from cryoflow.io.chunks import read_checked
    from cryoflow.io.layout import open_dataset
    from cryoflow.io.particleset import PARTICLES

    group = nodes.open_node(open_dataset(store), f"{PARTICLES}/{set_name}", what="particle set")
    arr = nodes.child_array(group, "stack")
    return np.asarray(read_checked(arr, slice(int(start), int(stop))), dtype=np.float32)


@dataclass(frozen=True)
class AverageBatch:
    """The map of a round: align and accumulate particles ``start:stop`` (module docstring).

    ``tilt_ranges`` (n, 2) and ``half_ids`` (n,) 0/1 cover the whole set; ``params`` set each
    round's search (:meth:`search`); ``n_initial`` as in :func:`phase_of`.
    """

    store: Any
    set_name: str
    tilt_ranges: np.ndarray
    half_ids: np.ndarray
    n_initial: int
    params: RefineParams
    device: str = "cpu"

    def search(self, phase: Phase, mask: np.ndarray) -> SearchParams:
        """The search of a round: the template-free rounds always search globally (as
        :func:`cryoflow.kernels.initial_model.initial_model`); gold round ``i`` is the
        refinement's round ``i`` (:meth:`cryoflow.kernels.refine.RefineParams.search`)."""
        p = self.params
        if phase.kind == "initial":
            return replace(p.search(0, mask), global_step_deg=p.global_step_deg)
        return p.search(phase.index, mask)

    def __call__(self, state: dict[str, np.ndarray], start: int, stop: int) -> Partial:
        vols = read_batch(self.store, self.set_name, start, stop)
        sl = slice(int(start), int(stop))
        tr = self.tilt_ranges[sl]
        phase = phase_of(int(state["round"][0]) + 1, self.n_initial)
        euler = np.asarray(state["euler_deg"], dtype=float)[sl]
        shifts = np.asarray(state["shifts_zyx_px"], dtype=float)[sl]
        if phase.kind == "blob":  # random orientations, no alignment, one model
            al = AlignResult(euler, np.zeros_like(shifts), np.zeros(len(vols)))
            halves = np.zeros(len(vols), dtype=int)
        else:
            supports = state["supports"]
            one = phase.kind == "initial"
            refs = RoundReferences(
                np.asarray(state["references"][:1] if one else state["references"], np.float32),
                np.asarray(state["mask"], np.float32),
                float(state["resolution_px"][0]),
                None if supports.ndim != 4 or one else np.asarray(supports, np.float32),
            )
            search = self.search(phase, refs.mask)
            local = search.global_step_deg is None
            halves = np.zeros(len(vols), dtype=int) if one else self.half_ids[sl]
            al = align_batch(
                vols,
                tr,
                refs,
                search,
                half_ids=halves,
                priors_euler_deg=euler if local else None,
                priors_shifts_zyx_px=shifts if local else None,
                device=self.device,
            )
        sums = accumulate_batch(
            vols,
            al.euler_deg,
            al.shifts_zyx_px,
            tr,
            halves,
            symmetry=self.params.symmetry,
            device=self.device,
        )
        return Partial(sums, int(start), al.euler_deg, al.shifts_zyx_px, al.scores)
