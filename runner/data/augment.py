"""Batched CIFAR augmentation on the training device: pad-4 random crop and horizontal flip."""

import torch
import torch.nn.functional as F


def random_crop_flip(images: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Every image gets its own crop offset and flip, drawn from ``generator``; no per-sample Python."""
    n, _, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    dev = images.device
    oy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=dev)
    ox = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=dev)
    rows = (oy[:, None] + torch.arange(h, device=dev))[:, :, None]  # n x h x 1
    cols = (ox[:, None] + torch.arange(w, device=dev))[:, None, :]  # n x 1 x w
    flip = torch.rand(n, generator=generator, device=dev) < 0.5
    cols = torch.where(flip[:, None, None], (2 * ox[:, None, None] + w - 1) - cols, cols)
    batch = torch.arange(n, device=dev)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def augmenting_batch_maker(inputs, targets, generator=None):
    """make_batch for CIFAR-10 with augmentation: augment training batches, leave evaluation alone."""
    if generator is None:
        return inputs, targets
    return random_crop_flip(inputs, generator), targets
