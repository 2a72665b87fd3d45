"""The three-neuron toy model of Saxe et al. (2018), Fig. 2 and Fig. 13: exact binned information.

Model: X ~ N(0, 1) is a scalar input, h = f(w X) the activity of one hidden unit, and
T = bin(h) its binned value. Because T is a deterministic function of X, I(X;T) = H(T), and the
bin probabilities follow from the Gaussian CDF Phi through the inverse of the activation
[Saxe et al. 2018, Eqs. 1-4]; no sampling is needed:

    p_i = P(b_i <= f(w X) < b_{i+1}) = Phi(g(b_{i+1}) / w) - Phi(g(b_i) / w),

with g the generalised inverse g(b) = sup{z : f(z) < b} (so atoms, e.g. ReLU's mass at 0 or
hard-tanh's mass at +-1, fall in the bin that contains them).

Binning conventions (one rule everywhere in this module):

- Bins are half-open, [b_i, b_{i+1}), and the outermost edges stand for -inf and +inf, so every
  value lands in some bin: `E` edges make `E - 1` bins.
- "30 bins on [-1, 1]" means 30 intervals, i.e. 31 edges `linspace(-1, 1, 31)` (the paper's text).
  This gives the peak of 4.90 bits at w = 0.87 and 2.04 bits at w = 10. The IDNNs code's
  `linspace(-1, 1, 30)` (29 intervals) gives 4.85 bits at w = 0.87 and 2.03 bits at w = 10.
- Unbounded activations (relu, softplus, linear) get bins of width 2/30 (the tanh width) anchored at
  0 and extending past f(9 |w|); beyond 9 standard deviations the Gaussian mass is ~1e-19, so the
  unbounded top bin makes this exact to far below float precision.
- Bins uniform in net input (Fig. 13) are given in net-input units with `space="netinput"`: in
  float64, tanh(z) rounds to exactly 1 for z > 19.1, so `tanh(linspace(-50, 50, 30))` would merge
  16 of its 28 inner edges into +-1 and give 3.50 instead of 3.59 bits at w = 10.

All information values are in bits.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import matplotlib.pyplot as plt
import numpy as np
from scipy import special

from ibutils.plots import OKABE_ITO
from ibutils.progress import phase

TAIL_SD = 9.0
"""Default edges of unbounded activations cover f(w X) for |X| <= TAIL_SD (P(|X| > 9) ~ 2e-19)."""

MAX_DEFAULT_EDGES = 100_000
"""Largest number of default edges built for an unbounded activation (w up to ~740 for relu)."""


@dataclass(frozen=True)
class _Activation:
    f: Callable[[np.ndarray], np.ndarray]  # net input -> activity
    g: Callable[[np.ndarray], np.ndarray]  # activity edge b -> sup{z : f(z) < b}, in [-inf, inf]
    lo: float  # infimum of the activity
    hi: float  # supremum of the activity
    strictly_increasing: bool


def _inverse_on_range(inverse: Callable, lo: float, hi: float) -> Callable:
    """g for a continuous, strictly increasing f with range (lo, hi): -inf at or below, +inf at or above."""

    def g(b):
        with np.errstate(divide="ignore", invalid="ignore"):
            z = inverse(b)
        return np.where(b <= lo, -np.inf, np.where(b >= hi, np.inf, z))

    return g


def _softplus_inverse(b):
    return b + np.log(-np.expm1(-b))  # log(exp(b) - 1), stable for large b


ACTIVATIONS = {
    "tanh": _Activation(np.tanh, _inverse_on_range(np.arctanh, -1.0, 1.0), -1.0, 1.0, True),
    "softsign": _Activation(lambda z: z / (1 + np.abs(z)),
                            _inverse_on_range(lambda b: b / (1 - np.abs(b)), -1.0, 1.0), -1.0, 1.0, True),
    "sigmoid": _Activation(special.expit, _inverse_on_range(special.logit, 0.0, 1.0), 0.0, 1.0, True),
    "softplus": _Activation(lambda z: np.logaddexp(0.0, z), _inverse_on_range(_softplus_inverse, 0.0, np.inf),
                            0.0, np.inf, True),
    "linear": _Activation(lambda z: z, lambda b: b, -np.inf, np.inf, True),
    "relu": _Activation(lambda z: np.maximum(z, 0.0), lambda b: np.where(b > 0, b, -np.inf), 0.0, np.inf, False),
    "hardtanh": _Activation(lambda z: np.clip(z, -1.0, 1.0),
                            lambda b: np.where(b <= -1, -np.inf, np.where(b > 1, np.inf, b)), -1.0, 1.0, False),
}
"""The activations the toy model knows: tanh, softsign, sigmoid, softplus, linear, relu, hardtanh."""


def _activation(name: str) -> _Activation:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]


def activate(z, activation: str = "tanh") -> np.ndarray:
    """The activity f(z) of the named activation for net input `z` (any shape)."""
    return _activation(activation).f(np.asarray(z, dtype=float))


def _check_bins(bins) -> int:
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    return int(bins)


def default_edges(activation: str = "tanh", bins: int = 30, w_max: float = 1.0) -> np.ndarray:
    """The default activity-space bin edges, shape (E,).

    Bounded activations (tanh, softsign, sigmoid, hardtanh): `bins` equal intervals on the range,
    `bins + 1` edges. Unbounded ones (relu, softplus, linear): width 2 / `bins` (the tanh width),
    anchored at 0, starting at the activation's lower bound (or symmetric for linear) and reaching
    past f(TAIL_SD * w_max), the largest activity that carries non-negligible mass for |w| <= w_max.
    """
    act = _activation(activation)
    bins = _check_bins(bins)
    if np.isfinite(act.lo) and np.isfinite(act.hi):
        return np.linspace(act.lo, act.hi, bins + 1)
    w_max = float(w_max)
    if not np.isfinite(w_max) or w_max < 0:
        raise ValueError(f"w_max must be a finite number >= 0, got {w_max!r}")
    width = 2.0 / bins
    top = int(np.ceil(float(act.f(np.array(TAIL_SD * w_max))) / width)) + 1
    bottom = int(np.floor(act.lo / width)) if np.isfinite(act.lo) else -top
    if top - bottom + 1 > MAX_DEFAULT_EDGES:
        raise ValueError(f"w up to {w_max:g} needs {top - bottom + 1} default edges for {activation} "
                         f"with bins={bins} (more than {MAX_DEFAULT_EDGES}); pass edges explicitly")
    return width * np.arange(bottom, top + 1)


def netinput_edges(n: int = 30, span: float = 50.0) -> np.ndarray:
    """Fig. 13's bins uniform in net input: `n` edges `linspace(-span, span, n)`, in net-input units.

    Use with `information(..., space="netinput")`. Their activity images are `activate(edges)`.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    if not np.isfinite(span) or span <= 0:
        raise ValueError(f"span must be a finite number > 0, got {span!r}")
    return np.linspace(-span, span, n)


def _check_edges(edges) -> np.ndarray:
    edges = np.asarray(edges, dtype=float)
    if edges.ndim != 1 or edges.size < 2:
        raise ValueError(f"edges must be a 1-D array of at least 2 values, got shape {edges.shape}")
    if not np.all(np.isfinite(edges)):
        raise ValueError("edges must be finite (the outermost edges already stand for -inf and +inf)")
    if not np.all(np.diff(edges) > 0):
        raise ValueError("edges must be strictly increasing")
    return edges


def _check_w(w) -> np.ndarray:
    w = np.asarray(w, dtype=float)
    if not np.all(np.isfinite(w)):
        raise ValueError("w must be finite")
    return w


def _netinput_borders(w: np.ndarray, activation: str, edges, space: str) -> np.ndarray:
    """The net input g(b) at each inner bin edge, shape (E - 2,), in [-inf, inf] and non-decreasing."""
    act = _activation(activation)
    if space not in ("activity", "netinput"):
        raise ValueError(f"space must be 'activity' or 'netinput', got {space!r}")
    if edges is None:
        edges = default_edges(activation, w_max=w.max(initial=0.0)) if space == "activity" else netinput_edges()
    inner = _check_edges(edges)[1:-1]
    if space == "activity":
        return act.g(inner)
    return inner if act.strictly_increasing else act.g(act.f(inner))


def _probabilities(w: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Bin probabilities, shape w.shape + (len(z) + 1,), for |w| = `w` and inner net-input borders `z`."""
    w = w[..., None]
    # u = z / w; at w = 0 the activity is the constant f(0), which is below an edge iff 0 < g(edge).
    u = np.where(w > 0, z / np.where(w > 0, w, 1.0), np.where(z > 0, np.inf, -np.inf))
    zeros, ones = np.zeros(u.shape[:-1] + (1,)), np.ones(u.shape[:-1] + (1,))
    cdf = np.concatenate([zeros, special.ndtr(u), ones], axis=-1)  # P(X < u) at every border
    sf = np.concatenate([ones, special.ndtr(-u), zeros], axis=-1)  # P(X >= u), computed directly
    # p = cdf[i+1] - cdf[i]; for bins in the upper tail take sf[i] - sf[i+1] instead, so that no bin
    # loses precision to 1 - 1 cancellation.
    upper_tail = np.concatenate([zeros.astype(bool), u >= 0], axis=-1)
    return np.where(upper_tail, sf[..., :-1] - sf[..., 1:], cdf[..., 1:] - cdf[..., :-1])


def bin_probabilities(w, activation: str = "tanh", edges=None, space: str = "activity") -> np.ndarray:
    """Exact probabilities of the bins of T = bin(f(w X)), X ~ N(0, 1).

    `w`: scalar or array of weights, any shape S; only |w| matters (X is symmetric), and w = 0
    puts all mass in the bin containing f(0). `edges`: 1-D, strictly increasing, E values (default
    `default_edges(activation, w_max=max|w|)`); the outermost stand for -inf and +inf. `space`:
    "activity" (edges are activity values) or "netinput" (edges are net-input values z, i.e. the
    activity edges f(z), taken exactly; default `netinput_edges()`).

    Returns an array of shape S + (E - 1,) whose last axis sums to 1.
    """
    w = np.abs(_check_w(w))
    return _probabilities(w, _netinput_borders(w, activation, edges, space))


_CHUNK_ELEMENTS = 2**22  # bound on len(w chunk) * n_bins in `information` (32 MiB per float64 array)


@phase("estimating")
def information(w, activation: str = "tanh", edges=None, space: str = "activity"):
    """Exact binned I(X;T) = H(T), in bits, for T = bin(f(w X)), X ~ N(0, 1).

    Arguments as in `bin_probabilities`. Returns a float for scalar `w`, else an array of w's shape.
    Long `w` arrays are processed in chunks, so memory stays bounded for fine bins.
    """
    w = np.abs(_check_w(w))
    z = _netinput_borders(w, activation, edges, space)
    flat = w.reshape(-1)
    step = max(1, _CHUNK_ELEMENTS // (len(z) + 1))
    h = np.concatenate([special.entr(_probabilities(flat[i:i + step], z)).sum(axis=-1)
                        for i in range(0, max(flat.size, 1), step)]) / np.log(2)
    return float(h[0]) if w.ndim == 0 else h.reshape(w.shape)


def peak(activation: str = "tanh", edges=None, space: str = "activity", bounds=(0.01, 10.0)) -> tuple[float, float]:
    """The weight w* in `bounds` that maximises `information` and the maximum, (w*, I*) in bits.

    Bounded Brent search (xatol 1e-6), so it assumes a single hump on `bounds` (true for tanh);
    for a monotone curve it returns the upper bound. `edges` default: `default_edges(activation,
    w_max=bounds[1])`.
    """
    from scipy.optimize import minimize_scalar

    lo, hi = (float(b) for b in bounds)
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 <= lo < hi):
        raise ValueError(f"bounds must be finite with 0 <= lo < hi, got {bounds!r}")
    if edges is None and space == "activity":
        edges = default_edges(activation, w_max=hi)
    result = minimize_scalar(lambda w: -information(w, activation, edges, space), bounds=(lo, hi),
                             method="bounded", options={"xatol": 1e-6})
    return float(result.x), float(-result.fun)


def plugin_error(w: float, n: int, activation: str = "tanh", edges=None, space: str = "activity") -> tuple[float, float]:
    """First-order bias and standard deviation, in bits, of the plug-in H(T) from `n` samples.

    bias = -(K - 1) / (2 n ln 2) with K the expected number of occupied bins (Miller-Madow);
    sd = sqrt(Var[log2 p(T)] / n). A sampled estimate should lie within a few sd of I + bias.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if np.ndim(w) != 0:
        raise ValueError(f"w must be a scalar, got shape {np.shape(w)}")
    p = bin_probabilities(w, activation, edges, space)
    occupied = np.sum(-np.expm1(n * np.log1p(-np.minimum(p, 1.0))))
    log_p = np.log2(p, out=np.zeros_like(p), where=p > 0)
    variance = max(float(np.sum(p * log_p**2) - np.sum(p * log_p) ** 2), 0.0)
    return -(occupied - 1) / (2 * n * np.log(2)), float(np.sqrt(variance / n))


@phase("estimating")
def sampled_information(w: float, n: int, activation: str = "tanh", edges=None, space: str = "activity",
                        seed: int = 0) -> float:
    """The binning estimate of I(X;T) in bits from `n` samples X ~ N(0, 1) (generator seeded by `seed`),
    through `ibutils.mi.binned` with the same edges: the sampled counterpart of `information`.

    In "netinput" space the net input w X itself is binned, which equals binning f(w X) at the exact
    activity edges f(z) for strictly increasing f (others raise ValueError).
    """
    from ibutils import mi

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if space == "netinput" and not _activation(activation).strictly_increasing:
        raise ValueError(f"space='netinput' sampling needs a strictly increasing activation, got {activation!r}")
    if edges is None:
        edges = default_edges(activation, w_max=abs(w)) if space == "activity" else netinput_edges()
    x = np.random.default_rng(seed).standard_normal(n)
    t = w * x if space == "netinput" else activate(w * x, activation)
    return mi.binned(t[:, None], np.zeros(n, dtype=np.int64), bins=_check_edges(edges)).i_xt


# --- figures ------------------------------------------------------------------------------------


def _activity_borders(activation: str, edges, space: str) -> np.ndarray:
    """Activity values of the bin borders, for drawing."""
    if edges is None:
        edges = default_edges(activation) if space == "activity" else netinput_edges()
    return activate(edges, activation) if space == "netinput" else np.asarray(edges, dtype=float)


def plot_activation_bins(ax, activation: str = "tanh", edges=None, space: str = "activity", zlim: float = 5.0):
    """Fig. 2B: the activity f(z) against net input z in [-zlim, zlim], with the bin borders (grey)."""
    z = np.linspace(-zlim, zlim, 801)
    h = activate(z, activation)
    borders = _activity_borders(activation, edges, space)
    top = h.max() + 0.05 * (h.max() - h.min())
    borders = borders[(borders >= h.min()) & (borders <= top)]
    ax.hlines(borders, -zlim, zlim, color="0.75", lw=0.6, label="bin borders")
    ax.plot(z, h, color=OKABE_ITO[0], lw=2, label=activation)
    ax.set(xlabel="net input $w x$", ylabel="activity $h$", xlim=(-zlim, zlim))


def plot_staircase(ax, w: float, activation: str = "tanh", edges=None, xlim: float = 3.0):
    """What binning does to one unit: the network's activity h = f(w x) (thin) and the binned value
    the analysis keeps (thick steps, the centre of each bin), against the input x in [-xlim, xlim].
    Every flat step is a set of inputs the analysis cannot tell apart, though the network can.
    """
    from ibutils import mi

    edges = default_edges(activation, w_max=abs(w)) if edges is None else _check_edges(edges)
    x = np.linspace(-xlim, xlim, 2001)
    h = activate(w * x, activation)
    codes = mi.bin_codes(h[:, None], bins=edges).numpy()[:, 0]
    centres = (edges[:-1] + edges[1:]) / 2
    ax.plot(x, centres[codes], color=OKABE_ITO[1], lw=2.5, drawstyle="steps-mid", label="analysis: bin($h$)")
    ax.plot(x, h, color=OKABE_ITO[0], lw=1, label=f"network: $h$ = {activation}($w x$)")
    ax.set(xlabel="input $x$", ylabel="activity", xlim=(-xlim, xlim),
           title=f"$w$ = {w:g}: I(X;T) = {information(w, activation, edges):.2f} bits")


def plot_information(ax, w, info, label: str | None = None, color=None, limit: float | None = None,
                     mark_peak: bool = False):
    """I(X;T) in bits against the weight `w` (both shape (n,)); optionally the large-w `limit` (dashed)
    and the peak (a dot labelled with its value and location)."""
    w, info = np.asarray(w), np.asarray(info)
    line, = ax.plot(w, info, color=color, label=label)
    if limit is not None:
        ax.axhline(limit, color="0.4", ls="--", lw=1)
        ax.annotate(f"limit {limit:g} bit", (w.max(), limit), xytext=(0, 3), textcoords="offset points",
                    ha="right", va="bottom", fontsize=8, color="0.3")
    if mark_peak:
        k = int(np.argmax(info))
        ax.plot(w[k], info[k], "o", color=line.get_color())
        ax.annotate(f"{info[k]:.2f} bits at $w$ = {w[k]:.2f}", (w[k], info[k]), xytext=(6, 2),
                    textcoords="offset points", fontsize=8)
    ax.set(xlabel="weight $w$", ylabel="I(X;T) (bits)", xlim=(w.min(), w.max()))


@lru_cache(maxsize=32)
def _weight_curve(activation: str, bins: int, w_max: float, n_grid: int) -> tuple[np.ndarray, np.ndarray]:
    """(grid, I(X;T) on it) for `weight_frame`, cached so that moving only w does not recompute it."""
    grid = np.linspace(0.0, w_max, n_grid)
    curve = information(grid, activation, default_edges(activation, bins, w_max=w_max))
    grid.flags.writeable = curve.flags.writeable = False
    return grid, curve


def weight_frame(w: float, activation: str = "tanh", bins: int = 30, w_max: float = 10.0, n_grid: int = 201):
    """One frame of the weight slider (and the live control): left, the exact histogram of the binned
    activity P(T = bin) at weight `w` (log scale); right, I(X;T) against w in [0, w_max] (grey),
    with the part up to `w` drawn and `w` marked. Bins: `default_edges(activation, bins, w_max)`.
    Returns the Figure (2 panels, 7 x 2.8 inches).
    """
    edges = default_edges(activation, bins, w_max=w_max)
    grid, curve = _weight_curve(activation, bins, float(w_max), n_grid)
    p = bin_probabilities(w, activation, edges)
    lo, hi = edges[0], edges[-1]
    if not np.isfinite(ACTIVATIONS[activation].hi):  # unbounded: show where the mass is at this w
        reach = activate(4.0 * max(abs(w), 0.25) * np.array([-1.0, 1.0]), activation)
        lo, hi = max(lo, float(reach[0])), min(hi, float(reach[1]))
    shown = (edges[1:] > lo) & (edges[:-1] < hi)  # only the visible bins are drawn (fine bins are many)
    first, last = np.flatnonzero(shown)[[0, -1]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(7, 2.8))
    left.fill_between(edges[first:last + 2], np.append(p[first:last + 1], p[last]), 1e-5, step="post",
                      color=OKABE_ITO[0], lw=0)
    piles = p >= 0.05  # bins holding 5% or more (atoms, saturated ends), dotted so narrow ones show
    left.plot(np.clip((edges[:-1] + edges[1:])[piles] / 2, lo, hi), p[piles], "o", color=OKABE_ITO[1], ms=4)
    pad = 0.03 * (hi - lo)  # so that the end bins, where atoms sit, stay visible
    left.set(yscale="log", ylim=(1e-4, 1.0), xlim=(lo - pad, hi + pad), xlabel=f"binned activity ({len(p)} bins)",
             ylabel="P(T = bin)", title=f"{activation}, $w$ = {w:.2f}")
    right.plot(grid, curve, color="0.8")
    upto = grid <= abs(w)
    right.plot(grid[upto], curve[upto], color=OKABE_ITO[0])
    bits = information(w, activation, edges)
    right.plot([abs(w)], [bits], "o", color=OKABE_ITO[1])
    right.set(xlabel="weight $w$", ylabel="I(X;T) (bits)", xlim=(0, 1.02 * w_max), ylim=(0, 1.05 * curve.max() + 0.1),
              title=f"I(X;T) = {bits:.2f} bits")
    return fig


def bins_frame(bins: int, w_max: float = 10.0, reference: int = 30, ymax: float = 10.5, n_grid: int = 401):
    """One frame of the bins slider: tanh I(X;T) against w in [0, w_max] with `bins` uniform bins on
    [-1, 1] (peak marked), the `reference` bin count in grey, and the 1-bit limit. Fixed y-axis
    [0, `ymax`] bits so frames compare. Returns the Figure (5 x 3 inches).
    """
    grid = np.linspace(0.0, w_max, n_grid)
    fig, ax = plt.subplots(figsize=(5, 3))
    plot_information(ax, grid, information(grid, "tanh", default_edges("tanh", reference)),
                     label=f"{reference} bins", color="0.75")
    plot_information(ax, grid, information(grid, "tanh", default_edges("tanh", bins)),
                     label=f"{bins} bins", color=OKABE_ITO[0], limit=1.0, mark_peak=True)
    ax.set(ylim=(0, ymax), title=f"tanh, {bins} bins on [-1, 1]")
    ax.legend(loc="upper right")
    return fig
