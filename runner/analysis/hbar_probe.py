"""The Hbar probe (Figure 1 of the NewtonSummary papers): before each epoch, Hbar and Hbar^{-1} of the canonical
partition in full batch along the full-batch gradient, logged as heatmaps split into weight-weight, bias-bias and
weight-bias blocks. It observes training (any optimizer, SGD with momentum in the paper) and changes nothing.

Full batch = the whole training split (or its first ``max_examples``), in chunks: gbar and Hbar of the mean loss
are the size-weighted means of the chunks' summaries, since both are linear in the loss."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ...optimizers.newton_summary import build_partition, hessian_summary  # noqa: E402


def render_block(matrix: torch.Tensor, rows: list[str], cols: list[str], title: str) -> torch.Tensor:
    """A (possibly rectangular) block as a heatmap, diverging colours centred at 0; CHW float in [0, 1]."""
    values = matrix.detach().cpu().double().numpy()
    finite = values[np.isfinite(values)]
    limit = float(np.abs(finite).max()) if finite.size and np.abs(finite).max() > 0 else 1.0
    figure, axes = plt.subplots(figsize=(2.5 + 0.35 * len(cols), 2.0 + 0.35 * len(rows)), dpi=80)
    image = axes.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    axes.set_xticks(range(len(cols)), cols, rotation=90, fontsize=7)
    axes.set_yticks(range(len(rows)), rows, fontsize=7)
    axes.set_title(title, fontsize=8)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    figure.tight_layout()
    figure.canvas.draw()
    rgba = np.asarray(figure.canvas.buffer_rgba(), dtype=np.float32)[..., :3] / 255.0
    plt.close(figure)
    return torch.from_numpy(rgba.copy()).permute(2, 0, 1).contiguous()


class HbarProbe:
    def __init__(self, max_examples: int | None = None, chunk_size: int = 1000):
        self.max_examples = max_examples
        self.chunk_size = chunk_size

    def _chunks(self, loop):
        train = loop.dataset.train
        count = len(train) if self.max_examples is None else min(self.max_examples, len(train))
        for start in range(0, count, self.chunk_size):
            stop = min(start + self.chunk_size, count)
            yield stop - start, count, loop.dataset.make_batch(train.inputs[start:stop], train.targets[start:stop], None)

    def measure(self, loop) -> dict[str, torch.Tensor]:
        """Full-batch gradient, then gbar and Hbar along it; returns tensors and the partition's labels."""
        model = loop.model
        params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
        loss_fn = loop.objective.functional_loss
        gradient = {n: torch.zeros_like(p) for n, p in params.items()}
        for size, total, batch in self._chunks(loop):
            chunk = {n: p.clone().requires_grad_(True) for n, p in params.items()}
            grads = torch.autograd.grad(loss_fn(chunk, batch), list(chunk.values()))
            for (name, _), g in zip(chunk.items(), grads):
                gradient[name] += g * (size / total)
        partition = build_partition("canonical", list(model.named_parameters()))
        gbar, hbar = None, None
        for size, total, batch in self._chunks(loop):
            summary = hessian_summary(lambda p, b=batch: loss_fn(p, b), params, gradient, partition, third_order=False)
            weight = size / total
            gbar = summary.gbar * weight if gbar is None else gbar + summary.gbar * weight
            hbar = summary.hbar * weight if hbar is None else hbar + summary.hbar * weight
        return {"gbar": gbar, "hbar": hbar, "labels": list(partition.group_names)}

    def images(self, hbar: torch.Tensor, labels: list[str]) -> dict[str, torch.Tensor]:
        weights = [i for i, name in enumerate(labels) if not name.endswith("bias")]
        biases = [i for i, name in enumerate(labels) if name.endswith("bias")]
        inverse = torch.linalg.pinv(hbar)  # pinv: Hbar can be singular (e.g. at initialisation)
        images = {}
        for tag, matrix in (("probe/hbar", hbar), ("probe/hbar_inv", inverse)):
            for block, rows, cols in (("weight_weight", weights, weights), ("bias_bias", biases, biases),
                                      ("weight_bias", weights, biases)):
                if rows and cols:
                    images[f"{tag}/{block}"] = render_block(matrix[rows][:, cols], [labels[i] for i in rows],
                                                            [labels[i] for i in cols], f"{tag} {block}")
        return images

    def before_epoch(self, loop) -> None:
        if loop.dataset is None:
            return
        result = self.measure(loop)
        loop.logger.images(self.images(result["hbar"], result["labels"]), loop.step)
        loop.logger.scalars({"probe/hbar_trace": float(result["hbar"].trace()),
                             "probe/hbar_min_eig": float(torch.linalg.eigvalsh(result["hbar"]).min())},
                            loop.step, loop.epoch)
