"""scikit-learn's bundled 8 x 8 digits: the offline default dataset (1,797 images, 10 classes)."""

import torch

from .dataset import Dataset, Split


def load_digits_dataset(val_fraction: float = 0.1, test_fraction: float = 0.2, split_seed: int = 0) -> Dataset:
    from sklearn.datasets import load_digits  # imported here: scikit-learn takes a second to import

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target, dtype=torch.long)
    # The dataset ships unsplit: a fixed permutation (split_seed) makes the same split on every machine.
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(split_seed))
    images, labels = images[order], labels[order]
    n_test = int(round(test_fraction * len(labels)))
    n_val = int(round(val_fraction * len(labels)))
    n_train = len(labels) - n_test - n_val
    mean, std = images[:n_train].mean(), images[:n_train].std()
    images = (images - mean) / std

    def part(a, b):
        return Split(images[a:b], labels[a:b])

    return Dataset("digits", (1, 8, 8), 10, part(0, n_train), part(n_train, n_train + n_val) if n_val else None,
                   part(n_train + n_val, len(labels)))
