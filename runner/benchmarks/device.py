"""``--device cpu|cuda|auto``, read the same way by every benchmark."""

from __future__ import annotations

import argparse

import torch


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when a CUDA device is available, else the CPU; ``cuda`` without one is refused here,
    before any model is built, rather than deep inside the first ``.to(device)``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and name != "cuda" and not name.startswith("cuda:"):
        raise argparse.ArgumentTypeError(f"'{name}' is not a device; use cpu, cuda or auto")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"'{name}' was asked for but no CUDA device is available; "
                                         f"use cpu or auto")
    return torch.device(name)


def add_device_argument(parser: argparse.ArgumentParser, default: str = "cpu") -> None:
    """Adds ``--device``; the parsed value is a resolved ``torch.device``."""
    parser.add_argument("--device", type=resolve_device, default=default,
                        help=f"cpu, cuda (or cuda:N) or auto, which picks cuda when available (default: {default})")
