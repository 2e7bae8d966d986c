"""The released code's averaging of the summaries, for ``compat="released"`` (docs/methods/newton_summary.md,
"Released-compatible mode").

The authors' optimizer (github.com/p-wol/GroupedNewton, ``NewtonSummaryUniformAvg``) averages gbar, Hbar and D3
with two running means restarted in turn every P refreshes (P is its ``uniform_avg.period``; hoopt's ``window``
in this mode). Because of how the two means share storage, the summaries it hands to the solver at refresh k
(k = 0, 1, ..., one refresh every ``period`` steps) are a weighted sum of the raw summaries of refreshes 0..k
with these weights, t = k mod P, m = k - t the start of k's block:

- first block (k < P): refresh j, 1 <= j <= k, weighs (2j + 1) / (k + 1)^2; refresh 0 weighs 0 (all zero at k = 0);
- second block (P <= k < 2P): refreshes 1..P-1 weigh (2j + 1) / (P (P + t + 1)), refreshes P..k weigh 1 / (P + t + 1);
- from k >= 2P on: refreshes m - P + 1 .. k weigh 1 / (P + t + 1) each, all others 0 (total (P + t) / (P + t + 1)).

So refresh 0 never counts, a block-start refresh counts only within its own block, and the weights sum to less
than one (which alone does not change eta: the cubic system is invariant under a common positive scaling of
gbar, Hbar and D3). This is the description the golden test (tests/test_newton_summary_released.py) checks
against a 340-step trajectory recorded from the released optimizer.
"""

from __future__ import annotations

from fractions import Fraction

import torch

from .summaries import Summary


def released_weights(k: int, period: int) -> list[Fraction]:
    """Exact weights of refreshes 0..k in the summaries the released code solves with at refresh k."""
    if k < 0 or period < 1:
        raise ValueError(f"released_weights needs k >= 0 and period >= 1, got k={k}, period={period}")
    weights = [Fraction(0)] * (k + 1)
    t = k % period
    if k < period:
        for j in range(1, k + 1):
            weights[j] = Fraction(2 * j + 1, (k + 1) ** 2)
    elif k < 2 * period:
        for j in range(1, period):
            weights[j] = Fraction(2 * j + 1, period * (period + t + 1))
        for j in range(period, k + 1):
            weights[j] = Fraction(1, period + t + 1)
    else:
        for j in range(k - t - period + 1, k + 1):
            weights[j] = Fraction(1, period + t + 1)
    return weights


def first_needed(k: int, period: int) -> int:
    """The oldest refresh with a non-zero weight at refresh k (k itself when none has one, as at k = 0): the raw
    summaries before it are never used again, since this index never decreases with k."""
    weights = released_weights(k, period)
    return next((j for j, w in enumerate(weights) if w != 0), k)


def released_average(raw: list[Summary], first_index: int, k: int, period: int) -> Summary:
    """The weighted sum at refresh k of the raw summaries ``raw`` of refreshes first_index, first_index + 1, ...
    (weights of refreshes no longer kept are dropped; see first_needed)."""
    weights = released_weights(k, period)
    parts = []
    for position, summary in enumerate(raw):
        j = first_index + position
        if j <= k and weights[j] != 0:
            parts.append((float(weights[j]), summary))
    template = raw[-1]
    if not parts:
        return Summary(*(torch.zeros_like(x) for x in template))
    return Summary(*(sum(w * s[i] for w, s in parts) for i in range(3)))
