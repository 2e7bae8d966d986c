"""Reading runs back for ``hoopt-report``: discovery, status, per-run series, and grouping by identity.

A run is any folder with Hydra's ``.hydra/config.yaml``, whether or not it got as far as writing metrics: a job that
failed before training is still a run of the sweep and is counted. Runs are grouped by their identity
(runner/training/identity.py: the config without execution details) with the seed set aside, and with it every
value derived from the seed (``optimizer.seed: ${oc.select:seed,0}``), so the seeds of one configuration form
one group whatever the optimizer does with the seed."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

from omegaconf import DictConfig, OmegaConf

from ..training.identity import flatten, identity, is_execution_detail
from ..training.metrics_file import read_metrics
from .measures import number

# status.json's values mapped to what the report counts. "running" left behind by a killed process and
# "interrupted" (Ctrl-C, debug=interrupt) are both runs that stopped before their budget: unfinished.
STATUSES = ("completed", "diverged", "failed", "unfinished")
_STATUS_OF = {"completed": "completed", "diverged": "diverged", "failed": "failed", "running": "unfinished",
              "interrupted": "unfinished"}


@dataclass
class Run:
    path: str
    config: dict  # the resolved config as nested containers, without the hydra node
    status: str  # one of STATUSES
    records: list[dict] = field(default_factory=list)  # every metrics.jsonl record, in order
    overrides: list[str] = field(default_factory=list)  # what the user typed, less seeds and execution details
    seed_keys: frozenset = frozenset()  # "seed" and the dotted keys whose value follows it
    detail: dict = field(default_factory=dict)  # status.json as written (raw status, message, epoch, step)

    @property
    def epochs(self) -> list[dict]:
        """The per-epoch records (those holding ``train/epoch_loss``)."""
        return [r for r in self.records if "train/epoch_loss" in r]

    @property
    def synthetic(self) -> bool:
        """A synthetic objective (noisy bowl, Rosenbrock): no dataset, measured in steps (configs/model/*.yaml)."""
        return str(self.config.get("model", {}).get("paper_dataset")) == "none"

    @property
    def message(self) -> str:
        return str(self.detail.get("message", ""))

    def series(self, tag: str) -> tuple[list[float], list[float], list[float]]:
        """(epochs, wall seconds, values) of a per-epoch tag, skipping records without it."""
        rows = [r for r in self.epochs if number(r.get(tag)) is not None]
        walls = [number(r.get("time/wall_s")) for r in rows]
        walls = [float("nan") if w is None else w for w in walls]
        return [r["epoch"] for r in rows], walls, [number(r[tag]) for r in rows]

    def epoch_steps(self, tag: str) -> tuple[list[int], list[float]]:
        """(steps, values) of a per-epoch tag: where each evaluation happened, for curves against steps."""
        rows = [r for r in self.epochs if number(r.get(tag)) is not None]
        return [int(r["step"]) for r in rows], [number(r[tag]) for r in rows]

    def steps(self, tag: str) -> tuple[list[int], list[float]]:
        """(steps, values) of any tag, over every record that holds it (``train/loss`` per logging interval)."""
        rows = [r for r in self.records if number(r.get(tag)) is not None]
        return [int(r["step"]) for r in rows], [number(r[tag]) for r in rows]

    def last(self, tag: str) -> float | None:
        values = self.series(tag)[2]
        return values[-1] if values else None

    @property
    def final_step(self) -> int:
        return max((int(r.get("step", 0)) for r in self.records), default=int(self.detail.get("step", 0) or 0))


UNRECORDED = "jobs that left no record"


def _unrecorded_job(root: str, files: list[str], dirs: list[str]) -> bool:
    """A multirun job folder (``<num>_<overrides>`` beside the sweep's multirun.yaml) holding no record at all:
    a job refused before it could write anything. It is still one of the sweep's runs."""
    parent = os.path.dirname(os.path.normpath(root))
    return (re.match(r"^\d+_", os.path.basename(os.path.normpath(root))) is not None
            and os.path.isfile(os.path.join(parent, "multirun.yaml")) and ".hydra" not in dirs
            and "status.json" not in files)


def find_run_dirs(paths: list[str]) -> list[str]:
    """Every folder under ``paths`` that Hydra made for a run or a multirun job: it holds .hydra/config.yaml, or it
    is a sweep's job folder left empty by a job refused before it started."""
    found = []
    for path in paths:
        for root, dirs, files in os.walk(path):
            if os.path.isfile(os.path.join(root, ".hydra", "config.yaml")) or _unrecorded_job(root, files, dirs):
                found.append(root)
                dirs[:] = []  # a run dir holds no other runs
            dirs.sort()
    return sorted(set(found))


def _resolve(config: DictConfig) -> dict | None:
    try:
        return OmegaConf.to_container(config, resolve=True)
    except Exception:  # an interpolation this process cannot resolve (a resolver registered elsewhere)
        return None


def seed_derived_keys(raw: DictConfig) -> frozenset:
    """``seed`` and every dotted key whose resolved value changes when the seed does. Found by resolving the run's
    own saved config twice, once with another seed, so any interpolation of the seed counts (``${seed}``,
    ``${oc.select:seed,0}``, a resolver of it) and a key the user set to a literal on the command line does not."""
    if "seed" not in raw:
        return frozenset()
    first = _resolve(raw)
    moved = raw.copy()
    seed = first.get("seed") if first else None
    moved.seed = seed + 1 if isinstance(seed, int) and not isinstance(seed, bool) else f"{seed}-other"
    second = _resolve(moved)
    if first is None or second is None:  # unresolvable: fall back to reading the interpolations' text
        text = flatten(OmegaConf.to_container(raw, resolve=False))
        return frozenset({"seed"} | {k for k, v in text.items() if isinstance(v, str) and "${" in v and "seed" in v})
    a, b = flatten(first), flatten(second)
    return frozenset(k for k in a if a[k] != b.get(k)) | {"seed"}


def _override_key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0].replace("/", ".")


def load_run(path: str) -> Run:
    if not os.path.isfile(os.path.join(path, ".hydra", "config.yaml")):
        return Run(path, {}, "failed", detail={"message": "the job left no config and no status: it was refused "
                                                          "before it started (its error is in the sweep's output)"})
    raw = OmegaConf.load(os.path.join(path, ".hydra", "config.yaml"))
    raw.pop("hydra", None)
    seed_keys = seed_derived_keys(raw)
    config = _resolve(raw) or OmegaConf.to_container(raw, resolve=False)
    overrides_path = os.path.join(path, ".hydra", "overrides.yaml")
    overrides = [str(o) for o in OmegaConf.load(overrides_path)] if os.path.exists(overrides_path) else []
    status_path = os.path.join(path, "status.json")
    detail = {}
    if os.path.exists(status_path):
        with open(status_path) as f:
            detail = json.load(f)
    records = read_metrics(path)
    # No status.json: the job never reached training, or was killed before it wrote one.
    status = _STATUS_OF.get(detail.get("status"), "unfinished")
    kept = [o for o in overrides
            if not is_execution_detail(_override_key(o)) and _override_key(o) not in seed_keys]
    return Run(path, config, status, records, kept, seed_keys, detail)


def identity_key(run: Run) -> str:
    """What makes two runs the same experiment: the identity without the seed and the values derived from it."""
    if not run.config:
        return UNRECORDED
    flat = flatten(identity(run.config))
    return json.dumps({k: v for k, v in flat.items() if k not in run.seed_keys}, sort_keys=True, default=str)


def group_runs(runs: list[Run]) -> dict[str, list[Run]]:
    """Runs with the same identity key form one group, labelled by the command-line overrides its runs share
    (e.g. "optimizer=adam") less those every run of the report shares, or by model/optimizer when there are none."""
    keyed: dict[str, list[Run]] = {}
    for run in runs:
        keyed.setdefault(identity_key(run), []).append(run)
    recorded = [r for r in runs if r.config]
    everywhere = set.intersection(*(set(r.overrides) for r in recorded)) if len(keyed) > 1 and recorded else set()
    groups: dict[str, list[Run]] = {}
    for members in keyed.values():
        shared = [o for o in members[0].overrides if all(o in m.overrides for m in members) and o not in everywhere]
        first = members[0].config
        label = ", ".join(shared) or f"{first.get('model', {}).get('name')}/{first.get('optimizer', {}).get('name')}"
        if not first:
            label = UNRECORDED
        while label in groups:  # two different configurations typed alike: keep both, distinguishable
            label += "'"
        groups[label] = members
    return groups
