"""``run(cfg)``: one training run from a composed config, in-process. Checks the config, takes the run dir
(runner/training/run_dir.py: a refused run writes nothing), builds the run's pieces, runs the shared loop and
records the run's final status. ``hoopt-train`` (cli/train.py) calls it through Hydra; tests call it with a config
from Hydra's compose API."""

from __future__ import annotations

import os
import time

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ..errors import HooptError, RunInterrupted
from .checkpoint import has_checkpoint, load_checkpoint, read_sidecar, remove_stale_temporaries, write_status
from .run_dir import Plan, RunDirLock, clean_earlier_attempt, inspect_run_dir, write_hydra_record
from .settings import check_config


def set_threads(requested, n_jobs: int | None = None) -> None:
    """``auto``: all cores for a single run; under a parallel launcher (joblib's n_jobs), the cores divided among
    the jobs, so parallel jobs do not oversubscribe the machine."""
    import torch

    if requested not in (None, "auto"):
        torch.set_num_threads(int(requested))
        return
    if n_jobs:
        cores = os.cpu_count() or 1
        workers = cores if n_jobs < 0 else min(n_jobs, cores)
        torch.set_num_threads(max(1, cores // workers))


def build_probes(cfg: DictConfig, task) -> list:
    if not cfg.probe.enabled:
        return []
    from ..analysis.hbar_probe import HbarProbe
    from ..tasks import ClassificationTask

    if not isinstance(task, ClassificationTask):
        raise HooptError(f"probe.enabled=true measures Hbar on a training set, and model '{cfg.model.name}' has none; "
                         f"drop the override or pick a dataset-backed model.")
    return [HbarProbe(task, cfg.probe.max_examples, int(cfg.probe.chunk_size))]


def preflight(cfg: DictConfig, run_dir: str, *, sweep_job: bool = False) -> Plan:
    """Everything that can refuse the run before it writes anything: the config's values, the device, and what
    the run dir holds. hoopt-train calls it before Hydra creates a single run's folder; ``run`` again."""
    from .build import pick_device

    check_config(cfg)
    pick_device(str(cfg.trainer.device))
    return inspect_run_dir(cfg, run_dir, sweep_job=sweep_job)


def run(cfg: DictConfig, run_dir: str | None = None) -> dict:
    """Train one run in ``run_dir``: by default Hydra's output dir (``hydra.run.dir``, or the job's dir in a
    multirun); tests and scripts that compose a config themselves (presets.compose_config) pass it. Returns the
    final status record."""
    n_jobs, sweep_job, from_hydra = None, False, run_dir is None
    if run_dir is None:
        hydra_config = HydraConfig.get()
        run_dir = hydra_config.runtime.output_dir
        n_jobs = hydra_config.launcher.get("n_jobs")
        sweep_job = hydra_config.mode.name == "MULTIRUN"
    preflight(cfg, run_dir, sweep_job=sweep_job)
    lock = RunDirLock.take(run_dir)
    try:
        # Under the lock, again: the dir may have changed hands between the first look and the lock.
        plan = inspect_run_dir(cfg, run_dir, sweep_job=sweep_job, check_lock=False)
        resume_state = load_checkpoint(run_dir) if plan.resume else None
    except BaseException:
        lock.release()
        raise
    # From here on the dir is this run's: it records what becomes of it.
    loop_box: list = []
    try:
        lock.write_owner()
        remove_stale_temporaries(run_dir)
        if plan.clean:
            clean_earlier_attempt(run_dir)
        if from_hydra:
            write_hydra_record(run_dir, cfg)
        start = {} if resume_state is None else {"epoch": resume_state["epoch"], "step": resume_state["step"]}
        write_status(run_dir, "running", **start)
        if plan.note:
            print(f"hoopt: {plan.note}.", flush=True)
        if plan.extended:
            print(f"hoopt: continuing to a longer budget ({', '.join(plan.extended)}).", flush=True)
        return train(cfg, run_dir, n_jobs, resume_state, loop_box)
    except HooptError as error:
        write_status(run_dir, "failed", message=str(error))
        raise
    except KeyboardInterrupt:
        raise interrupted(run_dir, loop_box[0] if loop_box else None, resume_state) from None
    except Exception as error:
        detail = str(error).splitlines()[0] if str(error) else ""
        write_status(run_dir, "failed", message=f"{type(error).__name__}: {detail}")
        raise
    finally:
        lock.release()


def interrupted(run_dir: str, loop, resume_state: dict | None) -> RunInterrupted:
    """Ctrl-C: record where the run stopped (status ``interrupted``) and say it to the command line."""
    if loop is not None:
        epoch, step, total = loop.epoch, loop.step, loop.total_steps
    else:
        epoch, step, total = (resume_state or {}).get("epoch", 0), (resume_state or {}).get("step", 0), None
    checkpoint = None
    if has_checkpoint(run_dir):
        try:
            record = read_sidecar(run_dir) or {}
            checkpoint = (int(record["epoch"]), int(record["step"]))
        except (HooptError, KeyError, TypeError, ValueError):
            checkpoint = None
    write_status(run_dir, "interrupted", epoch=epoch, step=step,
                 message="stopped by the user (Ctrl-C)" + ("" if checkpoint else ", before its first checkpoint"))
    return RunInterrupted(os.path.abspath(run_dir), epoch, step, total, checkpoint)


def loop_settings(cfg: DictConfig):
    """The loop's settings from the (checked) config."""
    from .loop import LoopSettings

    t, log = cfg.trainer, cfg.logger
    extra = {}
    if "divergence_factor" in t:  # trainer.divergence_factor; LoopSettings' default otherwise
        extra["divergence_factor"] = None if t.divergence_factor is None else float(t.divergence_factor)
    if "progress_every_s" in log:
        extra["progress_interval_s"] = float(log.progress_every_s)
    return LoopSettings(
        epochs=int(t.epochs), steps=None if t.steps is None else int(t.steps),
        log_every=int(log.log_every), image_every=int(log.image_every or 0),
        checkpoint=bool(t.checkpoint), progress=bool(t.progress),
        interrupt_after_epoch=t.get("interrupt_after_epoch"), images_each_epoch=bool(log.get("images_each_epoch")),
        **extra,
    )


def closing_summary(run_dir: str) -> str:
    """The final evaluation in words: test loss and accuracy, or a synthetic objective's loss and gap."""
    from .metrics_file import last_metrics

    metrics = last_metrics(run_dir)
    if "test/acc" in metrics:
        return f"test loss {metrics['test/loss']:.4g}, test accuracy {metrics['test/acc']:.4f}"
    if "eval/loss" in metrics:
        return f"final loss {metrics['eval/loss']:.4g} (optimum {metrics['eval/optimum']:.4g}, gap {metrics['eval/gap']:.4g})"
    return ""


def train(cfg: DictConfig, run_dir: str, n_jobs: int | None, resume_state: dict | None, loop_box: list) -> dict:
    """The run itself, in a dir it owns."""
    from .build import build_dataset, build_model_for, build_optimizer, build_task, pick_device, seed_everything
    from .hparams import write_hparams
    from .logger import RunLogger
    from .loop import TrainingLoop, run_dependencies
    from .progress import RunConsole
    from .records import RecordLog

    set_threads(cfg.trainer.num_threads, n_jobs)
    device = pick_device(str(cfg.trainer.device))
    seed_everything(int(cfg.seed), bool(cfg.trainer.deterministic))
    dataset = build_dataset(cfg)
    if dataset is not None:
        dataset = dataset.to(device)
    model = build_model_for(cfg, dataset, device)
    task = build_task(cfg, dataset, model, device)
    settings = loop_settings(cfg)
    optimizer = build_optimizer(cfg, model, run_dependencies(model, task, settings))
    probes = build_probes(cfg, task)
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    resume_step = None if resume_state is None else resume_state["step"]
    logger = RunLogger(run_dir, resume_step=resume_step)
    console = RunConsole(run_dir)
    loop = TrainingLoop(model, optimizer, task, settings, logger, run_dir, device, config_yaml, probes=probes,
                        console=console, records=RecordLog(run_dir, resume_step))
    loop_box.append(loop)
    if resume_state is not None:
        loop.load_state_dict(resume_state)
    write_status(run_dir, "running", epoch=loop.epoch, step=loop.step)
    console.say(f"hoopt: training {cfg.model.name} with {cfg.optimizer.name} on {task.description} ({device}), "
                f"{loop.total_steps} steps; logs and TensorBoard events in {os.path.abspath(run_dir)}")
    started = time.perf_counter()
    try:
        result = loop.run()
    finally:
        logger.flush()
    wall = time.perf_counter() - started
    record = {"epoch": result.epoch, "step": result.step, "wall_s": round(wall, 3)}
    if result.message:
        record["message"] = result.message
    if result.status != "interrupted":
        write_status(run_dir, result.status, **record)
        if cfg.logger.hparams:
            write_hparams(logger.writer, cfg, run_dir, result.status)
    logger.close()
    verdict = {"completed": "finished", "diverged": "DIVERGED", "interrupted": "was interrupted"}[result.status]
    final = closing_summary(run_dir)
    console.say(f"hoopt: run {verdict} after {result.step} steps ({wall:.1f} s)"
                f"{': ' + result.message if result.message else ''}{'; ' + final if final else ''}; "
                f"view with: tensorboard --logdir {os.path.abspath(run_dir)}")
    return {"status": result.status, **record}
