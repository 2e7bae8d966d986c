"""What a run says while it trains: a tqdm bar on a terminal, and without one (sbatch, submitit, nohup, `| tee`)
a compact line at a time interval, so a 100k-step run is never silent. Every line also goes to the run's log,
``train.log`` in the run dir."""

from __future__ import annotations

import math
import os
import sys
import time

from tqdm import tqdm

LOG_NAME = "train.log"


class RunConsole:
    """Lines for the user: printed to stdout and appended to the run's ``train.log`` (with the time)."""

    def __init__(self, run_dir: str):
        self.path = os.path.join(run_dir, LOG_NAME)

    def say(self, message: str, to_stdout: bool = True) -> None:
        if to_stdout:
            print(message, flush=True)
        with open(self.path, "a") as log:
            log.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {message}\n")


def duration(seconds: float) -> str:
    """3725 -> '1h02m', 125 -> '2m05s', 7 -> '7s'."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress:
    """Reports the loop's position. On a terminal (or ``interactive=True``): a tqdm bar whose postfix shows the epoch,
    the last logged loss and the last validation accuracy. Otherwise: one line every ``interval_s`` seconds, to
    stdout and train.log: step/total, epoch, loss, steps/s over the last interval, ETA."""

    def __init__(self, console: RunConsole, total_steps: int, total_epochs: int, start_step: int, enabled: bool = True,
                 interval_s: float = 60.0, interactive: bool | None = None):
        self.console, self.total_steps, self.total_epochs = console, total_steps, total_epochs
        self.enabled, self.interval_s = enabled, interval_s
        self.interactive = sys.stdout.isatty() if interactive is None else interactive
        self.step, self.epoch, self.loss, self.val_acc = start_step, 0, math.nan, None
        self._last_time, self._last_step = time.perf_counter(), start_step
        self.bar = None
        if enabled and self.interactive:
            self.bar = tqdm(total=total_steps, initial=start_step, dynamic_ncols=True, desc="train")

    def update(self, step: int, epoch: int) -> None:
        """Called after every step (cheap: no device sync)."""
        if self.bar is not None:
            self.bar.update(step - self.step)
        self.step, self.epoch = step, epoch
        if self.enabled and self.bar is None and time.perf_counter() - self._last_time >= self.interval_s:
            self.console.say(self.line())

    def logged(self, loss: float) -> None:
        """The mean training loss of the last logging interval."""
        self.loss = loss
        self._postfix()

    def evaluated(self, metrics: dict[str, float]) -> None:
        if "val/acc" in metrics:
            self.val_acc = metrics["val/acc"]
        self._postfix()

    def line(self) -> str:
        now = time.perf_counter()
        rate = (self.step - self._last_step) / max(now - self._last_time, 1e-9)
        self._last_time, self._last_step = now, self.step
        eta = (self.total_steps - self.step) / rate if rate > 0 else math.inf
        parts = [f"step {self.step}/{self.total_steps} ({100 * self.step / max(self.total_steps, 1):.1f}%)",
                 f"epoch {self.epoch + 1}/{self.total_epochs}", f"loss {self.loss:.4g}"]
        if self.val_acc is not None:
            parts.append(f"val acc {self.val_acc:.4f}")
        parts += [f"{rate:.3g} steps/s", f"ETA {duration(eta)}"]
        return "hoopt: " + ", ".join(parts)

    def _postfix(self) -> None:
        if self.bar is None:
            return
        postfix = {"epoch": f"{self.epoch + 1}/{self.total_epochs}", "loss": f"{self.loss:.4g}"}
        if self.val_acc is not None:
            postfix["val_acc"] = f"{self.val_acc:.4f}"
        self.bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
