"""Errors a user can cause. The CLI prints their message (one sentence that says what to do) instead of a
traceback and exits with status 2."""


class HooptError(Exception):
    """A problem with the user's input or environment, worded as advice."""


class RunAlreadyCompleted(HooptError):
    """A resume of a run that already completed (a resumed sweep skips such jobs instead of failing them)."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run that owned its dir: where it stopped, for the one line that says how to resume."""

    def __init__(self, run_dir: str, epoch: int, step: int, total_steps: int | None,
                 checkpoint: tuple[int, int] | None):
        super().__init__(run_dir)
        self.run_dir, self.epoch, self.step, self.total_steps = run_dir, epoch, step, total_steps
        self.checkpoint = checkpoint  # (epoch, step) of the last checkpoint on disk, None when there is none
