"""The client side of the ``average`` stage's rounds: the round-0 state and each round's update.

The state (every array at least 1-D; what is recorded per round and published at the end):

============== ==================== ====================================================
``round``      (1,)                 rounds finished
``references`` (2, B, B, B)         the next round's reference of each half set
``mask``       (B, B, B)            the next round's alignment mask
``resolution_px`` (1,)              the next round's band limit (a period, voxels)
``supports``   (2, B, B, B) or (1,) where each reference was measured ((1,): filled)
``average``    (B, B, B)            the last round's average of both halves
``half_maps``  (2, B, B, B)         the last round's half maps (zeros before gold rounds)
``fsc``        (2, B//2+1)          frequency (cycles/voxel) and gold-standard FSC
``euler_deg``  (n, 3)               each particle's ``rot, tilt, psi`` (contract ZYZ)
``shifts_zyx_px`` (n, 3)            each particle's centre relative to the box centre
``scores``     (n,)                 constrained cross-correlation of the last alignment
``half``       (n,)                 half set, 1 or 2
``history``    (rounds, 5)          round, band, FSC-0.143 and -0.5 periods, mean score
============== ==================== ====================================================

The updates are those of :func:`cryoflow.kernels.refine.refine` and
:func:`cryoflow.kernels.initial_model.initial_model`, step for step (see
:mod:`cryoflow.graph.average` for the phases).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cryoflow.graph.average import Partial, phase_of
from cryoflow.kernels.refine import RefineParams

State = dict[str, np.ndarray]


@dataclass(frozen=True)
class RoundLogic:
    """``start`` and ``update`` of the rounds over ``info``'s particles (a
    :class:`~cryoflow.pipelines.stages.average.ParticleSetInfo`)."""

    info: Any
    refine: RefineParams
    reference: np.ndarray | None
    mask: np.ndarray | None
    log: Callable[[str], None] | None = None

    @property
    def n_initial(self) -> int:
        """Template-free rounds before the gold standard (0 with a reference)."""
        return 0 if self.reference is not None else 1 + int(self.refine.initial_rounds)

    @property
    def box(self) -> int:
        return int(self.info.box)

    def _sphere(self) -> np.ndarray:
        from cryoflow.kernels.masks import spherical_mask

        return spherical_mask(self.box, self.box / 2.0 - 4.0, 3.0).astype(np.float32)

    def _gold_start(self, start: np.ndarray) -> State:
        """The references, mask and band of the first gold-standard round from ``start``."""
        from cryoflow.kernels.fsc import lowpass

        res = float(self.refine.initial_resolution_px)
        first = lowpass(np.asarray(start, np.float32), res)
        mask = self.mask if self.mask is not None else self._sphere()
        return {
            "references": np.stack([first, first]).astype(np.float32),
            "mask": np.asarray(mask, np.float32),
            "resolution_px": np.array([res]),
            "supports": np.zeros(1, np.float32),
        }

    def start(self) -> State:
        """The round-0 state: a reference's start, or random orientations (template-free)."""
        from cryoflow.geometry.rotation import random_euler

        n, b = len(self.info.table), self.box
        euler = np.zeros((n, 3))
        if self.reference is None:  # the initial model's random orientations
            euler = random_euler(np.random.default_rng(self.refine.seed + 1), n)
        state: State = {
            "round": np.zeros(1, np.int64),
            "average": np.zeros((b, b, b), np.float32),
            "half_maps": np.zeros((2, b, b, b), np.float32),
            "fsc": np.zeros((2, b // 2 + 1)),
            "euler_deg": np.asarray(euler, np.float64).reshape(n, 3),
            "shifts_zyx_px": np.zeros((n, 3)),
            "scores": np.zeros(n),
            "half": np.asarray(self.info.half_ids, np.int64) + 1,
            "history": np.zeros((0, 5)),
        }
        if self.reference is not None:
            state.update(self._gold_start(self.reference))
        else:
            state.update(
                {
                    "references": np.zeros((2, b, b, b), np.float32),
                    "mask": self._sphere(),
                    "resolution_px": np.array([float(self.refine.initial_resolution_px)]),
                    "supports": np.zeros(1, np.float32),
                }
            )
        return state

    def update(self, state: State, partial: Partial | None, k: int) -> State:
        """The state after round ``k`` from its reduced partial."""
        from cryoflow.errors import GeometryError
        from cryoflow.kernels.average import reconstruct
        from cryoflow.kernels.finish import finish_round
        from cryoflow.kernels.fsc import lowpass

        if partial is None:
            raise GeometryError(f"particle set {self.info.name!r}: a round had no particles")
        n = len(self.info.table)
        if partial.start != 0 or len(partial.scores) != n:
            raise GeometryError(f"a round returned rows {partial.start}.. of {n} particles")
        new = dict(state)
        new["round"] = np.array([k], np.int64)
        new["euler_deg"] = np.asarray(partial.euler_deg, np.float64)
        new["shifts_zyx_px"] = np.asarray(partial.shifts_zyx_px, np.float64)
        new["scores"] = np.asarray(partial.scores, np.float64)
        phase = phase_of(k, self.n_initial)
        floor = float(self.refine.weight_floor)
        res = float(self.refine.initial_resolution_px)
        total = self.n_initial + int(self.refine.rounds)
        if phase.kind != "gold":
            s = partial.sums
            model = reconstruct(s.data[0], s.weight[0], int(s.count[0]), weight_floor=floor)
            new["average"] = model
            if k < self.n_initial:  # another template-free round against this model
                low = lowpass(model, res).astype(np.float32)
                new["references"] = np.stack([low, low])
                new["mask"], new["resolution_px"] = self._sphere(), np.array([res])
                new["supports"] = np.zeros(1, np.float32)
            else:  # the initial model: the start of both half sets
                new.update(self._gold_start(model))
            row = [k, res, np.nan, np.nan, float(np.mean(partial.scores))]
            if self.log is not None:
                what = "random orientations" if phase.kind == "blob" else "initial model"
                self.log(f"cryoflow: average: round {k} of {total} ({what})")
        else:
            out = finish_round(
                partial.sums,
                voxel_size_angstrom=float(self.info.voxel_size_angstrom),
                mask=self.mask,
                previous_resolution_px=float(state["resolution_px"][0]),
                weight_floor=floor,
            )
            refs = out.references
            new["references"] = np.asarray(refs.maps, np.float32)
            new["mask"] = np.asarray(refs.mask, np.float32)
            new["resolution_px"] = np.array([float(refs.resolution_px)])
            new["supports"] = (
                np.zeros(1, np.float32)
                if refs.supports is None
                else np.asarray(refs.supports, np.float32)
            )
            new["average"] = np.asarray(out.average, np.float32)
            new["half_maps"] = np.asarray(out.half_maps, np.float32)
            new["fsc"] = np.stack([out.fsc.frequency, out.fsc.fsc]).astype(np.float64)
            band = float(state["resolution_px"][0])
            row = [
                k,
                band,
                out.resolution_0143_px,
                out.resolution_05_px,
                float(new["scores"].mean()),
            ]
            if self.log is not None:
                px = float(self.info.voxel_size_angstrom)
                self.log(
                    f"cryoflow: average: round {k} of {total}: gold-standard FSC 0.143 at "
                    f"{out.resolution_0143_angstrom:.1f} Å ({out.resolution_0143_px:.2f} px), "
                    f"0.5 at {out.resolution_05_px * px:.1f} Å, mean score "
                    f"{float(new['scores'].mean()):.3f}"
                )
        new["history"] = np.vstack([np.asarray(state["history"]).reshape(-1, 5), [row]])
        return new

    def dims(self) -> dict[str, tuple[str, ...]]:
        """Dimension names of the published state arrays."""
        return {
            "round": ("value",),
            "references": ("half", "z", "y", "x"),
            "mask": ("z", "y", "x"),
            "resolution_px": ("value",),
            "average": ("z", "y", "x"),
            "half_maps": ("half", "z", "y", "x"),
            "fsc": ("row", "shell"),
            "euler_deg": ("particle", "angle"),
            "shifts_zyx_px": ("particle", "axis"),
            "scores": ("particle",),
            "half": ("particle",),
            "history": ("round", "stat"),
        }
