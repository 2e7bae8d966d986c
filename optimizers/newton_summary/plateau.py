"""ReduceDampingOnPlateau: halve lambda_1 when the epoch-mean training loss stops improving (arXiv:2312.03885,
2024 version, Appendix 0.G; docs/methods/newton_summary.md, "The optimizer, step by step").

Mode min, relative threshold (an epoch improves when loss < best * (1 - threshold)), patience epochs without
improvement are tolerated, the next one multiplies lambda_1 by ``factor``. What happens to the best value after a
reduction is where implementations differ (``reset``):

- ``"forget"`` (hoopt's default): best starts afresh at +infinity, so the epoch after a reduction always counts as
  an improvement and the next reduction needs patience + 1 further bad epochs. Each reduction is judged on the
  losses reached at the new damping only, as if the schedule had restarted.
- ``"reducing_epoch"`` (the released code, ``compat="released"``): best becomes the loss of the epoch that caused
  the reduction, a reduction is skipped when it would lower lambda_1 by 1e-8 or less, and a non-finite loss counts
  as a bad epoch. On a flat loss reductions then come every patience + 1 epochs instead of patience + 2.
"""

from __future__ import annotations

import math

from ..validation import require_choice, require_in_range, require_int, require_non_negative

RESETS = ("forget", "reducing_epoch")
MIN_DECREASE = 1e-8  # the released scheduler's eps: smaller reductions are skipped


class ReduceDampingOnPlateau:
    def __init__(self, factor: float = 0.5, patience: int = 2, threshold: float = 1e-4, reset: str = "forget"):
        self.factor = require_in_range("plateau_factor", factor, 0, 1, low_inclusive=False)
        self.patience = require_int("plateau_patience", patience, minimum=0)
        self.threshold = require_non_negative("plateau_threshold", threshold)
        self.reset = require_choice("plateau reset", reset, RESETS)
        self.best = math.inf
        self.bad_epochs = 0

    def update(self, loss: float, damping: float) -> float:
        """The damping to use after an epoch whose mean training loss is ``loss``."""
        released = self.reset == "reducing_epoch"
        if not math.isfinite(loss) and not released:
            return damping  # a diverged epoch says nothing about a plateau; the loop reports divergence
        if loss < self.best * (1 - self.threshold) or (self.best == math.inf and not released):
            self.best, self.bad_epochs = loss, 0
            return damping
        self.bad_epochs += 1
        if self.bad_epochs <= self.patience:
            return damping
        self.bad_epochs = 0
        if not released:
            self.best = math.inf
            return damping * self.factor
        self.best = loss
        reduced = damping * self.factor
        return reduced if damping - reduced > MIN_DECREASE else damping

    def state_dict(self) -> dict:
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.bad_epochs = float(state["best"]), int(state["bad_epochs"])
