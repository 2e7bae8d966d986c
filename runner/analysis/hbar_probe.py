"""The Hbar probe (Figure 1 of the NewtonSummary papers): before each epoch, Hbar and Hbar^{-1} of the canonical
partition in full batch along the full-batch gradient, logged as heatmaps split into weight-weight, bias-bias and
weight-bias blocks. It observes training (any optimizer, SGD with momentum in the paper) and changes nothing: an
optimizer that hooks the model (both K-FACs) is asked for its ``no_capture()`` context, so the probe's forwards
neither enter its factors nor draw its labels.

Full batch = the whole training split (or its first ``max_examples``), in chunks: gbar and Hbar of the mean loss
are the size-weighted means of the chunks' summaries, since both are linear in the loss."""

from __future__ import annotations

import contextlib

import torch

from ...optimizers.newton_summary import build_partition, hessian_summary
from ..tasks.classification import ClassificationLossSampler, ClassificationTask
from .rendering import render_heatmap


class HbarProbe:
    def __init__(self, task: ClassificationTask, max_examples: int | None = None, chunk_size: int = 1000):
        self.task = task
        self.max_examples = max_examples
        self.chunk_size = chunk_size

    def _chunks(self):
        return self.task.training_chunks(self.max_examples, self.chunk_size)

    def measure(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """Full-batch gradient, then gbar and Hbar along it; returns tensors and the partition's labels."""
        params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
        loss_fn = ClassificationLossSampler(self.task, model).loss
        gradient = {n: torch.zeros_like(p) for n, p in params.items()}
        for size, total, batch in self._chunks():
            chunk = {n: p.clone().requires_grad_(True) for n, p in params.items()}
            grads = torch.autograd.grad(loss_fn(chunk, batch), list(chunk.values()))
            for (name, _), g in zip(chunk.items(), grads):
                gradient[name] += g * (size / total)
        partition = build_partition("canonical", list(model.named_parameters()))
        gbar, hbar = None, None
        for size, total, batch in self._chunks():
            summary = hessian_summary(lambda p, b=batch: loss_fn(p, b), params, gradient, partition, third_order=False)
            weight = size / total
            gbar = summary.gbar * weight if gbar is None else gbar + summary.gbar * weight
            hbar = summary.hbar * weight if hbar is None else hbar + summary.hbar * weight
        return {"gbar": gbar, "hbar": hbar, "labels": list(partition.group_names)}

    def images(self, hbar: torch.Tensor, labels: list[str]) -> dict[str, torch.Tensor]:
        weights = [i for i, name in enumerate(labels) if not name.endswith("bias")]
        biases = [i for i, name in enumerate(labels) if name.endswith("bias")]
        inverse = torch.linalg.pinv(hbar)  # pinv: Hbar can be singular (e.g. at initialisation)
        images = {}
        for tag, matrix in (("probe/hbar", hbar), ("probe/hbar_inv", inverse)):
            for block, rows, cols in (("weight_weight", weights, weights), ("bias_bias", biases, biases),
                                      ("weight_bias", weights, biases)):
                if rows and cols:
                    images[f"{tag}/{block}"] = render_heatmap(matrix[rows][:, cols], [labels[i] for i in rows],
                                                              [labels[i] for i in cols], f"{tag} {block}")
        return images

    def before_epoch(self, loop) -> None:
        no_capture = getattr(loop.optimizer, "no_capture", None)
        with no_capture() if callable(no_capture) else contextlib.nullcontext():
            result = self.measure(loop.model)
        loop.logger.images(self.images(result["hbar"], result["labels"]), loop.step)
        loop.logger.scalars({"probe/hbar_trace": float(result["hbar"].trace()),
                             "probe/hbar_min_eig": float(torch.linalg.eigvalsh(result["hbar"]).min())},
                            loop.step, loop.epoch)
