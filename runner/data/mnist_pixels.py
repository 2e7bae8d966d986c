"""The LODO paper's autoregressive MNIST task (arXiv:2210.06171, Appendix F.2; docs/methods/lodo.md).

Each example is an MNIST image and a query pixel q chosen uniformly. Pixels from q on in raster order are
blackened (q itself is the value to predict, so it is hidden too) and the model sees 5 channels:
image * visible / 256, 2 [col <= col(q)] - 1, 2 visible - 1, an x ramp and a y ramp in [-1, 1].
The target is q's value, one of 256 classes. Training batches draw fresh queries from the loop's generator;
validation and test use queries fixed once per example (seeded), so their losses are comparable."""

import torch

from .dataset import Dataset, Split, hold_out, validation_count
from .torchvision_files import MNIST_VAL, mnist_images

SIDE = 28
PIXELS = SIDE * SIDE


def encode_queries(images: torch.Tensor, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """images: N x 1 x 28 x 28 raw values in [0, 255]; queries: N raster indices. Returns (N x 5 x 28 x 28, N)."""
    n, dev = images.shape[0], images.device
    raster = torch.arange(PIXELS, device=dev).view(1, SIDE, SIDE)
    q = queries.view(n, 1, 1)
    visible = (raster < q).float()
    col = raster % SIDE
    left_of_or_at_query_col = (col <= (q % SIDE)).float()
    ramp = torch.linspace(-1.0, 1.0, SIDE, device=dev)
    x_ramp = ramp.view(1, 1, SIDE).expand(n, SIDE, SIDE)
    y_ramp = ramp.view(1, SIDE, 1).expand(n, SIDE, SIDE)
    pixels = images.reshape(n, SIDE, SIDE).float()
    channels = torch.stack(
        [pixels * visible / 256.0, 2 * left_of_or_at_query_col - 1, 2 * visible - 1, x_ramp, y_ramp], dim=1
    )
    targets = pixels.reshape(n, PIXELS).gather(1, queries.view(n, 1)).squeeze(1).long()
    return channels, targets


def pixel_query_batch(images, fixed_queries, generator=None):
    """make_batch: random queries for training (generator given), the split's fixed ones for evaluation."""
    if generator is None:
        queries = fixed_queries
    else:
        queries = torch.randint(0, PIXELS, (images.shape[0],), generator=generator, device=images.device)
    return encode_queries(images, queries)


def load_mnist_pixels(root: str, download: bool, query_seed: int = 0, val_size: int = MNIST_VAL) -> Dataset:
    train, test = mnist_images(root, download)
    g = torch.Generator().manual_seed(query_seed)
    # Splits hold raw uint8 images and, as "targets", each example's fixed evaluation query.
    with_queries = lambda s: Split(s.inputs, torch.randint(0, PIXELS, (len(s),), generator=g))  # noqa: E731
    train, val = hold_out(with_queries(train), validation_count(len(train), val_size))
    return Dataset("mnist_pixels", (5, SIDE, SIDE), 256, train, val, with_queries(test), pixel_query_batch)
