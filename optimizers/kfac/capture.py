"""Hooks that collect one batch's Kronecker-factor sums while armed (covariance-update steps only).

Forward hook of each registered layer: adds sum_rows a a^T of its input, then returns a *clone* of its
output, so that an in-place activation after the layer (``ReLU(inplace=True)``) modifies the clone
and the original output keeps the layer's own autograd node; the gradient w.r.t. that original
tensor is exactly d loss / d s even with in-place ops (full backward hooks fail there).

- empirical Fisher: a tensor hook on the original output receives the gradient of the batch-mean
  loss during the ordinary backward; times N it is the per-example gradient g.
- true Fisher (default): a forward hook on the whole model receives the logits, samples labels
  y ~ softmax(logits) with the optimizer's generator (or its ``label_sampler``) and takes
  ``torch.autograd.grad(sum_n CE(logits_n, y_n), layer outputs, retain_graph=True)``: a partial
  backward (no parameter gradients, nothing accumulated into ``.grad``) on the same forward, so the
  model is not re-run (BatchNorm running statistics are updated once, as with SGD).

When not armed, while ``paused`` (the optimizer's ``no_capture()``), or under ``torch.no_grad`` (evaluation), the
hooks return at once. The sampled loss is evaluated in the logits' own precision (float64 stays float64; only
half-precision logits are promoted to float32), so G carries no float32 rounding in a float64 model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .factors import activation_moment_sum, input_columns, output_grad_columns


LabelSampler = Callable[[torch.Tensor], torch.Tensor]


def working_precision(logits: torch.Tensor) -> torch.Tensor:
    """The logits in the precision the Fisher statistics use: their own, except half precision (autocast), which
    is promoted to float32."""
    return logits if logits.dtype in (torch.float32, torch.float64) else logits.float()


def sample_labels(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Labels drawn from the model's predictive distribution softmax(logits), one per row.

    Drawn on the generator's device (the optimizer keeps a CPU generator, so that its saved state
    does not depend on where the run trains) and returned on the logits' device."""
    probabilities = torch.softmax(working_precision(logits.detach()), dim=1).to(generator.device)
    return torch.multinomial(probabilities, 1, generator=generator).squeeze(1).to(logits.device)


@dataclass
class FactorSums:
    """Running sums over the forwards of one covariance-update step."""

    a_sum: torch.Tensor | None = None
    rows: int = 0
    g_sum: torch.Tensor | None = None
    examples: int = 0

    def add_a(self, moment: torch.Tensor, rows: int) -> None:
        self.a_sum = moment if self.a_sum is None else self.a_sum + moment
        self.rows += rows

    def add_g(self, moment: torch.Tensor, examples: int) -> None:
        self.g_sum = moment if self.g_sum is None else self.g_sum + moment
        self.examples += examples


@dataclass
class FactorCapture:
    """Owns the hooks on one model; ``take()`` returns {layer: (A, G)} of the armed forwards."""

    layers: list[nn.Module]
    fisher: str  # "true" or "empirical"
    generator: torch.Generator
    label_sampler: LabelSampler | None = None  # None: sample_labels with ``generator``
    armed: bool = False
    paused: bool = False
    _sums: dict[nn.Module, FactorSums] = field(default_factory=dict)
    _pending: list[tuple[nn.Module, torch.Tensor]] = field(default_factory=list)
    _handles: list = field(default_factory=list)

    def attach(self, model: nn.Module) -> None:
        for layer in self.layers:
            self._handles.append(layer.register_forward_hook(self._layer_forward))
        # Registered last so that, when the model is itself a layer, it sees the layer's clone.
        self._handles.append(model.register_forward_hook(self._model_forward))

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.reset()

    def reset(self) -> None:
        self._sums.clear()
        self._pending.clear()

    def take(self) -> dict[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
        """Per-layer (A, G) of the captured batch(es); layers missing either side are left out."""
        factors = {
            layer: (sums.a_sum / sums.rows, sums.g_sum / sums.examples)
            for layer, sums in self._sums.items()
            if sums.a_sum is not None and sums.g_sum is not None
        }
        self.reset()
        return factors

    def _active(self, output: torch.Tensor) -> bool:
        return (self.armed and not self.paused and torch.is_grad_enabled() and isinstance(output, torch.Tensor)
                and output.requires_grad)

    def _layer_forward(self, layer: nn.Module, inputs: tuple, output: torch.Tensor):
        if not self._active(output):
            return None
        with torch.no_grad():  # statistics in the parameters' dtype (inputs may be half under autocast)
            columns = input_columns(layer, inputs[0].detach().to(layer.weight.dtype))
            self._sums.setdefault(layer, FactorSums()).add_a(
                activation_moment_sum(columns, layer.bias is not None), columns.shape[1]
            )
        if self.fisher == "true":
            self._pending.append((layer, output))
        else:
            batch = output.shape[0]
            output.register_hook(lambda grad, layer=layer, batch=batch: self._add_g(layer, grad * batch, batch))
        return output.clone()

    def _add_g(self, layer: nn.Module, per_example_grad: torch.Tensor, batch: int) -> None:
        with torch.no_grad():
            columns = output_grad_columns(layer, per_example_grad.to(layer.weight.dtype))
            self._sums.setdefault(layer, FactorSums()).add_g(columns @ columns.t(), batch)

    def _model_forward(self, model: nn.Module, inputs: tuple, logits: torch.Tensor):
        if self.fisher != "true" or not self._pending or not self._active(logits):
            return None
        if logits.dim() != 2 or not logits.is_floating_point():
            self._pending.clear()
            raise ValueError(
                "K-FAC with fisher='true' needs the model to return class logits of shape (batch, classes), "
                f"got shape {tuple(logits.shape)}; use fisher='empirical' for other models."
            )
        pending, self._pending = self._pending, []
        labels = self._labels(logits)
        sampled_loss = F.cross_entropy(working_precision(logits), labels, reduction="sum")
        grads = torch.autograd.grad(sampled_loss, [out for _, out in pending], retain_graph=True, allow_unused=True)
        for (layer, out), grad in zip(pending, grads):
            if grad is not None:  # d sum_n loss_n / d s_n is already the per-example gradient
                self._add_g(layer, grad, out.shape[0])
        return None

    def _labels(self, logits: torch.Tensor) -> torch.Tensor:
        if self.label_sampler is None:
            return sample_labels(logits, self.generator)
        labels = self.label_sampler(logits.detach())
        if not (isinstance(labels, torch.Tensor) and labels.shape == logits.shape[:1] and not labels.is_floating_point()
                and not labels.is_complex()):
            shown = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
            raise ValueError(f"K-FAC's label_sampler must return one integer class label per row of the logits "
                             f"(shape {tuple(logits.shape[:1])}), got {shown}")
        return labels.to(device=logits.device, dtype=torch.long)
