"""Device-resident datasets: whole splits live on the training device as tensors, batches are taken by
index on that device, and per-batch transforms (augmentation, pixel queries) are batched tensor ops."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class Split:
    """One split as two tensors with the same first dimension."""

    inputs: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def to(self, device: torch.device) -> "Split":
        return Split(self.inputs.to(device), self.targets.to(device))


# make_batch(inputs, targets, generator) -> (model inputs, class targets). ``generator`` is the loop's RNG
# for training batches (augmentation, random pixel queries) and None for deterministic evaluation.
BatchMaker = Callable[[torch.Tensor, torch.Tensor, "torch.Generator | None"], tuple]


def identity_batch(inputs, targets, generator=None):
    return inputs, targets


@dataclass
class Dataset:
    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    train: Split
    val: Split | None
    test: Split | None
    make_batch: BatchMaker = identity_batch
    # final_metrics(model, dataset, limit) -> metrics measured once, when a run completes: evaluations too costly
    # for every epoch (the pixel task's test loss over all 784 query positions of every image; of the first
    # ``limit`` images when limit is not None). None: nothing more.
    final_metrics: Callable[[torch.nn.Module, "Dataset", "int | None"], dict] | None = None

    def to(self, device: torch.device) -> "Dataset":
        move = lambda s: None if s is None else s.to(device)  # noqa: E731
        return Dataset(self.name, self.input_shape, self.num_classes, move(self.train), move(self.val),
                       move(self.test), self.make_batch, self.final_metrics)

    def splits(self) -> dict[str, Split]:
        named = {"train": self.train, "val": self.val, "test": self.test}
        return {k: v for k, v in named.items() if v is not None}


def hold_out(split: Split, count: int) -> tuple[Split, Split | None]:
    """Keep the last ``count`` examples of a training split for validation (a fixed, documented split)."""
    if count <= 0:
        return split, None
    if count >= len(split):
        raise ValueError(f"cannot hold out {count} validation examples from {len(split)} training examples")
    cut = len(split) - count
    return Split(split.inputs[:cut], split.targets[:cut]), Split(split.inputs[cut:], split.targets[cut:])


def validation_count(train_size: int, paper_count: int) -> int:
    """The paper's held-out count, or a tenth of the data for a reduced copy smaller than ten times it."""
    return paper_count if train_size >= 10 * paper_count else train_size // 10


def normalise(images: torch.Tensor, mean, std) -> torch.Tensor:
    """Per-channel normalisation of an N x C x H x W float tensor."""
    shape = (1, -1, 1, 1)
    mean = torch.as_tensor(mean, dtype=images.dtype).view(shape)
    std = torch.as_tensor(std, dtype=images.dtype).view(shape)
    return (images - mean) / std
