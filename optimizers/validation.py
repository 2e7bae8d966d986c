"""Argument checks shared by hoopt's optimizers: one idiom, one sentence per mistake.

Each function returns the value it accepted (converted where that is safe, e.g. an int where a float is
expected) and otherwise raises ``ValueError`` naming the argument, the value and what is expected. Numbers
must be real and finite: a config typo such as ``period: "10"`` or ``damping: .nan`` fails here instead of deep
inside a step, and ``True`` does not pass for 1 (``bool`` is an ``int`` in Python, never what a user means).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any


def _shown(value: Any) -> str:
    """The value as the message shows it; strings and other non-numbers also say their type."""
    if isinstance(value, (bool, str)) or not isinstance(value, numbers.Number):
        return f"{value!r} (type {type(value).__name__})"
    return repr(value)


def require_number(name: str, value: Any) -> float:
    """A finite real number (int or float, not bool); returned as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {_shown(value)}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def require_positive(name: str, value: Any) -> float:
    """A finite number > 0."""
    number = require_number(name, value)
    if not number > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return number


def require_non_negative(name: str, value: Any) -> float:
    """A finite number >= 0."""
    number = require_number(name, value)
    if not number >= 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    return number


def require_in_range(name: str, value: Any, low: float, high: float, *, low_inclusive: bool = True,
                     high_inclusive: bool = False) -> float:
    """A finite number in the interval from ``low`` to ``high`` ([low, high) unless told otherwise)."""
    number = require_number(name, value)
    above = number >= low if low_inclusive else number > low
    below = number <= high if high_inclusive else number < high
    if not (above and below):
        interval = f"{'[' if low_inclusive else '('}{low:g}, {high:g}{']' if high_inclusive else ')'}"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
    return number


def require_probability(name: str, value: Any) -> float:
    """A decay or momentum coefficient in [0, 1): 1 would never forget, so it is refused."""
    return require_in_range(name, value, 0.0, 1.0)


def require_int(name: str, value: Any, minimum: int | None = None) -> int:
    """A whole number (an int, not a bool and not a float such as 2.5 or 10.0), at least ``minimum`` if given."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a whole number, got {_shown(value)}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def require_bool(name: str, value: Any) -> bool:
    """True or False; a string such as "false" would otherwise count as true."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {_shown(value)}")
    return value


def require_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """One of the spellings in ``choices``."""
    if not isinstance(value, str) or value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        shown = repr(value) if isinstance(value, str) else f"{value!r} (type {type(value).__name__})"
        raise ValueError(f"{name} must be one of {listed}, got {shown}")
    return value


def require_betas(name: str, value: Any) -> tuple[float, float]:
    """Two moment decays (beta1, beta2), each in [0, 1), as Adam takes them."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(f"{name} must be two numbers in [0, 1), got {_shown(value)}")
    return (require_probability(f"{name}[0]", value[0]), require_probability(f"{name}[1]", value[1]))
