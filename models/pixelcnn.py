"""The LODO paper's autoregressive MNIST generator (arXiv:2210.06171, Section 5.3 and Appendix F.2;
docs/methods/lodo.md), 94,696 parameters.

Input: the 5-channel encoding built by ``hoopt.runner.data.mnist_pixels`` (28 x 28); output: 256 logits for
the value of the query pixel. Five stages of four residual blocks, each stage ending in 2 x 2 average pooling
(28 -> 14 -> 7 -> 4 -> 2 -> 1) in which an odd size's padded cell is left out of the average, as TensorFlow's
"SAME" pooling in the authors' code does. Weights and biases start from N(0, 1 / (fan_in + 1)), the authors'
LeCun normal (models/init.py).
"""

import torch
import torch.nn.functional as F
from torch import nn

from .init import lecun_normal_with_bias_


class ResidualBlock(nn.Module):
    """1x1 conv 20->40, atan, depthwise 3x3 (multiplier 3) 40->120, atan, 1x1 conv 120->20, skip add."""

    def __init__(self, channels=20, expanded=40, multiplier=3):
        super().__init__()
        self.expand = nn.Conv2d(channels, expanded, 1)
        self.depthwise = nn.Conv2d(expanded, expanded * multiplier, 3, padding=1, groups=expanded)
        self.project = nn.Conv2d(expanded * multiplier, channels, 1)

    def forward(self, x):
        h = torch.atan(self.expand(x))
        h = torch.atan(self.depthwise(h))
        return x + self.project(h)


def avg_pool_same(x):
    """2x2 average pooling with TensorFlow's "SAME" padding: an odd size gets one padded row/column at the end,
    and the windows that reach into it average only their real cells (7 -> 4: the last cell is the mean of the
    one or two real values under it, not of them and zeros). ceil_mode gives exactly that: a window that runs
    past the input is divided by the number of cells it covers inside."""
    return F.avg_pool2d(x, 2, ceil_mode=True)


class PixelCNN(nn.Module):
    def __init__(self, input_shape=(5, 28, 28), num_classes=256, channels=20, stages=5, blocks_per_stage=4):
        super().__init__()
        # 1x1: the paper's prose says 3x3, but its parameter count (94,696) is that of a 1x1 stem (3x3: 95,496),
        # and the authors' code uses 1x1.
        self.stem = nn.Conv2d(input_shape[0], channels, 1)
        self.stages = nn.ModuleList(
            nn.Sequential(*[ResidualBlock(channels) for _ in range(blocks_per_stage)]) for _ in range(stages)
        )
        self.head = nn.Linear(channels, num_classes)
        lecun_normal_with_bias_(self)

    def forward(self, x):
        x = self.stem(x)
        for stage in self.stages:
            x = avg_pool_same(stage(x))
        # After five poolings a 28 x 28 input is 1 x 1; average whatever is left for other sizes.
        return self.head(x.mean(dim=(-2, -1)))


def pixelcnn(input_shape=(5, 28, 28), num_classes=256):
    return PixelCNN(input_shape, num_classes)
