"""Dataset registry: ``load_dataset(name, root, download, augment)`` returns a CPU :class:`Dataset`."""

from ..errors import HooptError
from .augment import augmenting_batch_maker
from .dataset import Dataset, Split
from .digits import load_digits_dataset
from .mnist_pixels import load_mnist_pixels
from .torchvision_files import load_cifar10, load_mnist

DATASETS = ("mnist", "cifar10", "digits", "mnist_pixels")


def load_dataset(name: str, root: str = "data", download: bool = True, augment: bool = False) -> Dataset:
    if name == "digits":
        dataset = load_digits_dataset()
    elif name == "mnist":
        dataset = load_mnist(root, download)
    elif name == "cifar10":
        dataset = load_cifar10(root, download)
        if augment:
            dataset.make_batch = augmenting_batch_maker
    elif name == "mnist_pixels":
        dataset = load_mnist_pixels(root, download)
    else:
        raise HooptError(f"unknown dataset '{name}'; choose one of: {', '.join(DATASETS)}.")
    if augment and name != "cifar10":
        raise HooptError(f"dataset.augment=true is only defined for cifar10, not {name}; drop the override.")
    return dataset


__all__ = ["Dataset", "Split", "load_dataset", "DATASETS"]
