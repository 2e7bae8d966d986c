"""Reading a run's ``metrics.jsonl`` back (RunLogger writes it: one JSON object per logging event, keyed by the
TensorBoard tags). One reader for everything that summarises a run: the closing line, HParams, a tuning
objective and the reports. It imports nothing heavy, so the tuning sweeper can use it."""

from __future__ import annotations

import json
import os

METRICS = "metrics.jsonl"


def read_metrics(run_dir: str) -> list[dict]:
    """The run's records in order; [] when there is no file. A line a kill cut short (or anything that is not a
    JSON object) is skipped: a summary of a run must not fail on its last, half-written event."""
    records = []
    try:
        with open(os.path.join(run_dir, METRICS)) as f:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict):
                    records.append(record)
    except FileNotFoundError:
        pass
    return records


def last_metrics(run_dir: str) -> dict[str, float]:
    """The latest numeric value of every tag (the closing line's final evaluation)."""
    latest: dict[str, float] = {}
    for record in read_metrics(run_dir):
        latest.update({k: v for k, v in record.items() if isinstance(v, (int, float))})
    return latest
