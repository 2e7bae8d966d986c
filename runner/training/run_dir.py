"""Who may write in a run dir, and what a run may do with what it finds there.

A run dir belongs to one live process: its owner holds an exclusive ``flock`` on ``.hoopt.lock`` (the kernel drops
it when the process ends, however it ends, so a killed owner leaves a free dir; the file itself stays, since
deleting a lock file races with the next owner). Ownership is decided before anything is written:

1. ``inspect_run_dir`` reads the dir and decides: start fresh, resume from the checkpoint, or refuse in one
   sentence. It writes nothing, so a refused command leaves the dir byte for byte as it was (hoopt-train runs it
   before Hydra creates the folder of a single run, so a refused run leaves no new folder either).
2. ``RunDirLock.take`` creates the dir if needed and takes the lock; the inspection is repeated under it.
3. Only then does the run write: its owner record, its config (``.hydra/``), its status.

What a run finds decides what it may do:

| found in the dir                     | fresh run                   | resume                                  |
|--------------------------------------|-----------------------------|-----------------------------------------|
| nothing (or no dir)                  | starts                      | refused (a sweep job starts fresh)      |
| a live process holding the lock      | refused                     | refused                                 |
| a checkpoint                         | refused                     | continues if the identity is the same   |
| a finished run without checkpoint    | refused                     | refused                                 |
| an unfinished run without checkpoint | starts with clean logs      | refused (a sweep job starts fresh)      |

A resume compares the run's identity (runner/training/identity.py) with the checkpoint's and refuses a
difference, naming the keys. ``trainer.epochs`` may be raised (and, for the synthetic objectives, whose step
budget is ``trainer.steps``, that too): the run continues to the longer budget and ends exactly as a run trained
with that budget from the start. A completed run can be continued that way, and only that way. Not when the
optimizer schedules over the run's length (it takes the ``total_steps`` run dependency, as LARS's decay does): its
steps so far belong to the shorter schedule, so that resume is refused too.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from ..errors import HooptError, RunAlreadyCompleted
from .checkpoint import CHECKPOINT, SIDECAR, has_checkpoint, read_sidecar, read_status
from .identity import differences

LOCK = ".hoopt.lock"
FINISHED = ("completed", "diverged")
# Budget keys that a resume may raise (see the module docstring); any other identity difference is refused.
BUDGET = ("trainer.epochs", "trainer.steps")


@dataclass
class Plan:
    """What the run will do in its dir."""

    resume: bool            # continue from the checkpoint
    clean: bool             # a fresh start in a dir that holds an earlier attempt's logs: remove them first
    extended: list[str]     # budget keys raised on resume ("trainer.epochs: 4 -> 8")
    note: str = ""          # said once training starts (a sweep job that had nothing to resume)


# -- the lock ---------------------------------------------------------------------------------------------------

class RunDirLock:
    """An exclusive flock on ``<run dir>/.hoopt.lock``, held for the life of the run."""

    def __init__(self, run_dir: str, fd: int):
        self.run_dir, self.fd = run_dir, fd

    @classmethod
    def take(cls, run_dir: str) -> "RunDirLock":
        make_run_dir(run_dir)
        fd = os.open(os.path.join(run_dir, LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise HooptError(in_use_sentence(run_dir)) from None
            raise
        return cls(run_dir, fd)

    def write_owner(self) -> None:
        """Who owns the dir, for the refusal message of a second process (only the owner writes it)."""
        record = json.dumps({"pid": os.getpid(), "host": os.uname().nodename,
                             "since": time.strftime("%Y-%m-%dT%H:%M:%S")})
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, (record + "\n").encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the only descriptor releases the flock
            self.fd = None


def lock_is_held(run_dir: str) -> bool:
    """Whether a live process holds the dir's lock; reads only (an existing lock file is opened, never created)."""
    try:
        fd = os.open(os.path.join(run_dir, LOCK), os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # also releases the probe's own lock, if it got one
    return False


def in_use_sentence(run_dir: str) -> str:
    owner = ""
    try:
        with open(os.path.join(run_dir, LOCK)) as f:
            record = json.loads(f.read() or "{}")
        owner = f" (process {record['pid']} on {record['host']}, since {record['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return (f"{run_dir} is in use by another hoopt-train{owner}; wait for it to finish, or choose another "
            f"hydra.run.dir.")


# -- creating the dir -------------------------------------------------------------------------------------------

def creation_problem(run_dir: str) -> str | None:
    """Why ``run_dir`` cannot be created or written, or None; creates nothing."""
    path = os.path.abspath(run_dir)
    if os.path.exists(path):
        if not os.path.isdir(path):
            return f"{path} is a file, not a folder"
        if not os.access(path, os.W_OK | os.X_OK):
            return f"{path} is not writable"
        return None
    parent = os.path.dirname(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f"{parent} is a file, so no folder can be made under it"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{parent} is not writable"
    return None


def make_run_dir(run_dir: str) -> None:
    problem = creation_problem(run_dir)
    if problem is None:
        try:
            os.makedirs(run_dir, exist_ok=True)
            return
        except OSError as error:
            problem = f"{error.strerror.lower()}: {error.filename or run_dir}"
    raise HooptError(f"the run dir {os.path.abspath(run_dir)} cannot be created ({problem}); choose another "
                     f"hydra.run.dir (or hydra.sweep.dir).")


# -- inspecting the dir -----------------------------------------------------------------------------------------

def inspect_run_dir(cfg: DictConfig, run_dir: str, *, sweep_job: bool = False, check_lock: bool = True) -> Plan:
    """Decide what the run will do in ``run_dir`` (see the module docstring), or refuse in one sentence.
    Reads only. ``sweep_job``: a multirun job, for which ``resume=true`` with nothing to resume starts the job."""
    resume = cfg.resume not in (False, None, "false")
    problem = creation_problem(run_dir)
    if problem is not None:
        raise HooptError(f"the run dir {os.path.abspath(run_dir)} cannot be used ({problem}); choose another "
                         f"hydra.run.dir (or hydra.sweep.dir).")
    if not os.path.isdir(run_dir) or not set(os.listdir(run_dir)) - {LOCK}:  # nothing but (maybe) our lock
        if resume and not sweep_job:
            raise HooptError(f"there is no run to resume in {os.path.abspath(run_dir)}; give resume=<the run's "
                             f"folder> (the one holding {CHECKPOINT}), or drop resume to start a new run.")
        return Plan(resume=False, clean=False, extended=[],
                    note="nothing to resume in this job's dir, so it starts from the beginning" if resume else "")
    if check_lock and lock_is_held(run_dir):
        raise HooptError(in_use_sentence(run_dir))
    status = read_status(run_dir)
    state = (status or {}).get("status")
    where = os.path.abspath(run_dir)
    if not resume:
        if has_checkpoint(run_dir):
            raise HooptError(f"{where} already holds a run (status {state or 'unknown'}, with a checkpoint); add "
                             f"resume=true to continue it, or choose another hydra.run.dir.")
        if state in FINISHED:
            raise HooptError(f"{where} already holds a {state} run; choose another hydra.run.dir.")
        return Plan(resume=False, clean=True, extended=[])
    if not has_checkpoint(run_dir):
        if state in FINISHED:
            raise HooptError(f"the run in {where} {state} without a checkpoint, so it cannot be continued; start a "
                             f"new run (another hydra.run.dir).")
        if sweep_job:
            return Plan(resume=False, clean=True, extended=[],
                        note="this job had no checkpoint yet, so it starts again from the beginning")
        raise HooptError(f"there is no checkpoint to resume from in {where} (the run stopped before its first "
                         f"epoch ended); start it again there with hydra.run.dir={where} instead of resume=.")
    if state == "diverged":
        raise HooptError(f"the run in {where} diverged ({status.get('message', 'non-finite loss')}); resuming "
                         f"would repeat the same steps, so start a new run with other settings.")
    sidecar = read_sidecar(run_dir)
    if sidecar is None:
        raise HooptError(f"the checkpoint in {where} has no checksum ({SIDECAR} is missing), so it cannot be "
                         f"verified; start a new run (another hydra.run.dir).")
    extended = compare_identity(cfg, sidecar, where)
    if extended:
        from .build import run_dependencies_taken

        if "total_steps" in run_dependencies_taken(cfg):
            raise HooptError(f"optimizer '{cfg.optimizer.name}' schedules its learning rate over the run's length, "
                             f"so resuming cannot lengthen the run in {where} ({', '.join(extended)}) without "
                             f"changing the steps it already took; start a new run with the longer budget (another "
                             f"hydra.run.dir), or fix the horizon from the start with +optimizer.total_steps=<steps>.")
    if state == "completed" and not extended:
        raise RunAlreadyCompleted(f"the run in {where} already completed; start a new run instead of resuming it, "
                                  f"or raise trainer.epochs to continue it to a longer budget.")
    check_metrics_file(run_dir)
    return Plan(resume=True, clean=False, extended=extended)


def _effective(config: dict) -> dict:
    """The config as the loop reads its budget: the epochs of a step-budget run are not used, and a synthetic
    objective's evaluation interval defaults to steps/20 (build.build_task)."""
    from ...models import SYNTHETIC_MODELS

    t = dict(config.get("trainer") or {})
    if t.get("steps") is not None:
        t.pop("epochs", None)
        if (config.get("model") or {}).get("name") in SYNTHETIC_MODELS and t.get("steps_per_epoch") is None:
            t["steps_per_epoch"] = max(1, int(t["steps"]) // 20)
    return {**config, "trainer": t}


def compare_identity(cfg: DictConfig, sidecar: dict, where: str) -> list[str]:
    """Refuse a resume whose identity differs from the checkpoint's; return the raised budget keys."""
    import yaml

    try:
        old = yaml.safe_load(sidecar.get("config") or "")
        if not isinstance(old, dict):
            raise ValueError("no config")
    except (yaml.YAMLError, ValueError):
        raise HooptError(f"the checkpoint in {where} does not record its run's config, so a resume cannot be "
                         f"checked against it; start a new run (another hydra.run.dir).") from None
    new = OmegaConf.to_container(cfg, resolve=True)
    old, new = _effective(old), _effective(new)
    flat_old, flat_new = _flat(old), _flat(new)
    diff = differences(old, new)
    raised = []
    for key in [k for k in diff if k in BUDGET]:
        a, b = flat_old.get(key), flat_new.get(key)
        if isinstance(a, int) and isinstance(b, int) and b > a:
            interval = flat_old.get("trainer.steps_per_epoch")
            if key == "trainer.steps" and not (isinstance(interval, int) and interval > 0 and a % interval == 0):
                continue  # the last epoch may have been cut short, where a longer run goes on: refused below
            raised.append(f"{key}: {a} -> {b}")
            diff.remove(key)
    if diff:
        # what was chosen first (optimizer.name says more than its ten hyperparameters), class paths left out
        diff = sorted([k for k in diff if not k.rsplit(".", 1)[-1].startswith("_")] or diff,
                      key=lambda k: (not k.endswith(".name"), k))
        shown = "; ".join(f"{k}: {_show(flat_old.get(k, '(absent)'))} in the checkpoint, "
                          f"{_show(flat_new.get(k, '(absent)'))} now" for k in diff[:4])
        more = f" and {len(diff) - 4} more" if len(diff) > 4 else ""
        raise HooptError(f"resume would change the run in {where} ({shown}{more}); resume with the run's own "
                         f"settings (see its .hydra/overrides.yaml), or start a new run (another hydra.run.dir); "
                         f"only trainer.epochs (for a synthetic objective trainer.steps, keeping "
                         f"trainer.steps_per_epoch) may be raised.")
    return raised


def _flat(config: dict) -> dict:
    from .identity import flatten

    return flatten(config)


def _show(value) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


def check_metrics_file(run_dir: str) -> None:
    """A resume keeps metrics.jsonl up to the checkpoint: every line must be a JSON record."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                if not isinstance(json.loads(line), dict):
                    raise ValueError
            except ValueError:
                raise HooptError(f"{path} is damaged at line {number}, so this run cannot be resumed with its logs "
                                 f"intact; start a new run (another hydra.run.dir).") from None


# -- what the owner writes --------------------------------------------------------------------------------------

# A fresh start in a dir that an earlier attempt left without a checkpoint (killed in its first epoch, or failed):
# its logs would otherwise be appended to, mixing two runs' curves.
STALE_LOGS = ("metrics.jsonl", "status.json", "records.npz", SIDECAR)


def clean_earlier_attempt(run_dir: str) -> None:
    for name in os.listdir(run_dir):
        path = os.path.join(run_dir, name)
        if name in STALE_LOGS or name.startswith("events.out.tfevents."):
            os.remove(path)
        elif os.path.isdir(path) and not name.startswith("."):  # TensorBoard sub-runs (e.g. HParams)
            for root, _, files in os.walk(path):
                for file in files:
                    if file.startswith("events.out.tfevents."):
                        os.remove(os.path.join(root, file))
    log = os.path.join(run_dir, "train.log")
    if os.path.exists(log):
        os.truncate(log, 0)  # truncated, not removed: a logging handler may already hold it open


def write_hydra_record(run_dir: str, cfg: DictConfig) -> None:
    """``.hydra/config.yaml``, ``hydra.yaml`` and ``overrides.yaml``, as Hydra writes them at job start; hoopt-train
    turns Hydra's own writing off (hydra.output_subdir=null) so that they are written only by the dir's owner."""
    from hydra.core.hydra_config import HydraConfig

    folder = os.path.join(run_dir, ".hydra")
    os.makedirs(folder, exist_ok=True)
    files = {"config.yaml": cfg, "hydra.yaml": HydraConfig.instance().cfg,
             "overrides.yaml": HydraConfig.get().overrides.task}
    for name, node in files.items():
        with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
            f.write(OmegaConf.to_yaml(node))
