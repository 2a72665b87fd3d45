"""One family of information estimators, used by the book's information planes (`infoplane.estimate`,
chapter 6's `experiments.estimator_study`), the MNIST chapter's snapshot hook and `ibutils.probe`.

An estimator is a small object: `name`, the names of what it returns (`outputs()`: one, or one
per bound), and `estimate(t, y)`, which takes a layer's activity `t` `[..., N, units]` (leading
dimensions a batch, e.g. `[seeds, snapshots]`) and integer labels `y` `[N]` and returns
`{output name: mi.MI(i_xt, i_ty)}` in bits: floats for a 2-D `t`, NumPy arrays of shape
`t.shape[:-2]` for a batch. X is uniform over the N rows, as everywhere in `ibutils.mi`, where the
mathematics lives; each estimator here gives the numbers of the `mi` function it names.

- `Binned(bins, value_range)`: `mi.binned`, equal-width bins on a fixed range (per batch element
  if the range is an array). Streaming.
- `BinnedFloor(bin_width)`: `mi.binned_floor`, ibsgd's bins of fixed width anchored at 0. Streaming.
- `PrecisionBinned()`: `mi.binned_precision`, every distinct float value its own bin. Streaming.
- `EqualMassBinned(bins, low)`: `mi.binned` on `mi.equal_mass_edges`, Chelombiev et al.'s adaptive
  bins (each holds an equal share of the layer's distinct values).
- `Quantised(bits, value_range)`: `mi.discrete` of `mi.quantise`, the exact information of a
  quantised network (Lorenzen et al. 2022).
- `KDE(noise_var)`: `mi.kde_sweep`, the upper and lower pairwise-distance bounds, at one noise
  variance or several from the same distances.
- `Kraskov(k)`: `mi.kraskov`, k-nearest-neighbour entropies.
- `Function(fn)`: your own `fn(t, y) -> (i_xt, i_ty)` in bits.

A streaming estimator (`StreamingBinning`) can also code a layer batch by batch (`codes`), so a
caller that sees the layer in pieces (the probe) keeps only integer codes; the others
(`WholeLayer`) need all N rows at once.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable

import numpy as np
import torch

from ibutils import mi

__all__ = ["Estimator", "StreamingBinning", "WholeLayer", "Binned", "BinnedFloor", "PrecisionBinned",
           "EqualMassBinned", "Quantised", "KDE", "Kraskov", "Function"]


class Estimator:
    """One way of turning a layer's activity into bits.

    `name` labels the estimator's results; `outputs()` are the names its results carry (one per
    bound, for estimators that give several). `estimate(t, y)`: `t` floats `[..., N, units]`, `y`
    integer labels `[N]`; returns `{output name: mi.MI}` in bits, floats for 2-D `t`, else arrays
    of shape `t.shape[:-2]`. Subclass `StreamingBinning` or `WholeLayer`, not this class.
    """

    name: str

    def outputs(self) -> tuple[str, ...]:
        return (self.name,)

    def estimate(self, t, y) -> dict[str, mi.MI]:
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class StreamingBinning(Estimator):
    """A binning estimator whose codes can be computed batch by batch, so that only codes are kept.

    Subclasses set `base` (every code lies in [0, base), or None when the codes are unbounded)
    and implement `codes(t)`: integer codes `[b, units]` (int64) of a batch `t` `[b, units]`,
    each value coded on its own, so that batching cannot change them. The estimate is
    `mi.discrete` of all codes, the plug-in I(X;T) = H(T) and I(T;Y) of the binned layer
    (subclasses may compute it in one call of the `mi` function they name).
    """

    base: int | None = None

    def codes(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def estimate(self, t, y) -> dict[str, mi.MI]:
        return {self.name: mi.discrete(self.codes(torch.as_tensor(t)), y)}


class WholeLayer(Estimator):
    """An estimator that needs all N rows of a layer at once (e.g. the KDE, O(N^2) in time).

    Subclasses implement `estimate(t, y)` (see `Estimator`); a caller may give a 2-D `t` only.
    `EqualMassBinned` is a complete example in a few lines.
    """


def _whole_number(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _positive_number(x, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or not (math.isfinite(x) and x > 0):
        raise ValueError(f"{name} must be a positive finite number, got {x!r}")
    return float(x)


def _range(value_range, name: str = "value_range"):
    """`value_range` checked: (lo, hi) as floats, or as float64 arrays (one range per batch element)."""
    try:
        lo, hi = value_range
        if np.ndim(lo) == 0 and np.ndim(hi) == 0:
            lo, hi = float(lo), float(hi)
        else:
            lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (lo, hi) of numbers or arrays, got {value_range!r}") from None
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(np.less(lo, hi))):
        raise ValueError(f"{name} must be finite with lo < hi, got {value_range!r}")
    return lo, hi


class Binned(StreamingBinning):
    """`mi.binned(t, y, bins, value_range)`: `bins` equal bins on `value_range` per unit, values
    outside going to the end bins (the default is Saxe et al.'s tanh setting, 30 bins on [-1, 1]).
    lo and hi may be arrays broadcastable to the batch shape of `t` (e.g. one range per seed,
    `[S, 1]` each); `codes` then needs scalar ones."""

    def __init__(self, bins: int = 30, value_range=(-1.0, 1.0), name: str = "binned"):
        if not _whole_number(bins) or bins < 1:
            raise ValueError(f"bins must be a positive int, got {bins!r}")
        self.bins, self.value_range, self.name, self.base = int(bins), _range(value_range), name, int(bins)

    def codes(self, t: torch.Tensor) -> torch.Tensor:
        return mi.bin_codes(t, self.bins, self.value_range)

    def estimate(self, t, y) -> dict[str, mi.MI]:
        return {self.name: mi.binned(t, y, self.bins, self.value_range)}


class BinnedFloor(StreamingBinning):
    """`mi.binned_floor(t, y, bin_width)`: code = floor(t / bin_width), unbounded bins anchored at 0
    (ibsgd: 0.5 for MNIST networks, 0.07 for the Tishby network)."""

    def __init__(self, bin_width: float, name: str = "binned_floor"):
        self.bin_width, self.name = _positive_number(bin_width, "bin_width"), name

    def codes(self, t: torch.Tensor) -> torch.Tensor:
        quotients = torch.floor(t / self.bin_width)  # in t's dtype, as mi.binned_floor divides
        if not quotients.abs().max() < 2**63:
            raise ValueError(f"bin_width {self.bin_width} is too small: t / bin_width leaves the int64 range")
        return quotients.to(torch.int64)

    def estimate(self, t, y) -> dict[str, mi.MI]:
        return {self.name: mi.binned_floor(t, y, self.bin_width)}


class PrecisionBinned(StreamingBinning):
    """`mi.binned_precision(t, y)`: binning at machine precision (Saxe et al. Fig. 15), every
    distinct float value of t's dtype its own bin."""

    def __init__(self, name: str = "precision"):
        self.name = name

    def codes(self, t: torch.Tensor) -> torch.Tensor:
        return mi.precision_codes(t)

    def estimate(self, t, y) -> dict[str, mi.MI]:
        return {self.name: mi.binned_precision(t, y)}


class EqualMassBinned(WholeLayer):
    """`mi.binned(t, y, mi.equal_mass_edges(t, bins, low))`: adaptive bins (Chelombiev, Houghton &
    O'Donnell 2019), found from all the layer's values (per batch element), each bin holding an
    equal share of its distinct values; `low` is the activation's smallest possible value (-1 for
    tanh, 0 for ReLU and the softmax; None: the layer's minimum)."""

    def __init__(self, bins: int = 30, low: float | None = None, name: str = "equal_mass"):
        if not _whole_number(bins) or bins < 1:
            raise ValueError(f"bins must be a positive int, got {bins!r}")
        self.bins, self.low, self.name = int(bins), low, name

    def estimate(self, t, y):
        return {self.name: mi.binned(t, y, bins=mi.equal_mass_edges(t, self.bins, low=self.low))}


class Quantised(WholeLayer):
    """`mi.discrete(mi.quantise(t, bits, value_range), y)`: the exact information of a quantised
    network (Lorenzen, Igel & Nielsen 2022), whose activity lies on 2**bits levels; `value_range`
    None takes each layer's own [min, max] (so the whole layer is needed), (lo, hi) a fixed range
    (e.g. (0, 1) to read a continuous softmax out on `bits` bits)."""

    def __init__(self, bits: int = 8, value_range=None, name: str = "quantised"):
        if not _whole_number(bits) or not 1 <= bits <= 32:
            raise ValueError(f"bits must be an int from 1 to 32, got {bits!r}")
        self.bits, self.name = int(bits), name
        self.value_range = None if value_range is None else _range(value_range)

    def estimate(self, t, y):
        return {self.name: mi.discrete(mi.quantise(t, self.bits, self.value_range), y)}


def _per_element(t, y, estimate_one: Callable[[torch.Tensor], dict]) -> dict[str, mi.MI]:
    """`estimate_one` of each 2-D batch element of `t` `[..., N, units]`, stacked into arrays of
    the batch shape (floats for 2-D `t`)."""
    t = torch.as_tensor(t) if isinstance(t, (torch.Tensor, np.ndarray)) else torch.as_tensor(np.asarray(t))
    if t.ndim < 2:
        raise ValueError(f"t must have shape [..., n_samples, n_units], got shape {tuple(t.shape)}")
    if t.ndim == 2:
        return estimate_one(t)
    found = [estimate_one(layer) for layer in t.reshape(-1, *t.shape[-2:])]
    return {name: mi.MI(*(np.array([f[name][q] for f in found]).reshape(t.shape[:-2]) for q in (0, 1)))
            for name in found[0]}


class KDE(WholeLayer):
    """`mi.kde_sweep(t, y, noise_vars)`: Kolchinsky & Tracey's bounds for T + N(0, noise_var I),
    the upper from the pairwise-KL kernel and the lower from the Bhattacharyya kernel; all noise
    variances and both bounds from one pass over the pairwise distances. O(N^2 units) time.

    `noise_var` a number: two outputs, `<name>_upper` and `<name>_lower`; a sequence of
    variances: `<name>_upper_<v>` and `<name>_lower_<v>` for each (v formatted with `:g`).
    """

    def __init__(self, noise_var: float | tuple[float, ...] = 0.1, name: str = "kde"):
        if isinstance(noise_var, (list, tuple)):
            if not noise_var:
                raise ValueError("noise_var must be a positive number or a non-empty sequence of them, got ()")
            noise_var = tuple(_positive_number(v, "noise_var") for v in noise_var)
        else:
            noise_var = _positive_number(noise_var, "noise_var")
        self.noise_var, self.name = noise_var, name

    @property
    def noise_vars(self) -> tuple[float, ...]:
        return self.noise_var if isinstance(self.noise_var, tuple) else (self.noise_var,)

    def outputs(self) -> tuple[str, ...]:
        if isinstance(self.noise_var, tuple):
            return tuple(f"{self.name}_{bound}_{v:g}" for v in self.noise_var for bound in ("upper", "lower"))
        return (f"{self.name}_upper", f"{self.name}_lower")

    def estimate(self, t, y):
        def one(layer):
            bounds = mi.kde_sweep(layer, y, self.noise_vars)
            return dict(zip(self.outputs(), (bits for b in bounds for bits in (b.upper, b.lower))))
        return _per_element(t, y, one)


class Kraskov(WholeLayer):
    """Kraskov et al.'s k-nearest-neighbour entropies (`mi.kraskov`, Saxe et al. App. B.3), in
    bits: I(X;T) is given as H(T), which is I(X;T) up to the entropy of the noise that makes it
    finite (a constant; so it can be negative), and I(T;Y) as H(T) - sum_y p(y) H(T | Y = y), the
    entropy of each class's rows estimated the same way (the constants cancel). Every class needs
    more than k rows. Coinciding rows (e.g. ReLU zeros) drive the entropies towards log2(eps)."""

    def __init__(self, k: int = 2, eps: float = 1e-16, name: str = "kraskov"):
        if not _whole_number(k) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        self.k, self.eps, self.name = int(k), eps, name

    def estimate(self, t, y):
        try:
            return {self.name: mi.kraskov(t, y, self.k, self.eps)}
        except ValueError as err:
            raise ValueError(f"estimator {self.name!r}: {err}") from None


class Function(WholeLayer):
    """Your own estimator: `fn(t, y) -> (i_xt, i_ty)` in bits, `t` one layer's rows `[N, units]`
    (each batch element in turn) and `y` the labels `[N]`. `name` defaults to the function's name."""

    def __init__(self, fn: Callable, name: str | None = None):
        if not callable(fn):
            raise ValueError(f"fn must be callable as fn(t, y) -> (i_xt, i_ty), got {fn!r}")
        self.fn, self.name = fn, name or getattr(fn, "__name__", type(fn).__name__)

    def estimate(self, t, y):
        return _per_element(t, y, lambda layer: {self.name: self._call(layer, y)})

    def _call(self, t, y) -> mi.MI:
        result = self.fn(t, y)
        try:
            i_xt, i_ty = (float(v) for v in result)
        except (TypeError, ValueError):
            raise ValueError(f"estimator {self.name!r} must return (i_xt, i_ty), two numbers in bits, "
                             f"got {result!r}") from None
        if not (math.isfinite(i_xt) and math.isfinite(i_ty)):
            raise ValueError(f"estimator {self.name!r} returned non-finite bits ({i_xt}, {i_ty})")
        return mi.MI(i_xt, i_ty)
