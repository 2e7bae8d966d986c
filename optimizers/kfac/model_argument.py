"""K-FAC needs the model (its hooks capture layer inputs and output gradients): both K-FAC classes accept it as
``params`` (plain PyTorch: ``KFAC(model, ...)``) or as the ``model`` dependency next to named parameters (the
runner: ``KFAC(model.named_parameters(), ..., model=model)``)."""

from __future__ import annotations

from typing import Any

from torch import nn


def model_and_params(params: Any, model: nn.Module | None, who: str) -> tuple[nn.Module, Any]:
    """(model, parameters) from either calling form; ValueError in one sentence when the model is missing."""
    if isinstance(params, nn.Module):
        if model is not None and model is not params:
            raise ValueError(f"{who} got a module as params and another one as model; pass one model")
        model, params = params, params.named_parameters()
    if model is None:
        raise ValueError(f"{who} needs the model whose layers it preconditions: {who}(model, ...) or "
                         f"{who}(model.named_parameters(), ..., model=model) (the runner passes it)")
    return model, params
