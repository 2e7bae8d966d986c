"""The LODO paper's autoregressive MNIST generator (arXiv:2210.06171, Section 5.3 and Appendix F.2;
docs/methods/lodo.md), 94,696 parameters.

Input: the 5-channel encoding built by ``hoopt.runner.data.mnist_pixels`` (28 x 28); output: 256 logits for
the value of the query pixel. Five stages of four residual blocks, each stage ending in 2 x 2 average pooling
with zero padding to an even size (28 -> 14 -> 7 -> 4 -> 2 -> 1).
"""

import torch
import torch.nn.functional as F
from torch import nn


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


def avg_pool_zero_padded(x):
    """2x2 average pooling; an odd size is padded with zeros (which count in the average)."""
    pad_h, pad_w = x.shape[-2] % 2, x.shape[-1] % 2
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h))
    return F.avg_pool2d(x, 2)


class PixelCNN(nn.Module):
    def __init__(self, input_shape=(5, 28, 28), num_classes=256, channels=20, stages=5, blocks_per_stage=4):
        super().__init__()
        # 1x1: the paper's prose says 3x3, but its parameter count (94,696) is that of a 1x1 stem (3x3: 95,496).
        self.stem = nn.Conv2d(input_shape[0], channels, 1)
        self.stages = nn.ModuleList(
            nn.Sequential(*[ResidualBlock(channels) for _ in range(blocks_per_stage)]) for _ in range(stages)
        )
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x):
        x = self.stem(x)
        for stage in self.stages:
            x = avg_pool_zero_padded(stage(x))
        # After five poolings a 28 x 28 input is 1 x 1; average whatever is left for other sizes.
        return self.head(x.mean(dim=(-2, -1)))


def pixelcnn(input_shape=(5, 28, 28), num_classes=256):
    return PixelCNN(input_shape, num_classes)
