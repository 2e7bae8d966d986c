"""The run config outside ``hoopt-train``: ``compose_config`` gives tests, benchmarks and notebooks what
``hoopt-train <overrides>`` would run (configs/train.yaml with its defaults, configs/tuned/ included), and
``tuned_optimizer_options`` the optimizer values a training run of that model would use, so a benchmark measures
the same optimizer that training runs."""

from __future__ import annotations

import os
from collections.abc import Sequence

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from ... import configs

CONFIG_DIR = os.path.dirname(os.path.abspath(configs.__file__))


def compose_config(overrides: Sequence[str] = (), *, hydra: bool = False) -> DictConfig:
    """The composed, unresolved config of ``hoopt-train <overrides>``; ``hydra=True`` keeps the ``hydra`` node
    (sweeper params, run dir). Nothing is written to disk. Callable inside a running Hydra app (``hoopt-train``,
    a test under ``initialize_config_dir``): Hydra keeps one global instance, which is set aside and put back."""
    global_hydra = GlobalHydra.instance()
    outer = global_hydra.hydra if global_hydra.is_initialized() else None
    global_hydra.clear()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            return compose(config_name="train", overrides=list(overrides), return_hydra_config=hydra)
    finally:
        if outer is not None:
            GlobalHydra.instance().clear()
            GlobalHydra.instance().initialize(outer)


def tuned_optimizer_options(model: str, optimizer: str, overrides: Sequence[str] = ()) -> dict:
    """The resolved ``optimizer`` node of ``hoopt-train model=<model> optimizer=<optimizer> <overrides>``: the
    optimizer's defaults with configs/tuned/<model>_<optimizer>.yaml applied, without ``name`` and ``_target_``,
    ready for ``cls(params, **options)``. ``seed``, where the optimizer has one, is the run's default seed."""
    cfg = compose_config([f"model={model}", f"optimizer={optimizer}", *overrides])
    options = OmegaConf.to_container(cfg.optimizer, resolve=True)
    options.pop("name", None)
    options.pop("_target_", None)
    return options
