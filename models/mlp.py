"""Fully connected networks of the NewtonSummary papers: MLP, BigMLP and VBigMLP (arXiv:2312.03885, 2024 version,
Section 6.2 and Appendix 0.H; docs/methods/newton_summary.md)."""

import math

from torch import nn

from .init import paper_init_


class PaperMLP(nn.Module):
    """Flatten, then Linear layers ``f1 .. fL`` with the activation between them (none after the last)."""

    def __init__(self, input_shape, num_classes, hidden, activation, sigma_w):
        super().__init__()
        sizes = [math.prod(input_shape), *hidden, num_classes]
        # Registered directly on the module so parameter names read f1.weight, f1.bias, ...
        self.layer_names = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            self.add_module(f"f{i + 1}", nn.Linear(a, b))
            self.layer_names.append(f"f{i + 1}")
        self.activation = activation
        paper_init_(self, sigma_w)

    def forward(self, x):
        x = x.flatten(1)
        last = len(self.layer_names) - 1
        for i, name in enumerate(self.layer_names):
            x = getattr(self, name)(x)
            if i < last:
                x = self.activation(x)
        return x


def mlp(input_shape=(1, 28, 28), num_classes=10, hidden=(1024, 200, 100), sigma_w=1.0):
    """MNIST MLP 784-1024-200-100-10, tanh, sigma_w = 1."""
    return PaperMLP(input_shape, num_classes, hidden, nn.Tanh(), sigma_w)


def bigmlp(input_shape=(3, 32, 32), num_classes=10, depth=20, width=1024, sigma_w=math.sqrt(2)):
    """CIFAR-10 BigMLP 3072 -> 20 x 1024 -> 10, ELU, sigma_w = sqrt 2."""
    return PaperMLP(input_shape, num_classes, [width] * depth, nn.ELU(), sigma_w)


def vbigmlp(input_shape=(3, 32, 32), num_classes=10, depth=100, width=1024, sigma_w=math.sqrt(2)):
    """The very deep variant, 3072 -> 100 x 1024 -> 10 (2024 version, Appendix 0.H; Appendix G in 2023)."""
    return PaperMLP(input_shape, num_classes, [width] * depth, nn.ELU(), sigma_w)
