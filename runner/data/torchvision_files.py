"""MNIST and CIFAR-10 through torchvision's own loaders, converted once into normalised tensors.

The files are read from ``root`` (torchvision's layout: ``root/MNIST/raw``, ``root/cifar-10-batches-py``);
when they are missing and ``download`` is true, torchvision downloads them. When neither works, the user gets
one sentence saying where the files were expected and what to do."""

from __future__ import annotations

import os

import numpy as np
import torch
from torchvision import datasets

from ..errors import HooptError
from .dataset import Dataset, Split, hold_out, normalise, validation_count

# The NewtonSummary papers' normalisation constants and held-out validation sizes
# (docs/methods/newton_summary.md, "The papers' experiments").
MNIST_MEAN, MNIST_STD, MNIST_VAL = (0.1307,), (0.3081,), 6000
CIFAR_MEAN, CIFAR_STD, CIFAR_VAL = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 5000


def open_torchvision(cls, root: str, train: bool, download: bool, where: str, label: str):
    root = os.path.expanduser(root)
    try:
        return cls(root, train=train, download=False)
    except RuntimeError:  # torchvision's "not found or corrupted"
        if not download:
            raise HooptError(
                f"{label} files were not found (or failed their check) in {os.path.join(root, where)}; put them there, "
                f"point dataset.root at the folder that holds them, allow dataset.download=true when online, "
                f"or train offline with dataset=digits."
            ) from None
    try:
        return cls(root, train=train, download=True)
    except Exception as failure:  # any network or disk failure of the download
        raise HooptError(
            f"{label} is not in {os.path.join(root, where)} and could not be downloaded "
            f"({type(failure).__name__}: {str(failure).splitlines()[0] if str(failure) else 'no detail'}); "
            f"copy the files there or set dataset.root to where they are, or train offline with dataset=digits."
        ) from None


def mnist_images(root: str, download: bool) -> tuple[Split, Split]:
    """Raw MNIST as uint8 images N x 1 x 28 x 28 and labels, train and test."""
    out = []
    for train in (True, False):
        ds = open_torchvision(datasets.MNIST, root, train, download, "MNIST/raw", "MNIST")
        out.append(Split(ds.data.unsqueeze(1).clone(), ds.targets.clone().long()))
    return out[0], out[1]


def load_mnist(root: str, download: bool, val_size: int = MNIST_VAL) -> Dataset:
    train, test = mnist_images(root, download)
    to_float = lambda s: Split(normalise(s.inputs.float() / 255.0, MNIST_MEAN, MNIST_STD), s.targets)  # noqa: E731
    train, val = hold_out(to_float(train), validation_count(len(train), val_size))
    return Dataset("mnist", (1, 28, 28), 10, train, val, to_float(test))


def load_cifar10(root: str, download: bool, val_size: int = CIFAR_VAL) -> Dataset:
    splits = []
    for train in (True, False):
        ds = open_torchvision(datasets.CIFAR10, root, train, download, "cifar-10-batches-py", "CIFAR-10")
        images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).float() / 255.0
        splits.append(Split(normalise(images, CIFAR_MEAN, CIFAR_STD), torch.tensor(ds.targets, dtype=torch.long)))
    train, val = hold_out(splits[0], validation_count(len(splits[0]), val_size))
    return Dataset("cifar10", (3, 32, 32), 10, train, val, splits[1])
