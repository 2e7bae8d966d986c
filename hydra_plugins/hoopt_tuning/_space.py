"""Search spaces written in Hydra's override grammar, as Hydra's Optuna sweeper reads them, and the overrides a
sampled point becomes.

``hydra.sweeper.params`` (and sweeps on the command line) map a config key to

- ``interval(a, b)``: a float in [a, b]; ``tag(log, interval(a, b))`` on a log scale; ``tag(int, interval(a, b))``
  a whole number;
- ``tag(log1m, interval(a, b))``: a decay in [a, b] searched as log(1 - value), as the LODO paper tuned its
  decays: the sampler sees u = 1 - value in [1 - b, 1 - a] on a log scale (Optuna names that variable
  ``1-<key>``), and the run gets 1 - u;
- ``choice(x, y)`` or ``x,y``: one of the values; ``range(start, stop, step)``: one of its values.

A key may address one element of a list (``optimizer.betas.0``, Adam's beta1): the run then gets the whole list
(``optimizer.betas=[b1,b2]``) with the other elements as the run's config has them, which is also the form the
command line accepts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hoopt.runner.errors import HooptError

SCALES = ("linear", "log", "log1m", "categorical")


def format_number(value, digits: int | None = None) -> str:
    """A number as an override value: whole numbers as integers, floats rounded to ``digits`` significant digits
    (the tables of the LODO paper print 4) in Python's shortest form, which Hydra reads back as the same float."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    value = float(value)
    if digits and math.isfinite(value) and value != 0:
        value = float(f"{value:.{digits}g}")
    return repr(value)


def format_element(value) -> str:
    """A list element in Hydra's override grammar."""
    if value is None:
        return "null"
    if isinstance(value, (bool, int, float)):
        return format_number(value)
    text = str(value)
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass
class Param:
    """One searched config key."""

    name: str  # the config key (``optimizer.lr``, ``optimizer.betas.0``)
    key: str  # the override's key element (``+model.kwargs.width`` keeps its plus)
    scale: str  # linear | log | log1m | categorical
    spec: str  # as written, for messages
    integer: bool = False
    low: float | None = None  # in the parameter's own units
    high: float | None = None
    step: float | None = None
    choices: list = field(default_factory=list)  # categorical: what Optuna stores (numbers, or override strings)
    texts: list = field(default_factory=list)  # categorical: each choice as an override value
    list_element: bool = False  # the key addresses one element of a list of the study's config (mark_list_elements)

    @property
    def search_name(self) -> str:
        """The variable's name in the Optuna study (``1-optimizer.betas.0`` for a log1m decay)."""
        return f"1-{self.name}" if self.scale == "log1m" else self.name

    def search_bounds(self) -> tuple[float, float]:
        if self.scale == "log1m":
            return 1.0 - self.high, 1.0 - self.low
        return self.low, self.high

    def distribution(self):
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.scale == "categorical":
            return CategoricalDistribution(self.choices)
        low, high = self.search_bounds()
        if self.integer:
            return IntDistribution(int(low), int(high), log=self.scale == "log", step=int(self.step or 1))
        return FloatDistribution(low, high, log=self.scale in ("log", "log1m"), step=self.step)

    def grid_values(self) -> list:
        """The values a grid search visits, in the study's variable; one sentence when the range is continuous."""
        if self.scale == "categorical":
            return list(self.choices)
        if self.step is not None:
            count = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
            values = [self.low + i * self.step for i in range(count)]
            return values if self.integer else [float(f"{v:.12g}") for v in values]  # 0.1 + 2 * 0.1 -> 0.3
        raise HooptError(f"the grid sampler needs a finite set of values, and {self.name}={self.spec} is a continuous "
                         f"range; give choice(...), a comma list or range(...), or use hydra/sweeper=tune_cmaes or "
                         f"tune_tpe.")

    def value(self, sampled, digits: int | None):
        """The parameter's value for the run, from the study's variable (rounded like its override)."""
        if self.scale == "categorical":
            return sampled
        if self.integer:
            return int(round(sampled))
        if self.scale == "log1m":
            u = float(format_number(sampled, digits))
            return float(f"{1.0 - u:.12g}")
        return float(format_number(sampled, digits))

    def text(self, value) -> str:
        """The run's value as an override value."""
        if self.scale == "categorical":
            return self.texts[self.choices.index(value)]
        return format_number(value)

    def describe(self) -> dict:
        """What hoopt-report needs to read the search back from the run dirs (tuning.yaml)."""
        return {"name": self.name, "override": override_key(self.name) if self.list_element else self.name,
                "scale": self.scale, "search_name": self.search_name, "spec": self.spec}


def override_key(name: str) -> str:
    """``optimizer.betas.0`` -> ``optimizer.betas``."""
    return name.rsplit(".", 1)[0]


def parse_param(override) -> Param:
    """A Hydra sweep override (``interval``, ``tag``, ``choice``, ``range``, ``a,b``) as a Param; one sentence for
    what cannot be searched."""
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    key = override.get_key_element()
    name = override.key_or_group
    spec = _spec(override)
    if not override.is_sweep_override():  # one value (a grid of one point, e.g. BigMLP's Adam learning rate)
        value = override.value()
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        text = override.get_value_element_as_str()
        return Param(name, key, "categorical", spec, choices=[value if numeric else text], texts=[text])
    sweep = override.value()
    tags = set(getattr(sweep, "tags", set()) or set())
    unknown = tags - {"log", "log1m", "int"}
    if unknown:
        raise HooptError(f"{name}={spec} has the tag {sorted(unknown)[0]}, which hoopt's sweeper does not know; "
                         f"use log, log1m or int.")
    if isinstance(sweep, IntervalSweep):
        low, high = float(sweep.start), float(sweep.end)
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise HooptError(f"{name}={spec} is not a range; give interval(low, high) with low < high.")
        scale = "log1m" if "log1m" in tags else "log" if "log" in tags else "linear"
        if scale == "log" and low <= 0:
            raise HooptError(f"{name}={spec} is searched on a log scale, so its low end must be above 0.")
        if scale == "log1m" and not (0 <= low and high < 1):
            raise HooptError(f"{name}={spec} is a decay searched as log(1 - value), so it must lie in [0, 1); "
                             f"e.g. tag(log1m, interval(0, 0.999)).")
        integer = "int" in tags
        if integer and scale == "log1m":
            raise HooptError(f"{name}={spec} cannot be both a whole number and a log1m decay; drop one tag.")
        return Param(name, key, scale, spec, integer=integer, low=int(low) if integer else low,
                     high=int(high) if integer else high)
    if isinstance(sweep, RangeSweep):
        values = list(override.sweep_iterator())
        if len(values) < 2 or values[-1] <= values[0]:  # one value, or a descending range: a list of choices
            return _categorical(override, name, key, spec)
        integer = all(isinstance(v, int) for v in values)
        return Param(name, key, "linear", spec, integer=integer, low=values[0],
                     high=values[-1], step=sweep.step)
    if isinstance(sweep, ChoiceSweep) or override.is_discrete_sweep():
        return _categorical(override, name, key, spec)
    raise HooptError(f"{name}={spec} is not a search space hoopt's sweeper understands; give interval(...), "
                     f"tag(log, interval(...)), tag(log1m, interval(...)), choice(...), a,b or range(...).")


def _spec(override) -> str:
    text = override.input_line or ""
    return text.split("=", 1)[1] if "=" in text else text


def _categorical(override, name: str, key: str, spec: str) -> Param:
    raw = list(override.sweep_iterator())
    texts = list(override.sweep_string_iterator())
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw)
    # Optuna stores categorical choices as numbers or strings; other values go in as their override text.
    choices = [float(v) if isinstance(v, float) else v for v in raw] if numeric else texts
    if len(set(map(str, choices))) != len(choices):
        raise HooptError(f"{name}={spec} repeats a value; give each choice once.")
    return Param(name, key, "categorical", spec, choices=choices, texts=texts)


def lookup(config: dict, name: str):
    """The value at a dotted key of a plain config; list elements by index. KeyError when absent."""
    node = config
    for part in name.split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise KeyError(name)
    return node


def mark_list_elements(params: list[Param], config: dict) -> None:
    """Flag the parameters that address one element of a list in the study's (resolved, plain) config."""
    for param in params:
        parent, _, last = param.name.rpartition(".")
        try:
            param.list_element = bool(parent) and last.isdigit() and isinstance(lookup(config, parent), list)
        except KeyError:
            param.list_element = False
        if param.list_element and param.key != param.name:
            raise HooptError(f"{param.key} addresses an element of the list {parent}, which exists already; drop "
                             f"the plus.")
        if param.list_element and int(last) >= len(lookup(config, parent)):
            raise HooptError(f"{param.name} is beyond the end of {parent} ({len(lookup(config, parent))} elements); "
                             f"index from 0.")


def point_overrides(params: list[Param], values: dict, config: dict) -> list[str]:
    """The overrides of one point: ``key=value`` per parameter, list elements folded into their list's override
    (the other elements as ``config`` has them). ``values``: parameter name -> value in its own units."""
    lists: dict[str, list] = {}
    out: list[str] = []
    for param in params:
        value = values[param.name]
        if param.list_element:
            parent, _, index = param.name.rpartition(".")
            if parent not in lists:
                lists[parent] = list(lookup(config, parent))
                out.append(parent)  # placeholder, filled below, so the list keeps its parameter's position
            lists[parent][int(index)] = value
        else:
            out.append(f"{param.key}={param.text(value)}")
    return [f"{item}=[{','.join(format_element(v) for v in lists[item])}]" if item in lists else item
            for item in out]
