"""ReduceDampingOnPlateau: halve lambda_1 when the epoch-mean training loss stops improving (arXiv:2312.03885,
2024 version, Appendix 0.G; docs/methods/newton_summary.md, "The optimizer, step by step").

Mode min, relative threshold (an epoch improves when loss < best * (1 - threshold)), patience epochs without
improvement are tolerated, the next one multiplies lambda_1 by ``factor``; after a reduction the best value
and the counter start afresh.
"""

from __future__ import annotations

import math

from ..validation import require_in_range, require_int, require_non_negative


class ReduceDampingOnPlateau:
    def __init__(self, factor: float = 0.5, patience: int = 2, threshold: float = 1e-4):
        self.factor = require_in_range("plateau_factor", factor, 0, 1, low_inclusive=False)
        self.patience = require_int("plateau_patience", patience, minimum=0)
        self.threshold = require_non_negative("plateau_threshold", threshold)
        self.best = math.inf
        self.bad_epochs = 0

    def update(self, loss: float, damping: float) -> float:
        """The damping to use after an epoch whose mean training loss is ``loss``."""
        if not math.isfinite(loss):
            return damping  # a diverged epoch says nothing about a plateau; the loop reports divergence
        if loss < self.best * (1 - self.threshold) or self.best == math.inf:
            self.best, self.bad_epochs = loss, 0
            return damping
        self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.best, self.bad_epochs = math.inf, 0
            return damping * self.factor
        return damping

    def state_dict(self) -> dict:
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.bad_epochs = float(state["best"]), int(state["bad_epochs"])
