"""Early stopping by steps: train until a validation score stops improving.

A :class:`StopRule` says when to look (every ``every`` optimiser steps), how long to wait for
an improvement (``patience`` looks) and the most steps (``max_steps``). A :class:`Stopper`
applies it inside a training loop: called after every step with the steps done and the
network, it scores the network on held-out data every ``every`` steps (``score``: higher is
better, e.g. a validation AP), keeps a copy of the best weights, and says stop once
``patience`` looks in a row brought no improvement. When it stops, or at ``max_steps``, it
loads the best weights back into the network, so the loop's caller ends with the best network
seen. Decided by steps and scores only, never by the clock: a seed gives the same network on
an idle or a busy machine (given a deterministic ``score``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryoflow.errors import ConfigError

__all__ = ["StopRule", "Stopper"]


@dataclass(frozen=True)
class StopRule:
    """every : steps between validation looks; patience : looks without improvement before
    stopping; max_steps : the most steps; min_delta : the least gain that counts."""

    every: int = 50
    patience: int = 3
    max_steps: int = 600
    min_delta: float = 0.0

    def __post_init__(self) -> None:
        if self.every < 1 or self.patience < 1 or self.max_steps < 1 or self.min_delta < 0:
            raise ConfigError(
                "early stopping needs every >= 1, patience >= 1, max_steps >= 1 and "
                f"min_delta >= 0, got {self.every}, {self.patience}, {self.max_steps}, "
                f"{self.min_delta}"
            )


@dataclass
class Stopper:
    """The rule applied to one training (see the module docstring).

    ``curve`` lists ``(step, score)`` of every look; ``best_step``/``best_score`` the best;
    ``stopped_at`` the step at which it said stop (``None`` until then).
    """

    rule: StopRule
    score: Callable[[Any], float]
    curve: list[tuple[int, float]] = field(default_factory=list)
    best_step: int = 0
    best_score: float = float("-inf")
    stopped_at: int | None = None
    _best_state: dict[str, Any] | None = None

    def __call__(self, step: int, model: Any) -> bool:
        """After step ``step`` (1-based) of ``model``: whether to stop now."""
        last = step >= self.rule.max_steps
        if step % self.rule.every and not last:
            return False
        was_training = bool(getattr(model, "training", False))
        model.eval()
        s = float(self.score(model))
        model.train(was_training)
        self.curve.append((step, s))
        if s > self.best_score + self.rule.min_delta or self._best_state is None:
            self.best_step, self.best_score = step, s
            self._best_state = copy.deepcopy(model.state_dict())
        stop = last or step - self.best_step >= self.rule.patience * self.rule.every
        if stop:
            self.stopped_at = step
            model.load_state_dict(self._best_state)
        return stop

    def summary(self, prefix: str) -> dict[str, float]:
        """``<prefix>_best_step``, ``<prefix>_stopped_at``, ``<prefix>_best_val`` (floats)."""
        return {
            f"{prefix}_best_step": float(self.best_step),
            f"{prefix}_stopped_at": float(self.stopped_at or 0),
            f"{prefix}_best_val": float(self.best_score),
        }
