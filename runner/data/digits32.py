"""``digits32``: scikit-learn's bundled 8 x 8 digits upscaled to 32 x 32 with three identical channels, the offline
stand-in for CIFAR-10's input shape, so the convolutional models (lenet, vgg, resnet18) can be tried without any
download. Same images, labels and 70/10/20 split as ``digits``; only the resolution and channel count differ."""

import torch
import torch.nn.functional as F

from .dataset import Dataset, Split
from .digits import load_digits_dataset

SIDE = 32


def upscale(images: torch.Tensor) -> torch.Tensor:
    """N x 1 x 8 x 8 -> N x 3 x 32 x 32: bilinear upsampling (smooth strokes, not 4 x 4 blocks, so the first
    convolutions see edges as they would in a natural image), the grey channel repeated three times."""
    large = F.interpolate(images, size=(SIDE, SIDE), mode="bilinear", align_corners=False)
    return large.expand(-1, 3, -1, -1).contiguous()


def load_digits32_dataset() -> Dataset:
    small = load_digits_dataset()
    splits = {name: Split(upscale(split.inputs), split.targets) for name, split in small.splits().items()}
    # Interpolation changes the pixel statistics a little: normalise again with the training split's own, as
    # every other dataset here is (mean 0, standard deviation 1 on the training images).
    mean, std = splits["train"].inputs.mean(), splits["train"].inputs.std()
    normalised = {name: Split((s.inputs - mean) / std, s.targets) for name, s in splits.items()}
    return Dataset("digits32", (3, SIDE, SIDE), small.num_classes, normalised["train"], normalised.get("val"),
                   normalised.get("test"))
