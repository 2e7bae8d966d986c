"""Checks on the command line made before Hydra composes anything, so that a mistyped name gets one
sentence with the valid choices instead of a config-composition traceback."""

from __future__ import annotations

import os
import re

from ..errors import HooptError

# hoopt/configs, from hoopt/runner/cli/
CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs")
CHECKED_GROUPS = ("model", "dataset", "optimizer", "trainer", "logger", "experiment", "debug")
SWEEP_FUNCTION = re.compile(r"^\w+\(.*\)$")  # choice(...), range(...), glob(...): Hydra's own sweep syntax


def group_options(group: str) -> list[str]:
    folder = os.path.join(CONFIG_DIR, group)
    return sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".yaml")) if os.path.isdir(folder) else []


def check_group_choices(argv: list[str]) -> None:
    for arg in argv:
        match = re.match(r"^[+]{0,2}(\w+)=(.*)$", arg)
        if not match or match.group(1) not in CHECKED_GROUPS:
            continue
        group, values = match.groups()
        if SWEEP_FUNCTION.match(values) or values in ("", "null"):
            continue
        options = group_options(group)
        for value in values.split(","):
            if value not in options:
                raise HooptError(f"unknown {group} '{value}'; choose one of: {', '.join(options)}.")


def rewrite_resume_path(argv: list[str]) -> list[str]:
    """``resume=<run dir>`` continues that run in its own dir: point hydra.run.dir at it."""
    out = list(argv)
    for arg in argv:
        if arg.startswith("resume=") and arg[len("resume="):].lower() not in ("true", "false", "null", ""):
            path = arg[len("resume="):]
            if not os.path.isdir(path):
                raise HooptError(f"resume={path} is not a run directory; give the folder of the run to continue "
                                 f"(the one holding checkpoint.pt), or resume=true with hydra.run.dir set to it.")
            if not any(a.startswith("hydra.run.dir=") for a in argv):
                out.append(f"hydra.run.dir={path}")
    return out
