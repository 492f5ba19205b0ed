"""Keeping the learned correction honest: a held-out set, a frozen-anchor phase and selection.

The anchored latent is ``z = P (x - mu) + f(x)`` (:mod:`cryoflow.models.conformation_ae`): the
linear peer's coordinates plus a learned correction ``f``. With few particles ``f`` can move
the latent somewhere worse than its anchor (it fits noise, or shrinks the discriminative axes
to lower the two views' distance). The rule (``docs/design/autoencoder.md``, *stable
correction*):

1. **Held-out particles**: ``holdout_count(n, fraction)`` particles (a seeded draw) are never
   trained on; each is scored through one fixed re-imposed wedge (its second view, the bank's
   wedge ``i mod len(bank)``) on the measured components that view did not see: the
   reconstruction of what the network was not shown, per particle.
2. **Anchor frozen first**: for the first ``anchor_steps`` steps only the decoder trains (the
   latent is exactly the anchor's); the best held-out score of that phase is the *reference*.
3. **The correction is accepted only when it pays**: after that, every ``eval_every`` steps the
   held-out scores are compared with the reference's, particle by particle; a state is a
   candidate only when its mean is lower than the reference's by more than ``margin_se``
   standard errors of the paired differences; the final network is the candidate of lowest
   mean, else the reference state (the anchor's latent, its decoder).

Without held-out particles (too few to hold any out) training runs its steps and keeps the
last state, as before, and the record says so.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from cryoflow.kernels.conformation_input import filled_spectra, network_input
from cryoflow.kernels.fourier_rotate import centred_rfft
from cryoflow.models.conformation_ae import ConformationAE
from cryoflow.models.wedge_loss import wedge_masked_loss

#: fewest particles held out (below this many in all, none are)
MIN_HELD = 8
#: most particles held out
MAX_HELD = 256


def holdout_count(n: int, fraction: float) -> int:
    """How many of ``n`` training particles are held out: ``round(fraction n)`` clipped to
    ``[MIN_HELD, MAX_HELD]``, and 0 when that would leave fewer than ``2 MIN_HELD`` to train
    on or ``fraction`` is 0."""
    if fraction <= 0:
        return 0
    k = int(np.clip(round(fraction * n), MIN_HELD, MAX_HELD))
    return k if n - k >= 2 * MIN_HELD else 0


def split_holdout(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training indices, held-out indices), both sorted; a seeded draw."""
    k = holdout_count(n, fraction)
    perm = np.random.default_rng(seed + 7).permutation(n)
    return np.sort(perm[k:]), np.sort(perm[:k])


def heldout_losses(
    model: ConformationAE,
    targets: torch.Tensor,
    wedges: torch.Tensor,
    extra: torch.Tensor,
    band: torch.Tensor,
) -> np.ndarray:
    """Float64 (n,): each held-out particle's relative error where its second view (measured
    region ``wedges * extra``) saw nothing (no gradient)."""
    out = []
    with torch.no_grad():
        a_spec = centred_rfft(model.average[None])[0]
        for s in range(0, int(targets.shape[0]), 64):
            sl = slice(s, s + 64)
            w2 = wedges[sl] * extra[sl]
            x2 = network_input(filled_spectra(targets[sl], w2, a_spec), band, model.mask)
            d2 = model.decode(model.encode(x2))
            unseen = wedges[sl] * (1.0 - extra[sl])
            for i in range(int(d2.shape[0])):
                loss = wedge_masked_loss(
                    d2[i : i + 1], targets[sl][i : i + 1], unseen[i : i + 1], band
                )
                out.append(float(loss))
    return np.asarray(out, dtype=np.float64)


@dataclass
class Selection:
    """The running selection (module docstring, steps 2-3)."""

    margin_se: float
    reference: np.ndarray | None = None
    reference_step: int = -1
    best_mean: float = float("inf")
    best_step: int = -1
    best_state: dict[str, Any] | None = None
    scores: list[dict[str, float]] = field(default_factory=list)

    def offer(self, step: int, losses: np.ndarray, model: ConformationAE, anchored: bool) -> None:
        """Score one state: ``anchored`` True while the correction is frozen."""
        mean = float(losses.mean())
        entry: dict[str, float] = {"step": step, "heldout": mean}
        if anchored:
            if self.reference is None or mean < float(self.reference.mean()):
                self.reference, self.reference_step = losses, step
                self._keep(step, mean, model)
        else:
            assert self.reference is not None
            diff = losses - self.reference
            se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
            entry["gain_over_se"] = float(-diff.mean() / max(se, 1e-12))
            if -diff.mean() > self.margin_se * se and (
                self.best_step <= self.reference_step or mean < self.best_mean
            ):
                self._keep(step, mean, model)
        self.scores.append(entry)

    def _keep(self, step: int, mean: float, model: ConformationAE) -> None:
        self.best_mean, self.best_step = mean, step
        self.best_state = copy.deepcopy(model.state_dict())

    def record(self) -> dict[str, Any]:
        """What the checkpoint records: the chosen step, whether the correction was kept,
        the reference's and every scored state's held-out mean."""
        return {
            "selected_step": self.best_step,
            "reference_step": self.reference_step,
            "correction_kept": self.best_step > self.reference_step,
            "heldout_selected": self.best_mean,
            "heldout_reference": (
                float(self.reference.mean()) if self.reference is not None else None
            ),
            "margin_se": self.margin_se,
            "scores": self.scores,
        }
