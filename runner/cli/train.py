"""``hoopt-train``: the Hydra entry point. Checks the command line, composes the config and hands it to
``training.run.run``. User errors end in one sentence on stderr (exit 2); a diverged run is a normal outcome
(status ``diverged``, exit 0) so a multirun sweep goes on; Ctrl-C ends in one line that says how to resume
(exit 130).

Hydra writes ``.hydra/`` and opens ``train.log`` in a job's folder before the job starts, which would let a
refused command overwrite the record of the run it refused to touch. hoopt-train therefore turns that writing
off (``hydra.output_subdir=null``, the log file opened on its first line) and lets the run write its ``.hydra/``
once it owns the dir; for a single run, ``RunDirCheck`` refuses before Hydra even creates the folder."""

from __future__ import annotations

import copy
import os
import shlex
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from ..errors import HooptError, RunAlreadyCompleted, RunInterrupted
from .argv_checks import check_group_choices, check_override_keys, check_run_dir_argument, rewrite_resume_path
from .usage import USAGE_FLAGS, print_usage

# The command as the user typed it (for the resume line printed on Ctrl-C).
TYPED: list[str] = []


class RunDirCheck(Callback):
    """Refuses a single run before Hydra creates or writes its folder (registered by ``main``)."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        from ..training.run import preflight

        run_dir = str(OmegaConf.select(config, "hydra.run.dir"))
        task = copy.deepcopy(config)
        with read_write(task), open_dict(task):
            del task["hydra"]
        try:
            preflight(task, run_dir)
        except HooptError as error:
            print(f"hoopt: error: {error}", file=sys.stderr, flush=True)
            sys.exit(2)


def resume_line(stop: RunInterrupted, multirun: bool, sweep_dir: str | None) -> str:
    """One line: where the run stopped and the exact command that continues it."""
    args = [a for a in TYPED if not a.startswith(("resume=", "hydra.run.dir="))]
    if multirun:
        args = [a for a in args if not a.startswith("hydra.sweep.dir=")]
        args += [f"hydra.sweep.dir={os.path.abspath(sweep_dir)}", "resume=true"]
    elif stop.checkpoint is not None:
        args.append(f"resume={stop.run_dir}")
    else:
        args.append(f"hydra.run.dir={stop.run_dir}")  # nothing to resume: the same run, from the start, in place
    command = " ".join(["hoopt-train", *(shlex.quote(a) for a in args)])
    where = f"epoch {stop.epoch}, step {stop.step}" + (f" of {stop.total_steps}" if stop.total_steps else "")
    if stop.checkpoint is not None:
        saved = f"the last checkpoint is from epoch {stop.checkpoint[0]} (step {stop.checkpoint[1]})"
        how = "resume the sweep with" if multirun else "resume with"
    else:
        saved = "there is no checkpoint yet"
        how = "resume the sweep with" if multirun else "start it again with"
    return f"hoopt: stopped by Ctrl-C at {where} in {stop.run_dir}; {saved}; {how}: {command}"


@hydra.main(version_base="1.3", config_path="../../configs", config_name="train")
def hydra_main(cfg: DictConfig) -> float:
    """Returns the run's objective (runner/training/objective.py: tune.metric, tune.mode, tune.reduce) for a
    sweeper; a run that did not complete returns the value that ranks last."""
    from ..training.objective import objective_value
    from ..training.run import run

    hydra_config = HydraConfig.get()
    multirun = hydra_config.mode.name == "MULTIRUN"
    run_dir = hydra_config.runtime.output_dir
    try:
        record = run(cfg)
    except RunAlreadyCompleted as done:
        if not multirun:
            print(f"hoopt: error: {done}", file=sys.stderr, flush=True)
            sys.exit(2)
        # A resumed sweep goes over every job; the finished ones are simply left as they are.
        print(f"hoopt: {hydra_config.runtime.output_dir} already completed; left as it is.", flush=True)
        return objective_value(cfg, run_dir)
    except HooptError as error:
        print(f"hoopt: error: {error}", file=sys.stderr, flush=True)
        # In a multirun one bad job must not stop the sweep: report it and let the launcher go on.
        if not multirun:
            sys.exit(2)
        return objective_value(cfg, run_dir, {"status": "failed"})  # ranks last in the sweeper's study
    except RunInterrupted as stop:
        print(resume_line(stop, multirun, hydra_config.sweep.dir if multirun else None), file=sys.stderr, flush=True)
        sys.exit(130)
    return objective_value(cfg, run_dir, record)


def hydra_settings(argv: list[str]) -> list[str]:
    """Hydra overrides that keep Hydra from writing into a run dir before the run owns it (module docstring)."""
    extra = ["hydra.output_subdir=null", "+hydra.callbacks.hoopt_run_dir._target_=hoopt.runner.cli.train.RunDirCheck"]
    if not any(a.startswith(("hydra/job_logging=", "hydra.job_logging")) for a in argv):
        extra.append("+hydra.job_logging.handlers.file.delay=true")
    return extra


def with_hydra_settings(argv: list[str]) -> list[str]:
    """``argv`` with ``hydra_settings`` placed next to the user's own overrides: argparse takes the overrides as one
    run of positional arguments, so they must not end up on both sides of a flag (``--package hydra.launcher``)."""
    first = next((i for i, a in enumerate(argv) if "=" in a and not a.startswith("-")), len(argv))
    return [*argv[:first], *hydra_settings(argv), *argv[first:]]


def main() -> None:
    argv = sys.argv[1:]
    TYPED[:] = argv
    try:
        if any(a in USAGE_FLAGS for a in argv):
            print_usage()  # then Hydra's own help
        check_group_choices(argv)
        check_override_keys(argv)
        argv = rewrite_resume_path(argv)
        check_run_dir_argument(argv)
        sys.argv = [sys.argv[0], *with_hydra_settings(argv)]
        hydra_main()
    except HooptError as error:
        print(f"hoopt: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # before a run owned its dir (a run's own Ctrl-C ends in hydra_main)
        print("hoopt: stopped by Ctrl-C before training started; nothing was written.", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
