"""Argument checks of the K-FAC optimizer: one clear sentence per mistake."""

from __future__ import annotations

from .inverses import DAMPING_STYLES, INVERSE_METHODS

FISHER_TYPES = ("true", "empirical")


def validate_kfac_arguments(
    *,
    lr: float,
    momentum: float,
    stat_decay: float,
    damping: float,
    kl_clip: float | None,
    weight_decay: float,
    cov_update_every: int,
    inv_update_every: int,
    fisher: str,
    inverse_method: str,
    damping_style: str,
    seed: int | None,
) -> None:
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    if not 0 <= stat_decay < 1:
        raise ValueError(f"stat_decay must be in [0, 1), got {stat_decay}")
    if not damping > 0:
        raise ValueError(f"damping must be positive, got {damping}")
    if kl_clip is not None and not kl_clip > 0:
        raise ValueError(f"kl_clip must be positive (or None to disable it), got {kl_clip}")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be non-negative, got {weight_decay}")
    for name, period in (("cov_update_every", cov_update_every), ("inv_update_every", inv_update_every)):
        if isinstance(period, bool) or int(period) != period or period < 1:
            raise ValueError(f"{name} must be a positive integer, got {period}")
    if fisher not in FISHER_TYPES:
        raise ValueError(f"fisher must be one of {FISHER_TYPES}, got {fisher!r}")
    if inverse_method not in INVERSE_METHODS:
        raise ValueError(f"inverse_method must be one of {INVERSE_METHODS}, got {inverse_method!r}")
    if damping_style not in DAMPING_STYLES:
        raise ValueError(f"damping_style must be one of {DAMPING_STYLES}, got {damping_style!r}")
    if damping_style == "kronecker" and inverse_method != "eigen":
        raise ValueError("damping_style='kronecker' needs inverse_method='eigen'")
    if seed is not None and (isinstance(seed, bool) or int(seed) != seed):
        raise ValueError(f"seed must be an integer or None, got {seed}")
