"""Checkpoints and the run's status file, both written atomically so a kill never leaves half a file."""

from __future__ import annotations

import json
import os
import time

import torch

from ..errors import HooptError

CHECKPOINT = "checkpoint.pt"
STATUS = "status.json"


def _atomic(path: str, write) -> None:
    tmp = path + ".tmp"
    write(tmp)
    os.replace(tmp, path)


def save_checkpoint(run_dir: str, state: dict) -> None:
    _atomic(os.path.join(run_dir, CHECKPOINT), lambda tmp: torch.save(state, tmp))


def load_checkpoint(run_dir: str) -> dict:
    path = os.path.join(run_dir, CHECKPOINT)
    if not os.path.exists(path):
        raise HooptError(f"there is no checkpoint to resume from at {path}; point resume= at a run dir that "
                         f"has one, or start a fresh run without resume.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(state, dict) or "model" not in state:
            raise ValueError("it does not hold a hoopt training state")
        return state
    except Exception as error:
        raise HooptError(f"the checkpoint {path} is corrupted or unreadable ({type(error).__name__}); delete it "
                         f"and start a fresh run, or resume from another run dir.") from None


def has_checkpoint(run_dir: str) -> bool:
    return os.path.exists(os.path.join(run_dir, CHECKPOINT))


def write_status(run_dir: str, status: str, **details) -> None:
    record = {"status": status, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **details}
    _atomic(os.path.join(run_dir, STATUS), lambda tmp: open(tmp, "w").write(json.dumps(record, indent=1) + "\n"))


def read_status(run_dir: str) -> dict | None:
    path = os.path.join(run_dir, STATUS)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)
