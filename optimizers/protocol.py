"""The contract between the shared training loop and an optimizer (docs/architecture.md, "The optimizer contract").

1. **Construction.** The runner builds every optimizer the same way::

       optimizer = factory(model.named_parameters(), **dependencies)

   ``factory`` is the class with its configured hyperparameters bound (Hydra ``_partial_: true``), and the
   parameters arrive *named*, through ``torch.optim``'s own support for ``named_parameters()`` (each group then
   carries ``param_names``). ``dependencies`` holds those of the run's pieces listed in :data:`RUN_DEPENDENCIES`
   that the constructor names as keyword arguments, and nothing else: the signature is the declaration. So an
   optimizer that needs the model writes ``def __init__(self, params, ..., model=None)`` and receives it; one
   that needs nothing receives nothing, which is why every ``torch.optim`` optimizer plugs in unchanged. Every
   dependency exists before the first step, so no method carries "not bound yet" state.

2. **Stepping.** The loop calls ``optimizer.step(closure)``; ``closure()`` zeroes the gradients, evaluates the
   training loss on the current minibatch, back-propagates and returns the loss (the ``torch.optim`` contract).
   ``closure(create_graph=True)`` keeps the graph of the gradients, for methods that take Hessian-vector products
   of them (AdaHessian, Sophia: optimizers/hessian_vector.py); the caller's closure decides nothing else.

3. **Hooks.** An optimizer that subclasses :class:`TrainingHooks` is also called with ``diagnostics()`` at the
   logging interval, ``visuals()`` at the image interval and ``on_epoch_end(train_loss)`` once per epoch. The
   three methods are abstract, so a class that misspells one (``diagnostic``) cannot be instantiated instead of
   silently logging nothing. ``records()`` (arrays to save after a step) has a default that keeps nothing. Any
   other optimizer gets no hook calls.

4. **State.** Everything needed to resume exactly (accumulators, RNG streams) lives in ``state_dict()``; every
   hyperparameter lives in ``param_groups`` (so schedulers and checkpoints see it).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Mapping, Protocol

import torch

Batch = Any  # usually (inputs, targets); the synthetic objectives use their own small values


class LossSampler(Protocol):
    """The training loss as a function of the parameters, on minibatches the caller draws itself.

    NewtonSummary evaluates its summaries on a minibatch of its own, drawn with its own generator (saved in its
    state_dict), and differentiates the loss with respect to the parameters to third order."""

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        """A training minibatch whose indices come from ``generator`` (on the parameters' device)."""

    def loss(self, params: Mapping[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        """The training loss on ``batch`` with the named parameters replaced by ``params`` (the others as they
        are); a pure function of ``params``, differentiable to any order."""


# The run's pieces a constructor may ask for by naming them as keyword arguments.
RUN_DEPENDENCIES = {
    "model": "the torch.nn.Module being trained (K-FAC hooks its layers)",
    "loss_sampler": "a LossSampler over the training data (NewtonSummary's own minibatches)",
    "classifier": "True when the model outputs class logits trained with cross-entropy (K-FAC's true Fisher)",
    "hessian": "the objective's exact Hessian, or None where there is none (LODO's approximation error)",
    "total_steps": "the run's length in optimizer steps, trainer.steps or trainer.epochs x the steps of an epoch "
                   "(the horizon of LARS's decay)",
}


@dataclass
class Heatmap:
    """A matrix to draw as a heatmap; ``labels`` name its rows and columns."""

    matrix: torch.Tensor
    labels: list[str]
    title: str


@dataclass
class Bars:
    """A vector to draw as a bar chart; ``labels`` name its entries."""

    values: torch.Tensor
    labels: list[str]
    title: str


Visual = Heatmap | Bars


class TrainingHooks(abc.ABC):
    """What the loop calls besides ``step``, for optimizers that subclass it (next to ``torch.optim.Optimizer``)."""

    @abc.abstractmethod
    def diagnostics(self) -> dict[str, float]:
        """Scalars to log at the logging interval under their own tags (``lr/<group>``, ``lodo/step_norm``)."""

    @abc.abstractmethod
    def visuals(self) -> dict[str, Visual]:
        """Matrices and vectors to draw at the image interval, by TensorBoard tag; the runner renders them."""

    @abc.abstractmethod
    def on_epoch_end(self, train_loss: float) -> None:
        """Called once per epoch with the epoch-mean training loss (NewtonSummary's damping schedule)."""

    def records(self) -> dict[str, torch.Tensor]:
        """Arrays to keep numerically, by name, called after every step: what the method measured since the last
        call (NewtonSummary: the averaged summaries of a refresh), or {} (the default: most methods keep nothing).
        The runner saves them in the run dir's records.npz (runner/training/records.py)."""
        return {}
