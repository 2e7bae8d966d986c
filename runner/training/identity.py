"""What a run *is*, as opposed to how and where it was executed.

A run's identity is its resolved config minus the execution details below: two configs with the same identity
train the same trajectory (up to the floating-point differences of another device or thread count), so

- ``resume`` continues a run only when the new command's identity equals the checkpoint's (training.run),
- ``hoopt-report`` groups runs whose identities agree once the seed is set aside,
- Hydra's multirun folder names (``hydra.job.override_dirname``) leave these keys out, so the same sweep resumed
  with another thread count or device lands in the same job folders.

The seed, and everything derived from it (``optimizer.seed: ${oc.select:seed,0}``), *is* identity here: another
seed is another run. Only the report sets seeds aside, and it does so itself.

Each entry names a config key or a whole node (``logger`` covers ``logger.log_every`` and every other logger key).
``debug`` is a config group whose presets set ``trainer.interrupt_after_epoch``; it appears only as an override.
"""

from __future__ import annotations

import copy
import os

EXECUTION_DETAILS: tuple[str, ...] = (
    "resume",                          # which process continues the run, not what the run is
    "debug",                           # test aids (group choice on the command line)
    "trainer.interrupt_after_epoch",   # the debug aid itself: stop like a killed run after an epoch
    "trainer.device",                  # where it runs
    "trainer.num_threads",             # how many CPU threads
    "trainer.deterministic",           # kernel selection, not the algorithm
    "trainer.progress",                # the progress bar / progress lines
    "trainer.checkpoint",              # whether checkpoints are written (resume needs them, training does not)
    "trainer.eval_batch_size",         # evaluation chunking: a memory knob, the metrics are the same sums
    "dataset.root",                    # where the files are
    "dataset.download",                # whether torchvision may fetch them
    "logger",                          # what is recorded (intervals, images, HParams), not what is trained
    "probe",                           # the Hbar probe observes the model before each epoch; it draws no random numbers
    "hydra",                           # Hydra's own settings: output folders, launcher, logging
    "tune",                            # how a tuning study ranks the run (docs/tuning.md), not what is trained
)


def is_execution_detail(key: str) -> bool:
    """``key`` is dotted (``trainer.device``); a key under a listed node counts too (``logger.log_every``)."""
    return any(key == entry or key.startswith(entry + ".") for entry in EXECUTION_DETAILS)


def identity(config: dict) -> dict:
    """A copy of the (resolved, plain-container) config without its execution details."""

    def strip(node: dict, prefix: str) -> dict:
        out = {}
        for key, value in node.items():
            name = f"{prefix}{key}"
            if is_execution_detail(name):
                continue
            out[key] = strip(value, name + ".") if isinstance(value, dict) else copy.deepcopy(value)
        return out

    return strip(config, "")


def flatten(tree: dict, prefix: str = "") -> dict:
    """Dotted keys to leaf values (lists stay values)."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def differences(a: dict, b: dict) -> list[str]:
    """The dotted keys whose values differ between the identities of two configs (a key missing on one side
    counts), sorted."""
    left, right = flatten(identity(a)), flatten(identity(b))
    missing = object()
    return sorted(key for key in set(left) | set(right) if left.get(key, missing) != right.get(key, missing))


def config_file_keys() -> tuple[set[str], set[str]]:
    """Every dotted key that some file of configs/ sets, where it lands in the composed config (a group file
    under its group unless it is ``@package _global_``), and the subset that are free-form mappings (``{}`` in
    every file that sets them, e.g. ``model.kwargs``), whose entries are added with ``+``. ``hydra`` and
    ``defaults`` are left out."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    configs = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs")
    trees = []
    with open(os.path.join(configs, "train.yaml")) as f:
        trees.append(yaml.load(f, Loader=loader) or {})
    for group in sorted(os.listdir(configs)):
        folder = os.path.join(configs, group)
        if not os.path.isdir(folder) or group.startswith("_"):
            continue
        for name in sorted(os.listdir(folder)):
            if name.endswith(".yaml"):
                with open(os.path.join(folder, name)) as f:
                    text = f.read()
                tree = yaml.load(text, Loader=loader) or {}
                tree.pop("defaults", None)
                trees.append(tree if "@package _global_" in text else {group: tree})
    keys: set[str] = set()
    empty: set[str] = set()
    filled: set[str] = set()

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            name = f"{prefix}{key}"
            keys.add(name)
            if isinstance(value, dict):
                (filled if value else empty).add(name)
                walk(value, name + ".")

    for tree in trees:
        tree.pop("defaults", None)
        tree.pop("hydra", None)
        walk(tree, "")
    return keys, empty - filled


def override_exclude_keys() -> list[str]:
    """The execution details as Hydra override keys, for ``hydra.job.config.override_dirname.exclude_keys``:
    Hydra compares override keys literally, so a node entry (``logger``) is expanded into the keys its config
    files define (``logger.log_every``, ...), and ``hydra`` (never a task override) is left out."""
    known, _ = config_file_keys()
    keys: list[str] = []
    for entry in EXECUTION_DETAILS:
        if entry == "hydra":
            continue
        keys.append(entry)
        keys.extend(sorted(k for k in known if k.startswith(entry + ".") and k not in keys))
    return keys
