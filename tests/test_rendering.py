"""Heatmaps and bar charts of the optimizers' visuals stay readable whatever the magnitudes
(runner/analysis/rendering.py)."""

import math

import numpy as np
import pytest
import torch
from matplotlib.colors import Normalize

from hoopt.optimizers.protocol import Bars, Heatmap
from hoopt.runner.analysis.rendering import (
    COLOURS, LABEL_CHARS, MIN_TEXT_PX, bars_figure, displayed_text_px, format_value, heatmap_figure, render,
    render_heatmap, short_label,
)

LABELS = ["f1.weight", "f1.bias", "f2.weight", "f2.bias"]


def structured_with_one_huge_entry():
    """Couplings of +-0.1..1 between four subsets, and one subset whose curvature is 1e4: the shape of an Hbar
    whose first layer dominates."""
    matrix = torch.tensor([[1.0, 0.5, -0.5, 0.1],
                           [0.5, 1.0, 0.2, -0.3],
                           [-0.5, 0.2, 1.0, 0.6],
                           [0.1, -0.3, 0.6, 1.0]], dtype=torch.float64)
    matrix[0, 0] = 1e4
    return matrix


def panels(figure):
    """The heatmap axes (not the colour bars), left to right, and their images."""
    axes = [a for a in figure.axes if a.images]
    return axes, [a.images[0] for a in axes]


def rgb(image, values):
    return np.asarray(image.to_rgba(np.asarray(values, dtype=float)))[..., :3]


def test_one_huge_entry_no_longer_washes_out_the_other_cells():
    matrix = structured_with_one_huge_entry()
    figure = heatmap_figure(matrix, LABELS, title="Hbar")
    _, (raw, normalised) = panels(figure)
    colours = rgb(raw, matrix.numpy())
    # +0.5 and -0.5 are opposite colours, and 0.5 is told from 0.1, beside an entry 2e4 times larger ...
    assert np.linalg.norm(colours[0, 1] - colours[0, 2]) > 0.2
    assert np.linalg.norm(colours[0, 1] - colours[0, 3]) > 0.1
    # ... where the old linear scale centred at 0 drew all of them as the same near-white
    import matplotlib

    linear = matplotlib.colormaps[COLOURS](Normalize(-1e4, 1e4)(matrix.numpy()))[..., :3]
    assert np.linalg.norm(linear[0, 1] - linear[0, 2]) < 0.01
    # the panel beside it is the scale-free M_ij / sqrt(|M_ii M_jj|), whatever the diagonal's magnitudes
    d = np.sqrt(np.abs(np.diag(matrix.numpy())))
    np.testing.assert_allclose(np.asarray(normalised.get_array()), matrix.numpy() / np.outer(d, d))
    assert normalised.norm.vmin == -1 and normalised.norm.vmax == 1
    shown = rgb(normalised, np.asarray(normalised.get_array()))
    assert np.linalg.norm(shown[2, 3] - shown[1, 2]) > 0.2  # 0.6 and 0.2 couplings are told apart


def test_a_zero_diagonal_entry_leaves_its_normalised_cells_blank_not_wrong():
    matrix = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    _, (_, normalised) = panels(heatmap_figure(matrix, ["a", "b"]))
    values = normalised.get_array()
    assert values[0, 0] == pytest.approx(1.0) and np.ma.is_masked(values[1, 1]) and np.ma.is_masked(values[0, 1])


def cell_texts(axes):
    return [t.get_text() for t in axes.texts]


def test_values_are_written_in_the_cells_of_a_small_matrix_only():
    matrix = structured_with_one_huge_entry()
    axes, _ = panels(heatmap_figure(matrix, LABELS))
    assert cell_texts(axes[0]) == [format_value(float(v)) for v in matrix.reshape(-1)]
    assert cell_texts(axes[0])[:3] == ["1e4", ".5", "-.5"]
    assert cell_texts(axes[1])[:2] == ["1.00", ".01"]
    big = torch.eye(12)
    assert all(cell_texts(a) == [] for a in panels(heatmap_figure(big, [f"g{i}" for i in range(12)]))[0])


@pytest.mark.parametrize("size", [4, 16, 62])
def test_labels_are_readable_at_tensorboards_default_card_size(size):
    names = [f"layer{i // 8}.{i % 8}.conv{i % 3}.weight" for i in range(size)]
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator)
    figure = heatmap_figure(a @ a.T, names, title="Hbar")
    width, height = figure.get_size_inches()
    axes, _ = panels(figure)
    for ax in axes:
        labels = [t for t in ax.get_xticklabels() + ax.get_yticklabels() if t.get_text()]
        assert labels
        for label in labels:
            assert displayed_text_px(label.get_fontsize(), width, height) >= MIN_TEXT_PX - 1e-9
            assert len(label.get_text()) <= LABEL_CHARS
        # thinned, not crammed: neighbouring labels are at least a font height apart
        box = ax.get_position()
        spacing = box.height * height * 72 / size * (ax.get_yticks()[1] - ax.get_yticks()[0] if size > 1 else 1)
        assert spacing >= ax.get_xticklabels()[0].get_fontsize()
    assert displayed_text_px(axes[0].title.get_fontsize(), width, height) >= MIN_TEXT_PX - 1e-9


def test_short_labels_keep_the_role_and_both_ends():
    assert short_label("f1.weight") == "f1.W" and short_label("blocks2/biases") == "blocks2/b"
    shortened = short_label("layer3.1.conv2.weight")
    assert len(shortened) == LABEL_CHARS and shortened.startswith("layer") and shortened.endswith("conv2.W")


def test_bars_spanning_many_decades_get_a_symmetric_log_axis_and_their_values():
    values = torch.tensor([1e4, -0.5, 0.5, 0.02])
    figure = bars_figure(values, LABELS, "gbar")
    ax = figure.axes[0]
    assert ax.get_yscale() == "symlog"
    zero = ax.transData.transform((0, 0))[1]
    top = ax.transData.transform((0, 0.5))[1]
    axis_height = ax.get_window_extent().height
    assert abs(top - zero) > 0.1 * axis_height  # the 0.5 bar is visible next to the 1e4 one (linear: 0.005%)
    assert [t.get_text() for t in ax.texts] == ["1e4", "-.5", ".5", ".02"]
    width, height = figure.get_size_inches()
    for label in ax.get_xticklabels():
        assert displayed_text_px(label.get_fontsize(), width, height) >= MIN_TEXT_PX - 1e-9
    assert bars_figure(torch.tensor([1.0, 2.0, -3.0, 4.0]), LABELS).axes[0].get_yscale() == "linear"


def test_render_draws_both_kinds_of_visual_as_an_image():
    heatmap = render(Heatmap(structured_with_one_huge_entry(), LABELS, "Hbar"))
    bars = render(Bars(torch.tensor([1.0, -2.0, float("nan"), 3.0]), LABELS, "gbar"))
    block = render_heatmap(torch.randn(3, 2), LABELS[:3], LABELS[2:], "weight_bias")  # the probe's blocks
    for image in (heatmap, bars, block):
        assert image.ndim == 3 and image.shape[0] == 3 and 0.0 <= float(image.min()) and float(image.max()) <= 1.0
        assert float(image.std()) > 0.05  # something was drawn
    assert heatmap.shape[2] > heatmap.shape[1]  # two panels side by side
    with pytest.raises(TypeError):
        render("not a visual")
    with pytest.raises(ValueError):
        render_heatmap(torch.eye(3), LABELS)


def test_value_format_fits_a_cell():
    for value in (0.53, -0.049, 1.5, -12.0, 340.0, 12345.0, -0.00084, 1e-30, -1e10, math.nan, 0.0):
        assert len(format_value(value)) <= 5
