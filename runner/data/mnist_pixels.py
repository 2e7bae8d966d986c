"""The LODO paper's autoregressive MNIST task (arXiv:2210.06171, Appendix F.2; docs/methods/lodo.md).

Each example is an MNIST image and a query pixel q chosen uniformly. Pixels from q on in raster order are
blackened (q itself is the value to predict, so it is hidden too) and the model sees 5 channels, in the order of
the authors' code: image * visible / 256, 2 [col <= col(q)] - 1, 2 visible - 1, a row ramp and a column ramp
(row / 28 * 2 - 1 and col / 28 * 2 - 1, from -1 to 26/28). The target is q's value, one of 256 classes.

Training batches draw fresh queries from the loop's generator; the splits' per-epoch evaluation uses one query
fixed once per image (seeded), a cheap estimate whose values are comparable across epochs. The paper's test loss
is the mean over every query position of every test image (784 per image, 7.84 million forwards for MNIST's
test set, so a measurement for the end of a run): ``mean_loss_over_every_position`` computes it, and
``every_position_test_metrics`` gives it as ``test/loss_all_positions`` for a dataset's test split."""

from typing import Iterator

import torch
import torch.nn.functional as F

from .dataset import Dataset, Split, hold_out, validation_count
from .torchvision_files import MNIST_VAL, OFFLINE_PIXELS, mnist_images

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
    ramp = torch.arange(SIDE, device=dev, dtype=torch.float32) / SIDE * 2 - 1  # the authors' k / 28 * 2 - 1
    row_ramp = ramp.view(1, SIDE, 1).expand(n, SIDE, SIDE)
    col_ramp = ramp.view(1, 1, SIDE).expand(n, SIDE, SIDE)
    pixels = images.reshape(n, SIDE, SIDE).float()
    channels = torch.stack(
        [pixels * visible / 256.0, 2 * left_of_or_at_query_col - 1, 2 * visible - 1, row_ramp, col_ramp], dim=1
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


def every_position_batches(images: torch.Tensor,
                           pairs_per_batch: int = 7840) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(inputs, targets) for every (image, query position) pair of ``images`` (N x 1 x 28 x 28 raw values): each
    image's 784 positions in raster order, image after image, ``pairs_per_batch`` pairs per batch (the last one
    shorter; a batch may span two images). The N * 784 pairs are the authors' test set (their full-batch loss)."""
    if pairs_per_batch < 1:
        raise ValueError(f"pairs_per_batch must be at least 1, got {pairs_per_batch}")
    n = images.shape[0]
    total = n * PIXELS
    for start in range(0, total, pairs_per_batch):
        pairs = torch.arange(start, min(start + pairs_per_batch, total), device=images.device)
        yield encode_queries(images[pairs // PIXELS], pairs % PIXELS)


@torch.no_grad()
def mean_loss_over_every_position(model: torch.nn.Module, images: torch.Tensor, pairs_per_batch: int = 7840) -> float:
    """The paper's test loss: the cross-entropy averaged over all 784 query positions of every image (summed in
    float64). ``images`` are raw N x 1 x 28 x 28 values on the model's device; it costs 784 forwards per image
    (7.84 million for the MNIST test set), so it is an end-of-training measurement."""
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=images.device)
    for inputs, targets in every_position_batches(images, pairs_per_batch):
        total += F.cross_entropy(model(inputs), targets, reduction="sum").double()
    model.train(was_training)
    return (total / (images.shape[0] * PIXELS)).item()


def every_position_test_metrics(model: torch.nn.Module, dataset: Dataset, limit: int | None = None,
                                pairs_per_batch: int = 7840) -> dict:
    """``test/loss_all_positions``: the paper's test loss on ``dataset``'s test split (its raw images; the first
    ``limit`` of them when given), for the runner to log once at the end of a run."""
    if dataset.test is None:
        return {}
    images = dataset.test.inputs if limit is None else dataset.test.inputs[:limit]
    return {"test/loss_all_positions": mean_loss_over_every_position(model, images, pairs_per_batch)}


def load_mnist_pixels(root: str, download: bool, query_seed: int = 0, val_size: int = MNIST_VAL) -> Dataset:
    train, test = mnist_images(root, download, OFFLINE_PIXELS)
    g = torch.Generator().manual_seed(query_seed)
    # Splits hold raw uint8 images and, as "targets", each example's fixed evaluation query.
    with_queries = lambda s: Split(s.inputs, torch.randint(0, PIXELS, (len(s),), generator=g))  # noqa: E731
    train, val = hold_out(with_queries(train), validation_count(len(train), val_size))
    return Dataset("mnist_pixels", (5, SIDE, SIDE), 256, train, val, with_queries(test), pixel_query_batch,
                   final_metrics=every_position_test_metrics)
