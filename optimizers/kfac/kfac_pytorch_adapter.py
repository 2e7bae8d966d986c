"""optimizer=kfac_pytorch: SGD with momentum preconditioned by kfac-pytorch's ``KFACPreconditioner``.

A thin adapter for users who have installed kfac-pytorch (github.com/gpauloski/kfac-pytorch, import
name ``kfac``; it is not on the package registry). Each step: closure (forward, backward), then
``preconditioner.step()`` rewrites the gradients in place, then ``torch.optim.SGD.step``. The Fisher,
damping and factor conventions are kfac-pytorch's own (empirical Fisher from the training loss,
module backward hooks, which do not support in-place activations): hoopt's ``optimizer=kfac`` is the
verified baseline; this adapter exists for comparisons with the package.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

INSTALL_HINT = (
    "optimizer=kfac_pytorch needs the kfac-pytorch package (import name 'kfac'), which is not installed: "
    "install it with `pip install git+https://github.com/gpauloski/kfac-pytorch.git` "
    "or use optimizer=kfac, hoopt's own K-FAC."
)


class KFACPytorchUnavailableError(ImportError):
    """kfac-pytorch is not importable; the message says how to install it."""


def load_preconditioner_class() -> type:
    """``kfac.preconditioner.KFACPreconditioner``, or :class:`KFACPytorchUnavailableError`."""
    try:
        from kfac.preconditioner import KFACPreconditioner
    except ImportError as error:
        raise KFACPytorchUnavailableError(INSTALL_HINT) from error
    return KFACPreconditioner


class KFACPytorchAdapter(torch.optim.SGD):
    """SGD(lr, momentum, weight_decay) on gradients preconditioned by kfac-pytorch.

    Usage: ``opt = KFACPytorchAdapter(model, lr=0.01)`` then ``opt.step(closure)``; in the hoopt loop
    the model arrives through ``bind(context)``. ``lr`` is also the learning rate kfac-pytorch uses
    for KL clipping (read at every step, so schedulers apply to both). ``compute_method`` is
    kfac-pytorch's "eigen" or "inverse".
    """

    def __init__(
        self,
        params: Any,
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 0.003,
        damping: float = 0.03,
        factor_decay: float = 0.95,
        kl_clip: float = 0.01,
        factor_update_steps: int = 10,
        inv_update_steps: int = 100,
        compute_method: str = "eigen",
    ) -> None:
        self._preconditioner_class = load_preconditioner_class()
        if not damping > 0:
            raise ValueError(f"damping must be positive, got {damping}")
        if not 0 < factor_decay <= 1:
            raise ValueError(f"factor_decay must be in (0, 1], got {factor_decay}")
        if not kl_clip > 0:
            raise ValueError(f"kl_clip must be positive, got {kl_clip}")
        for name, period in (("factor_update_steps", factor_update_steps), ("inv_update_steps", inv_update_steps)):
            if int(period) != period or period < 1:
                raise ValueError(f"{name} must be a positive integer, got {period}")
        if compute_method not in ("eigen", "inverse"):
            raise ValueError(f"compute_method must be 'eigen' or 'inverse', got {compute_method!r}")
        model = params if isinstance(params, nn.Module) else None
        super().__init__(model.parameters() if model is not None else params, lr=lr, momentum=momentum,
                         weight_decay=weight_decay)
        self.preconditioner_options = dict(
            damping=damping, factor_decay=factor_decay, kl_clip=kl_clip,
            factor_update_steps=int(factor_update_steps), inv_update_steps=int(inv_update_steps),
            compute_method=compute_method,
        )
        self.preconditioner = None
        self._pending_preconditioner_state: dict | None = None
        if model is not None:
            self.register_model(model)

    def bind(self, context: Any) -> None:
        """hoopt loop hook: build the preconditioner on ``context.model``."""
        self.register_model(context.model)

    def register_model(self, model: nn.Module) -> None:
        self.preconditioner = self._preconditioner_class(
            model, lr=lambda _step: self.param_groups[0]["lr"], **self.preconditioner_options
        )
        if self._pending_preconditioner_state is not None:
            self.preconditioner.load_state_dict(self._pending_preconditioner_state)
            self._pending_preconditioner_state = None

    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        if self.preconditioner is None:
            raise RuntimeError(
                "KFACPytorchAdapter needs the model: construct it as KFACPytorchAdapter(model, ...) or call "
                "opt.register_model(model) before the first step (the hoopt loop does this through bind)."
            )
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.preconditioner.step()
        super().step()
        return loss

    def diagnostics(self) -> dict[str, float]:
        return {"kfac/damping": float(self.preconditioner_options["damping"])}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self.preconditioner is not None:
            state["kfac_pytorch"] = self.preconditioner.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        preconditioner_state = state_dict.pop("kfac_pytorch", None)
        super().load_state_dict(state_dict)
        if preconditioner_state is None:
            return
        if self.preconditioner is not None:
            self.preconditioner.load_state_dict(preconditioner_state)
        else:
            self._pending_preconditioner_state = preconditioner_state
