"""The one protocol between the shared training loop and every optimizer.

The loop only ever calls ``optimizer.step(closure)``, where ``closure()`` zeroes the gradients,
evaluates the training loss on the current minibatch, back-propagates and returns the loss
(the ordinary ``torch.optim`` contract). Methods that need more than that gradient opt in through
the optional hooks below; the loop calls each hook only when the optimizer defines it, so plain
``torch.optim`` optimizers work unchanged and no method is special-cased in the loop.

- ``bind(context)``: called once before training with a :class:`TrainingContext`. NewtonSummary
  uses ``context.functional_loss`` and ``context.sample_batch`` to evaluate the loss as a function
  of the parameters on its own minibatch; K-FAC uses ``context.model`` to register hooks and
  ``context.current_batch`` to sample labels from the model for the true Fisher.
- ``diagnostics() -> dict[str, float]``: scalars logged under their own tags after a step
  (``lr/<group>``, ``lodo/step_norm``, ...). Called at the logging interval only.
- ``images() -> dict[str, torch.Tensor]``: CHW float images in [0, 1] (Hbar heatmaps), logged at
  the image interval only.
- ``on_epoch_end(train_loss: float)``: called once per epoch with the epoch-mean training loss
  (NewtonSummary's ReduceDampingOnPlateau).

LODO needs the gradient at the new point: that is exactly the gradient the next ``closure()``
computes, so it needs no hook. Extra state (samplers, RNG streams, accumulators) must live in
``state_dict()`` so that a resumed run is identical to an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch


Batch = Any  # usually (inputs, targets); the synthetic objectives use their own small tuples


@dataclass
class TrainingContext:
    """What the loop hands to an optimizer's ``bind`` hook."""

    model: torch.nn.Module
    # Names aligned with the optimizer's parameter order (model.named_parameters()).
    param_names: list[str]
    # loss(params_by_name, batch) -> scalar tensor, a pure function of the parameters
    # (torch.func.functional_call underneath), differentiable to any order.
    functional_loss: Callable[[Mapping[str, torch.Tensor], Batch], torch.Tensor]
    # sample_batch(batch_size, generator) -> a training minibatch whose indices are drawn with the
    # optimizer's own torch.Generator (on ``device``), independent of the loop's sampler. The
    # optimizer keeps that generator's state in its state_dict so that resuming is exact.
    sample_batch: Callable[[int, torch.Generator], Batch]
    # outputs(batch) -> model outputs (logits) for the batch; used for sampled-label Fisher.
    outputs: Callable[[Batch], torch.Tensor]
    # True when the model's outputs are class logits trained with cross-entropy.
    is_classifier: bool
    device: torch.device
    # The minibatch of the step in progress (set by the loop before each step).
    current_batch: Batch | None = None
    # Free-form extras for a method (e.g. the quadratic bowl's Hessian for LODO diagnostics).
    extras: dict[str, Any] = field(default_factory=dict)


def call_hook(optimizer: Any, name: str, *args: Any) -> Any:
    """Call an optional protocol hook if the optimizer has it; return None otherwise."""
    hook = getattr(optimizer, name, None)
    return hook(*args) if callable(hook) else None
