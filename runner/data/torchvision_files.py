"""MNIST and CIFAR-10 through torchvision's own loaders, converted once into normalised tensors.

The files are read from ``root`` (torchvision's layout: ``root/MNIST/raw``, ``root/cifar-10-batches-py``);
when they are missing and ``download`` is true, torchvision downloads them. When neither works, the user gets
one sentence saying where the files were expected and what to do."""

from __future__ import annotations

import math
import os
import struct

import numpy as np
import torch

from ..errors import HooptError
from .dataset import Dataset, Split, hold_out, normalise, validation_count

# The NewtonSummary papers' normalisation constants and held-out validation sizes
# (docs/methods/newton_summary.md, "The papers' experiments").
MNIST_MEAN, MNIST_STD, MNIST_VAL = (0.1307,), (0.3081,), 6000
CIFAR_MEAN, CIFAR_STD, CIFAR_VAL = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 5000


# IDX headers of the MNIST files: magic number 0x0000080d (unsigned bytes, d dimensions), then the sizes.
MNIST_FILES = {"images": (0x00000803, 3), "labels": (0x00000801, 1)}
MNIST_CLASSES = 10


def check_mnist_files(raw: str, prefix: str) -> None:
    """The format of one split's two files (``prefix`` train or t10k), when both are there: the magic numbers,
    28 x 28 images, as many labels as images, and the sizes the headers promise. torchvision asserts some of this
    and not the rest (a label file one entry short is read without complaint)."""
    paths = {kind: os.path.join(raw, f"{prefix}-{kind}-idx{ndim}-ubyte") for kind, (_, ndim) in MNIST_FILES.items()}
    if not all(os.path.exists(p) for p in paths.values()):
        return  # missing files are torchvision's to download, or the caller's sentence
    advice = "replace it with the original file, or delete it so that torchvision downloads it again"
    dims = {}
    for kind, path in paths.items():
        magic, ndim = MNIST_FILES[kind]
        with open(path, "rb") as f:
            header = f.read(4 + 4 * ndim)
        found = int.from_bytes(header[:4], "big") if len(header) >= 4 else None
        if found != magic or len(header) < 4 + 4 * ndim:
            shown = "none" if found is None else f"{found:#010x}"
            raise HooptError(f"{path} is not an MNIST {kind} file (magic number {shown}, expected {magic:#010x}); "
                             f"{advice}.")
        dims[kind] = struct.unpack(">" + "I" * ndim, header[4:])
        expected_size = len(header) + math.prod(dims[kind])
        if os.path.getsize(path) != expected_size:
            raise HooptError(f"{path} holds {os.path.getsize(path)} bytes where its header promises {expected_size} "
                             f"(truncated or padded); {advice}.")
    if dims["images"][1:] != (28, 28):
        raise HooptError(f"{paths['images']} holds {dims['images'][1]} x {dims['images'][2]} images, not MNIST's "
                         f"28 x 28; {advice}.")
    if dims["images"][0] != dims["labels"][0]:
        raise HooptError(f"{paths['images']} holds {dims['images'][0]} images but {paths['labels']} holds "
                         f"{dims['labels'][0]} labels; the two files must come from the same release: {advice}.")


def check_mnist_labels(labels: torch.Tensor, raw: str, prefix: str) -> None:
    if len(labels) and int(labels.max()) >= MNIST_CLASSES:
        raise HooptError(f"{os.path.join(raw, f'{prefix}-labels-idx1-ubyte')} holds the label {int(labels.max())}, "
                         f"outside MNIST's 0-9; replace it with the original file, or delete it so that torchvision "
                         f"downloads it again.")


# What to try offline instead of a dataset that is not on disk: a bundled dataset of the same kind of input.
OFFLINE_IMAGES = ("train offline with dataset=digits32 (scikit-learn's digits at 32x32x3, for lenet, vgg, resnet18 "
                  "and the MLPs; resnet18 also needs trainer.batch_size=256)")
OFFLINE_PIXELS = "note that the pixel task needs MNIST's files: it has no offline stand-in"


def open_torchvision(cls, root: str, train: bool, download: bool, where: str, label: str,
                     offline_advice: str = OFFLINE_IMAGES):
    root = os.path.expanduser(root)
    if label == "MNIST":
        check_mnist_files(os.path.join(root, where), "train" if train else "t10k")
    try:
        return cls(root, train=train, download=False)
    except RuntimeError:  # torchvision's "not found or corrupted"
        if not download:
            raise HooptError(
                f"{label} files were not found (or failed their check) in {os.path.join(root, where)}; put them there, "
                f"point dataset.root at the folder that holds them, allow dataset.download=true when online, "
                f"or {offline_advice}."
            ) from None
    except Exception as error:  # the files are there but torchvision cannot parse them
        raise HooptError(f"the {label} files in {os.path.abspath(os.path.join(root, where))} cannot be read "
                         f"({type(error).__name__}); replace them with the original files, or delete them so that "
                         f"torchvision downloads them again.") from None
    try:
        return cls(root, train=train, download=True)
    except Exception as failure:  # any network or disk failure of the download
        raise HooptError(
            f"{label} is not in {os.path.join(root, where)} and could not be downloaded "
            f"({type(failure).__name__}: {str(failure).splitlines()[0] if str(failure) else 'no detail'}); "
            f"copy the files there or set dataset.root to where they are, or {offline_advice}."
        ) from None


def mnist_images(root: str, download: bool, offline_advice: str = OFFLINE_IMAGES) -> tuple[Split, Split]:
    """Raw MNIST as uint8 images N x 1 x 28 x 28 and labels, train and test."""
    from torchvision import datasets  # imported here: torchvision takes seconds to import

    out = []
    for train in (True, False):
        ds = open_torchvision(datasets.MNIST, root, train, download, "MNIST/raw", "MNIST", offline_advice)
        raw = os.path.join(os.path.expanduser(root), "MNIST/raw")
        check_mnist_labels(ds.targets, raw, "train" if train else "t10k")
        out.append(Split(ds.data.unsqueeze(1).clone(), ds.targets.clone().long()))
    return out[0], out[1]


def load_mnist(root: str, download: bool, val_size: int = MNIST_VAL) -> Dataset:
    train, test = mnist_images(root, download)
    to_float = lambda s: Split(normalise(s.inputs.float() / 255.0, MNIST_MEAN, MNIST_STD), s.targets)  # noqa: E731
    train, val = hold_out(to_float(train), validation_count(len(train), val_size))
    return Dataset("mnist", (1, 28, 28), 10, train, val, to_float(test))


def load_cifar10(root: str, download: bool, val_size: int = CIFAR_VAL) -> Dataset:
    from torchvision import datasets  # imported here: torchvision takes seconds to import

    splits = []
    for train in (True, False):
        ds = open_torchvision(datasets.CIFAR10, root, train, download, "cifar-10-batches-py", "CIFAR-10")
        images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).float() / 255.0
        splits.append(Split(normalise(images, CIFAR_MEAN, CIFAR_STD), torch.tensor(ds.targets, dtype=torch.long)))
    train, val = hold_out(splits[0], validation_count(len(splits[0]), val_size))
    return Dataset("cifar10", (3, 32, 32), 10, train, val, splits[1])
