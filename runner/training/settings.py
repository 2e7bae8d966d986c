"""Every value of a run's config that the runner itself reads, checked in one place before anything is written.

``check_config(cfg)`` raises ``HooptError`` with one sentence naming the key, the value given and what is
expected; it reads the config only, so ``hoopt-train`` runs it before a run dir is created or touched. The
optimizer's own arguments are checked by the optimizer (optimizers/validation.py); here every numeric optimizer
value must also be finite and modest (``check_optimizer_values``), which covers the torch.optim and
pytorch-optimizer classes that check little themselves.
"""

from __future__ import annotations

import math
import numbers

from omegaconf import DictConfig, OmegaConf

from ..errors import HooptError

MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes 64 bits; numpy and random take any non-negative int
# An optimizer multiplies its learning rate by factors such as 1 / (1 - beta1) before the value meets a float32
# tensor; at 1e38 that product overflows float32 (3.4e38) and torch raises mid-step. No hyperparameter of any
# method here is meaningful beyond 1e30, so larger magnitudes are refused as typos.
MAX_MAGNITUDE = 1e30


def _shown(value) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def whole(key: str, value, minimum: int, *, maximum: int | None = None, allow_none: bool = False,
          example: int | None = None) -> int | None:
    """A whole number >= minimum (an integral float such as 1e5 is accepted: Hydra reads ``1e5`` as a float)."""
    if value is None and allow_none:
        return None
    hint = f", e.g. {key}={example if example is not None else max(minimum, 1)}"
    none = " (or null)" if allow_none else ""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise HooptError(f"{key}={_shown(value)} is not a whole number; give a whole number >= {minimum}{none}{hint}.")
    if isinstance(value, float) and not (math.isfinite(value) and value == int(value)):
        raise HooptError(f"{key}={value} is not a whole number; give a whole number >= {minimum}{none}{hint}.")
    number = int(value)
    if number < minimum or (maximum is not None and number > maximum):
        bound = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
        raise HooptError(f"{key}={number} is out of range; give a whole number {bound}{none}{hint}.")
    return number


def boolean(key: str, value) -> bool:
    if not isinstance(value, bool):
        raise HooptError(f"{key}={_shown(value)} is not a boolean; give {key}=true or {key}=false.")
    return value


def real(key: str, value, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise HooptError(f"{key}={_shown(value)} is not a finite number; give a number >= {minimum:g}.")
    if value < minimum:
        raise HooptError(f"{key}={value} is out of range; give a number >= {minimum:g}.")
    return float(value)


def check_config(cfg: DictConfig) -> None:
    """All of the runner's own keys (trainer, logger, seed, dataset, model, probe) and the optimizer's numbers."""
    try:
        c = OmegaConf.to_container(cfg, resolve=True)
    except Exception as error:  # e.g. ${oc.env:...} of a variable that is not set
        raise HooptError(f"the config cannot be resolved ({str(error).splitlines()[0]}); fix the override or the "
                         f"environment variable it names.") from None
    whole("seed", c.get("seed"), 0, maximum=MAX_SEED, example=0)
    resume = c.get("resume")
    if not (resume is None or isinstance(resume, (bool, str))):
        raise HooptError(f"resume={resume} is not understood; give resume=true or resume=<run dir>.")

    t = c.get("trainer") or {}
    steps = whole("trainer.steps", t.get("steps"), 1, allow_none=True, example=1000)
    whole("trainer.epochs", t.get("epochs"), 0 if steps is not None else 1, example=10)
    whole("trainer.steps_per_epoch", t.get("steps_per_epoch"), 1, allow_none=True, example=50)
    whole("trainer.batch_size", t.get("batch_size"), 1, example=100)
    whole("trainer.eval_batch_size", t.get("eval_batch_size"), 1, example=1000)
    if "final_eval_examples" in t:
        whole("trainer.final_eval_examples", t.get("final_eval_examples"), 1, allow_none=True, example=100)
    if "interrupt_after_epoch" in t:
        whole("trainer.interrupt_after_epoch", t.get("interrupt_after_epoch"), 1, allow_none=True)
    threads = t.get("num_threads")
    if threads not in (None, "auto"):
        if isinstance(threads, str):
            raise HooptError(f"trainer.num_threads={threads!r} is not understood; give auto or a whole number >= 1.")
        whole("trainer.num_threads", threads, 1, example=4)
    device = t.get("device")
    if not isinstance(device, str) or not (device in ("auto", "cpu", "cuda") or device.startswith("cuda:")):
        raise HooptError(f"trainer.device={_shown(device)} is not a device; give auto, cpu, cuda or cuda:<index>.")
    for key in ("deterministic", "checkpoint", "progress"):
        boolean(f"trainer.{key}", t.get(key))
    if t.get("divergence_factor") is not None:
        real("trainer.divergence_factor", t.get("divergence_factor"), 1.0)

    log = c.get("logger") or {}
    whole("logger.log_every", log.get("log_every"), 1, example=10)
    whole("logger.image_every", log.get("image_every"), 0, allow_none=True, example=100)
    boolean("logger.hparams", log.get("hparams"))
    if "images_each_epoch" in log:
        boolean("logger.images_each_epoch", log.get("images_each_epoch"))
    if "progress_every_s" in log:
        real("logger.progress_every_s", log.get("progress_every_s"), 0.0)

    d = c.get("dataset") or {}
    if not isinstance(d.get("root"), str):
        raise HooptError(f"dataset.root={_shown(d.get('root'))} is not a path; give the folder of the data files.")
    boolean("dataset.download", d.get("download"))
    boolean("dataset.augment", d.get("augment"))
    m = c.get("model") or {}
    from ...models import MODELS, SYNTHETIC_MODELS
    from ..data import DATASETS

    if m.get("name") not in MODELS:
        raise HooptError(f"unknown model {m.get('name')!r}; choose one of: {', '.join(sorted(MODELS))}.")
    if m.get("name") not in SYNTHETIC_MODELS and d.get("name") not in DATASETS:
        raise HooptError(f"unknown dataset {d.get('name')!r}; choose one of: {', '.join(DATASETS)}.")
    real("model.l2", m.get("l2"), 0.0)
    if not isinstance(m.get("kwargs") or {}, dict):
        raise HooptError(f"model.kwargs={m.get('kwargs')} is not a mapping; set one option as +model.kwargs.<arg>=.")

    p = c.get("probe") or {}
    if p:
        boolean("probe.enabled", p.get("enabled"))
        whole("probe.max_examples", p.get("max_examples"), 1, allow_none=True, example=1000)
        whole("probe.chunk_size", p.get("chunk_size"), 1, example=1000)
    check_optimizer_values(c.get("optimizer") or {})


def check_optimizer_values(options: dict, prefix: str = "optimizer") -> None:
    """Every number among the optimizer's values is finite and at most ``MAX_MAGNITUDE`` in size, and the learning
    rate is positive: the generic part of hyperparameter checking, for optimizers that check little themselves
    (torch.optim.Adam accepts lr=nan; pytorch-optimizer's classes accept inf)."""

    def visit(key: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if not str(k).startswith("_"):
                    visit(f"{key}.{k}", v)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                visit(f"{key}[{i}]", v)
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise HooptError(f"{key}={value} is not a finite number; give a finite value.")
            if abs(value) > MAX_MAGNITUDE:
                raise HooptError(f"{key}={value:g} is too large (more than {MAX_MAGNITUDE:g} in size overflows "
                                 f"float32 arithmetic); give a smaller value.")

    visit(prefix, options)
    if "lr" in options:
        lr = options["lr"]
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not lr > 0:
            raise HooptError(f"{prefix}.lr={_shown(lr)} is not a positive number; give a learning rate > 0.")
