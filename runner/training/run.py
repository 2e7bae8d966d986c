"""``run(cfg)``: one training run from a composed config, in-process. Builds the run's pieces, runs the shared
loop and records the run's final status. ``hoopt-train`` (cli/train.py) calls it through Hydra; tests call it
with a config from Hydra's compose API."""

from __future__ import annotations

import os
import time

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ..errors import HooptError
from .checkpoint import has_checkpoint, load_checkpoint, read_status, write_status
from .hparams import write_hparams


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


def run(cfg: DictConfig, run_dir: str | None = None) -> dict:
    """Train one run in ``run_dir``: by default Hydra's output dir (``hydra.run.dir``, or the job's dir in a
    multirun); tests and scripts that compose a config themselves (presets.compose_config) pass it. Returns the
    final status record."""
    from .build import build_dataset, build_model_for, build_optimizer, build_task, pick_device, seed_everything
    from .logger import RunLogger
    from .loop import LoopSettings, TrainingLoop

    n_jobs = None
    if run_dir is None:
        hydra_config = HydraConfig.get()
        run_dir = hydra_config.runtime.output_dir
        n_jobs = hydra_config.launcher.get("n_jobs")
    os.makedirs(run_dir, exist_ok=True)
    resume_state = None
    if cfg.resume not in (False, None, "false"):
        resume_state = load_checkpoint(run_dir)
        previous = read_status(run_dir) or {}
        if previous.get("status") == "completed":
            raise HooptError(f"the run in {run_dir} already completed; start a new run instead of resuming it.")
    elif has_checkpoint(run_dir):
        raise HooptError(f"{run_dir} already holds a run's checkpoint; add resume=true to continue it, or choose "
                         f"another hydra.run.dir.")

    set_threads(cfg.trainer.num_threads, n_jobs)
    device = pick_device(str(cfg.trainer.device))
    seed_everything(int(cfg.seed), bool(cfg.trainer.deterministic))
    dataset = build_dataset(cfg)
    if dataset is not None:
        dataset = dataset.to(device)
    model = build_model_for(cfg, dataset, device)
    t = cfg.trainer
    if int(t.epochs) <= 0 and not t.steps:
        raise HooptError(f"trainer.epochs={t.epochs} trains nothing; give a positive number of epochs.")
    if int(t.batch_size) <= 0:
        raise HooptError(f"trainer.batch_size={t.batch_size} is invalid; give a positive batch size.")
    task = build_task(cfg, dataset, model, device)
    optimizer = build_optimizer(cfg, model, task.dependencies(model))
    settings = LoopSettings(
        epochs=int(t.epochs), steps=None if t.steps is None else int(t.steps),
        log_every=max(1, int(cfg.logger.log_every)), image_every=int(cfg.logger.image_every or 0),
        checkpoint=bool(t.checkpoint), progress=bool(t.progress),
        interrupt_after_epoch=t.get("interrupt_after_epoch"),
    )
    probes = build_probes(cfg, task)
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    logger = RunLogger(run_dir, resume_step=None if resume_state is None else resume_state["step"])
    loop = TrainingLoop(model, optimizer, task, settings, logger, run_dir, device, config_yaml, probes=probes)
    if resume_state is not None:
        loop.load_state_dict(resume_state)
    write_status(run_dir, "running", epoch=loop.epoch, step=loop.step)
    print(f"hoopt: training {cfg.model.name} with {cfg.optimizer.name} on "
          f"{task.description} ({device}); logs and TensorBoard events in "
          f"{os.path.abspath(run_dir)}", flush=True)
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
    print(f"hoopt: run {verdict} after {result.step} steps ({wall:.1f} s){': ' + result.message if result.message else ''}; "
          f"view with: tensorboard --logdir {os.path.abspath(run_dir)}", flush=True)
    return {"status": result.status, **record}
