"""Writers of small MNIST and CIFAR-10 copies in the real on-disk formats that torchvision reads."""

import os
import pickle
import struct

import numpy as np


def write_idx(path: str, array: np.ndarray) -> None:
    """The IDX format of the MNIST files: magic (0, 0, type 0x08 = ubyte, ndim), big-endian dims, data."""
    with open(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 0x08, array.ndim))
        f.write(struct.pack(">" + "I" * array.ndim, *array.shape))
        f.write(array.astype(np.uint8).tobytes())


def write_mnist(root: str, n_train: int = 120, n_test: int = 40, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    raw = os.path.join(root, "MNIST", "raw")
    os.makedirs(raw, exist_ok=True)
    train_images = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    for prefix, images in (("train", train_images), ("t10k", rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8))):
        write_idx(os.path.join(raw, f"{prefix}-images-idx3-ubyte"), images)
        write_idx(os.path.join(raw, f"{prefix}-labels-idx1-ubyte"), rng.integers(0, 10, len(images)))
    return train_images


def write_cifar10(root: str, n_per_batch: int = 24, n_test: int = 40, seed: int = 0) -> np.ndarray:
    """Five training batches and a test batch as the pickled dicts of cifar-10-batches-py."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    first = None
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = n_test if name == "test_batch" else n_per_batch
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        first = data if first is None else first
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump({"data": data, "labels": rng.integers(0, 10, n).tolist(), "batch_label": name}, f)
    with open(os.path.join(folder, "batches.meta"), "wb") as f:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                     "ship", "truck"], "num_cases_per_batch": n_per_batch}, f)
    return first
