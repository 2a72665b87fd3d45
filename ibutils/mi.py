"""Information estimators, in bits (Saxe et al. Sec. 2 and App. B, and two later estimators).

Pure functions of arrays: NumPy arrays or torch tensors in, floats (or NumPy arrays for batched
input) out. X is always uniform over the rows of the activity `t` (one row per input pattern,
every pattern distinct), and T is computed on the device of `t`.

- `discrete`: plug-in I(X;T) and I(T;Y) of a layer already mapped to integer codes, batched.
- `bin_codes`, `binned`: uniform bins on a range, or explicit edges (shared or one set per batch
  element), with NumPy histogram semantics.
- `equal_mass_edges`: Chelombiev et al.'s adaptive edges, equal numbers of distinct values per bin.
- `binned_floor`: ibsgd's unbounded bins, code = floor(t / bin_width).
- `precision_codes`, `binned_precision`: every distinct float value its own bin (Fig. 15).
- `quantise`, `fake_quantise`: uniform b-bit codes and their levels (Lorenzen et al.'s quantised
  networks, whose plug-in information is exact).
- `kde`: Kolchinsky & Tracey pairwise-distance estimates with Gaussian noise of variance noise_var;
  `kde_sweep` for several variances from one pass over the distances.
- `kraskov_entropy`: Kraskov et al.'s k-nearest-neighbour entropy (App. B.3), batched;
  `kraskov` for I(X;T) and I(T;Y) from it.
- `entropy`: plug-in entropy of a label vector.
- `gaussian_channel`: exact I(X; WX + Z) for Gaussian X (defined in `ibutils.gaussian`).
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np
import torch
from scipy import special

from ibutils import pairwise
from ibutils.gaussian import gaussian_channel

__all__ = ["MI", "KDEBounds", "entropy", "discrete", "bin_codes", "binned", "binned_floor", "equal_mass_edges",
           "precision_codes", "binned_precision", "quantise", "fake_quantise", "kde", "kde_sweep", "kraskov_entropy",
           "kraskov", "gaussian_channel"]


_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
_KEY_LIMIT = 2**63  # packed row keys are int64, so they must stay below this
# Values binned per step: temporaries then stay below glibc's 32 MB mmap threshold, so their
# memory is reused; larger ones are unmapped when freed and fault in again on the next use.
_CHUNK_VALUES = 2**21
# default side of the square blocks of the KDE distance matrix (benchmarks/RESULTS.md, issue 13)
_KDE_BLOCK = 512


class MI(NamedTuple):
    """Mutual information in bits: floats for one layer, NumPy arrays of the batch shape for a batch."""

    i_xt: float | np.ndarray
    i_ty: float | np.ndarray


class KDEBounds(NamedTuple):
    """KDE estimates in bits: `upper` from the pairwise-KL kernel, `lower` from the Bhattacharyya kernel.

    For I(X;T) these are an upper and a lower bound; for I(T;Y) each is a difference of two
    bounds and so only an estimate.
    """

    upper: MI
    lower: MI


# --- input checks -------------------------------------------------------------------------------


def _as_tensor(x, name: str, device=None) -> torch.Tensor:
    """`x` as a torch tensor on `device` (NumPy arrays share memory when they can)."""
    if not isinstance(x, torch.Tensor):
        a = np.asarray(x)
        if a.dtype.kind in "iu" and np.can_cast(a.dtype, np.int64):
            a = a.astype(np.int64, copy=False)  # torch has few ops for uint16/uint32
        elif a.dtype.kind not in "bf":
            raise ValueError(f"{name} must hold floats or integers that fit int64, got dtype {a.dtype}")
        x = torch.as_tensor(a)
    return x if device is None else x.to(device)


def _check_nonempty(x: torch.Tensor, name: str) -> None:
    if x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)})")


def _integers(x, name: str, device=None) -> torch.Tensor:
    """A non-empty integer array as int64."""
    x = _as_tensor(x, name, device)
    if x.dtype not in _INT_DTYPES:
        raise ValueError(f"{name} must be an integer array, got dtype {x.dtype}")
    _check_nonempty(x, name)
    return x.to(torch.int64)


def _floats(x, name: str, finite: bool = True) -> torch.Tensor:
    """A non-empty floating-point array, dtype kept, checked to be finite unless `finite` is False."""
    x = _as_tensor(x, name)
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point array, got dtype {x.dtype}")
    _check_nonempty(x, name)
    if finite:
        _check_finite(x, name)
    return x


def _check_finite(x: torch.Tensor, name: str) -> None:
    if not torch.isfinite(torch.stack(torch.aminmax(x))).all():  # NaN propagates to min and max
        raise ValueError(f"{name} contains NaN or inf")


def _check_rows(x: torch.Tensor, name: str) -> None:
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape [..., n_samples, n_units], got shape {tuple(x.shape)}")


def _broadcasts_to(shape: torch.Size, target: torch.Size) -> bool:
    try:
        return torch.broadcast_shapes(shape, target) == target
    except RuntimeError:
        return False


def _float64(x, name: str, device) -> torch.Tensor:
    """A finite numeric value or array as float64 (used for ranges and edges, not for data)."""
    try:
        out = torch.as_tensor(x, dtype=torch.float64, device=device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{name} must be numeric, got {x!r}") from err
    if not torch.isfinite(out).all():
        raise ValueError(f"{name} must be finite, got {x!r}")
    return out


def _positive(x, name: str) -> float:
    """A positive finite scalar as a float."""
    is_number = isinstance(x, (numbers.Real, np.ndarray, torch.Tensor)) and not isinstance(x, bool)
    if not is_number or np.ndim(x) != 0:
        raise ValueError(f"{name} must be a positive number, got {x!r}")
    value = float(x)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value}")
    return value


def _classes(y, name: str, n_samples: int | None = None, device=None):
    """Class index 0..K-1 of each label ([n_samples] int64) and the class sizes ([K] int64)."""
    y = _integers(y, name, device)
    if y.ndim != 1 or (n_samples is not None and len(y) != n_samples):
        expected = "n_samples" if n_samples is None else f"{n_samples}, one label per row"
        raise ValueError(f"{name} must have shape ({expected},), got shape {tuple(y.shape)}")
    _, index, counts = torch.unique(y, return_inverse=True, return_counts=True)
    return index, counts


def _out(bits: torch.Tensor) -> float | np.ndarray:
    return float(bits) if bits.ndim == 0 else bits.cpu().numpy()


# --- discrete (plug-in) estimator -----------------------------------------------------------------


def _sort_rows(keys: torch.Tensor, bound: int) -> torch.Tensor:
    """`keys` [..., n], all in [0, bound), sorted along the last dim (int32 or int64)."""
    if keys.device.type == "cpu":
        # NumPy sorts these rows ~2x faster than torch.sort, ~1.4x faster again as int32, and
        # 16-bit keys ~6x faster with its radix sort (kind="stable")
        if bound <= 2**16:
            return torch.from_numpy(np.sort(keys.numpy().astype(np.uint16), axis=-1, kind="stable").astype(np.int32))
        dtype = np.int32 if bound <= 2**31 else np.int64
        return torch.from_numpy(np.sort(keys.numpy().astype(dtype, copy=False), axis=-1))
    return keys.sort(dim=-1).values


def _flat_nonzero(mask: torch.Tensor) -> torch.Tensor:
    """Indices of the True elements of `mask`, flattened (int64)."""
    if mask.device.type == "cpu":  # ~6x faster than torch.nonzero
        return torch.from_numpy(np.flatnonzero(mask.numpy()))
    return mask.view(-1).nonzero().squeeze(1)


def _dense_rank(keys: torch.Tensor) -> torch.Tensor:
    """Rank of each key among the distinct keys of its row (0, 1, ... along the last dim)."""
    sorted_keys, order = keys.sort(dim=-1)
    is_new = torch.ones_like(sorted_keys, dtype=torch.bool)
    is_new[..., 1:] = sorted_keys[..., 1:] != sorted_keys[..., :-1]
    return torch.empty_like(order).scatter_(-1, order, is_new.cumsum(-1) - 1)


def _entropy_from_counts(counts: torch.Tensor) -> torch.Tensor:
    """Plug-in entropy in bits from counts [..., m] (zeros allowed): log2 N - (1/N) sum c log2 c."""
    counts = counts.to(torch.float64)
    n = counts.sum(-1)
    return torch.log2(n) - torch.special.xlogy(counts, counts).sum(-1) / (n * math.log(2))


def _row_entropy(starts: torch.Tensor, n: int, rows: int) -> torch.Tensor:
    """Plug-in entropy in bits of each of `rows` rows of n sorted symbols, laid end to end, from
    `starts`, the flat index of the first element of every run (each row starting one)."""
    lengths = torch.diff(starts, append=starts.new_full((1,), rows * n))
    c_log_c = torch.special.xlogy(*(torch.arange(n + 1, dtype=torch.float64, device=starts.device),) * 2)
    total = torch.zeros(rows, dtype=torch.float64, device=starts.device)
    total.index_add_(0, starts // n, c_log_c[lengths])
    return math.log2(n) - total / (n * math.log(2))


def _row_keys(codes: torch.Tensor, base: int | None = None, limit: int = _KEY_LIMIT) -> tuple[torch.Tensor, int]:
    """One int64 key per row of `codes` [..., n, d], equal exactly where the rows are equal, and
    a bound <= `limit` that all keys lie below.

    Columns are packed as digits, key = key * base + digit; `base` None finds each column's
    range, an int says every code lies in [0, base). Before a multiplication that could reach
    `limit`, the keys are replaced by their dense ranks (< n), so any width and any code range
    work (for n up to 3e9, where n * n stays below 2**63).
    """
    n = codes.shape[-2]
    keys = torch.zeros(codes.shape[:-1], dtype=torch.int64, device=codes.device)
    bound = 1  # every key lies in [0, bound)
    for column in codes.unbind(-1):
        if base is not None:
            digits, width = column, base
        else:
            lo, hi = column.min().item(), column.max().item()
            if hi - lo < n:
                digits, width = column - lo, hi - lo + 1
            else:  # a code range wider than the sample count: ranks keep the base at n
                digits, width = _dense_rank(column), n
        if bound * width > limit:
            keys, bound = _dense_rank(keys), n
        keys.mul_(width).add_(digits)
        bound *= width
    return keys, bound


def _discrete(codes: torch.Tensor, base: int | None, labels: torch.Tensor,
              class_sizes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """I(X;T) and I(T;Y) in bits, float64 tensors of shape `codes.shape[:-2]`, of checked integer
    `codes` (see `_row_keys` for `base`) with class indices `labels` [n] of sizes `class_sizes`.

    One sort per row: the keys carry the label in their low bits, so runs of equal keys count
    the joint symbols (T, Y) and runs of equal high bits count the symbols T.
    """
    shift = (len(class_sizes) - 1).bit_length()
    keys, bound = _row_keys(codes, base, _KEY_LIMIT >> shift)
    joint = _sort_rows((keys << shift) | labels, bound << shift)
    n, flat = joint.shape[-1], joint.view(-1)
    is_start = torch.ones_like(flat, dtype=torch.bool)
    is_start[1:] = flat[1:] != flat[:-1]
    is_start[::n] = True  # rows do not share runs
    joint_starts = _flat_nonzero(is_start)
    symbols = flat[joint_starts] >> shift  # T at the start of each (T, Y) run
    is_start = torch.ones_like(symbols, dtype=torch.bool)
    is_start[1:] = symbols[1:] != symbols[:-1]
    is_start |= joint_starts % n == 0
    t_starts = joint_starts[_flat_nonzero(is_start)]
    h_t, h_ty = (_row_entropy(starts, n, len(flat) // n).view(joint.shape[:-1]) for starts in (t_starts, joint_starts))
    return h_t, h_t + _entropy_from_counts(class_sizes) - h_ty


def entropy(labels) -> float:
    """Plug-in entropy in bits of a discrete label vector `labels` [n_samples] (integers)."""
    _, counts = _classes(labels, "labels")
    return float(_entropy_from_counts(counts))


def discrete(codes, y) -> MI:
    """Plug-in I(X;T) and I(T;Y) in bits of a deterministic discrete layer.

    codes: integers [..., n_samples, n_units]; the symbol T of a row is the tuple of its codes.
    y: integer labels [n_samples], any number of classes, shared by all batch elements.

    X is uniform over the rows and T is a function of X, so I(X;T) = H(T), and
    I(T;Y) = H(T) + H(Y) - H(T,Y). Leading dimensions are a batch (e.g. [seeds, snapshots]):
    the result holds floats for 2-D `codes`, else NumPy arrays of shape `codes.shape[:-2]`.
    Counting is exact (sorting of packed row keys), on the device of `codes`.
    """
    codes = _integers(codes, "codes")
    _check_rows(codes, "codes")
    labels, class_sizes = _classes(y, "y", codes.shape[-2], codes.device)
    return MI(*map(_out, _discrete(codes, None, labels, class_sizes)))


# --- binning ------------------------------------------------------------------------------------


def _value_range(value_range, batch_shape: torch.Size, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(lo, hi) as float64 tensors, 0-d or of shape `batch_shape`, with lo < hi everywhere."""
    try:
        lo, hi = value_range
    except (TypeError, ValueError) as err:
        raise ValueError(f"value_range must be a pair (lo, hi), got {value_range!r}") from err
    lo, hi = _float64(lo, "value_range", device), _float64(hi, "value_range", device)
    if not (_broadcasts_to(lo.shape, batch_shape) and _broadcasts_to(hi.shape, batch_shape)):
        raise ValueError(
            f"value_range lo and hi must broadcast to the batch shape {tuple(batch_shape)} of t, "
            f"got shapes {tuple(lo.shape)} and {tuple(hi.shape)}"
        )
    if not (lo < hi).all():
        raise ValueError("value_range must have lo < hi everywhere")
    if lo.ndim or hi.ndim:
        lo, hi = lo.expand(batch_shape), hi.expand(batch_shape)
    return lo, hi


def _edges(bins, value_range, batch_shape: torch.Size, device) -> torch.Tensor:
    """Bin edges, float64 [n_bins + 1], or [*batch_shape, n_bins + 1] for per-element ranges or edges."""
    if isinstance(bins, (int, np.integer)) and not isinstance(bins, bool):
        if bins < 1:
            raise ValueError(f"bins must be at least 1, got {bins}")
        lo, hi = _value_range((-1.0, 1.0) if value_range is None else value_range, batch_shape, device)
        step = (hi - lo) / bins
        # np.linspace's arithmetic, so these edges equal np.histogram's (for float64 data)
        k = torch.arange(bins + 1, dtype=torch.float64, device=device)
        edges = k * step[..., None] + lo[..., None]
        edges[..., -1] = hi
        return edges
    if value_range is not None:
        raise ValueError("value_range must be left unset (None) when bins is an array of edges")
    edges = _float64(bins, "bins", device)
    if edges.ndim == 0 or edges.shape[-1] < 2 or not _broadcasts_to(edges.shape[:-1], batch_shape):
        raise ValueError(f"bins must be an int or an array of >= 2 edges of shape [n_edges] or [..., n_edges] "
                         f"broadcastable to the batch shape {tuple(batch_shape)} of t, got shape {tuple(edges.shape)}")
    if not (edges[..., 1:] > edges[..., :-1]).all():
        raise ValueError("bins (edges) must be strictly increasing")
    return edges if edges.ndim == 1 else edges.expand(*batch_shape, edges.shape[-1])


def _ceil_to(edges: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The smallest value of `dtype` >= each float64 edge, so that for any value v of that dtype,
    v >= edge exactly when v >= the result (the comparisons NumPy makes in float64, made in `dtype`).
    """
    rounded = edges.to(dtype)
    below = rounded.to(torch.float64) < edges
    return torch.where(below, torch.nextafter(rounded, torch.full_like(rounded, math.inf)), rounded)


def _index_dtype(n: int) -> torch.dtype:
    """The smallest of int16, int32 and int64 that holds 0..n-1."""
    return torch.int16 if n <= 2**15 else torch.int32 if n <= 2**31 else torch.int64


def _binning(t, bins, value_range) -> tuple[torch.Tensor, torch.Tensor, bool, torch.Size]:
    """Checked `t` as `[B, n_samples, n_units]` (float32 or float64), its bin edges as float64
    `[1 or B, n_bins + 1]` (one row shared, or one per batch element), whether they are
    equal-width, and t's shape.
    """
    t = _floats(t, "t", finite=False)  # checked chunk by chunk in `_codes`, where it is contiguous
    _check_rows(t, "t")
    if t.dtype not in (torch.float32, torch.float64):
        t = t.float()  # float16 and bfloat16 values are exact in float32
    edges = _edges(bins, value_range, t.shape[:-2], t.device)
    uniform = isinstance(bins, (int, np.integer))
    return t.reshape(-1, *t.shape[-2:]), edges.reshape(-1, edges.shape[-1]), uniform, t.shape


def _batch_chunks(t: torch.Tensor):
    """Slices of the batch of `t` [B, n, d] holding about `_CHUNK_VALUES` values each."""
    step = max(1, _CHUNK_VALUES // (t.shape[1] * t.shape[2]))
    return [slice(start, start + step) for start in range(0, t.shape[0], step)]


def _uniform_codes(t: torch.Tensor, edges: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor | None:
    """Bin indices of contiguous `t` [b, ...] for equal-width `edges` [1 or b, n_bins + 1] by
    arithmetic, or None where that would not be exact.

    The position g = (t - lo) / step, computed in t's dtype, is within `slack` bins of the
    exact position, so floor(g) is the bin unless g is that close to an inner edge index r; those
    few values are settled by comparing them with `thresholds[r]` (see `_ceil_to`). `slack`
    bounds the rounding of lo, 1/step, the subtraction and the product (each <= eps/2 relative,
    on positions up to n_bins + 1) and of the float64 edges and their rounding up to t's dtype
    (<= eps * max(|lo|, |hi|) / step), with a margin of 2; the arithmetic is not used when
    slack > 1/4, for steps below 2**-100, or for ranges near the dtype's largest value.
    """
    n_bins = edges.shape[-1] - 1
    lo, hi = edges[:, 0], edges[:, -1]
    step = (hi - lo) / n_bins  # as `_edges` computed it
    finfo = torch.finfo(t.dtype)
    magnitude = torch.maximum(lo.abs(), hi.abs())
    slack = 4 * finfo.eps * (n_bins + 2 + 2 * (magnitude / step).max().item()) + 2.0**-40
    if not (slack <= 0.25 and (step >= 2.0**-100).all() and (magnitude < finfo.max / 2).all()):
        return None
    g = (t - lo.to(t.dtype)[:, None, None]).mul_((1 / step).to(t.dtype)[:, None, None])
    g.clamp_(0.5, n_bins - 0.5)  # values outside the edges go to the end bins
    distance = torch.round(g).sub_(g).abs_()  # to the nearest edge index
    near = _flat_nonzero(distance <= slack) if distance.min() <= slack else None
    if near is not None:
        r = torch.round(g.view(-1)[near]).to(torch.int64)
        below = t.view(-1)[near] < thresholds.expand(len(t), -1)[near // t[0].numel(), r]
    codes = g.floor_().to(_index_dtype(n_bins))
    if near is not None:
        codes.view(-1)[near] = (r - below.to(torch.int64)).to(codes.dtype)
    return codes


def _codes(t: torch.Tensor, edges: torch.Tensor, uniform: bool) -> torch.Tensor:
    """Bin indices of `t` [b, n, d] for `edges` [1 or b, n_bins + 1], as `bin_codes`, in the
    smallest integer dtype that holds them.

    They are computed units-major, [b, d, n] in memory (a copy unless `t` is a transposed view of
    such a buffer, as the trainer's activations are), so that each unit's codes are contiguous.
    """
    t = t.transpose(1, 2).contiguous()
    _check_finite(t, "t")
    thresholds = _ceil_to(edges, t.dtype)
    codes = _uniform_codes(t, edges, thresholds) if uniform else None
    if codes is None:  # explicit or extreme edges: count the inner thresholds at or below each value
        inner = thresholds[:, 1:-1].contiguous()
        if len(inner) == 1:
            codes = torch.searchsorted(inner[0], t, right=True, out_int32=True)
        else:
            codes = torch.searchsorted(inner, t.view(len(t), -1), right=True, out_int32=True).view(t.shape)
    return codes.transpose(1, 2)


def bin_codes(t, bins=30, value_range=None) -> torch.Tensor:
    """Bin index 0..n_bins-1 of every value of `t` [..., n_samples, n_units]: an int64 torch tensor
    of t's shape, on t's device.

    bins: an int (that many equal bins on `value_range`) or an array of strictly increasing
        edges, [n_edges] shared by all batch elements or [..., n_edges] with leading dims
        broadcastable to `t.shape[:-2]` (e.g. `equal_mass_edges(t)`); then `value_range` stays None.
    value_range: (lo, hi); None means (-1, 1). lo and hi may be arrays broadcastable to
        `t.shape[:-2]`, giving each batch element its own range (e.g. one [min, max] per run).

    NumPy histogram semantics: bin k is [e_k, e_k+1), the last bin is closed, and values outside
    the edges go to the end bins. Edges are np.linspace(lo, hi, bins + 1) in float64 and every
    value is placed exactly as a float64 comparison with them would place it (np.histogram
    instead rounds the edges to float32 for float32 data). The comparisons are made in t's dtype
    against the edges rounded up to it, which gives the same answers, and equal-width bins are
    found mostly by arithmetic.
    """
    flat, edges, uniform, shape = _binning(t, bins, value_range)
    parts = [_codes(flat[s], edges[s] if len(edges) > 1 else edges, uniform) for s in _batch_chunks(flat)]
    return torch.cat(parts).to(torch.int64).reshape(shape)


def binned(t, y, bins=30, value_range=None) -> MI:
    """Binning estimate (Saxe et al. Sec. 2) in bits: each unit of `t` [..., n_samples, n_units] is binned
    independently by `bin_codes(t, bins, value_range)`, then `discrete(codes, y)`.

    The default is Saxe et al.'s tanh setting, 30 equal bins on [-1, 1]. Batched as `discrete`,
    a few million values at a time.
    """
    flat, edges, uniform, shape = _binning(t, bins, value_range)
    labels, class_sizes = _classes(y, "y", flat.shape[1], flat.device)
    n_bins = edges.shape[-1] - 1
    parts = [_discrete(_codes(flat[s], edges[s] if len(edges) > 1 else edges, uniform), n_bins, labels, class_sizes)
             for s in _batch_chunks(flat)]
    return MI(*(_out(torch.cat(bits).view(shape[:-2])) for bits in zip(*parts)))


def binned_floor(t, y, bin_width) -> MI:
    """ibsgd's binning estimate in bits: code = floor(t / bin_width) per unit, bins anchored at 0
    and unbounded, then `discrete(codes, y)`. The division is done in t's dtype, as in ibsgd.

    t: floats [..., n_samples, n_units]; bin_width: positive (ibsgd: 0.07 Tishby net, 0.5 MNIST).
    """
    t = _floats(t, "t")
    _check_rows(t, "t")
    quotients = torch.floor(t / _positive(bin_width, "bin_width"))
    if not quotients.abs().max() < _KEY_LIMIT:
        raise ValueError(f"bin_width {bin_width} is too small: t / bin_width leaves the int64 range")
    return discrete(quotients.to(torch.int64), y)


# --- adaptive, machine-precision and quantised codes ------------------------------------------------


def _sort_last(values: torch.Tensor) -> torch.Tensor:
    """`values` sorted along the last dim (NumPy's sort on the CPU: ~4x torch.sort for float32 rows)."""
    if values.device.type == "cpu":
        return torch.from_numpy(np.sort(values.numpy(), axis=-1))
    return values.sort(dim=-1).values


def _equal_mass_rows(values: torch.Tensor, bins: int, low: torch.Tensor | None) -> torch.Tensor:
    """`equal_mass_edges` of each row of `values` [R, L] (one pooled layer per row): float64 [R, bins + 1]."""
    ordered = _sort_last(values)
    is_new = torch.ones_like(ordered, dtype=torch.bool)
    is_new[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    rank = is_new.cumsum(1, dtype=torch.int32) - 1  # rank of each sorted value among the row's distinct values
    m = rank[:, -1:].to(torch.int64) + 1  # distinct values per row [R, 1]
    groups = m.clamp(max=bins)  # non-empty bins
    k = torch.arange(1, bins, device=values.device)
    first = torch.div(k * m, groups, rounding_mode="floor").clamp_(max=m - 1)  # rank opening bin k
    above, below = (ordered.gather(1, torch.searchsorted(rank, j.to(torch.int32))).to(torch.float64)
                    for j in (first, first - 1))
    middle = 0.5 * below + 0.5 * above
    inner = torch.where(middle > below, middle, above)  # in (below, above]: `above` opens bin k
    top = ordered[:, -1:].to(torch.float64)
    lowest = ordered[:, :1].to(torch.float64) if low is None else low.expand_as(top)
    lowest = torch.where(lowest < top, lowest, top - top.abs().clamp(min=1.0))  # a constant layer
    base = torch.cat([lowest, inner], 1).gather(1, groups - 1)  # the last edge that opens a non-empty bin
    share = (k - groups + 1).to(torch.float64) / (bins - groups + 1)
    inner = torch.where(k < groups, inner, base + share * (top - base))  # empty bins just below the top
    return torch.cat([lowest, inner, top], 1)


def equal_mass_edges(t, bins=30, low=None) -> torch.Tensor:
    """Adaptive bin edges of each layer in `t` [..., n_samples, n_units]: float64, [..., bins + 1],
    on t's device, to be used as `binned(t, y, bins=edges)` (or `bin_codes`).

    Equal-mass binning of Chelombiev, Houghton & O'Donnell (ICLR 2019): the values of all units
    and samples of a layer are pooled and their m sorted distinct values u_0 < ... < u_{m-1}
    split into `bins` groups of consecutive values, group k holding u_j for
    floor(k m / bins) <= j < floor((k + 1) m / bins), i.e. floor(m / bins) or ceil(m / bins)
    distinct values each, however often each value occurs (ties are one value). Edges, in
    `binned`'s semantics (bin k is [e_k, e_k+1), the last bin closed):
    - inner edge e_k is the midpoint of the gap between the groups, (u_{j-1} + u_j) / 2 for the
      first value u_j of group k (u_j itself if the midpoint rounds onto u_{j-1}), so no value
      lies on an inner edge and rounding cannot move one across;
    - e_0 = `low`, the smallest value the activation can take (e.g. -1 for tanh, 0 for ReLU-like
      units; it must not exceed min(t)), or None: u_0 itself (it lies in the first bin);
    - e_bins = u_{m-1}, the maximum.
    A layer with m < bins distinct values gets one bin per value and bins - m empty bins, their
    edges spread evenly between its last inner edge and its maximum (so every layer has
    bins + 1 edges and a batch stays one array); empty bins change no sample's symbol, so the
    information is that of m bins. A constant layer whose value is also `low` (or with `low`
    None) gets e_0 = u_0 - max(1, |u_0|).

    Chelombiev et al.'s code puts the edges on values u_j themselves, keeps the value `low` out
    of the groups (ReLU's zeros get a bin of their own) and lets np.digitize give the maximum a
    symbol of its own; here every value is in the bin of its group.
    Raises ValueError if two distinct values of float64 data are adjacent doubles where an edge
    must go between them (not possible for float32 or narrower data).
    """
    t = _floats(t, "t")
    _check_rows(t, "t")
    if not isinstance(bins, (int, np.integer)) or isinstance(bins, bool) or bins < 1:
        raise ValueError(f"bins must be a positive int, got {bins!r}")
    if low is not None:
        low = _float64(low, "low", t.device)
        if low.ndim != 0 or low > t.min():
            raise ValueError(f"low must be a number <= the smallest value of t ({t.min().item()}), got {low.tolist()}")
    flat = t.reshape(-1, t.shape[-2] * t.shape[-1])
    if flat.dtype not in (torch.float32, torch.float64):
        flat = flat.float()  # float16 and bfloat16 values are exact in float32
    chunks = _batch_chunks(flat[:, :, None])
    edges = torch.cat([_equal_mass_rows(flat[s], int(bins), low) for s in chunks])
    if not (edges[:, 1:] > edges[:, :-1]).all():
        raise ValueError("t has distinct values too close together (adjacent float64 numbers) to put an edge between")
    return edges.reshape(*t.shape[:-2], bins + 1)


def precision_codes(t) -> torch.Tensor:
    """Machine-precision bins: the bit pattern of every value of `t` [..., n_samples, n_units], as
    an int64 torch tensor of t's shape on t's device; equal exactly where the values are equal.

    Values are compared in t's dtype (float32 activations: every distinct float32 value is its
    own bin, Saxe et al. Fig. 15). -0.0 is first made +0.0 (t + 0.0), so the two zeros, equal as
    floats, are one bin. NaN and inf are refused.
    """
    t = _floats(t, "t")
    _check_rows(t, "t")
    bits_dtype = {2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
    return (t + 0.0).view(bits_dtype).to(torch.int64)


def binned_precision(t, y) -> MI:
    """Binning at machine precision (Saxe et al. Fig. 15) in bits: `discrete(precision_codes(t), y)`."""
    return discrete(precision_codes(t), y)


def _quantised(t, bits, value_range) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.dtype]:
    """Checked `t` quantised: codes as float64 (t's shape), lo and the level step broadcastable to
    them, and t's dtype."""
    t = _floats(t, "t")
    _check_rows(t, "t")
    if not isinstance(bits, (int, np.integer)) or isinstance(bits, bool) or not 1 <= bits <= 32:
        raise ValueError(f"bits must be an int from 1 to 32, got {bits!r}")
    levels = 2 ** int(bits) - 1
    if value_range is None:
        lo, hi = (x.to(torch.float64) for x in torch.aminmax(t.flatten(-2), dim=-1))
    else:
        lo, hi = _value_range(value_range, t.shape[:-2], t.device)
    lo, width = lo[..., None, None], (hi - lo)[..., None, None]
    scale = torch.where(width > 0, levels / width, 0.0)  # a constant batch element: every code 0
    codes = torch.floor((t.to(torch.float64) - lo) * scale + 0.5).clamp_(0, levels)
    return codes, lo, width / levels, t.dtype


def quantise(t, bits=8, value_range=None) -> torch.Tensor:
    """Uniform `bits`-bit quantisation codes of `t` [..., n_samples, n_units] (Lorenzen, Igel &
    Nielsen, ICLR 2022): int64 torch tensor of t's shape on t's device, usable in `discrete`.

    code = floor((t - lo) * (2**bits - 1) / (hi - lo) + 0.5), clipped to [0, 2**bits - 1], in
    float64: rounding to the nearest level, halves rounded up (as the final step of TensorFlow's
    fake_quant_with_min_max_vars, which also nudges lo and hi so that 0 is a level; this
    does not). value_range: (lo, hi) with lo < hi, scalars or arrays broadcastable to
    `t.shape[:-2]` (as in `bin_codes`); None: each batch element's own [min, max] over all its
    units and samples (Lorenzen et al.'s tanh quantiser takes the layer's min and max over the
    batch); a constant element then gets code 0. `fake_quantise` gives the levels' values.
    """
    return _quantised(t, bits, value_range)[0].to(torch.int64)


def fake_quantise(t, bits=8, value_range=None) -> torch.Tensor:
    """The values of `quantise(t, bits, value_range)`'s levels, lo + code * (hi - lo) / (2**bits - 1),
    as a torch tensor of t's shape and dtype on t's device: the activation of a quantised network.

    It has no gradient (rounding); quantisation-aware training passes gradients straight through
    with `t + (fake_quantise(t) - t).detach()`.
    """
    codes, lo, step, dtype = _quantised(t, bits, value_range)
    return (lo + codes * step).to(dtype)


# --- Kraskov (k-nearest-neighbour) entropy -------------------------------------------------------


def _kraskov_nats(mean_log_r, n: int, d: int, k: int):
    """Kraskov's entropy in nats from the mean of log(r_i + eps) over n rows of d units."""
    log_unit_ball = d / 2 * math.log(math.pi) - special.gammaln(d / 2 + 1)  # volume of the unit d-ball
    return d * mean_log_r + log_unit_ball + special.digamma(n) - special.digamma(k)


def _class_ends(sorted_classes: torch.Tensor) -> np.ndarray:
    """For class indices sorted ascending [n]: one past the last row of each row's class, [n] int64."""
    return torch.searchsorted(sorted_classes, sorted_classes, right=True).cpu().numpy()


def _kth_neighbour_distances(x: torch.Tensor, order: np.ndarray | None, class_end: np.ndarray,
                             k: int) -> tuple[np.ndarray, np.ndarray]:
    """`pairwise.nearest_distances` of the rows of one layer `x` [n, d] taken in `order` (sorted by
    class; None: as they are): each row's Euclidean distance (float64) to its k-th nearest other
    row, among all rows and among its class's rows, in that order."""
    rows = x.detach().to("cpu", x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float64).numpy()
    return pairwise.nearest_distances(np.ascontiguousarray(rows if order is None else rows[order]), class_end, k)


def _check_k(k, n: int) -> None:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k < n:
        raise ValueError(f"k must be an int from 1 to n_samples - 1 = {n - 1}, got {k!r}")


def kraskov_entropy(t, k=2, eps=1e-16) -> float | np.ndarray:
    """Kraskov, Stoegbauer & Grassberger (2004) k-nearest-neighbour entropy of `t` [n_samples,
    n_units] in bits (Saxe et al. App. B.3); batched `t` [..., n_samples, n_units] gives
    a NumPy array of shape `t.shape[:-2]`.

    H = (d/N) sum_i log(r_i + eps) + (d/2) log pi - log Gamma(d/2 + 1) + psi(N) - psi(k), in
    nats, converted to bits; r_i is the Euclidean distance from sample i to its k-th nearest
    neighbour among the other samples (duplicates of a sample are neighbours at distance 0), d
    the number of units. Coinciding samples make it very negative (log eps); it is returned as
    it is. Differential entropy: it can be any real number, and I(X;T) under homoscedastic noise
    is H(T) minus a constant. Distances exact in float64, by a compiled search over all pairs
    (`ibutils.pairwise`, on the CPU), one batch element at a time. k: 1 <= k < N (paper: 2);
    eps: positive (paper: 1e-16).
    """
    t = _floats(t, "t")
    _check_rows(t, "t")
    n, d = t.shape[-2:]
    _check_k(k, n)
    eps = _positive(eps, "eps")
    layers = t.detach().reshape(-1, n, d)
    one_class = np.full(n, n)
    mean_log_r = np.array([np.log(_kth_neighbour_distances(x, None, one_class, int(k))[0] + eps).mean()
                           for x in layers])
    nats = _kraskov_nats(mean_log_r, n, d, int(k))
    return _out(torch.from_numpy(nats / math.log(2)).reshape(t.shape[:-2]))


def kraskov(t, y, k=2, eps=1e-16) -> MI:
    """Kraskov k-nearest-neighbour estimates in bits (Saxe et al. App. B.3): I(X;T) as the entropy
    H(T) of `kraskov_entropy` (I(X;T) up to the constant entropy of the noise that makes it
    finite, so it can be negative), and I(T;Y) = H(T) - sum_l p_l H(T | Y = l), each class's rows'
    entropy estimated the same way (the constants cancel). One pass over the pairs gives every
    row's k-th neighbour among all rows and within its class.

    t: floats [..., n_samples, n_units], batched as `kraskov_entropy`; y: integer labels
    [n_samples]; every class needs more than `k` samples.
    """
    t = _floats(t, "t")
    _check_rows(t, "t")
    n, d = t.shape[-2:]
    _check_k(k, n)
    eps = _positive(eps, "eps")
    labels, class_sizes = _classes(y, "y", n)
    if class_sizes.min() <= k:
        raise ValueError(f"y: every class needs more than k = {k} samples, the smallest has {class_sizes.min().item()}")
    sizes = class_sizes.numpy()
    sorted_labels, order = labels.sort(stable=True)
    class_end, order, sorted_labels = _class_ends(sorted_labels), order.numpy(), sorted_labels.numpy()
    h_t, h_given_y = [], []
    for x in t.detach().reshape(-1, n, d):
        r_all, r_class = _kth_neighbour_distances(x, order, class_end, int(k))
        h_t.append(_kraskov_nats(np.log(r_all + eps).mean(), n, d, int(k)))
        class_log_r = np.bincount(sorted_labels, np.log(r_class + eps), len(sizes)) / sizes
        h_given_y.append(sizes / n @ _kraskov_nats(class_log_r, sizes, d, int(k)))
    shape = t.shape[:-2]
    h_t, h_given_y = (torch.tensor(v).reshape(shape) / math.log(2) for v in (h_t, h_given_y))
    return MI(_out(h_t), _out(h_t - h_given_y))


# --- KDE ----------------------------------------------------------------------------------------


def distinct_rows(t, y) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The distinct (row, label) pairs of a layer: rows of `t` [n_samples, n_units] that are equal
    as floats (-0.0 = +0.0) and carry the same label of `y` [n_samples] count once.

    Returns the distinct rows [M, n_units] (t's dtype), the class index 0..K-1 of each [M]
    (classes in increasing label order) and how often each occurs [M] (int64, summing to
    n_samples), on t's device, in order of first occurrence. Exact: rows are grouped by a hash of
    their bit patterns, and the grouping is checked row by row (rows are compared exactly, by
    sorting, if two different rows ever share a hash).
    """
    t = _floats(t, "t")
    if t.ndim != 2:
        raise ValueError(f"t must have shape [n_samples, n_units], got shape {tuple(t.shape)}")
    labels, _ = _classes(y, "y", t.shape[0], t.device)
    bits = precision_codes(t)
    keys = _row_hash(bits, labels)
    first, inverse, counts = _groups(keys)
    if not (bits.eq(bits[first][inverse]).all() and labels.eq(labels[first][inverse]).all()):  # a collision
        keys, _ = _row_keys(torch.cat([bits, labels[:, None]], 1))
        first, inverse, counts = _groups(keys)
    return t[first], labels[first], counts


def _distinct_row_bound(t: torch.Tensor, labels: torch.Tensor) -> int:
    """A cheap lower bound on the number of distinct (row, label) pairs of checked floats `t`
    [n, n_units] and class indices `labels` [n] (int64): the number of distinct row hashes
    (equal rows hash equally), so n means that no row repeats. About a tenth of `distinct_rows`."""
    keys = np.sort(_row_hash(precision_codes(t), labels).cpu().numpy())
    return 1 + int(np.count_nonzero(keys[1:] != keys[:-1]))


# odd 64-bit multipliers (digits of pi), one per column, for `_row_hash`
_HASH_MULTIPLIERS = torch.tensor([0x243F6A8885A308D3, 0x13198A2E03707345, 0x24A4093822299F31, 0x082EFA98EC4E6C89,
                                  0x452821E638D01377, 0x3BE5466CF34E90C7, 0x40AC29B7C97C50DD, 0x3F84D5B5B5470917],
                                 dtype=torch.int64)


def _row_hash(bits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """An int64 hash of each row of `bits` [n, d] (int64) and its label: equal rows hash equally."""
    multipliers = _HASH_MULTIPLIERS.to(bits.device)
    index = torch.arange(bits.shape[1], device=bits.device) % len(multipliers)
    rotated = bits + index  # so that the same value in two columns sharing a multiplier differs
    keys = (rotated * multipliers[index]).sum(1)  # wraps modulo 2**64
    return keys * multipliers[0] + labels


def _groups(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For int64 `keys` [n]: the index of the first occurrence of each distinct key (in order of
    first occurrence) [M], the group of each key [n] and the group sizes [M]."""
    _, inverse, counts = torch.unique(keys, return_inverse=True, return_counts=True)
    first = torch.full_like(counts, len(keys)).scatter_reduce_(
        0, inverse, torch.arange(len(keys), device=keys.device), "amin")
    order = first.argsort()
    rank = torch.empty_like(order).scatter_(0, order, torch.arange(len(order), device=keys.device))
    return first[order], rank[inverse], counts[order]


# ln of the smallest normal number of each kernel dtype, rounded up: exponents below it are
# raised to it (their terms add below 1e-37 to sums >= 1) so that no kernel term is subnormal:
# exp and the squarings of subnormal numbers cost this CPU (AMD EPYC) about 4x as long
_EXP_FLOOR = {torch.float32: pairwise.EXP_FLOOR, torch.float64: -708.0}


def _class_blocks(class_sizes: list[int], size: int) -> list[tuple[slice, int]]:
    """Consecutive blocks of at most `size` samples, each within one class (samples sorted by class),
    with that class."""
    ends = np.cumsum(class_sizes).tolist()
    return [(slice(start, min(start + size, end)), c)
            for c, end in enumerate(ends) for start in range(end - class_sizes[c], end, size)]


def _weighted_sums(kernel: torch.Tensor, weights: torch.Tensor | None, dim: int, out: torch.Tensor) -> None:
    """out = sum over `dim` of `kernel` [r, c], each term times its weight (`weights` [r or c], or
    None: 1); by torch.sum's cascade, which keeps float32 sums of terms of very different weights
    accurate (a BLAS product adds them one by one)."""
    if weights is not None:
        kernel = kernel * (weights if dim == 1 else weights[:, None])
    torch.sum(kernel, dim, out=out)


def _kernel_block_sums(h: torch.Tensor, weights: torch.Tensor | None, blocks, scales: list[float],
                       dtype: torch.dtype) -> torch.Tensor:
    """sums[v, kernel, b, i] = sum_{j in block b} w_j k_ij for the rows `h` [M, d] (float64) with
    weights `weights` [M] (None: all 1), for the kernels exp(scales[v] * D_ij) (kernel 0, pairwise
    KL) and exp(scales[v] / 4 * D_ij) (kernel 1, Bhattacharyya): [len(scales), 2, len(blocks), M],
    in `dtype`.

    D is symmetric, so each block pair is computed once, above the diagonal, and gives the row
    sums of both blocks. The squared distances come from one float64 product of augmented rows,
    [h_i, |h_i|^2, 1] . [-2 h_j, 1, |h_j|^2], scaled by the widest kernel's scale on the way and
    rounded to `dtype` once; each variance's Bhattacharyya kernel is one exp of that (times the
    ratio of the scales) and its KL kernel that to the 4th power (two products instead of an exp).
    Every pass works in place in buffers of one block, allocated once.
    """
    sq_norms = (h * h).sum(1, keepdim=True)
    ones = torch.ones_like(sq_norms)
    widest = max(scales)  # the scale closest to 0: the other exponents are multiples >= 1 of its
    left = torch.cat([h, sq_norms, ones], 1).mul_(widest / 4.0)
    right = torch.cat([-2.0 * h, ones, sq_norms], 1).T.contiguous()
    w = None if weights is None else weights.to(dtype)
    sums = torch.zeros(len(scales), 2, len(blocks), len(h), dtype=dtype, device=h.device)
    floor = _EXP_FLOOR[dtype]
    kl_floor = math.exp(floor / 4)
    size = max(rows.stop - rows.start for rows, _ in blocks) ** 2
    product, exponent, kernel = (torch.empty(size, dtype=t, device=h.device) for t in (torch.float64, dtype, dtype))
    for b, (rows, _) in enumerate(blocks):
        for c in range(b, len(blocks)):
            cols = blocks[c][0]
            shape = (rows.stop - rows.start, cols.stop - cols.start)
            n = shape[0] * shape[1]
            x = exponent[:n].view(shape)
            x.copy_(torch.mm(left[rows], right[:, cols], out=product[:n].view(shape))).clamp_(floor, 0.0)  # D >= 0
            if b == c:
                x.fill_diagonal_(0.0)  # exact D_ii = 0, so I(X;T) cannot exceed log2 N by rounding
            k_ij = kernel[:n].view(shape)
            for v, scale in enumerate(scales):
                if scale == widest:
                    torch.exp(x, out=k_ij)
                else:
                    torch.mul(x, scale / widest, out=k_ij).clamp_(min=floor).exp_()
                for k in (1, 0):
                    if k == 0:  # exp(x / 4) ** 4, its terms raised to e**floor as well
                        k_ij.clamp_(min=kl_floor).mul_(k_ij).mul_(k_ij)
                    _weighted_sums(k_ij, None if w is None else w[cols], 1, sums[v, k, c, rows])
                    if b != c:
                        _weighted_sums(k_ij, None if w is None else w[rows], 0, sums[v, k, b, cols])
    return sums


def _compiled_kernel_sums(rows: torch.Tensor, weights: torch.Tensor | None, classes: torch.Tensor,
                          scales: list[float]) -> torch.Tensor:
    """`pairwise.kernel_row_sums` of CPU `rows` [M, d] sorted by class `classes` [M] with
    counts `weights` [M] (None: 1): [len(scales), kernel, restriction, M] float64."""
    class_end = _class_ends(classes)
    w = np.ones(len(rows), np.float32) if weights is None else weights.numpy().astype(np.float32)
    bd_scales = np.array(scales, np.float32) / 4  # the Bhattacharyya kernel's exponent per unit of D
    return torch.from_numpy(pairwise.kernel_row_sums(rows.to(torch.float32).numpy(), w, class_end, bd_scales))


def _block_kernel_sums(rows: torch.Tensor, weights: torch.Tensor | None, classes: torch.Tensor, scales: list[float],
                       chunk_size: int, dtype: torch.dtype) -> torch.Tensor:
    """The same sums as `_compiled_kernel_sums` by `_kernel_block_sums` on the device of `rows`:
    float64 distances of the centred rows, kernels in `dtype`."""
    h = rows.to(torch.float64)
    h = h - h.mean(0)  # distances are shift-invariant; centring shrinks the norms that cancel in D
    blocks = _class_blocks(torch.bincount(classes).tolist(), chunk_size)
    sums = _kernel_block_sums(h, weights, blocks, scales, dtype).to(torch.float64)
    block_classes = torch.tensor([c for _, c in blocks], device=rows.device)
    same_class = block_classes[:, None] == classes[None, :]  # [blocks, M]
    return torch.stack([sums.sum(2), (sums * same_class).sum(2)], 2)


def kde(t, y, noise_var=0.1, chunk_size=None, precision="float32") -> KDEBounds:
    """Kolchinsky & Tracey pairwise-distance estimates (Saxe et al. App. B.2) in bits, for
    T = t + N(0, noise_var I).

    t: floats [n_samples, n_units]; y: integer labels [n_samples]; noise_var: sigma^2 > 0.
    With D_ij = ||t_i - t_j||^2 and kernel k_ij = exp(-D_ij / (2 sigma^2)) (upper) or
    exp(-D_ij / (8 sigma^2)) (lower):
        I(X;T) = -(1/N) sum_i log((1/N) sum_j k_ij)
        I(T;Y) = I(X;T) + (1/N) sum_i log((1/N_{y_i}) sum_{j: y_j = y_i} k_ij)
    (the sums over j include j = i), i.e. H(T) - sum_l p_l H(T|Y=l) with class-restricted sums;
    the H(T|X) constants cancel.

    Each pair is computed once (D is symmetric), over the distinct (row, label) pairs of `t`
    weighted by their counts (`distinct_rows`) when at most 7/8 of the rows are distinct. Two
    ways, with the same results to ~1e-8 bits: on the CPU, for layers of up to
    `pairwise.MAX_UNITS` units at precision "float32", a compiled loop over the pairs
    (`pairwise.kernel_row_sums`: float32 differences of the rows, float32 kernels, sums in
    float64 per 256 terms); otherwise (a GPU, wider layers, precision "float64") on the device of
    `t` in square blocks of `chunk_size` rows and columns (None: 512) on and above the diagonal of
    the distance matrix, distances, the accumulation of the sums and the logs in float64 and the
    kernels and their sums within a block in `precision`. `kde_sweep` gives several noise
    variances from the same distances.
    """
    return kde_sweep(t, y, [noise_var], chunk_size, precision)[0]


# a layer is reduced to its distinct rows when at most this share of them is distinct (below it,
# the saving of (M/N)^2 of the pairs outweighs the grouping)
_DISTINCT_SHARE = 7 / 8


def kde_sweep(t, y, noise_vars, chunk_size=None, precision="float32") -> list[KDEBounds]:
    """`kde(t, y, v, chunk_size, precision)` for every noise variance v in `noise_vars` (a 1-D
    sequence), computing each pairwise distance once for all of them.

    Every kernel sum includes the diagonal term exp(0) = 1 and no term exceeds it, so the sums
    lie in [1, N] and need no log-sum-exp shift. Kernel terms below exp(-87) (float32; exp(-708)
    for float64) are raised to it, or left out by the compiled loop where a pair's distance along
    the layer's first principal axis alone puts them there; either changes no sum by more than
    1e-34 relative.

    Error of precision="float32" against "float64": each kernel term exp(x), x = -D/(8 sigma^2),
    carries a relative error of about (|x| + 2) 2**-24 (x rounded to float32, then exp; ((d + 2)
    |x| + 2) 2**-24 from the float32 distances of the compiled loop), four times that for the KL
    kernel; the float32 partial sums add a few 2**-24 relative. Measured:
    below 3e-8 bits at N = 4,096 (d = 10, 20, sigma^2 = 0.1 and 1e-3; chapter 6's layers) and at
    10,000 x 1,024 (benchmarks/RESULTS.md); the tests hold it to 1e-6.
    """
    t = _floats(t, "t")
    if t.ndim != 2:
        raise ValueError(f"t must have shape [n_samples, n_units], got shape {tuple(t.shape)}")
    if isinstance(noise_vars, (str, bytes)) or np.ndim(noise_vars) != 1 or len(noise_vars) == 0:
        raise ValueError(f"noise_vars must be a non-empty 1-D sequence of variances, got {noise_vars!r}")
    scales = [-1.0 / (2.0 * _positive(v, "noise_var")) for v in noise_vars]
    if chunk_size is None:
        chunk_size = _KDE_BLOCK
    elif isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    dtypes = {"float32": torch.float32, "float64": torch.float64}
    if precision not in dtypes:
        raise ValueError(f"precision must be one of {sorted(dtypes)}, got {precision!r}")
    n = t.shape[0]
    labels, class_sizes = _classes(y, "y", n, t.device)
    rows, classes, weights = t, labels, None
    if _distinct_row_bound(t, labels) <= _DISTINCT_SHARE * n:
        rows, classes, weights = distinct_rows(t, y)
        if len(rows) > _DISTINCT_SHARE * n:
            rows, classes, weights = t, labels, None
    classes, order = classes.sort(stable=True)
    rows = rows[order]
    weights = None if weights is None else weights[order]
    if t.device.type == "cpu" and precision == "float32" and t.shape[1] <= pairwise.MAX_UNITS:
        sums = _compiled_kernel_sums(rows, weights, classes, scales)
    else:
        sums = _block_kernel_sums(rows, weights, classes, scales, int(chunk_size), dtypes[precision])
    # log_sums[variance, kernel, restriction]: sum over rows i of log sum_j k_ij; kernel 0 = KL,
    # 1 = BD; restriction 0 = all j, 1 = j in the class of i
    log_sums = sums.log()
    log_sums = log_sums.sum(-1) if weights is None else log_sums @ weights.to(torch.float64)

    class_sizes = class_sizes.to(torch.float64)
    mean_log_class_size = (class_sizes * class_sizes.log()).sum() / n
    i_xt = (math.log(n) - log_sums[..., 0] / n) / math.log(2)
    i_ty = i_xt + (log_sums[..., 1] / n - mean_log_class_size) / math.log(2)
    return [KDEBounds(*(MI(i_xt[v, k].item(), i_ty[v, k].item()) for k in (0, 1))) for v in range(len(scales))]
