"""Turns the composed config into the run's pieces, each failure worded as advice (HooptError)."""

from __future__ import annotations

import inspect
import os
import random

import numpy as np
import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from ...models import MODELS, SYNTHETIC_MODELS, build_model
from ..data import DATASETS, Dataset, load_dataset
from ..tasks import ClassificationTask, SyntheticTask
from ..errors import HooptError
from .settings import check_optimizer_values


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise HooptError(f"trainer.device={name} was asked for but no CUDA device is available; use "
                         f"trainer.device=cpu or trainer.device=auto.")
    if name != "cpu" and not name.startswith("cuda"):
        raise HooptError(f"trainer.device={name} is not a device; use auto, cpu or cuda.")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def build_dataset(cfg: DictConfig) -> Dataset | None:
    """None for the synthetic objectives, which have a batch stream instead of a dataset."""
    if cfg.model.name in SYNTHETIC_MODELS:
        return None
    name = cfg.dataset.name
    if name not in DATASETS:
        raise HooptError(f"unknown dataset '{name}'; choose one of: {', '.join(DATASETS)}.")
    return load_dataset(name, str(cfg.dataset.root), bool(cfg.dataset.download), bool(cfg.dataset.augment))


def build_model_for(cfg: DictConfig, dataset: Dataset | None, device: torch.device) -> torch.nn.Module:
    name = cfg.model.name
    if name not in MODELS:
        raise HooptError(f"unknown model '{name}'; choose one of: {', '.join(sorted(MODELS))}.")
    raw = cfg.model.get("kwargs")
    kwargs = {} if raw is None else OmegaConf.to_container(raw, resolve=True)
    shape = None if dataset is None else dataset.input_shape
    classes = None if dataset is None else dataset.num_classes
    try:
        model = build_model(name, input_shape=shape, num_classes=classes, **kwargs).to(device)
        if dataset is not None:  # one example through the network, to catch a model/data mismatch now
            with torch.no_grad():
                model(dataset.make_batch(dataset.train.inputs[:2], dataset.train.targets[:2], None)[0].to(device))
    except (RuntimeError, ValueError, TypeError) as error:
        what = f"dataset '{dataset.name}' (inputs {shape}, {classes} classes)" if dataset else "these settings"
        raise HooptError(f"model '{name}' does not fit {what}: {str(error).splitlines()[0]}; pick a matching "
                         f"dataset= or model= (each model's paper dataset is the default).") from None
    return model


def build_task(cfg: DictConfig, dataset: Dataset | None, model: torch.nn.Module, device: torch.device):
    """The run's task (the one place that tells dataset-backed from synthetic runs); its generator decides the data
    order and the synthetic stream and is seeded with the run's seed."""
    t = cfg.trainer
    generator = torch.Generator(device=device).manual_seed(int(cfg.seed))
    l2 = float(cfg.model.l2)
    if dataset is None:
        steps_per_epoch = t.steps_per_epoch or max(1, (t.steps or 1000) // 20)
        return SyntheticTask(model, generator, device, int(steps_per_epoch), l2)
    try:
        return ClassificationTask(dataset, int(t.batch_size), int(t.eval_batch_size), generator, device, l2,
                                  t.get("final_eval_examples"))
    except ValueError as error:  # e.g. a batch larger than the dataset
        raise HooptError(f"{error}; change the setting or the dataset.") from None


def dependencies_taken(cls, options) -> set[str]:
    """The run dependencies (optimizers/protocol.py) that ``cls``'s constructor names and ``options`` (its config)
    does not set: what a run passes it."""
    from ...optimizers.protocol import RUN_DEPENDENCIES

    accepted = inspect.signature(cls).parameters
    return {name for name in RUN_DEPENDENCIES if name in accepted and name not in options}


def run_dependencies_taken(cfg: DictConfig) -> set[str]:
    """dependencies_taken for the run's optimizer config; empty when the class cannot be loaded (build_optimizer
    says why)."""
    try:
        cls = get_class(str(cfg.optimizer._target_))
    except Exception:
        return set()
    return dependencies_taken(cls, cfg.optimizer)


def build_optimizer(cfg: DictConfig, model: torch.nn.Module, dependencies: dict) -> torch.optim.Optimizer:
    """``cls(model.named_parameters(), **hyperparameters, **dependencies)``: the dependencies passed are those the
    constructor names (optimizers/protocol.py), so plain torch.optim classes receive none."""
    options = OmegaConf.to_container(cfg.optimizer, resolve=True)
    check_optimizer_values(options)  # finite, modest numbers and lr > 0, whatever the class checks itself
    name = options.pop("name", "?")
    target = options.pop("_target_", None)
    if target is None:
        raise HooptError(f"optimizer '{name}' has no _target_ in its config; add the class path to its yaml.")
    try:
        cls = get_class(target)
    except Exception as error:  # a missing optional package, e.g. kfac-pytorch
        raise HooptError(f"optimizer '{name}' cannot be loaded: {error}") from None
    taken = dependencies_taken(cls, options)
    given = {key: value for key, value in dependencies.items() if key in taken}
    try:
        return cls(model.named_parameters(), **options, **given)
    except ImportError as error:  # an optional package (kfac-pytorch): its message says how to install it
        raise HooptError(str(error).splitlines()[0]) from None
    except MemoryError as error:  # the optimizer's own estimate, which already says what to do
        raise HooptError(f"optimizer '{name}' does not fit: {str(error).splitlines()[0]}") from None
    except (ValueError, TypeError, ArithmeticError) as error:  # ArithmeticError: int(inf), float overflow
        detail = str(error).splitlines()[0].rstrip(".")
        raise HooptError(f"optimizer '{name}' rejected its settings: {detail}; change the optimizer.<key>=... "
                         f"override that sets it.") from None
