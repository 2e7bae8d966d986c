"""Pictures for TensorBoard: an optimizer's visuals (protocol.Heatmap / protocol.Bars) and the Hbar probe's blocks,
drawn with matplotlib's Agg backend into CHW float tensors in [0, 1]. Optimizers return numbers; only this module
draws, so the optimizers stay free of plotting code and every picture looks alike."""

from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ...optimizers.protocol import Bars, Heatmap, Visual  # noqa: E402


def figure_to_image(figure) -> torch.Tensor:
    """A drawn matplotlib figure as a CHW float tensor in [0, 1]; closes the figure."""
    figure.canvas.draw()
    rgba = np.asarray(figure.canvas.buffer_rgba(), dtype=np.float32)[..., :3] / 255.0
    plt.close(figure)
    return torch.from_numpy(rgba.copy()).permute(2, 0, 1).contiguous()


def _as_numpy(values) -> np.ndarray:
    return torch.as_tensor(values, dtype=torch.float64).detach().cpu().numpy()


def _symmetric_limit(values: np.ndarray) -> float:
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max()) if finite.size and finite.max() > 0 else 1.0


def _font_size(count: int) -> int:
    return max(4, 10 - count // 8)


def render_heatmap(matrix, rows: Sequence[str], cols: Sequence[str] | None = None, title: str = "") -> torch.Tensor:
    """A matrix (square or a rectangular block) as a heatmap with a diverging colour map centred at 0, labelled
    rows and columns and a colour bar."""
    cols = rows if cols is None else cols
    values = _as_numpy(matrix)
    if values.ndim != 2 or values.shape != (len(rows), len(cols)):
        raise ValueError(f"render_heatmap needs one label per row and per column, got a {values.shape} matrix and "
                         f"{len(rows)} x {len(cols)} labels")
    limit = _symmetric_limit(values)
    width = min(4.0 + 0.25 * len(cols), 14.0) + 1.2
    height = min(3.0 + 0.25 * len(rows), 14.0)
    figure, axes = plt.subplots(figsize=(width, height), dpi=80)
    image = axes.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    axes.set_xticks(range(len(cols)), cols, rotation=90, fontsize=_font_size(len(cols)))
    axes.set_yticks(range(len(rows)), rows, fontsize=_font_size(len(rows)))
    axes.set_title(title)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    figure.tight_layout()
    return figure_to_image(figure)


def render_bars(values, labels: Sequence[str], title: str = "") -> torch.Tensor:
    """One bar per entry (gbar, D3), red where negative."""
    data = _as_numpy(values).reshape(-1)
    if data.shape[0] != len(labels):
        raise ValueError(f"render_bars needs one label per value, got {data.shape[0]} values and {len(labels)} labels")
    figure, axes = plt.subplots(figsize=(min(4.0 + 0.3 * len(labels), 14.0), 4.0), dpi=80)
    axes.bar(range(len(labels)), np.nan_to_num(data), color=["tab:red" if v < 0 else "tab:blue" for v in data])
    axes.axhline(0.0, color="black", linewidth=0.8)
    axes.set_xticks(range(len(labels)), labels, rotation=90, fontsize=_font_size(len(labels)))
    axes.set_title(title)
    figure.tight_layout()
    return figure_to_image(figure)


def render(visual: Visual) -> torch.Tensor:
    """The picture of one of an optimizer's visuals."""
    if isinstance(visual, Heatmap):
        return render_heatmap(visual.matrix, visual.labels, title=visual.title)
    if isinstance(visual, Bars):
        return render_bars(visual.values, visual.labels, visual.title)
    raise TypeError(f"an optimizer's visuals() must return Heatmap or Bars values, got {type(visual).__name__}")
