"""Synthetic objectives of the LODO paper (arXiv:2210.06171, Sections 5.1 and 5.2; docs/methods/lodo.md). Their
forward returns the scalar loss directly;
``optimum_loss`` is the analytic value the runner logs next to the loss."""

import math

import torch
from torch import nn


def geometric_spectrum(n, smallest, largest):
    return torch.logspace(math.log10(smallest), math.log10(largest), n, dtype=torch.float64)


class NoisyQuadraticBowl(nn.Module):
    """1/2 (x - c)^T H (x - c) with H = U diag(lambda) U^T, lambda geometric in [smallest, largest], U random
    orthogonal (fixed by ``seed``), x_0 = 0. The centre c is a random walk supplied as the batch by the data
    stream (``hoopt.runner.tasks.synthetic``): c takes an N(0, sigma^2 I) step at every evaluation, so the best
    achievable expected loss (Newton's, x = current c) is 1/2 sigma^2 tr H (7.41 for the paper's bowl)."""

    def __init__(self, dim=100, smallest=1e-3, largest=1.0, noise_std=1.0, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        q, r = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
        u = q * torch.sign(torch.diagonal(r))  # Haar-distributed orthogonal matrix
        spectrum = geometric_spectrum(dim, smallest, largest)
        self.register_buffer("hessian", ((u * spectrum) @ u.T).float())
        self.x = nn.Parameter(torch.zeros(dim))
        self.noise_std = noise_std
        self.optimum_loss = 0.5 * noise_std**2 * float(spectrum.sum())

    def forward(self, centre):
        d = self.x - centre
        return 0.5 * d @ (self.hessian @ d)


class Rosenbrock(nn.Module):
    """f(x, y) = a (1 - x)^2 + (y - x^2)^2 with a = 0.01 (Appendix G), start (-0.5, 2), minimum 0 at (1, 1)."""

    def __init__(self, a=0.01, start=(-0.5, 2.0)):
        super().__init__()
        self.xy = nn.Parameter(torch.tensor(start, dtype=torch.float32))
        self.a = a
        self.optimum_loss = 0.0

    def forward(self, _batch=None):
        x, y = self.xy[0], self.xy[1]
        return self.a * (1 - x) ** 2 + (y - x**2) ** 2


def noisy_quadratic(input_shape=None, num_classes=None, dim=100, smallest=1e-3, largest=1.0, noise_std=1.0, seed=0):
    return NoisyQuadraticBowl(dim, smallest, largest, noise_std, seed)


def rosenbrock(input_shape=None, num_classes=None, a=0.01, start=(-0.5, 2.0)):
    return Rosenbrock(a, tuple(start))
