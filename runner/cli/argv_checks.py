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


def is_multirun(argv: list[str]) -> bool:
    return "-m" in argv or "--multirun" in argv


def check_override_keys(argv: list[str]) -> None:
    """``key=value`` for a key no config file sets (a typo such as ``trainer.epoch=3``): one sentence naming the
    closest keys that exist, instead of Hydra's advice to add it with ``+`` (which then trains with the default).
    A key under a free-form mapping (``model.kwargs``) is the one case where ``+`` is the answer."""
    import difflib

    candidates = []
    for arg in argv:
        match = re.match(r"^([A-Za-z_][\w.]*)=(.*)$", arg)  # +key, ++key and ~key are deliberate: left to Hydra
        if match and not match.group(1).startswith("hydra") and match.group(1) not in CHECKED_GROUPS \
                and not os.path.isdir(os.path.join(CONFIG_DIR, match.group(1))):
            candidates.append(match.groups())
    if not candidates:
        return
    from ..training.identity import config_file_keys

    known, mappings = config_file_keys()
    known |= {re.sub(r"^[+]{1,2}", "", a.split("=", 1)[0]) for a in argv if re.match(r"^[+]{1,2}[\w.]+=", a)}
    for key, value in candidates:
        if key in known:
            continue
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        if parent in mappings:
            raise HooptError(f"{key} is not set by any config, and {parent} takes free-form entries; add it with a "
                             f"plus: +{key}={value}.")
        nodes = {k.rsplit(".", 1)[0] for k in known if "." in k} | mappings
        parent, _, last = key.rpartition(".")
        if last.isdigit() and parent in known and parent not in nodes:
            continue  # one element of a list (optimizer.betas.0): Hydra sets it, and a tuning study searches it
        leaves = [k for k in known if key.startswith(k + ".") and k not in nodes]
        if leaves:
            raise HooptError(f"{leaves[0]} is a single value, so {key} does not exist; set {leaves[0]}=... instead.")
        depth = key.count(".")
        scored = sorted(((difflib.SequenceMatcher(None, key, k).ratio(), k) for k in known
                         if k.count(".") == depth and not k.rsplit(".", 1)[-1].startswith("_")), reverse=True)
        close = [k for score, k in scored[:3] if score >= 0.75 and score >= scored[0][0] - 0.05]
        if close:
            raise HooptError(f"unknown key {key}; did you mean {' or '.join(close)}?")
        group = parent.split(".")[0]
        chosen = chosen_option(argv, group) if group and "." not in parent else None
        siblings = option_keys(group, chosen) if chosen else sorted(
            k.rsplit(".", 1)[1] for k in known if "." in k and k.rsplit(".", 1)[0] == parent
            and not k.rsplit(".", 1)[1].startswith("_"))
        if siblings:
            whose = f"{group} '{chosen}'" if chosen else parent
            raise HooptError(f"unknown key {key}; the keys of {whose} are: {', '.join(siblings)}.")
        tops = sorted(k for k in known if "." not in k)
        raise HooptError(f"unknown key {key}; the config's top-level keys are: {', '.join(tops)} (README.md, "
                         f"\"Config keys\").")


def check_run_dir_argument(argv: list[str]) -> None:
    """A run (or sweep) dir that cannot be created, refused before Hydra tries to create it: the literal part of
    hydra.run.dir / hydra.sweep.dir (up to the first interpolation) must lie in a writable folder."""
    from ..training.run_dir import creation_problem

    key = "hydra.sweep.dir=" if is_multirun(argv) else "hydra.run.dir="
    given = [a[len(key):] for a in argv if a.startswith(key)]
    value = given[-1] if given else ("multirun/" if is_multirun(argv) else "outputs/")
    literal = value.split("${", 1)[0]
    path = literal if ("${" not in value) else os.path.dirname(literal) or "."
    problem = creation_problem(path or ".")
    if problem is not None:
        raise HooptError(f"the {'sweep' if is_multirun(argv) else 'run'} dir {os.path.abspath(value)} cannot be "
                         f"created ({problem}); choose another {key[:-1]}.")


def chosen_option(argv: list[str], group: str) -> str | None:
    """The option of a config group that this command uses (the last ``group=option``, else train.yaml's default);
    None for a sweep over several options or a group without files."""
    import yaml

    picked = [a.split("=", 1)[1] for a in argv if re.match(rf"^[+]{{0,2}}{group}=", a)]
    if picked:
        value = picked[-1]
    else:
        with open(os.path.join(CONFIG_DIR, "train.yaml")) as f:
            defaults = (yaml.safe_load(f) or {}).get("defaults", [])
        value = next((d[group] for d in defaults if isinstance(d, dict) and group in d), None)
    if not isinstance(value, str) or "," in value or value not in group_options(group):
        return None
    return value


def option_keys(group: str, option: str) -> list[str]:
    """The keys that ``configs/<group>/<option>.yaml`` (with the bases in its defaults list) sets in its group."""
    import yaml

    keys: set[str] = set()
    pending = [option]
    while pending:
        with open(os.path.join(CONFIG_DIR, group, pending.pop() + ".yaml")) as f:
            text = f.read()
        tree = yaml.safe_load(text) or {}
        if "@package _global_" in text:
            tree = tree.get(group) or {}
        for base in tree.pop("defaults", []) or []:
            if isinstance(base, str) and base != "_self_" and base in group_options(group):
                pending.append(base)
        keys.update(k for k in tree if not k.startswith("_"))
    return sorted(keys)
