"""Reading finished runs for ``hoopt-report``: discovery, per-run series, and grouping by everything but the seed."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from omegaconf import OmegaConf

# Keys that say where or how a run was executed, not what was run: they never split groups.
NOT_IDENTITY = ("seed", "resume", "dataset.root", "dataset.download", "trainer.device", "trainer.progress",
                "trainer.interrupt_after_epoch", "logger.")


@dataclass
class Run:
    path: str
    config: dict
    status: str
    epochs: list[dict] = field(default_factory=list)  # the per-epoch metric records, in order
    overrides: list[str] = field(default_factory=list)  # what the user typed, less seed and execution details

    def series(self, tag: str) -> tuple[list[float], list[float], list[float]]:
        """(epochs, wall seconds, values) of a per-epoch tag, skipping records without it."""
        rows = [r for r in self.epochs if isinstance(r.get(tag), (int, float))]
        return [r["epoch"] for r in rows], [r.get("time/wall_s", float("nan")) for r in rows], [r[tag] for r in rows]

    def last(self, tag: str) -> float | None:
        values = self.series(tag)[2]
        return values[-1] if values else None


def flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = json.dumps(value) if isinstance(value, list) else value
    return out


def find_run_dirs(paths: list[str]) -> list[str]:
    found = []
    for path in paths:
        for root, dirs, files in os.walk(path):
            if "metrics.jsonl" in files and os.path.isdir(os.path.join(root, ".hydra")):
                found.append(root)
            dirs.sort()
    return sorted(set(found))


def load_run(path: str) -> Run:
    loaded = OmegaConf.load(os.path.join(path, ".hydra", "config.yaml"))
    loaded.pop("hydra", None)
    try:
        config = OmegaConf.to_container(loaded, resolve=True)
    except Exception:  # an interpolation that cannot be resolved here: compare the raw text instead
        config = OmegaConf.to_container(loaded, resolve=False)
    overrides_path = os.path.join(path, ".hydra", "overrides.yaml")
    overrides = list(OmegaConf.load(overrides_path)) if os.path.exists(overrides_path) else []
    status_path = os.path.join(path, "status.json")
    status = json.load(open(status_path))["status"] if os.path.exists(status_path) else "unknown"
    epochs = []
    with open(os.path.join(path, "metrics.jsonl")) as f:
        for line in f:
            record = json.loads(line)
            if "train/epoch_loss" in record:
                epochs.append(record)
    return Run(path, flatten(config), status, epochs, [o for o in overrides if not is_execution_detail(o)])


def is_execution_detail(override: str) -> bool:
    key = override.lstrip("+~").split("=", 1)[0]
    return key.startswith("hydra") or any(key == n or (n.endswith(".") and key.startswith(n)) for n in NOT_IDENTITY)


def identity(run: Run) -> dict:
    return {k: v for k, v in run.config.items()
            if not any(k == n or (n.endswith(".") and k.startswith(n)) for n in NOT_IDENTITY)}


def group_runs(runs: list[Run]) -> dict[str, list[Run]]:
    """Runs whose whole configuration agrees except for the seed (and where they ran) form one group, labelled by
    the command-line overrides its runs share (e.g. "optimizer=adam"), or by model/optimizer when there are none."""
    keyed: dict[str, list[Run]] = {}
    for run in runs:
        keyed.setdefault(json.dumps(identity(run), sort_keys=True, default=str), []).append(run)
    everywhere = set.intersection(*(set(r.overrides) for r in runs)) if len(keyed) > 1 else set()
    groups: dict[str, list[Run]] = {}
    for members in keyed.values():
        shared = [o for o in members[0].overrides if all(o in m.overrides for m in members) and o not in everywhere]
        label = ", ".join(shared) or f"{members[0].config.get('model.name')}/{members[0].config.get('optimizer.name')}"
        while label in groups:  # two different configurations typed alike: keep both, distinguishable
            label += "'"
        groups[label] = members
    return groups
