"""A dataset-backed task: a classifier trained with the batch-mean cross-entropy on shuffled minibatches, evaluated
on every split at the end of each epoch."""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import torch
import torch.nn.functional as F
from torch.func import functional_call

from ..data import Dataset
from .base import l2_penalty


class EpochSampler:
    """Shuffled index batches on the device, a fresh permutation per epoch, last partial batch dropped."""

    def __init__(self, size: int, batch_size: int, generator: torch.Generator, device: torch.device):
        if batch_size > size:
            raise ValueError(f"trainer.batch_size={batch_size} is larger than the {size} training examples")
        self.size, self.batch_size, self.generator, self.device = size, batch_size, generator, device

    def __len__(self) -> int:
        return self.size // self.batch_size

    def epoch(self) -> torch.Tensor:
        order = torch.randperm(self.size, generator=self.generator, device=self.device)
        return order[: len(self) * self.batch_size].view(len(self), self.batch_size)


class ClassificationLossSampler:
    """protocol.LossSampler over the training split: minibatches drawn with the caller's generator."""

    def __init__(self, task: "ClassificationTask", model: torch.nn.Module):
        self.task, self.model = task, model

    def sample(self, batch_size: int, generator: torch.Generator):
        train = self.task.dataset.train
        index = torch.randint(0, len(train), (batch_size,), generator=generator, device=self.task.device)
        return self.task.dataset.make_batch(train.inputs[index], train.targets[index], generator)

    def loss(self, params: Mapping[str, torch.Tensor], batch) -> torch.Tensor:
        outputs = functional_call(self.model, dict(params), (batch[0],), strict=False)
        penalty = 0.0
        if self.task.l2:  # the penalty covers every parameter: the replaced ones and the others as they are
            penalty = l2_penalty({**dict(self.model.named_parameters()), **params}.values(), self.task.l2)
        return F.cross_entropy(outputs, batch[1]) + penalty


class ClassificationTask:
    def __init__(self, dataset: Dataset, batch_size: int, eval_batch_size: int, generator: torch.Generator,
                 device: torch.device, l2: float = 0.0, final_examples: int | None = None):
        self.dataset, self.eval_batch_size, self.generator, self.device, self.l2 = (
            dataset, eval_batch_size, generator, device, l2)
        self.sampler = EpochSampler(len(dataset.train), batch_size, generator, device)
        self.steps_per_epoch = len(self.sampler)
        self.description = f"dataset '{dataset.name}'"
        self.final_examples = final_examples  # test examples of the end-of-run measures (None: all)

    def epoch_batches(self) -> Iterator:
        train = self.dataset.train
        for index in self.sampler.epoch():
            yield self.dataset.make_batch(train.inputs[index], train.targets[index], self.generator)

    def loss(self, model: torch.nn.Module, batch) -> torch.Tensor:
        return F.cross_entropy(model(batch[0]), batch[1]) + l2_penalty(model.parameters(), self.l2)

    def training_chunks(self, count: int | None, chunk_size: int) -> Iterator[tuple[int, int, Any]]:
        """(size, total, batch) over the first ``count`` training examples (all of them for None), in order,
        without augmentation: the full-batch quantities of the Hbar probe."""
        train = self.dataset.train
        total = len(train) if count is None else min(count, len(train))
        for start in range(0, total, chunk_size):
            stop = min(start + chunk_size, total)
            yield stop - start, total, self.dataset.make_batch(train.inputs[start:stop], train.targets[start:stop], None)

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """Loss and accuracy on every split; the full training split's loss is ``train/eval_loss`` because the
        per-step training loss owns ``train/loss``."""
        model.eval()
        metrics = {}
        for name, split in self.dataset.splits().items():
            total_loss = torch.zeros((), dtype=torch.float64, device=split.inputs.device)
            correct = torch.zeros((), dtype=torch.long, device=split.inputs.device)
            for start in range(0, len(split), self.eval_batch_size):
                inputs, targets = self.dataset.make_batch(split.inputs[start:start + self.eval_batch_size],
                                                          split.targets[start:start + self.eval_batch_size], None)
                outputs = model(inputs)
                total_loss += F.cross_entropy(outputs, targets, reduction="sum").double()
                correct += (outputs.argmax(dim=1) == targets).sum()
            metrics[f"{name}/eval_loss" if name == "train" else f"{name}/loss"] = (total_loss / len(split)).item()
            metrics[f"{name}/acc"] = (correct.double() / len(split)).item()
        model.train()
        return metrics

    @torch.no_grad()
    def final_evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        if self.dataset.final_metrics is None:
            return {}
        model.eval()
        try:
            return self.dataset.final_metrics(model, self.dataset, self.final_examples)
        finally:
            model.train()

    def dependencies(self, model: torch.nn.Module) -> dict[str, Any]:
        return {"model": model, "loss_sampler": ClassificationLossSampler(self, model), "classifier": True,
                "hessian": None}

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping) -> None:
        self.generator.set_state(state["generator"])
