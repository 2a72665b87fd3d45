"""The figures fit the site's column and carry what their legibility depends on (`ibutils.plots`)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ibutils import plots, widgets  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _plane(snapshots=6, layers=3):
    epochs = np.arange(snapshots)
    i_xt = np.linspace(0, 12, snapshots * layers).reshape(snapshots, layers)
    return epochs, i_xt, i_xt / 12


def test_smallest_font_counts_drawn_text_only():
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    assert plots.smallest_font_pt(fig) == 10.0  # tick labels get their text when drawn
    ax.legend(["a line"], fontsize=7)
    ax.text(1, 2, "note", fontsize=6.5)
    assert plots.smallest_font_pt(fig) == 6.5
    ax.text(1, 2, "hidden", fontsize=3).set_visible(False)
    ax.text(1, 2, "   ", fontsize=2)  # blank: nothing shown
    assert plots.smallest_font_pt(fig) == 6.5
    empty = plt.figure()
    assert plots.smallest_font_pt(empty) is None


def test_smallest_font_skips_text_of_hidden_axes():
    fig, (left, right) = plt.subplots(1, 2)
    right.tick_params(labelsize=5)
    assert plots.smallest_font_pt(fig) == 5.0
    right.set_visible(False)
    assert plots.smallest_font_pt(fig) == 10.0


def test_figure_png_records_dpi_and_smallest_font():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([1, 2])
    ax.set_title("title", fontsize=9)
    info = plots.png_info(plots.figure_png(fig, 150))
    assert info == {"width": 600, "height": 450, "dpi": 150.0, "smallest_font_pt": 9.0}
    tight = plots.png_info(plots.figure_png(fig, 200, bbox_inches="tight"))
    assert tight["dpi"] == 200.0 and tight["width"] < 800
    ax.tick_params(labelsize=7)  # tick labels get their text in the save itself
    assert plots.png_info(plots.figure_png(fig, 100))["smallest_font_pt"] == 7.0 == plots.smallest_font_pt(fig)
    with pytest.raises(ValueError, match="dpi"):
        plots.figure_png(fig, 0)


def test_png_info_of_a_plain_png():
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (3, 2)).save(buffer, format="PNG")
    assert plots.png_info(buffer.getvalue()) == {"width": 3, "height": 2, "dpi": None, "smallest_font_pt": None}
    with pytest.raises(ValueError, match="PNG"):
        buffer = io.BytesIO()
        Image.new("RGB", (3, 2)).save(buffer, format="GIF")
        plots.png_info(buffer.getvalue())


def test_slider_frames_are_stamped():
    def frame(size):
        fig, ax = plt.subplots(figsize=(3, 2))
        ax.plot([1, 2])
        ax.legend(["x"], fontsize=size)
        return fig

    slider = widgets.slider(frame, dpi=80, size=[6, 9])
    infos = [plots.png_info(png) for png in slider.frames]
    assert [i["smallest_font_pt"] for i in infos] == [6.0, 9.0]
    assert all(i["dpi"] == 80.0 and i["width"] == 240 for i in infos)


def test_retina_png_is_shown_at_half_its_pixels():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([1, 2])
    data, size = plots._retina_png(fig)
    import base64

    info = plots.png_info(base64.b64decode(data))
    assert info["dpi"] == 2 * fig.dpi and size == {"width": info["width"] // 2, "height": info["height"] // 2}
    assert plots._retina_png(plt.figure()) is None  # an empty figure shows nothing


@pytest.mark.parametrize("n, ncols, shape", [(1, 2, (1, 1)), (2, 2, (1, 2)), (3, 2, (2, 2)), (4, 2, (2, 2)),
                                             (6, 3, (2, 3)), (5, 1, (5, 1))])
def test_panel_grid(n, ncols, shape):
    fig, axes = plots.panel_grid(n, ncols=ncols, panel_size=(2.0, 1.5), extra_width=0.5)
    assert len(axes) == n and fig.axes == axes  # unused cells are removed
    np.testing.assert_allclose(fig.get_size_inches(), (2.0 * shape[1] + 0.5, 1.5 * shape[0]))
    rows = {ax.get_subplotspec().rowspan.start for ax in axes}
    assert len(rows) == shape[0]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_panel_grid_rejects_bad_counts(bad):
    with pytest.raises(ValueError, match="n must"):
        plots.panel_grid(bad)
    with pytest.raises(ValueError, match="ncols"):
        plots.panel_grid(2, ncols=bad)


def test_four_information_planes_make_a_column_wide_grid():
    fig = plots.information_planes({name: _plane() for name in "ABCD"}, h_x=12)
    planes, colorbar = fig.axes[:4], fig.axes[4]
    assert [ax.get_title() for ax in planes] == list("ABCD")
    assert {ax.get_subplotspec().rowspan.start for ax in planes} == {0, 1}
    assert fig.get_size_inches()[0] <= plots.COLUMN_WIDTH + 0.1
    # labels on the outer panels only: the left column and the bottom row
    assert [bool(ax.get_ylabel()) for ax in planes] == [True, False, True, False]
    assert [bool(ax.get_xlabel()) for ax in planes] == [False, False, True, True]
    assert colorbar.get_ylabel() == "epoch"
    with pytest.raises(ValueError, match="planes"):
        plots.information_planes({})


def test_three_planes_keep_the_x_label_of_the_lowest_in_each_column():
    fig = plots.information_planes({name: _plane() for name in "ABC"})
    assert [bool(ax.get_xlabel()) for ax in fig.axes[:3]] == [False, True, True]


def test_activity_histograms_wrap_into_rows():
    epochs = np.array([0, 1, 10, 100])
    hist = [np.full((4, 5), 0.2) for _ in range(6)]
    edges = [np.linspace(-1, 1, 6)] * 6
    fig = plots.activity_histograms(epochs, hist, edges, [f"layer {l}" for l in range(6)])
    panels = fig.axes[:6]
    assert {ax.get_subplotspec().rowspan.start for ax in panels} == {0, 1}
    assert fig.get_size_inches()[0] <= plots.COLUMN_WIDTH + 0.1
    assert [ax.get_ylabel() for ax in panels] == ["activity", "", "", "activity", "", ""]


def test_verdict_matrix_puts_networks_across():
    rows, columns = ["tanh", "relu"], ["paper", "kraskov", "quantised"]
    matrix = {"rows": rows, "columns": columns}
    for part in ("hidden", "output"):
        matrix[part] = [[0.6, 0.2, np.nan], [0.05, 0.3, 0.7]]
        matrix[f"{part}_sd"] = [[0.01] * 3] * 2
        matrix[f"{part}_verdict"] = [["compresses", "slight", "n/a"], ["none", "slight", "compresses"]]
    fig = plots.verdict_matrix(matrix, row_labels={"relu": "ReLU"})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["tanh", "ReLU"]
    assert [t.get_text() for t in ax.get_yticklabels()] == columns
    texts = {(round(t.get_position()[0], 2), round(t.get_position()[1], 2)): t.get_text() for t in ax.texts}
    assert texts[(0.5, 0.29)] == "0.60±0.01"  # tanh, paper, hidden layers
    assert texts[(0.5, 2.29)] == "–"  # tanh, quantised: not run
    assert texts[(1.5, 2.79)] == "0.70±0.01"  # ReLU, quantised, output layer
    assert plots.smallest_font_pt(fig) >= 8
