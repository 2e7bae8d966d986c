"""What the training loop needs from a task: its batches, its loss, its evaluation and what optimizers may ask of
it. A task is either dataset-backed (classification.py: a dataset and a classifier trained with cross-entropy) or
synthetic (synthetic.py: an objective whose forward returns the loss and a stream of the values it is evaluated
on). The loop talks only to this interface, so it never asks which kind it has."""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Protocol

import torch

from ...optimizers.protocol import Batch


class Task(Protocol):
    description: str       # what the start line names: "dataset 'digits'", "its synthetic stream"
    steps_per_epoch: int   # steps between two evaluations and checkpoints

    def epoch_batches(self) -> Iterator[Batch]:
        """This epoch's training batches, in the order the task's own generator decides."""

    def loss(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        """The training loss on a batch (what the closure back-propagates)."""

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """End-of-epoch metrics, keyed by their logging tags."""

    def final_evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """Metrics measured once, when the run completes ({} for most tasks)."""

    def dependencies(self, model: torch.nn.Module) -> dict[str, Any]:
        """The run's pieces an optimizer may ask for by name (protocol.RUN_DEPENDENCIES)."""

    def state_dict(self) -> dict:
        """Everything needed to continue the batch sequence exactly (generators, the synthetic stream)."""

    def load_state_dict(self, state: Mapping) -> None: ...


def l2_penalty(params, l2: float) -> torch.Tensor | float:
    """l2/2 ||theta||^2 over the given parameters (the LODO paper's ResNet-18 setup adds it to the loss)."""
    if not l2:
        return 0.0
    return 0.5 * l2 * sum(p.pow(2).sum() for p in params)
