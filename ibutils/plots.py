"""One figure style for the whole book, and the figure functions.

Call `use_style()` once per chapter. Colours come from the colour-blind-safe Okabe-Ito
palette; epochs are coloured with `EPOCH_CMAP` on a log scale.
"""

from __future__ import annotations

import matplotlib as mpl
import numpy as np
import matplotlib.pyplot as plt

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
    """Apply the book's matplotlib style and retina inline figures."""
    mpl.rcParams.update(STYLE)
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
    """Seed mean (line) and spread (band, ±1 sd) of per-seed curves `[snapshots, seeds]`.

    `curves` maps a label to its array; labels containing "test" are dashed.
    """
    epochs = np.maximum(np.asarray(epochs), 1) if logx else np.asarray(epochs)
    for (label, values), colour in zip(curves.items(), OKABE_ITO):
        values = np.asarray(values)
        mean, sd = values.mean(1), values.std(1)
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
