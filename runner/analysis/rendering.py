"""Pictures for TensorBoard: an optimizer's visuals (protocol.Heatmap / protocol.Bars) and the Hbar probe's blocks,
drawn with matplotlib's Agg backend into CHW float tensors in [0, 1]. Optimizers return numbers; only this module
draws, so the optimizers stay free of plotting code and every picture looks alike.

Readable, whatever the magnitudes: Hbar's entries span many decades (one layer's curvature can be 1e4 times
another's), and on a linear colour scale the largest entry washes every other cell out to white. So a square
matrix is drawn twice, side by side: on the left the raw matrix on a symmetric logarithmic colour scale (sign
kept, linear only within ``linthresh`` of zero, so every decade between the smallest and largest magnitude gets
its own colours); on the right the scale-free ``M_ij / sqrt(|M_ii M_jj|)``, which is in [-1, 1] for a positive
semi-definite matrix and shows the coupling between subsets whatever their curvature scales. Values are written
in the cells when the matrix is small. Bars (gbar, D3) get a symmetric log axis when their magnitudes span more
than two decades, and their values above the bars when there are few.

Sizes are chosen for TensorBoard's Time Series dashboard, which fits each image into a card of at least
335 x 320 px (``CARD_IMAGE_PX`` is what is left for the image): fonts are set so that labels and titles are at
least ``MIN_TEXT_PX`` tall there, and labels that would not fit at that size are thinned to every k-th one
rather than shrunk. Values written in cells are as large as their cells allow (readable in the default card
for S <= 4; for larger S, at the card's "actual size" toggle)."""

from __future__ import annotations

import math
from typing import Sequence

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import matplotlib.ticker  # noqa: E402
from matplotlib.colors import Normalize, SymLogNorm  # noqa: E402

from ...optimizers.protocol import Bars, Heatmap, Visual  # noqa: E402

# TensorBoard's Time Series dashboard draws image cards at least 335 x 320 px (a grid of
# minmax(335px, auto) columns) and fits the image, keeping its aspect ratio, into what the card leaves after its
# padding, title and step slider: about this box (tensorboard/webapp/metrics/views/_common.scss,
# card_renderer/image_card_component.scss).
CARD_IMAGE_PX = (303.0, 245.0)
MIN_TEXT_PX = 8.0  # labels and titles are at least this tall in that box
DPI = 100
VALUES_UP_TO = 8  # write each cell's value when the matrix has at most this many rows (bars: twice as many)
COLOURS = "RdBu_r"  # diverging: red positive, blue negative, white 0


def figure_to_image(figure) -> torch.Tensor:
    """A drawn matplotlib figure as a CHW float tensor in [0, 1]; closes the figure."""
    figure.canvas.draw()
    rgba = np.asarray(figure.canvas.buffer_rgba(), dtype=np.float32)[..., :3] / 255.0
    plt.close(figure)
    return torch.from_numpy(rgba.copy()).permute(2, 0, 1).contiguous()


def _as_numpy(values) -> np.ndarray:
    return torch.as_tensor(values, dtype=torch.float64).detach().cpu().numpy()


def display_scale(width_inches: float, height_inches: float) -> float:
    """Screen pixels per image pixel once a figure of this size is fitted into a default image card."""
    return min(CARD_IMAGE_PX[0] / (width_inches * DPI), CARD_IMAGE_PX[1] / (height_inches * DPI))


def displayed_text_px(font_points: float, width_inches: float, height_inches: float) -> float:
    """How tall text of ``font_points`` appears in a default card."""
    return font_points * DPI / 72.0 * display_scale(width_inches, height_inches)


def _points(width_inches: float, height_inches: float) -> float:
    """The font size (points) whose text is MIN_TEXT_PX tall in a default card."""
    return MIN_TEXT_PX / display_scale(width_inches, height_inches) * 72.0 / DPI


def symlog_norm(values: np.ndarray) -> Normalize:
    """A symmetric log colour scale covering ``values``: limits +-max|v|, linear within ``linthresh`` of zero. The
    threshold is the 10th percentile of the non-zero magnitudes (floored at 1e-8 of the largest, so float noise
    stays white): nearly every entry lies on the logarithmic part, where each decade gets the same share of the
    colours, while a few stray near-zero entries cannot stretch the scale over decades nobody needs."""
    finite = np.abs(values[np.isfinite(values)])
    nonzero = finite[finite > 0]
    if nonzero.size == 0:
        return Normalize(vmin=-1.0, vmax=1.0)
    limit = float(nonzero.max())
    linthresh = max(float(np.quantile(nonzero, 0.1)), limit * 1e-8)
    if linthresh >= limit / 10:  # magnitudes within a decade: a linear scale says everything
        return Normalize(vmin=-limit, vmax=limit)
    return SymLogNorm(linthresh=linthresh, linscale=0.5, vmin=-limit, vmax=limit, base=10)


def correlation(values: np.ndarray) -> np.ndarray | None:
    """``M_ij / sqrt(|M_ii M_jj|)`` for a square matrix (nan where a diagonal entry is 0 or not finite); None for a
    rectangular block."""
    if values.ndim != 2 or values.shape[0] != values.shape[1]:
        return None
    diagonal = np.sqrt(np.abs(np.diag(values)))
    scale = np.outer(diagonal, diagonal)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = values / scale
    out[~np.isfinite(out) | (scale == 0)] = np.nan
    return out


def format_value(value: float) -> str:
    """At most 5 characters: .53, -.049, 1.5, -12, 340, 1.2e4, -8e-4."""
    if not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if value == 0:
        return "0"
    magnitude = abs(value)
    if 0.01 <= magnitude < 1000:
        text = f"{value:.2g}" if magnitude < 100 else f"{value:.0f}"
        return text.replace("0.", ".", 1) if magnitude < 1 else text  # -.049: the leading zero costs a cell its width
    mantissa, exponent = f"{value:.1e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    if len(mantissa) + len(str(int(exponent))) >= 5:  # -8.4e-4 would not fit a cell: one significant digit
        mantissa = f"{float(mantissa):.0f}"
    return f"{mantissa}e{int(exponent)}"


def format_correlation(value: float) -> str:
    """Two decimals without the leading zero (.76, -.38, 1.00); 0 for what rounds to zero."""
    if not math.isfinite(value):
        return ""
    if abs(value) < 0.005:
        return "0"
    return f"{value:.2f}".replace("0.", ".", 1)


LABEL_CHARS = 14  # longer labels are shortened in the middle: rotated x labels would take the figure's height


def short_label(name: str) -> str:
    """Axis labels: 'f1.weight' -> 'f1.W', 'blocks2/biases' -> 'blocks2/b' (the role stays, the width goes), and
    at most LABEL_CHARS characters, keeping both ends ('layer3.1.conv2.W' -> 'layer3…conv2.W')."""
    for long, short in ((".weight", ".W"), (".bias", ".b"), ("/weights", "/W"), ("/biases", "/b")):
        if name.endswith(long):
            name = name[: -len(long)] + short
            break
    if len(name) > LABEL_CHARS:
        tail = (LABEL_CHARS - 1) // 2 + 1
        name = name[: LABEL_CHARS - 1 - tail] + "…" + name[-tail:]
    return name


def _ticks(axis_points: float, count: int, font: float) -> list[int]:
    """Indices to label along an axis: all of them when a font-high label fits in each cell, else every k-th."""
    step = max(1, math.ceil(1.15 * font / (axis_points / max(count, 1))))
    return list(range(0, count, step))


def _symlog_ticks(norm: Normalize) -> list[float] | None:
    """At most 7 ticks for a symlog scale: 0 and up to three decades each side, the largest included."""
    if not isinstance(norm, SymLogNorm):
        return None
    top = math.floor(math.log10(norm.vmax))
    bottom = math.ceil(math.log10(norm.linthresh))
    decades = list(range(top, bottom - 1, -max(1, math.ceil((top - bottom + 1) / 3))))[:3]
    positive = [10.0 ** d for d in decades]
    return sorted([-v for v in positive] + [0.0] + positive)


def _place(figure) -> None:
    """Run the layout engine once and freeze its result: label thinning and cell values need the axes' final
    size, and neither changes the margins enough to pay for a second layout pass (half of a drawing's time)."""
    figure.get_layout_engine().execute(figure)
    figure.set_layout_engine("none")


def _axes_points(figure, axes) -> tuple[float, float]:
    """An axes' placed width and height in points."""
    box = axes.get_position()
    width, height = figure.get_size_inches()
    return box.width * width * 72.0, box.height * height * 72.0


def _annotate(axes, image, values: np.ndarray, fmt, font: float, cell_points: float) -> None:
    """Each cell's value, in black or white by the cell's brightness, as large as the cell and the font allow."""
    rgba = image.to_rgba(np.ma.masked_invalid(values))
    texts = [[fmt(float(v)) for v in row] for row in values]
    longest = max(1, max(len(t) for row in texts for t in row))
    size = min(font, 0.9 * cell_points / (0.62 * longest))  # a digit is about 0.62 em wide
    for i, row in enumerate(texts):
        for j, text in enumerate(row):
            r, g, b, _ = rgba[i, j]
            dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
            axes.text(j, i, text, ha="center", va="center", fontsize=size, color="white" if dark else "black")


def heatmap_figure(matrix, rows: Sequence[str], cols: Sequence[str] | None = None, title: str = ""):
    """The figure render_heatmap draws (returned open, for tests and notebooks): the raw matrix on a symmetric
    log scale and, for a square matrix, its correlation-normalised form beside it."""
    cols = rows if cols is None else cols
    values = _as_numpy(matrix)
    if values.ndim != 2 or values.shape != (len(rows), len(cols)):
        raise ValueError(f"render_heatmap needs one label per row and per column, got a {values.shape} matrix and "
                         f"{len(rows)} x {len(cols)} labels")
    normalised = correlation(values)
    panels = [(values, symlog_norm(values), format_value, f"{title} (symlog)" if title else "symlog scale")]
    if normalised is not None:
        panels.append((normalised, Normalize(vmin=-1.0, vmax=1.0), format_correlation, "M_ij / sqrt|M_ii M_jj|"))
    width, height = (4.2 if len(panels) == 1 else 7.6), 4.0
    font = _points(width, height)
    figure, axes = plt.subplots(1, len(panels), figsize=(width, height), dpi=DPI, squeeze=False,
                                layout="constrained")
    images = []
    for k, (data, norm, _, name) in enumerate(panels):
        ax = axes[0][k]
        # a nan cell (a zero diagonal entry) is grey, not a colour of the scale
        cmap = matplotlib.colormaps[COLOURS].with_extremes(bad="#bbbbbb")
        image = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, norm=norm, interpolation="nearest", aspect="auto")
        ax.set_title(name, fontsize=font)
        ticks = _symlog_ticks(norm) if k == 0 else [-1.0, 0.0, 1.0]
        bar = figure.colorbar(image, ax=ax, fraction=0.08, pad=0.02, ticks=ticks)
        if k == 0 and ticks is not None:
            bar.ax.set_yticklabels([format_value(t) for t in ticks])
        bar.ax.tick_params(labelsize=font)
        images.append(image)
    # Every label first, so the layout leaves room for them; thinned below once the axes' size is known.
    for k, ax in enumerate(axes[0]):
        ax.set_xticks(range(len(cols)), [short_label(c) for c in cols], rotation=90, fontsize=font)
        ax.set_yticks(range(len(rows)), [short_label(r) for r in rows] if k == 0 else [], fontsize=font)
    _place(figure)
    for k, ax in enumerate(axes[0]):
        ax_width, ax_height = _axes_points(figure, ax)
        xt, yt = _ticks(ax_width, len(cols), font), _ticks(ax_height, len(rows), font)
        ax.set_xticks(xt, [short_label(cols[i]) for i in xt], rotation=90, fontsize=font)
        ax.set_yticks(yt, [short_label(rows[i]) for i in yt] if k == 0 else [], fontsize=font)
        if max(values.shape) <= VALUES_UP_TO:
            data, _, fmt, _ = panels[k]
            _annotate(ax, images[k], data, fmt, font, min(ax_width / len(cols), ax_height / len(rows)))
    return figure


def render_heatmap(matrix, rows: Sequence[str], cols: Sequence[str] | None = None, title: str = "") -> torch.Tensor:
    """A matrix (square or a rectangular block) as a labelled heatmap image (see heatmap_figure)."""
    return figure_to_image(heatmap_figure(matrix, rows, cols, title))


def bars_figure(values, labels: Sequence[str], title: str = ""):
    """The figure render_bars draws: one bar per entry, red where negative, on a symmetric log axis when the
    magnitudes span more than two decades, values above the bars when there are few."""
    data = _as_numpy(values).reshape(-1)
    if data.shape[0] != len(labels):
        raise ValueError(f"render_bars needs one label per value, got {data.shape[0]} values and {len(labels)} labels")
    width, height = 5.0, 4.0
    font = _points(width, height)
    figure, axes = plt.subplots(figsize=(width, height), dpi=DPI, layout="constrained")
    shown = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
    axes.bar(range(len(labels)), shown, color=["tab:red" if v < 0 else "tab:blue" for v in shown])
    axes.axhline(0.0, color="black", linewidth=0.8)
    magnitudes = np.abs(shown[shown != 0])
    if magnitudes.size and magnitudes.max() / magnitudes.min() > 100:
        linthresh = float(magnitudes.min()) / 2
        axes.set_yscale("symlog", linthresh=linthresh, linscale=0.5)
        ticks = _symlog_ticks(SymLogNorm(linthresh, vmin=-magnitudes.max(), vmax=magnitudes.max()))
        axes.set_yticks(ticks, [format_value(t) for t in ticks])
        axes.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        title = f"{title} (symlog)" if title else "symlog axis"
    axes.set_title(title, fontsize=font)
    axes.tick_params(axis="y", labelsize=font)
    axes.set_xticks(range(len(labels)), [short_label(n) for n in labels], rotation=90, fontsize=font)
    if len(labels) <= 2 * VALUES_UP_TO:
        for i, v in enumerate(data):
            axes.annotate(format_value(float(v)), (i, shown[i]), ha="center", va="bottom" if shown[i] >= 0 else "top",
                          fontsize=font * 0.8, xytext=(0, 2 if shown[i] >= 0 else -2), textcoords="offset points")
        axes.margins(y=0.15)
    _place(figure)
    xt = _ticks(_axes_points(figure, axes)[0], len(labels), font)
    axes.set_xticks(xt, [short_label(labels[i]) for i in xt], rotation=90, fontsize=font)
    return figure


def render_bars(values, labels: Sequence[str], title: str = "") -> torch.Tensor:
    """One bar per entry (gbar, D3) as an image (see bars_figure)."""
    return figure_to_image(bars_figure(values, labels, title))


def render(visual: Visual) -> torch.Tensor:
    """The picture of one of an optimizer's visuals."""
    if isinstance(visual, Heatmap):
        return render_heatmap(visual.matrix, visual.labels, title=visual.title)
    if isinstance(visual, Bars):
        return render_bars(visual.values, visual.labels, visual.title)
    raise TypeError(f"an optimizer's visuals() must return Heatmap or Bars values, got {type(visual).__name__}")
