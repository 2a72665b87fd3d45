"""Information estimators, in bits (SPEC 2.1, 2.2).

Pure functions of arrays: NumPy arrays or torch tensors in, floats (or NumPy arrays for batched
input) out. X is always uniform over the rows of the activity `t` (one row per input pattern,
every pattern distinct), and T is computed on the device of `t`.

- `discrete`: plug-in I(X;T) and I(T;Y) of a layer already mapped to integer codes, batched.
- `bin_codes`, `binned`: uniform bins on a range or explicit edges (NumPy histogram semantics).
- `binned_floor`: ibsgd's unbounded bins, code = floor(t / bin_width).
- `kde`: Kolchinsky & Tracey pairwise-distance estimates with Gaussian noise of variance noise_var.
- `entropy`: plug-in entropy of a label vector.
- `gaussian_channel`: exact I(X; WX + Z) for Gaussian X (defined in `ibutils.linear`).
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np
import torch

__all__ = ["MI", "KDEBounds", "entropy", "discrete", "bin_codes", "binned", "binned_floor", "kde", "gaussian_channel"]



def __getattr__(name: str):
    # `mi.gaussian_channel` lives in ibutils.linear; importing it lazily keeps `mi` free of
    # linear's plotting imports and of an import cycle (linear uses the estimators here).
    if name == "gaussian_channel":
        from ibutils.linear import gaussian_channel

        return gaussian_channel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
_KEY_LIMIT = 2**63  # packed row keys are int64, so they must stay below this
_KDE_BLOCK_ELEMENTS = 2**23  # default [chunk_size, N] distance block: 64 MiB in float64


class MI(NamedTuple):
    """Mutual information in bits: floats for one layer, NumPy arrays of the batch shape for a batch."""

    i_xt: float | np.ndarray
    i_ty: float | np.ndarray


class KDEBounds(NamedTuple):
    """KDE estimates in bits: `upper` from the pairwise-KL kernel, `lower` from the Bhattacharyya kernel.

    For I(X;T) these are an upper and a lower bound; for I(T;Y) each is a difference of two
    bounds and so only an estimate (SPEC 2.2).
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


def _floats(x, name: str) -> torch.Tensor:
    """A non-empty, finite floating-point array, dtype kept."""
    x = _as_tensor(x, name)
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point array, got dtype {x.dtype}")
    _check_nonempty(x, name)
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x


def _check_rows(x: torch.Tensor, name: str) -> None:
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape [..., n_samples, n_units], got shape {tuple(x.shape)}")


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


def _dense_rank(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank of each key among the distinct keys of its row (0, 1, ... along the last dim).

    Returns the ranks in the original order and in sorted order.
    """
    sorted_keys, order = keys.sort(dim=-1)
    is_new = torch.ones_like(sorted_keys, dtype=torch.bool)
    is_new[..., 1:] = sorted_keys[..., 1:] != sorted_keys[..., :-1]
    sorted_ranks = is_new.cumsum(-1) - 1
    return torch.empty_like(sorted_ranks).scatter_(-1, order, sorted_ranks), sorted_ranks


def _entropy_from_counts(counts: torch.Tensor) -> torch.Tensor:
    """Plug-in entropy in bits from counts [..., m] (zeros allowed): log2 N - (1/N) sum c log2 c."""
    counts = counts.to(torch.float64)
    n = counts.sum(-1)
    return torch.log2(n) - torch.special.xlogy(counts, counts).sum(-1) / (n * math.log(2))


def _entropy_of_ranks(sorted_ranks: torch.Tensor) -> torch.Tensor:
    """Plug-in entropy in bits of each row of sorted dense ranks [..., n]."""
    ones = torch.ones_like(sorted_ranks, dtype=torch.float64)
    return _entropy_from_counts(torch.zeros_like(ones).scatter_add_(-1, sorted_ranks, ones))


def _row_keys(codes: torch.Tensor) -> torch.Tensor:
    """One int64 key per row of `codes` [..., n, d], equal exactly where the rows are equal.

    Columns are packed as digits, key = key * base + digit. Before a multiplication that could
    overflow int64, the keys are replaced by their dense ranks (< n), so any width and any code
    range work (for n up to 3e9, where n * n stays below 2**63).
    """
    n = codes.shape[-2]
    keys = torch.zeros(codes.shape[:-1], dtype=torch.int64, device=codes.device)
    bound = 1  # every key lies in [0, bound)
    for column in codes.unbind(-1):
        lo, hi = column.min().item(), column.max().item()
        if hi - lo < n:
            digits, base = column - lo, hi - lo + 1
        else:  # a code range wider than the sample count: ranks keep the base at n
            digits, base = _dense_rank(column)[0], n
        if bound * base > _KEY_LIMIT:
            keys, bound = _dense_rank(keys)[0], n
        keys = keys * base + digits
        bound *= base
    return keys


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
    ranks, sorted_ranks = _dense_rank(_row_keys(codes))
    h_t = _entropy_of_ranks(sorted_ranks)
    _, sorted_joint = _dense_rank(ranks * len(class_sizes) + labels)
    h_ty = _entropy_of_ranks(sorted_joint)
    return MI(_out(h_t), _out(h_t + _entropy_from_counts(class_sizes) - h_ty))


# --- binning ------------------------------------------------------------------------------------


def _value_range(value_range, batch_shape: torch.Size, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(lo, hi) as float64 tensors, 0-d or of shape `batch_shape`, with lo < hi everywhere."""
    try:
        lo, hi = value_range
    except (TypeError, ValueError) as err:
        raise ValueError(f"value_range must be a pair (lo, hi), got {value_range!r}") from err
    lo, hi = _float64(lo, "value_range", device), _float64(hi, "value_range", device)
    try:
        shape = torch.broadcast_shapes(lo.shape, hi.shape, batch_shape)
    except RuntimeError:
        shape = None
    if shape != batch_shape:
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
    """Bin edges, float64 [n_bins + 1], or [*batch_shape, n_bins + 1] for per-element ranges."""
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
    if edges.ndim != 1 or len(edges) < 2:
        raise ValueError(f"bins must be an int or a 1-D array of >= 2 edges, got shape {tuple(edges.shape)}")
    if not (edges[1:] > edges[:-1]).all():
        raise ValueError("bins (edges) must be strictly increasing")
    return edges


def bin_codes(t, bins=30, value_range=None) -> torch.Tensor:
    """Bin index 0..n_bins-1 of every value of `t` [..., n_samples, n_units]: an int64 torch tensor
    of t's shape, on t's device.

    bins: an int (that many equal bins on `value_range`) or a 1-D strictly increasing array of
        edges (then `value_range` must stay None).
    value_range: (lo, hi); None means (-1, 1). lo and hi may be arrays broadcastable to
        `t.shape[:-2]`, giving each batch element its own range (e.g. one [min, max] per run).

    NumPy histogram semantics: bin k is [e_k, e_k+1), the last bin is closed, and values outside
    the edges go to the end bins. Edges are np.linspace(lo, hi, bins + 1) in float64 and values
    are compared in float64 (np.histogram instead rounds the edges to float32 for float32 data).
    """
    t = _floats(t, "t")
    _check_rows(t, "t")
    batch_shape = t.shape[:-2]
    edges = _edges(bins, value_range, batch_shape, t.device)
    values = t.to(torch.float64, memory_format=torch.contiguous_format)
    if edges.ndim > 1:  # searchsorted pairs each batch element's values with its own edges
        values = values.reshape(*batch_shape, -1)
    codes = torch.searchsorted(edges, values, right=True) - 1
    return codes.clamp_(0, edges.shape[-1] - 2).reshape(t.shape)


def binned(t, y, bins=30, value_range=None) -> MI:
    """Binning estimate (SPEC 2.1) in bits: each unit of `t` [..., n_samples, n_units] is binned
    independently by `bin_codes(t, bins, value_range)`, then `discrete(codes, y)`.

    The default is Saxe et al.'s tanh setting, 30 equal bins on [-1, 1]. Batched as `discrete`.
    """
    return discrete(bin_codes(t, bins, value_range), y)


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


# --- KDE ----------------------------------------------------------------------------------------


def kde(t, y, noise_var=0.1, chunk_size=None) -> KDEBounds:
    """Kolchinsky & Tracey pairwise-distance estimates (SPEC 2.2) in bits, for T = t + N(0, noise_var I).

    t: floats [n_samples, n_units]; y: integer labels [n_samples]; noise_var: sigma^2 > 0.
    With D_ij = ||t_i - t_j||^2 and kernel k_ij = exp(-D_ij / (2 sigma^2)) (upper) or
    exp(-D_ij / (8 sigma^2)) (lower):
        I(X;T) = -(1/N) sum_i log((1/N) sum_j k_ij)                     (diagonal included)
        I(T;Y) = I(X;T) + (1/N) sum_i log((1/N_{y_i}) sum_{j: y_j = y_i} k_ij)
    i.e. H(T) - sum_l p_l H(T|Y=l) with class-restricted sums; the H(T|X) constants cancel.

    Float64 throughout, on the device of `t`. Rows are processed in blocks of `chunk_size`
    (None: about 2**23 / N rows, 64 MiB per [block, N] float64 array), so N = 10,000 fits easily.
    """
    t = _floats(t, "t")
    if t.ndim != 2:
        raise ValueError(f"t must have shape [n_samples, n_units], got shape {tuple(t.shape)}")
    n = t.shape[0]
    neg_inv_2var = -1.0 / (2.0 * _positive(noise_var, "noise_var"))
    if chunk_size is None:
        chunk_size = max(1, _KDE_BLOCK_ELEMENTS // n)
    elif isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    labels, class_sizes = _classes(y, "y", n, t.device)

    h = t.to(torch.float64)
    h = h - h.mean(0)  # distances are shift-invariant; centring shrinks the norms that cancel below
    sq_norms = (h * h).sum(1)
    # log_sums[kernel, restriction]: sum over rows i of log sum_j k_ij; kernel 0 = KL, 1 = BD;
    # restriction 0 = all j, 1 = j in the class of i
    log_sums = torch.zeros(2, 2, dtype=torch.float64, device=t.device)
    for start in range(0, n, chunk_size):
        rows = slice(start, start + chunk_size)
        dist = (sq_norms[rows, None] + sq_norms[None, :] - 2.0 * (h[rows] @ h.T)).clamp_(min=0.0)
        dist[:, rows].fill_diagonal_(0.0)  # exact D_ii = 0, so I(X;T) cannot exceed log2 N by rounding
        other_class = labels[rows, None] != labels[None, :]
        for kernel, scale in enumerate((neg_inv_2var, neg_inv_2var / 4.0)):
            exponent = dist * scale
            log_sums[kernel, 0] += torch.logsumexp(exponent, 1).sum()
            exponent.masked_fill_(other_class, -math.inf)
            log_sums[kernel, 1] += torch.logsumexp(exponent, 1).sum()

    class_sizes = class_sizes.to(torch.float64)
    mean_log_class_size = (class_sizes * class_sizes.log()).sum() / n
    i_xt = (math.log(n) - log_sums[:, 0] / n) / math.log(2)
    i_ty = i_xt + (log_sums[:, 1] / n - mean_log_class_size) / math.log(2)
    upper, lower = (MI(i_xt[k].item(), i_ty[k].item()) for k in (0, 1))
    return KDEBounds(upper, lower)
