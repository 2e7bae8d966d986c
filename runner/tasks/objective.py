"""The loss as a function of a batch, of the model, and of the parameters (for methods that need it).

Classifiers are trained with cross-entropy (NLL of log-softmax, SPEC 1.5); the synthetic objectives return
their loss from ``forward`` and take the stream's value (the bowl's centre, or nothing) as the batch."""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch.func import functional_call


class Objective:
    def __init__(self, model: torch.nn.Module, is_classifier: bool, l2: float = 0.0):
        self.model = model
        self.is_classifier = is_classifier
        self.l2 = l2  # training loss + l2/2 ||theta||^2 over all parameters (LODO's ResNet-18 setup)

    def outputs(self, batch) -> torch.Tensor:
        return self.model(batch[0]) if self.is_classifier else self.model(batch)

    def loss_from_outputs(self, outputs, batch) -> torch.Tensor:
        return F.cross_entropy(outputs, batch[1]) if self.is_classifier else outputs

    def penalty(self, params) -> torch.Tensor | float:
        if not self.l2:
            return 0.0
        return 0.5 * self.l2 * sum(p.pow(2).sum() for p in params)

    def loss(self, batch) -> torch.Tensor:
        return self.loss_from_outputs(self.outputs(batch), batch) + self.penalty(self.model.parameters())

    def functional_loss(self, params: Mapping[str, torch.Tensor], batch) -> torch.Tensor:
        """The same loss as a pure function of (some of) the parameters; buffers and the other parameters
        are taken from the model as they are."""
        args = (batch[0],) if self.is_classifier else (batch,)
        outputs = functional_call(self.model, dict(params), args, strict=False)
        full = {**dict(self.model.named_parameters()), **params} if self.l2 else params
        return self.loss_from_outputs(outputs, batch) + self.penalty(full.values())
