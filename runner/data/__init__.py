"""Dataset registry: ``load_dataset(name, root, download, augment)`` returns a CPU :class:`Dataset`.

Each loader is imported when its dataset is asked for: torchvision and scikit-learn take seconds to import,
and a run uses at most one of them."""

from ..errors import HooptError
from .dataset import Dataset, Split

DATASETS = ("mnist", "cifar10", "digits", "digits32", "mnist_pixels")


def load_dataset(name: str, root: str = "data", download: bool = True, augment: bool = False) -> Dataset:
    if name == "digits":
        from .digits import load_digits_dataset

        dataset = load_digits_dataset()
    elif name == "digits32":
        from .digits32 import load_digits32_dataset

        dataset = load_digits32_dataset()
    elif name == "mnist":
        from .torchvision_files import load_mnist

        dataset = load_mnist(root, download)
    elif name == "cifar10":
        from .torchvision_files import load_cifar10

        dataset = load_cifar10(root, download)
        if augment:
            from .augment import augmenting_batch_maker

            dataset.make_batch = augmenting_batch_maker
    elif name == "mnist_pixels":
        from .mnist_pixels import load_mnist_pixels

        dataset = load_mnist_pixels(root, download)
    else:
        raise HooptError(f"unknown dataset '{name}'; choose one of: {', '.join(DATASETS)}.")
    if augment and name != "cifar10":
        raise HooptError(f"dataset.augment=true is only defined for cifar10, not {name}; drop the override.")
    return dataset


__all__ = ["Dataset", "Split", "load_dataset", "DATASETS"]
