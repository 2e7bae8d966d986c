"""``hoopt-train``: the Hydra entry point. Checks the command line, composes the config and hands it to
``training.run.run``. User errors end in one sentence on stderr (exit 2); a diverged run is a normal outcome
(status ``diverged``, exit 0) so a multirun sweep goes on."""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ..errors import HooptError
from ..training.checkpoint import write_status
from ..training.run import run
from .argv_checks import check_group_choices, rewrite_resume_path


@hydra.main(version_base="1.3", config_path="../../configs", config_name="train")
def hydra_main(cfg: DictConfig) -> None:
    run_dir = HydraConfig.get().runtime.output_dir
    try:
        run(cfg)
    except HooptError as error:
        write_status(run_dir, "failed", message=str(error))
        print(f"hoopt: error: {error}", file=sys.stderr, flush=True)
        # In a multirun one bad job must not stop the sweep: report it and let the launcher go on.
        if HydraConfig.get().mode.name != "MULTIRUN":
            sys.exit(2)
    except KeyboardInterrupt:
        write_status(run_dir, "interrupted", message="stopped by the user (Ctrl-C); resume=true continues it")
        raise
    except Exception as error:
        write_status(run_dir, "failed", message=f"{type(error).__name__}: {error}")
        raise


def main() -> None:
    argv = sys.argv[1:]
    try:
        check_group_choices(argv)
        sys.argv = [sys.argv[0], *rewrite_resume_path(argv)]
        hydra_main()
    except HooptError as error:
        print(f"hoopt: error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
