"""Per-epoch evaluation: loss and accuracy on every split, and the synthetic objectives' optimum gap."""

from __future__ import annotations

import resource

import torch
import torch.nn.functional as F

from ..data import Dataset


@torch.no_grad()
def evaluate_dataset(model, objective, dataset: Dataset, batch_size: int) -> dict[str, float]:
    model.eval()
    metrics = {}
    for name, split in dataset.splits().items():
        total_loss = torch.zeros((), dtype=torch.float64, device=split.inputs.device)
        correct = torch.zeros((), dtype=torch.long, device=split.inputs.device)
        for start in range(0, len(split), batch_size):
            inputs, targets = dataset.make_batch(split.inputs[start:start + batch_size],
                                                 split.targets[start:start + batch_size], None)
            outputs = objective.outputs((inputs, targets))
            total_loss += F.cross_entropy(outputs, targets, reduction="sum").double()
            correct += (outputs.argmax(dim=1) == targets).sum()
        # The per-step training loss owns "train/loss"; the full training-set evaluation is "train/eval_loss".
        metrics[f"{name}/eval_loss" if name == "train" else f"{name}/loss"] = (total_loss / len(split)).item()
        metrics[f"{name}/acc"] = (correct.double() / len(split)).item()
    model.train()
    return metrics


@torch.no_grad()
def evaluate_synthetic(model, stream) -> dict[str, float]:
    """``eval/loss``: the loss the current point has in expectation over the next evaluation; for the noisy
    bowl that is the loss at the current centre plus the irreducible 1/2 sigma^2 tr H."""
    if hasattr(model, "hessian"):
        expected = float(model(stream.centre)) + model.optimum_loss
    else:
        expected = float(model(None))
    return {"eval/loss": expected, "eval/optimum": model.optimum_loss, "eval/gap": expected - model.optimum_loss}


def peak_memory_mb(device: torch.device) -> dict[str, float]:
    if device.type == "cuda":
        return {"memory/peak_mb": torch.cuda.max_memory_allocated(device) / 2**20}
    # ru_maxrss is in KiB on Linux: the process's peak resident memory.
    return {"memory/peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
