"""One figure style for the whole book, and the figure functions.

Call `use_style()` once per chapter. Colours come from the colour-blind-safe Okabe-Ito
palette; epochs are coloured with `EPOCH_CMAP` on a log scale.

Sizes are chosen for the website's text column, 650 to 690 CSS px wide in a 1280-px window: a
figure is shown at 100 CSS px per inch, scaled down to the column when wider. Its smallest text,
8 pt, then shows at 8 / 72 * 100 = 11 CSS px, and still at 9 px or more up to about 8 inches of
figure width. The figure functions therefore put at most two panels side by side (`panel_grid`)
and keep figures within `COLUMN_WIDTH` inches. Every PNG the book makes (`figure_png`) records
its resolution and the smallest font size its text uses (`png_info`), so that the page tests can
measure each figure's smallest text as shown.
"""

from __future__ import annotations

import base64
import io
import math
import struct
import zlib

import matplotlib as mpl
import numpy as np
import matplotlib.pyplot as plt
from PIL import Image

from ibutils.progress import time_figure_rendering

OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
EPOCH_CMAP = "viridis"

STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 200,
    "figure.figsize": (6.4, 4.0),
    "figure.constrained_layout.use": True,
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": mpl.cycler(color=OKABE_ITO),
    "image.cmap": EPOCH_CMAP,
}


COLUMN_WIDTH = 7.2  # inches: figures up to this wide show 8-pt text at 10 CSS px or more in the site's column
SMALLEST_FONT_KEY = "ibutils:smallest-font-pt"  # PNG text chunk written by `figure_png`


def use_style() -> None:
    """Apply the book's matplotlib style and retina inline figures; count figure rendering as
    plotting in the run's time split (`ibutils.progress`).

    Inline figures are PNGs at twice the figure's dpi (200), shown at half their pixel size,
    cropped to their content (`bbox_inches="tight"`) and stamped by `figure_png`.
    """
    mpl.rcParams.update(STYLE)
    time_figure_rendering()
    try:
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:
        return
    set_matplotlib_formats("retina")
    from IPython import get_ipython

    shell = get_ipython()
    if shell is not None:  # IPython's own retina PNG, but stamped (`figure_png`)
        shell.display_formatter.formatters["image/png"].for_type(mpl.figure.Figure, _retina_png)


def _shown_texts(artist):
    """The text artists that `artist` draws: visible, not blank, under visible parents."""
    for child in artist.get_children():
        if not child.get_visible():
            continue
        if isinstance(child, mpl.text.Text) and child.get_text().strip():
            yield child
        yield from _shown_texts(child)


def _smallest_drawn_font(fig) -> float | None:
    sizes = [t.get_fontsize() for t in _shown_texts(fig)]
    return float(min(sizes)) if sizes else None


def smallest_font_pt(fig) -> float | None:
    """The smallest font size (points) of any text `fig` shows (titles, labels, tick labels,
    legends, annotations, colour bars), or None when it shows no text. Lays the figure out
    first (without rendering it): tick labels get their text only when the figure is drawn."""
    fig.draw_without_rendering()
    return _smallest_drawn_font(fig)


def _with_text_chunk(png: bytes, key: str, value: str) -> bytes:
    """`png` with a tEXt chunk `key`: `value` (Latin-1) after its header chunk (IHDR)."""
    data = key.encode("latin-1") + b"\0" + value.encode("latin-1")
    chunk = struct.pack(">I", len(data)) + b"tEXt" + data + struct.pack(">I", zlib.crc32(b"tEXt" + data))
    end_of_header = 8 + 4 + 4 + 13 + 4  # signature, then IHDR: length, type, 13 bytes, CRC
    return png[:end_of_header] + chunk + png[end_of_header:]


def figure_png(fig, dpi: float, **savefig_kwargs) -> bytes:
    """`fig` as PNG bytes at `dpi`, stamped with what its legibility depends on: the resolution
    (the pHYs chunk) and the smallest font size of its text in points (a text chunk,
    `SMALLEST_FONT_KEY`, read from the text the save drew, as `smallest_font_pt` would). Read
    both back with `png_info`. `savefig_kwargs` go to `fig.savefig` (e.g. `bbox_inches="tight"`)."""
    if isinstance(dpi, bool) or not isinstance(dpi, (int, float, np.integer, np.floating)) or not dpi > 0:
        raise ValueError(f"dpi must be a positive number, got {dpi!r}")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, **savefig_kwargs)
    smallest = _smallest_drawn_font(fig)  # after the save: tick labels have their text now
    png = buffer.getvalue()
    return png if smallest is None else _with_text_chunk(png, SMALLEST_FONT_KEY, f"{smallest:g}")


def png_info(png: bytes) -> dict:
    """What a PNG says about its legibility: `width` and `height` (pixels), `dpi` (from its pHYs
    chunk, None if absent) and `smallest_font_pt` (from `figure_png`'s text chunk, None if absent)."""
    with Image.open(io.BytesIO(png)) as image:
        if image.format != "PNG":
            raise ValueError(f"png: expected PNG bytes, got {image.format}")
        dpi = image.info.get("dpi")
        font = image.text.get(SMALLEST_FONT_KEY)
        return {"width": image.width, "height": image.height,
                "dpi": None if dpi is None else round(float(dpi[0]), 1),
                "smallest_font_pt": None if font is None else float(font)}


def _retina_png(fig):
    """The inline backend's PNG of `fig`: twice its dpi, shown at half size (IPython's "retina")."""
    if not fig.axes and not fig.lines:
        return None
    png = figure_png(fig, 2 * fig.dpi, bbox_inches="tight", facecolor=fig.get_facecolor(),
                     edgecolor=fig.get_edgecolor())
    info = png_info(png)
    return base64.b64encode(png).decode("ascii"), {"width": info["width"] // 2, "height": info["height"] // 2}


def _space_panels(fig) -> None:
    """Room between panels side by side, so that the last tick label of one x axis does not touch
    the first of the next (panels sharing a y axis have no tick labels between them)."""
    engine = fig.get_layout_engine()
    if isinstance(engine, mpl.layout_engine.ConstrainedLayoutEngine):
        engine.set(wspace=0.07)


def panel_grid(n: int, *, ncols: int = 2, panel_size: tuple[float, float] = (3.2, 2.8),
               extra_width: float = 0.0):
    """A figure for `n` panels, at most `ncols` side by side, so that it fits the site's column.

    Each panel gets `panel_size` (width, height) inches, plus `extra_width` inches in all (e.g. a
    colour bar). Returns `(fig, axes)`, `axes` a list of the `n` panels in reading order (the
    unused cells of the last row are removed).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer (panels), got {n!r}")
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be a positive integer (panels per row), got {ncols!r}")
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    width, height = panel_size
    fig, grid = plt.subplots(nrows, ncols, figsize=(width * ncols + extra_width, height * nrows), squeeze=False)
    _space_panels(fig)
    axes = list(grid.ravel())
    for ax in axes[n:]:
        fig.delaxes(ax)
    return fig, axes[:n]


def _label_outer(axes, ncols: int) -> None:
    """Panels with the same limits: axis labels and tick labels on the left column and on the
    lowest panel of each column only."""
    for i, ax in enumerate(axes):
        if i % ncols:
            ax.set_ylabel("")
            ax.tick_params(labelleft=False)
        if i + ncols < len(axes):
            ax.set_xlabel("")
            ax.tick_params(labelbottom=False)


def _epoch_norm(epochs) -> mpl.colors.Normalize:
    epochs = np.asarray(epochs)
    return mpl.colors.LogNorm(vmin=max(1, epochs[epochs > 0].min(initial=1)), vmax=max(2, epochs.max()))


def information_plane(ax, epochs, i_xt, i_ty, *, title: str = "", xlim=(0, 12.5), ylim=(0, 1.05),
                      h_x: float | None = None, h_y: float | None = None, join_every: int = 4):
    """Draw an information plane: each layer a trajectory of points coloured by epoch.

    `epochs` is `[snapshots]`; `i_xt`, `i_ty` are `[snapshots, layers]` in bits. Layers of one
    epoch are joined faintly (every `join_every`-th snapshot). Dotted lines mark H(X) = `h_x`
    and H(Y) = `h_y` when given. Returns the scatter artist (for a colour bar).
    """
    epochs, i_xt, i_ty = np.asarray(epochs), np.asarray(i_xt), np.asarray(i_ty)
    norm, cmap = _epoch_norm(epochs), plt.get_cmap(EPOCH_CMAP)
    colour_epochs = np.maximum(epochs, 1)
    for k in range(0, len(epochs), join_every):
        ax.plot(i_xt[k], i_ty[k], color=cmap(norm(colour_epochs[k])), alpha=0.25, lw=0.6, zorder=1)
    for l in range(i_xt.shape[1]):
        ax.plot(i_xt[:, l], i_ty[:, l], color="0.6", lw=0.5, zorder=2)
        points = ax.scatter(i_xt[:, l], i_ty[:, l], c=colour_epochs, cmap=cmap, norm=norm, s=9,
                            edgecolors="none", zorder=3)
    for value, line in ((h_x, ax.axvline), (h_y, ax.axhline)):
        if value is not None:
            line(value, color="0.3", ls=":", lw=0.8)
    ax.set(xlim=xlim, ylim=ylim, xlabel="I(X;T) (bits)", ylabel="I(T;Y) (bits)", title=title)
    return points


def information_planes(planes: dict, *, colorbar_label: str = "epoch", ncols: int = 2,
                       panel_size: tuple[float, float] = (3.2, 2.8), **kwargs):
    """Information planes with the same axes and one epoch colour bar, `ncols` side by side
    (four planes make a 2 x 2 grid).

    `planes` maps a panel title to `(epochs, i_xt, i_ty)` as for `information_plane`; keyword
    arguments go to it. `panel_size` is (width, height) in inches of each plane. Returns the
    figure; its first axes are the planes, in the order of `planes`.
    """
    if not planes:
        raise ValueError("planes: give at least one plane, {title: (epochs, i_xt, i_ty)}")
    fig, axes = panel_grid(len(planes), ncols=ncols, panel_size=panel_size, extra_width=0.8)
    for ax, (title, (epochs, i_xt, i_ty)) in zip(axes, planes.items()):
        points = information_plane(ax, epochs, i_xt, i_ty, title=title, **kwargs)
    _label_outer(axes, min(ncols, len(axes)))
    fig.colorbar(points, ax=axes, label=colorbar_label, shrink=0.9)
    return fig


def learning_curves(ax, epochs, curves: dict, *, ylabel: str, logx: bool = True):
    """Seed mean (line) and spread (band, ±1 sd) of per-seed curves `[seeds, snapshots]` (seeds
    first, as in `train.Run` and every result type).

    `curves` maps a label to its array; labels containing "test" are dashed.
    """
    epochs = np.maximum(np.asarray(epochs), 1) if logx else np.asarray(epochs)
    for (label, values), colour in zip(curves.items(), OKABE_ITO):
        values = np.asarray(values)
        if values.ndim != 2 or values.shape[1] != len(epochs):
            raise ValueError(f"curves[{label!r}] must be [seeds, snapshots] with {len(epochs)} snapshots, "
                             f"got shape {values.shape}")
        mean, sd = values.mean(0), values.std(0)
        ax.plot(epochs, mean, color=colour, ls="--" if "test" in label else "-", label=label)
        ax.fill_between(epochs, mean - sd, mean + sd, color=colour, alpha=0.2, lw=0)
    if logx:
        ax.set_xscale("log")
    ax.set(xlabel="epoch", ylabel=ylabel)
    ax.legend()


def activity_histograms(epochs, hist, edges, names, *, title: str = "", ncols: int = 3):
    """Heat maps of activity over training, one panel per layer (Saxe et al. Fig. 16/17), `ncols`
    side by side.

    `hist[l]` is `[snapshots, bins]` (fractions), `edges[l]` its bin edges. Colour is log10 of
    the fraction of activity values in a bin; x is the epoch (log scale).
    """
    fig, axes = panel_grid(len(hist), ncols=ncols, panel_size=(2.1, 2.3), extra_width=0.8)
    epochs = np.maximum(np.asarray(epochs), 1)
    x_edges = np.concatenate([[epochs[0] * 0.8], np.sqrt(epochs[1:] * epochs[:-1]), [epochs[-1] * 1.2]])
    norm = mpl.colors.LogNorm(vmin=1e-4, vmax=1)
    for i, (ax, h, e, name) in enumerate(zip(axes, hist, edges, names)):
        mesh = ax.pcolormesh(x_edges, e, np.clip(h.T, 1e-4, None), norm=norm, cmap="magma", shading="flat")
        ax.set(xscale="log", title=name, xlabel="epoch" if i + ncols >= len(axes) else "",
               ylabel="" if i % ncols else "activity")
    fig.colorbar(mesh, ax=axes, label="fraction of values", shrink=0.9)
    if title:
        fig.suptitle(title)
    return fig


def curve_panels(epochs, panels: dict, *, mark: float | None = None, title: str = "",
                 panel_size: tuple[float, float] = (2.9, 2.7), ncols: int = 2):
    """Panels over training, `ncols` side by side, each drawn by `learning_curves` (seed mean ± 1 sd).

    `panels` maps a panel title to `(ylabel, curves)`, with `curves` as for `learning_curves`:
    `{label: [seeds, snapshots]}`. `mark`, if given, is an epoch drawn as a dotted vertical line in
    every panel (e.g. where one curve peaks). Returns the figure; `fig.axes` follow `panels`.
    """
    if not panels:
        raise ValueError("panels: give at least one panel, {title: (ylabel, {label: values})}")
    fig, axes = panel_grid(len(panels), ncols=ncols, panel_size=panel_size)
    for ax, (panel_title, (ylabel, curves)) in zip(axes, panels.items()):
        learning_curves(ax, epochs, curves, ylabel=ylabel)
        ax.set_title(panel_title)
        if mark is not None:
            ax.axvline(max(mark, 1), color="0.4", ls=":", lw=0.9)
    if title:
        fig.suptitle(title)
    return fig


def information_plane_grid(rows: dict, *, colorbar_label: str = "epoch",
                           panel_size: tuple[float, float] = (3.2, 2.8), **kwargs):
    """A grid of information planes sharing both axes and one epoch colour bar.

    `rows` maps a row title to a dict mapping a column title to `(epochs, i_xt, i_ty)` as for
    `information_plane`; every row must have the same columns. Panels are titled
    "row, column". So that the grid fits the site's column, the shorter of its two sides runs
    across: 2 rows of 3 columns are drawn as 3 rows of 2, each column then one of `rows`.
    `panel_size` is (width, height) in inches of each plane. Keyword arguments go to
    `information_plane`.
    """
    columns = list(next(iter(rows.values())))
    if any(list(cols) != columns for cols in rows.values()):
        raise ValueError(f"rows must all have the columns {columns}")
    transpose = len(columns) > len(rows)
    shape = (len(columns), len(rows)) if transpose else (len(rows), len(columns))
    width, height = panel_size
    fig, axes = plt.subplots(*shape, figsize=(width * shape[1] + 0.8, height * shape[0]),
                             sharex=True, sharey=True, squeeze=False)
    _space_panels(fig)
    for i, (row, cols) in enumerate(rows.items()):
        for j, (col, (epochs, i_xt, i_ty)) in enumerate(cols.items()):
            ax = axes[j, i] if transpose else axes[i, j]
            points = information_plane(ax, epochs, i_xt, i_ty, title=f"{row}, {col}", **kwargs)
    _label_outer(list(axes.ravel()), shape[1])
    fig.colorbar(points, ax=axes.ravel().tolist(), label=colorbar_label, shrink=0.9)
    return fig


def reading_guide(snapshots: int = 80):
    """A sketch (not data) of an information plane, annotated for readers new to it.

    Three made-up layer trajectories over log-spaced epochs, drawn with `information_plane`
    so that the colours, axes and dotted H(X) = 12 bits and H(Y) = 1 bit lines read as in the
    chapters: each layer first moves up and right (fitting), then left (compression); deeper
    layers lie further left and lower (data processing inequality). Returns the figure.
    """
    if isinstance(snapshots, bool) or not isinstance(snapshots, int) or snapshots < 10:
        raise ValueError(f"snapshots must be an integer >= 10, got {snapshots!r}")
    epochs = np.unique(np.round(np.logspace(0, 4, snapshots)).astype(int))
    t = np.log10(epochs)[:, None] / 4  # 0 .. 1 over training
    t_fit = 0.35  # end of the fitting phase, as a fraction of log-epochs
    smooth = lambda s: 3 * np.clip(s, 0, 1) ** 2 - 2 * np.clip(s, 0, 1) ** 3  # noqa: E731
    start, peak, end = np.array([9.0, 6.0, 3.0]), np.array([11.4, 8.8, 5.8]), np.array([10.6, 6.6, 3.4])
    y0, y1 = np.array([0.35, 0.22, 0.1]), np.array([0.99, 0.97, 0.94])
    i_xt = start + (peak - start) * smooth(t / t_fit) - (peak - end) * smooth((t - t_fit) / (1 - t_fit))
    i_ty = y0 + (y1 - y0) * smooth(t / t_fit)
    fig, ax = plt.subplots(figsize=(5.4, 3.6))
    points = information_plane(ax, epochs, i_xt, i_ty, h_x=12, h_y=1, xlim=(0, 13), ylim=(0, 1.12),
                               join_every=len(epochs) // 4, title="Sketch, not data: how to read an information plane")
    fig.colorbar(points, ax=ax, label="epoch", shrink=0.9)
    k_fit = int(np.searchsorted(t[:, 0], t_fit))
    arrow = dict(arrowstyle="->", color="0.15", lw=1.1)
    ax.annotate("", xy=(2.0, 0.95), xytext=(0.7, 0.56), arrowprops=arrow)
    ax.text(0.3, 0.5, "fitting: I(T;Y) grows\n(and I(X;T) too)", ha="left", va="top", fontsize=8)
    ax.annotate("", xy=(i_xt[-1, 1] + 0.1, 1.06), xytext=(i_xt[k_fit, 1], 1.06), arrowprops=arrow)
    ax.text((i_xt[-1, 1] + i_xt[k_fit, 1]) / 2, 1.085, "compression: I(X;T) falls", ha="center",
            va="bottom", fontsize=8)
    ax.text(11.8, 0.03, "deeper layers lie to the left:\na layer cannot know more\nthan the one it reads from",
            ha="right", va="bottom", fontsize=7, color="0.3")
    for layer, name in enumerate(("layer 1", "layer 2", "layer 3")):
        ax.text(i_xt[0, layer], i_ty[0, layer] - 0.06, name, ha="center", va="top", fontsize=7, color="0.3")
    ax.text(12.15, 0.5, "H(X) = 12 bits", fontsize=7, color="0.3", rotation=90, va="center")
    ax.text(0.2, 1.01, "H(Y) = 1 bit", fontsize=7, color="0.3", va="bottom")
    return fig


def layer_curves(ax, epochs, values, names, *, ylabel: str, title: str = ""):
    """One line per layer, coloured by layer: `values` `[snapshots, layers]` (e.g. seed means)
    against epoch on log-log axes. Epochs below 1 are drawn at 1."""
    epochs = np.maximum(np.asarray(epochs), 1)
    for values_l, name, colour in zip(np.asarray(values).T, names, OKABE_ITO):
        ax.plot(epochs, values_l, color=colour, lw=1.2, label=name)
    ax.set(xscale="log", yscale="log", xlabel="epoch", ylabel=ylabel, title=title)


def gradient_panels(rows: dict, layer: int, *, layer_name: str = ""):
    """Gradient statistics of one layer across runs (Saxe et al. Fig. 20), seed means, log-log.

    `rows` maps a group title (e.g. the activation) to a dict mapping a run label to its record,
    an object with `epochs` `[K]` and `mean`, `std`, `snr`, `weight_norm` `[seeds, K, layers]`
    (`ibutils.gradients.Trajectory`). One column per group, titled with it and `layer_name`;
    rows: the norms of the gradients' mean (solid) and std (dashed), their ratio (SNR), and the
    weight norm ||W||_F; one colour per run. Returns the figure (axes row by row).
    """
    fig, axes = plt.subplots(3, len(rows), figsize=(3.4 * len(rows) + 0.3, 7.2), sharex=True, squeeze=False)
    for ax_col, (row, runs) in zip(axes.T, rows.items()):
        for (label, g), colour in zip(runs.items(), OKABE_ITO):
            epochs = np.maximum(np.asarray(g.epochs), 1)
            # seeds without an SNR (zero gradient: 0/0) are left out of its mean
            mean = {key: np.nanmean(getattr(g, key)[:, :, layer], 0) for key in ("mean", "std", "snr", "weight_norm")}
            ax_col[0].plot(epochs, mean["mean"], color=colour, lw=1.2)
            ax_col[0].plot(epochs, mean["std"], color=colour, lw=1.0, ls="--")
            ax_col[1].plot(epochs, mean["snr"], color=colour, lw=1.2, label=label)
            ax_col[2].plot(epochs, mean["weight_norm"], color=colour, lw=1.2, label=label)
        ax_col[0].set_title(f"{row} {layer_name}".strip())
    ylabels = ("gradient norms", "gradient SNR\n= |mean| / |std|", "weight norm $\\|W\\|_F$")
    for ax_row, ylabel in zip(axes, ylabels):
        ax_row[0].set_ylabel(ylabel)
        for ax in ax_row:
            ax.set(xscale="log", yscale="log")
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    styles = [mpl.lines.Line2D([], [], color="0.3", lw=1.2), mpl.lines.Line2D([], [], color="0.3", lw=1.0, ls="--")]
    axes[0, 0].legend(styles, ["|mean|", "|std|"])
    axes[1, 0].legend()
    return fig


def kde_summary(series: dict, *, title: str = "", h_x: float | None = None):
    """One network's training summary in four panels, 2 x 2 (Saxe et al. Fig. 9/10, one row each):
    cross-entropy (bits), the KDE band of I(X;T) between its lower and upper bound per layer,
    binned I(X;T) per layer, and the gradient SNR per layer, all against epoch (log scale).

    `series` is `ibutils.experiments.MnistNetResult.series()` (or its results-JSON copy):
    `epochs`, `layers`, `train_loss`/`test_loss` (nats), `kde_upper`/`kde_lower` and `binned`
    (`{"i_xt": [layers][snapshots]}`, bits), `grad_epochs`, `snr` `[layers][grad snapshots]`.
    `h_x` draws the ceiling log2 N of the estimates as a dotted line. Returns the figure.
    """
    epochs = np.maximum(np.asarray(series["epochs"]), 1)
    fig, axes = panel_grid(4, ncols=2, panel_size=(3.5, 2.6))
    for key, ls in (("train_loss", "-"), ("test_loss", "--")):
        axes[0].plot(epochs, np.asarray(series[key]) / np.log(2), color="0.2", ls=ls, label=key.replace("_", " "))
    axes[0].set(xscale="log", xlabel="epoch", ylabel="cross-entropy (bits)", title="loss")
    axes[0].legend()
    upper, lower = np.asarray(series["kde_upper"]["i_xt"]), np.asarray(series["kde_lower"]["i_xt"])
    binned = np.asarray(series["binned"]["i_xt"])
    for l, (name, colour) in enumerate(zip(series["layers"], OKABE_ITO)):
        axes[1].fill_between(epochs, lower[l], upper[l], color=colour, alpha=0.35, lw=0)
        axes[1].plot(epochs, upper[l], color=colour, lw=1.0, label=name)
        axes[2].plot(epochs, binned[l], color=colour, lw=1.2, label=name)
        axes[3].plot(np.maximum(series["grad_epochs"], 1), series["snr"][l], color=colour, lw=1.2, label=name)
    for ax, panel in zip(axes[1:3], ("I(X;T), KDE lower to upper bound", "I(X;T), binned")):
        ax.set(xscale="log", xlabel="epoch", ylabel="bits", title=panel)
        if h_x is not None:
            ax.axhline(h_x, color="0.3", ls=":", lw=0.8)
    axes[3].set(xscale="log", yscale="log", xlabel="epoch", ylabel="SNR", title="gradient SNR = |mean| / |std|")
    axes[1].legend()
    if title:
        fig.suptitle(title)
    return fig


def activation_functions(names=("tanh", "relu", "softsign", "softplus"), net_input=(-5.0, 5.0)):
    """The hidden-unit activation functions against their net input (Saxe et al. Fig. 11)."""
    curves = {"tanh": np.tanh, "relu": lambda z: np.maximum(z, 0), "softsign": lambda z: z / (1 + np.abs(z)),
              "softplus": lambda z: np.logaddexp(0, z), "sigmoid": lambda z: 1 / (1 + np.exp(-z))}
    unknown = [n for n in names if n not in curves]
    if unknown:
        raise ValueError(f"names: no curve for {unknown}; known: {sorted(curves)}")
    z = np.linspace(*net_input, 401)
    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    for name, colour in zip(names, OKABE_ITO):
        ax.plot(z, curves[name](z), color=colour, label=name)
    ax.axhline(0, color="0.7", lw=0.6)
    ax.axvline(0, color="0.7", lw=0.6)
    ax.set(xlabel="net input", ylabel="activation", xlim=net_input)
    ax.legend()
    return fig


VERDICT_COLOURS = {"compresses": "#E69F00", "slight": "#F5DDA8", "none": "#9ECAE9", "n/a": "#FFFFFF"}


def verdict_matrix(matrix: dict, *, row_labels: dict | None = None, column_labels: dict | None = None):
    """Compression by network and estimator, as `experiments.verdict_matrix` returns it (its rows
    the networks, its columns the estimators), drawn with the networks across and the estimators
    down so that it fits the site's column. Each cell's upper part shows the hidden layers'
    compression (its most compressing hidden layer), its lower strip the output layer's, in bits
    (seed mean ± spread over seeds), each on the colour of its verdict (`VERDICT_COLOURS`); "–"
    where the estimator was not run. `row_labels` and `column_labels` rename networks and
    estimators.
    """
    rows, columns = matrix["rows"], matrix["columns"]
    fig, ax = plt.subplots(figsize=(0.9 * len(rows) + 1.9, 0.5 * len(columns) + 1.3))
    for i in range(len(rows)):
        for j in range(len(columns)):
            for part, top, height in (("hidden", j, 0.58), ("output", j + 0.58, 0.42)):
                ax.add_patch(mpl.patches.Rectangle((i, top), 1, height,
                                                   color=VERDICT_COLOURS[matrix[f"{part}_verdict"][i][j]]))
                value = matrix[part][i][j]
                text = "–" if np.isnan(value) else f"{value:.2f}±{matrix[f'{part}_sd'][i][j]:.2f}"
                ax.text(i + 0.5, top + height / 2, text, ha="center", va="center", fontsize=8)
            ax.plot([i, i + 1], [j + 0.58] * 2, color="white", lw=0.8)
    ax.set(xlim=(0, len(rows)), ylim=(len(columns), 0))
    ax.xaxis.tick_top()
    ax.set_xticks(np.arange(len(rows)) + 0.5, [(row_labels or {}).get(r, r) for r in rows], fontsize=8)
    ax.set_yticks(np.arange(len(columns)) + 0.5, [(column_labels or {}).get(c, c) for c in columns], fontsize=8)
    ax.tick_params(length=0)
    ax.spines[:].set_visible(False)
    for i in range(1, len(rows)):
        ax.axvline(i, color="white", lw=2)
    for j in range(1, len(columns)):
        ax.axhline(j, color="white", lw=2)
    handles = [mpl.patches.Patch(color=c, label=v) for v, c in VERDICT_COLOURS.items() if v != "n/a"]
    ax.legend(handles=handles, title="verdict", loc="upper center", bbox_to_anchor=(0.5, 0), ncols=len(handles),
              fontsize=8, title_fontsize=8)
    ax.set_title("compression (bits): hidden layers, output layer below", fontsize=9)
    return fig
