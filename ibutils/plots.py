"""One figure style for the whole book, and the figure functions.

Call `use_style()` once per chapter. Colours come from the colour-blind-safe Okabe-Ito
palette; epochs are coloured with `EPOCH_CMAP` on a log scale.
"""

from __future__ import annotations

import matplotlib as mpl
import numpy as np
import matplotlib.pyplot as plt

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


def use_style() -> None:
    """Apply the book's matplotlib style and retina inline figures; count figure rendering as
    plotting in the run's time split (`ibutils.progress`)."""
    mpl.rcParams.update(STYLE)
    time_figure_rendering()
    try:
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:
        return
    set_matplotlib_formats("retina")


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


def information_planes(planes: dict, *, colorbar_label: str = "epoch", **kwargs):
    """Side-by-side information planes sharing axes and one epoch colour bar.

    `planes` maps a panel title to `(epochs, i_xt, i_ty)` as for `information_plane`.
    """
    fig, axes = plt.subplots(1, len(planes), figsize=(4.2 * len(planes) + 0.8, 3.8), sharey=True, squeeze=False)
    for ax, (title, (epochs, i_xt, i_ty)) in zip(axes[0], planes.items()):
        points = information_plane(ax, epochs, i_xt, i_ty, title=title, **kwargs)
    for ax in axes[0][1:]:
        ax.set_ylabel("")
    fig.colorbar(points, ax=axes[0].tolist(), label=colorbar_label, shrink=0.9)
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


def activity_histograms(epochs, hist, edges, names, *, title: str = ""):
    """Heat maps of activity over training, one panel per layer (Saxe et al. Fig. 16/17).

    `hist[l]` is `[snapshots, bins]` (fractions), `edges[l]` its bin edges. Colour is log10 of
    the fraction of activity values in a bin; x is the epoch (log scale).
    """
    n = len(hist)
    fig, axes = plt.subplots(1, n, figsize=(2.1 * n + 0.8, 2.8), squeeze=False)
    epochs = np.maximum(np.asarray(epochs), 1)
    x_edges = np.concatenate([[epochs[0] * 0.8], np.sqrt(epochs[1:] * epochs[:-1]), [epochs[-1] * 1.2]])
    norm = mpl.colors.LogNorm(vmin=1e-4, vmax=1)
    for ax, h, e, name in zip(axes[0], hist, edges, names):
        mesh = ax.pcolormesh(x_edges, e, np.clip(h.T, 1e-4, None), norm=norm, cmap="magma", shading="flat")
        ax.set(xscale="log", title=name, xlabel="epoch")
    axes[0][0].set_ylabel("activity")
    fig.colorbar(mesh, ax=axes[0].tolist(), label="fraction of values", shrink=0.9)
    if title:
        fig.suptitle(title)
    return fig


def curve_panels(epochs, panels: dict, *, mark: float | None = None, title: str = "",
                 panel_size: tuple[float, float] = (2.9, 2.7)):
    """A row of panels over training, each drawn by `learning_curves` (seed mean ± 1 sd).

    `panels` maps a panel title to `(ylabel, curves)`, with `curves` as for `learning_curves`:
    `{label: [seeds, snapshots]}`. `mark`, if given, is an epoch drawn as a dotted vertical line in
    every panel (e.g. where one curve peaks). Returns the figure; `fig.axes` follow `panels`.
    """
    if not panels:
        raise ValueError("panels: give at least one panel, {title: (ylabel, {label: values})}")
    width, height = panel_size
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), height), squeeze=False)
    for ax, (panel_title, (ylabel, curves)) in zip(axes[0], panels.items()):
        learning_curves(ax, epochs, curves, ylabel=ylabel)
        ax.set_title(panel_title)
        if mark is not None:
            ax.axvline(max(mark, 1), color="0.4", ls=":", lw=0.9)
    if title:
        fig.suptitle(title)
    return fig


def information_plane_grid(rows: dict, *, colorbar_label: str = "epoch", **kwargs):
    """A grid of information planes sharing both axes and one epoch colour bar.

    `rows` maps a row title to a dict mapping a column title to `(epochs, i_xt, i_ty)` as for
    `information_plane`; every row must have the same columns. Panels are titled
    "row, column". Keyword arguments go to `information_plane`.
    """
    columns = list(next(iter(rows.values())))
    if any(list(cols) != columns for cols in rows.values()):
        raise ValueError(f"rows must all have the columns {columns}")
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(3.9 * len(columns) + 0.8, 3.4 * len(rows)),
                             sharex=True, sharey=True, squeeze=False)
    for i, (row, cols) in enumerate(rows.items()):
        for j, (col, (epochs, i_xt, i_ty)) in enumerate(cols.items()):
            points = information_plane(axes[i, j], epochs, i_xt, i_ty, title=f"{row}, {col}", **kwargs)
            if j:
                axes[i, j].set_ylabel("")
            if i < len(rows) - 1:
                axes[i, j].set_xlabel("")
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

    `rows` maps a row title (e.g. the activation) to a dict mapping a run label to its record,
    an object with `epochs` `[K]` and `mean`, `std`, `snr`, `weight_norm` `[seeds, K, layers]`
    (`ibutils.gradients.Trajectory`). Columns: the norms of the gradients' mean (solid) and
    std (dashed), their ratio (SNR), and the weight norm ||W||_F; one colour per run.
    Returns the figure.
    """
    fig, axes = plt.subplots(len(rows), 3, figsize=(11, 2.9 * len(rows)), sharex=True, squeeze=False)
    for ax_row, (row, runs) in zip(axes, rows.items()):
        for (label, g), colour in zip(runs.items(), OKABE_ITO):
            epochs = np.maximum(np.asarray(g.epochs), 1)
            # seeds without an SNR (zero gradient: 0/0) are left out of its mean
            mean = {key: np.nanmean(getattr(g, key)[:, :, layer], 0) for key in ("mean", "std", "snr", "weight_norm")}
            ax_row[0].plot(epochs, mean["mean"], color=colour, lw=1.2)
            ax_row[0].plot(epochs, mean["std"], color=colour, lw=1.0, ls="--")
            ax_row[1].plot(epochs, mean["snr"], color=colour, lw=1.2, label=label)
            ax_row[2].plot(epochs, mean["weight_norm"], color=colour, lw=1.2, label=label)
        titles = ("gradient norms", "gradient SNR = |mean| / |std|", "weight norm")
        ylabels = ("norm", "SNR", "$\\|W\\|_F$")
        for ax, title, ylabel in zip(ax_row, titles, ylabels):
            ax.set(xscale="log", yscale="log", ylabel=ylabel, title=f"{row} {layer_name}: {title}")
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    styles = [mpl.lines.Line2D([], [], color="0.3", lw=1.2), mpl.lines.Line2D([], [], color="0.3", lw=1.0, ls="--")]
    axes[0, 0].legend(styles, ["|mean|", "|std|"])
    axes[0, 1].legend()
    return fig


def kde_summary(series: dict, *, title: str = "", h_x: float | None = None):
    """One network's training summary in four panels (Saxe et al. Fig. 9/10, one row each):
    cross-entropy (bits), the KDE band of I(X;T) between its lower and upper bound per layer,
    binned I(X;T) per layer, and the gradient SNR per layer, all against epoch (log scale).

    `series` is `ibutils.experiments.MnistNetResult.series()` (or its results-JSON copy):
    `epochs`, `layers`, `train_loss`/`test_loss` (nats), `kde_upper`/`kde_lower` and `binned`
    (`{"i_xt": [layers][snapshots]}`, bits), `grad_epochs`, `snr` `[layers][grad snapshots]`.
    `h_x` draws the ceiling log2 N of the estimates as a dotted line. Returns the figure.
    """
    epochs = np.maximum(np.asarray(series["epochs"]), 1)
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.0))
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
    axes[1].legend(fontsize=7)
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
    """Compression by network (rows) and estimator (columns), as `experiments.verdict_matrix`
    returns it. Each cell's upper part shows the hidden layers' compression (its most compressing
    hidden layer), its lower strip the output layer's, in bits (seed mean ± spread over seeds),
    each on the colour of its verdict (`VERDICT_COLOURS`); "–" where the estimator was not run.
    """
    rows, columns = matrix["rows"], matrix["columns"]
    fig, ax = plt.subplots(figsize=(1.05 * len(columns) + 2.4, 0.8 * len(rows) + 1.5))
    for i in range(len(rows)):
        for j in range(len(columns)):
            for part, top, height, size in (("hidden", i, 0.62, 7.5), ("output", i + 0.62, 0.38, 6.5)):
                ax.add_patch(mpl.patches.Rectangle((j, top), 1, height,
                                                   color=VERDICT_COLOURS[matrix[f"{part}_verdict"][i][j]]))
                value = matrix[part][i][j]
                text = "–" if np.isnan(value) else f"{value:.2f}±{matrix[f'{part}_sd'][i][j]:.2f}"
                ax.text(j + 0.5, top + height / 2, text, ha="center", va="center", fontsize=size)
            ax.plot([j, j + 1], [i + 0.62] * 2, color="white", lw=0.8)
    ax.set(xlim=(0, len(columns)), ylim=(len(rows), 0))
    ax.set_xticks(np.arange(len(columns)) + 0.5, [(column_labels or {}).get(c, c) for c in columns],
                  rotation=40, ha="right", fontsize=8)
    ax.set_yticks(np.arange(len(rows)) + 0.5, [(row_labels or {}).get(r, r) for r in rows], fontsize=8)
    ax.tick_params(length=0)
    for j in range(1, len(columns)):
        ax.axvline(j, color="white", lw=2)
    for i in range(1, len(rows)):
        ax.axhline(i, color="white", lw=2)
    handles = [mpl.patches.Patch(color=c, label=v) for v, c in VERDICT_COLOURS.items() if v != "n/a"]
    ax.legend(handles=handles, title="verdict", loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7)
    ax.set_title("compression (bits): hidden layers, output layer below", fontsize=9)
    return fig
