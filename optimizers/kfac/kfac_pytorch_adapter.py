"""optimizer=kfac_pytorch: SGD with momentum preconditioned by kfac-pytorch's ``KFACPreconditioner``.

A thin adapter for users who have installed kfac-pytorch (github.com/gpauloski/kfac-pytorch, import
name ``kfac``; it is not on the package registry). Each step: closure (forward, backward), then
``preconditioner.step()`` rewrites the gradients in place, then ``torch.optim.SGD.step``. The Fisher,
damping and factor conventions are kfac-pytorch's own (empirical Fisher from the training loss,
module backward hooks, which do not support in-place activations; the map to hoopt's ``kfac`` is in
docs/methods/kfac.md, "hoopt's kfac and kfac-pytorch"): hoopt's ``optimizer=kfac`` is the verified
baseline; this adapter exists for comparisons with the package.

Two things the package leaves to its caller are done here: a checkpoint also holds the package's inverses (its
own state holds only the factors, and recomputing inverses from the factors of the resume step would change the
trajectory), and ``no_capture()`` hides forwards that are not training steps (the Hbar probe) from its hooks,
which look only at ``module.training``.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch
from torch import nn

from ..protocol import TrainingHooks, Visual
from .model_argument import model_and_params
from ..validation import (
    require_choice,
    require_in_range,
    require_int,
    require_non_negative,
    require_positive,
    require_probability,
)

INSTALL_HINT = (
    "optimizer=kfac_pytorch needs the kfac-pytorch package (import name 'kfac'), which is not installed: "
    "install it with `pip install git+https://github.com/gpauloski/kfac-pytorch.git` "
    "or use optimizer=kfac, hoopt's own K-FAC."
)
COMPUTE_METHODS = ("eigen", "inverse")
# kfac-pytorch reads these through callables of its step, so they follow param_groups[0] at every step.
PRECONDITIONER_KEYS = ("damping", "factor_decay", "kl_clip", "factor_update_steps", "inv_update_steps")
# What kfac-pytorch's layers hold between inversions (eigen: qa, qg and da, dg or their product dgda; inverse:
# a_inv, g_inv); its state_dict leaves them out.
INVERSE_ATTRIBUTES = ("qa", "qg", "da", "dg", "dgda", "a_inv", "g_inv")
# The layer types kfac-pytorch registers; their forward does not depend on module.training.
HOOKED_LAYERS = (nn.Linear, nn.Conv2d)


class KFACPytorchUnavailableError(ImportError):
    """kfac-pytorch is not importable; the message says how to install it."""


def load_preconditioner_class() -> type:
    """``kfac.preconditioner.KFACPreconditioner``, or :class:`KFACPytorchUnavailableError`."""
    try:
        from kfac.preconditioner import KFACPreconditioner
    except ImportError as error:
        raise KFACPytorchUnavailableError(INSTALL_HINT) from error
    return KFACPreconditioner


def _validate(group: dict) -> None:
    group["damping"] = require_positive("damping", group["damping"])
    group["factor_decay"] = require_in_range("factor_decay", group["factor_decay"], 0.0, 1.0, low_inclusive=False,
                                             high_inclusive=True)
    if group["kl_clip"] is not None:  # None: no KL clipping (kfac-pytorch's own convention)
        group["kl_clip"] = require_positive("kl_clip (or None to disable it)", group["kl_clip"])
    for key in ("factor_update_steps", "inv_update_steps"):
        group[key] = require_int(key, group[key], 1)
    require_choice("compute_method", group["compute_method"], COMPUTE_METHODS)


class KFACPytorchAdapter(torch.optim.SGD, TrainingHooks):
    """SGD(lr, momentum, weight_decay) on gradients preconditioned by kfac-pytorch.

    Usage: ``opt = KFACPytorchAdapter(model, lr=0.01)`` (or ``KFACPytorchAdapter(model.named_parameters(),
    lr=0.01, model=model)``, as the runner builds it) then ``opt.step(closure)``.

    Every hyperparameter lives in ``param_groups[0]``: SGD's own and kfac-pytorch's ``damping``,
    ``factor_decay``, ``kl_clip``, ``factor_update_steps`` and ``inv_update_steps``, which kfac-pytorch reads
    at every step (so schedulers apply to them; ``lr`` is also its KL-clipping learning rate), except
    ``compute_method`` (kfac-pytorch's "eigen" or "inverse"), which chooses its layer type once, at construction.
    """

    def __init__(
        self,
        params: Any,
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 0.003,
        damping: float = 0.03,
        factor_decay: float = 0.95,
        kl_clip: float | None = 0.01,
        factor_update_steps: int = 10,
        inv_update_steps: int = 100,
        compute_method: str = "eigen",
        *,
        model: nn.Module | None = None,
    ) -> None:
        preconditioner_class = load_preconditioner_class()
        model, params = model_and_params(params, model, "KFACPytorchAdapter")
        super().__init__(params, lr=require_positive("lr", lr), momentum=require_probability("momentum", momentum),
                         weight_decay=require_non_negative("weight_decay", weight_decay))
        extra = dict(damping=damping, factor_decay=factor_decay, kl_clip=kl_clip,
                     factor_update_steps=factor_update_steps, inv_update_steps=inv_update_steps,
                     compute_method=compute_method)
        self.defaults.update(extra)
        for group in self.param_groups:
            for key, value in extra.items():
                group.setdefault(key, value)
            _validate(group)
        self._compute_method = self.param_groups[0]["compute_method"]
        self._model = model
        hyperparameters = {key: (lambda _step, key=key: self.param_groups[0][key]) for key in PRECONDITIONER_KEYS}
        self.preconditioner = preconditioner_class(model, lr=lambda _step: self.param_groups[0]["lr"],
                                                   compute_method=self._compute_method, **hyperparameters)

    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        if self.param_groups[0]["compute_method"] != self._compute_method:
            raise ValueError(f"KFACPytorchAdapter's compute_method is fixed at construction "
                             f"({self._compute_method!r}): it chooses kfac-pytorch's layer type")
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.preconditioner.step()
        super().step()
        return loss

    # -- the loop's hooks (protocol.TrainingHooks) -------------------------------------------------------
    def diagnostics(self) -> dict[str, float]:
        return {"kfac/damping": float(self.param_groups[0]["damping"])}

    def visuals(self) -> dict[str, Visual]:
        return {}

    def on_epoch_end(self, train_loss: float) -> None:
        pass

    @contextmanager
    def no_capture(self) -> Iterator[None]:
        """Forwards and backwards inside this block do not enter kfac-pytorch's factors (for observers that run the
        model between steps, such as the Hbar probe). kfac-pytorch's hooks skip modules that are not in training
        mode, so the hooked Linear and Conv2d layers, whose computation does not depend on the mode, are put in
        evaluation mode meanwhile; every other module (BatchNorm, dropout) keeps its mode."""
        switched = [m for m in self._model.modules() if isinstance(m, HOOKED_LAYERS) and m.training]
        for module in switched:
            module.training = False
        try:
            with warnings.catch_warnings():  # its full backward hooks still fire (and return at once)
                warnings.filterwarnings("ignore", message="Full backward hook is firing")
                yield
        finally:
            for module in switched:
                module.training = True

    # -- exact resume -----------------------------------------------------------------------------------
    def _package_layers(self) -> dict[str, Any]:
        """kfac-pytorch's layer objects by name (its registry: {module: (name, layer)})."""
        registry = getattr(self.preconditioner, "_layers", None) or {}
        return {name: layer for name, layer in registry.values()}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["kfac_pytorch"] = self.preconditioner.state_dict()
        inverses = {}
        for name, layer in self._package_layers().items():
            kept = {key: getattr(layer, key, None) for key in INVERSE_ATTRIBUTES}
            inverses[name] = {key: value.clone() for key, value in kept.items() if isinstance(value, torch.Tensor)}
        state["kfac_pytorch_inverses"] = inverses
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        preconditioner_state = state_dict.pop("kfac_pytorch", None)
        inverses = state_dict.pop("kfac_pytorch_inverses", None)
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            _validate(group)
        if preconditioner_state is None:
            return
        if inverses is None:  # an older checkpoint: the package recomputes the inverses from the saved factors
            self.preconditioner.load_state_dict(preconditioner_state)
            return
        # The inverses of the checkpoint, not new ones from the factors as they are at the resume step: those
        # factors have moved since the last inversion, so recomputing would change the next steps.
        self.preconditioner.load_state_dict(preconditioner_state, compute_inverses=False)
        layers = self._package_layers()
        for name, saved in inverses.items():
            layer = layers.get(name)
            if layer is None:
                raise ValueError(f"the saved kfac-pytorch state has a layer {name!r} this model does not have; resume "
                                 f"with the checkpoint's model")
            device = getattr(getattr(layer, "module", None), "device", None)  # kfac-pytorch's ModuleHelper.device
            for key, value in saved.items():
                setattr(layer, key, value if device is None else value.to(device))
