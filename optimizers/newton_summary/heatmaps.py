"""Images of the summaries for TensorBoard: labelled heatmaps (Figure 1 of the papers) and bar plots.

Rendered with matplotlib's Agg backend into CHW float tensors in [0, 1]; heatmaps use a diverging colour
map centred at 0 (symmetric limits) with the group names on both axes and a colour bar.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def _figure_size(count: int) -> tuple[float, float]:
    side = min(4.0 + 0.25 * count, 14.0)
    return side + 1.2, side


def _to_tensor(figure) -> torch.Tensor:
    figure.canvas.draw()
    rgba = np.asarray(figure.canvas.buffer_rgba(), dtype=np.float32)[..., :3] / 255.0
    plt.close(figure)
    return torch.from_numpy(rgba.copy()).permute(2, 0, 1).contiguous()


def render_heatmap(matrix, labels: Sequence[str], title: str = "") -> torch.Tensor:
    """A square matrix as a heatmap (RdBu_r, centred at 0) with ``labels`` on both axes; CHW in [0, 1]."""
    values = torch.as_tensor(matrix, dtype=torch.float64).detach().cpu().numpy()
    if values.ndim != 2 or values.shape[0] != values.shape[1] or values.shape[0] != len(labels):
        raise ValueError(f"render_heatmap needs a square matrix with one label per row, got {values.shape} "
                         f"and {len(labels)} labels")
    finite = values[np.isfinite(values)]
    limit = float(np.abs(finite).max()) if finite.size else 1.0
    limit = limit if limit > 0 else 1.0
    count = len(labels)
    figure, axes = plt.subplots(figsize=_figure_size(count), dpi=80)
    image = axes.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    font = max(4, 10 - count // 8)
    axes.set_xticks(range(count), labels, rotation=90, fontsize=font)
    axes.set_yticks(range(count), labels, fontsize=font)
    axes.set_title(title)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    figure.tight_layout()
    return _to_tensor(figure)


def render_bars(values, labels: Sequence[str], title: str = "") -> torch.Tensor:
    """One bar per group (gbar, D3); CHW in [0, 1]."""
    data = torch.as_tensor(values, dtype=torch.float64).detach().cpu().numpy().reshape(-1)
    if data.shape[0] != len(labels):
        raise ValueError(f"render_bars needs one label per value, got {data.shape[0]} values and {len(labels)} labels")
    count = len(labels)
    figure, axes = plt.subplots(figsize=(min(4.0 + 0.3 * count, 14.0), 4.0), dpi=80)
    colours = ["tab:red" if v < 0 else "tab:blue" for v in data]
    axes.bar(range(count), np.nan_to_num(data), color=colours)
    axes.axhline(0.0, color="black", linewidth=0.8)
    axes.set_xticks(range(count), labels, rotation=90, fontsize=max(4, 10 - count // 8))
    axes.set_title(title)
    figure.tight_layout()
    return _to_tensor(figure)
