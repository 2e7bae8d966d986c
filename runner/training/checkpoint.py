"""Checkpoints and the run's status file, written atomically so a kill never leaves half a file, and verified on
load so a damaged checkpoint is refused instead of resumed.

``checkpoint.pt`` is an ordinary ``torch.save`` file. Next to it, ``checkpoint.json`` holds its SHA-256 (hashed
while the bytes are written) and the run's resolved config, so resume can compare identities without loading
the tensors. The sidecar is replaced *before* the checkpoint and lists the new digest followed by the previous
ones: a process killed between the two replacements leaves the old checkpoint with a digest that is still
listed, so every state on disk is either verifiable or refused, never silently wrong. Temporary files carry the
writer's process id (``checkpoint.pt.tmp.<pid>``); the owner of a run dir removes stale ones."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import time

from ..errors import HooptError

CHECKPOINT = "checkpoint.pt"
SIDECAR = "checkpoint.json"
STATUS = "status.json"
KEPT_DIGESTS = 3  # the new digest and the two before it (see the module docstring)


def _tmp(path: str) -> str:
    return f"{path}.tmp.{os.getpid()}"


def _atomic_text(path: str, text: str) -> None:
    tmp = _tmp(path)
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class _HashingWriter:
    """A write-only file object for torch.save that hashes the bytes on their way to disk."""

    def __init__(self, file):
        self.file, self.hash = file, hashlib.sha256()

    def write(self, data) -> int:
        self.hash.update(data)
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_record(path: str, valid, consequence: str) -> dict | None:
    """A JSON record the runner wrote (status.json, checkpoint.json); None when there is none. A damaged one, or
    one that ``valid`` rejects, is a one-sentence error ending in ``consequence``."""
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            record = json.load(f)
        if not (isinstance(record, dict) and valid(record)):
            raise ValueError("missing fields")
        return record
    except (OSError, ValueError) as error:
        raise HooptError(f"{path} is damaged ({type(error).__name__}), so {consequence}; start a new run (another "
                         f"hydra.run.dir).") from None


def read_sidecar(run_dir: str) -> dict | None:
    """The checkpoint's sidecar, None when there is none; a damaged one is a one-sentence error."""
    return _read_record(os.path.join(run_dir, SIDECAR), lambda r: isinstance(r.get("sha256"), list),
                        "the checkpoint next to it cannot be verified")


def save_checkpoint(run_dir: str, state: dict) -> None:
    import torch

    path = os.path.join(run_dir, CHECKPOINT)
    tmp = _tmp(path)
    with open(tmp, "wb") as f:
        writer = _HashingWriter(f)
        torch.save(state, writer)
    try:
        previous = (read_sidecar(run_dir) or {}).get("sha256", [])
    except HooptError:  # a damaged sidecar lists nothing this process can vouch for
        previous = []
    digests = [writer.hash.hexdigest(), *[d for d in previous if isinstance(d, str)]][:KEPT_DIGESTS]
    record = {"sha256": digests, "epoch": state.get("epoch"), "step": state.get("step"), "config": state.get("config")}
    _atomic_text(os.path.join(run_dir, SIDECAR), json.dumps(record, indent=1) + "\n")
    os.replace(tmp, path)


def load_checkpoint(run_dir: str) -> dict:
    """The training state, after checking the file's SHA-256 against its sidecar."""
    import torch

    path = os.path.join(run_dir, CHECKPOINT)
    if not os.path.exists(path):
        raise HooptError(f"there is no checkpoint to resume from at {path}; point resume= at a run dir that "
                         f"has one, or start a fresh run without resume.")
    sidecar = read_sidecar(run_dir)
    if sidecar is None:
        raise HooptError(f"the checkpoint {path} has no checksum ({SIDECAR} is missing), so it cannot be verified; "
                         f"start a new run (another hydra.run.dir).")
    if sha256_of(path) not in sidecar["sha256"]:
        raise HooptError(f"the checkpoint {path} is corrupted (its SHA-256 does not match {SIDECAR}); start a new "
                         f"run (another hydra.run.dir), or resume from another run dir.")
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


def remove_stale_temporaries(run_dir: str) -> None:
    """Temporary files left by a process that died mid-write (only the dir's owner calls this)."""
    for path in glob.glob(os.path.join(glob.escape(run_dir), "*.tmp.*")) + glob.glob(
            os.path.join(glob.escape(run_dir), "*.tmp")):
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


def write_status(run_dir: str, status: str, **details) -> None:
    record = {"status": status, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **details}
    _atomic_text(os.path.join(run_dir, STATUS), json.dumps(record, indent=1) + "\n")


def read_status(run_dir: str) -> dict | None:
    """The status record, None when there is none; a damaged one is a one-sentence error."""
    return _read_record(os.path.join(run_dir, STATUS), lambda r: isinstance(r.get("status"), str),
                        f"the state of the run in {run_dir} is unknown")
