"""optimizers/validation.py: the argument checks every hoopt optimizer uses, one sentence per mistake."""

import math

import numpy as np
import pytest

from hoopt.optimizers.validation import (
    require_betas,
    require_bool,
    require_choice,
    require_in_range,
    require_int,
    require_non_negative,
    require_number,
    require_positive,
    require_probability,
)


def test_accepted_values_come_back_normalised():
    assert require_positive("lr", 1) == 1.0 and isinstance(require_positive("lr", 1), float)
    assert require_number("x", np.float64(0.5)) == 0.5  # numpy scalars from configs or arrays are numbers
    assert require_non_negative("wd", 0) == 0.0
    assert require_probability("beta", 0.0) == 0.0
    assert require_in_range("f", 1.0, 0.0, 1.0, low_inclusive=False, high_inclusive=True) == 1.0
    assert require_int("period", np.int64(3), 1) == 3 and type(require_int("period", np.int64(3), 1)) is int
    assert require_int("seed", -5) == -5  # no minimum asked for
    assert require_bool("flag", False) is False
    assert require_choice("kind", "a", ("a", "b")) == "a"
    assert require_betas("betas", [0.9, 0.999]) == (0.9, 0.999)  # a YAML list becomes a tuple


@pytest.mark.parametrize("check, value, message", [
    (require_positive, math.nan, "lr must be a finite number, got nan"),
    (require_positive, -math.inf, "lr must be a finite number, got -inf"),
    (require_positive, "0.1", "lr must be a number, got '0.1' (type str)"),
    (require_positive, True, "lr must be a number, got True (type bool)"),
    (require_positive, None, "lr must be a number, got None (type NoneType)"),
    (require_positive, 0.0, "lr must be a positive number, got 0.0"),
    (require_non_negative, -1e-9, "lr must be a non-negative number, got -1e-09"),
    (require_probability, 1.0, "lr must be a number in [0, 1), got 1.0"),
    (require_probability, -0.1, "lr must be a number in [0, 1), got -0.1"),
])
def test_numbers_are_refused_with_the_name_the_value_and_what_is_expected(check, value, message):
    with pytest.raises(ValueError) as error:
        check("lr", value)
    assert str(error.value) == message


@pytest.mark.parametrize("value, message", [
    (2.5, "period must be a whole number, got 2.5"),
    (10.0, "period must be a whole number, got 10.0"),
    ("10", "period must be a whole number, got '10' (type str)"),
    (False, "period must be a whole number, got False (type bool)"),
    (0, "period must be a whole number >= 1, got 0"),
])
def test_whole_numbers(value, message):
    with pytest.raises(ValueError) as error:
        require_int("period", value, 1)
    assert str(error.value) == message


def test_choices_flags_and_pairs():
    with pytest.raises(ValueError) as error:
        require_choice("fisher", "exact", ("true", "empirical"))
    assert str(error.value) == "fisher must be one of 'true', 'empirical', got 'exact'"
    with pytest.raises(ValueError, match=r"fisher must be one of 'true', 'empirical', got 1 \(type int\)"):
        require_choice("fisher", 1, ("true", "empirical"))
    with pytest.raises(ValueError, match=r"diagonal must be true or false, got 'false' \(type str\)"):
        require_bool("diagonal", "false")
    with pytest.raises(ValueError, match=r"betas must be two numbers in \[0, 1\), got '09' \(type str\)"):
        require_betas("betas", "09")
    with pytest.raises(ValueError, match=r"betas\[1\] must be a number in \[0, 1\), got 1.5"):
        require_betas("betas", (0.9, 1.5))
