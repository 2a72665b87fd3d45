"""Compiled loops over the pairs of rows of a layer (numba, on the CPU): the KDE's kernel sums and
Kraskov's k-th nearest neighbours, for `ibutils.mi`.

Both take the rows sorted by class (so that a row's pairs within its class are one range) and
compute squared distances by direct differences, a row against a range of rows at a time, into a
buffer that the next step uses at once: no distance matrix is stored. Each vectorised loop runs
over whole array views (numba then knows no index is negative, and LLVM vectorises it: 8 float32
or 4 float64 lanes with AVX2). On a layer of a few units a matrix product has too little work per
pair to pay for its passes over memory; on chapter 6's layers these loops are 3x (KDE) and 1.5-8x
(Kraskov) faster than `mi`'s torch blocks and k-d trees were (benchmarks/RESULTS.md, issue 23).

- `kernel_row_sums`: for every row, the sums of the Bhattacharyya and KL kernels over all rows and
  over its class, each pair computed once (above the diagonal) for both of its rows.
- `nearest_distances`: every row's exact distance to its k-th nearest other row, among all rows and
  within its class.

Both order rows along the layer's first principal axis, where a gap in projection bounds the
distance from below (||h_i - h_j||^2 >= (p_i - p_j)^2 for a unit axis).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ibutils import vecmath

__all__ = ["MAX_UNITS", "EXP_FLOOR", "kernel_row_sums", "nearest_distances"]

#: `ibutils.mi.kde_sweep` uses `kernel_row_sums` for float32 layers of up to this many units on
#: the CPU (the loops' cost grows with the units, a matrix product's hardly: at 64 units both
#: cost about the same on the machine of benchmarks/RESULTS.md).
MAX_UNITS = 64
#: Kernel exponents below this are raised to it: the natural logarithm of float32's smallest
#: normal number, rounded up (smaller terms would be subnormal, slow on some CPUs, and add below
#: 1e-37 to sums >= 1).
EXP_FLOOR = -87.0

# kernel_row_sums: kernel terms are added in float32, at most _ROW_CHUNK of a row or those of
# _COLUMN_BLOCK rows to a column, before they join float64 totals (longer float32 sums lose
# small terms against large partial sums: 2.6e-7 bits over blocks of 512 rows).
_ROW_CHUNK = 512
_COLUMN_BLOCK = 64
# nearest_distances: layers of up to _SWEEP_UNITS units are swept along their principal axis,
# _SWEEP_BLOCK rows at a time; wider ones go over all pairs once, _SCAN_CHUNK at a time, with
# bounds from a sample of _SAMPLE rows (each is the faster where it is used).
_SWEEP_UNITS = 7
_SWEEP_BLOCK = 64
_SCAN_CHUNK = 64
_SAMPLE = 256
# Squared distances computed in float32 from float32 rows are within (d + 3) 2**-24 relative of
# the exact ones (each difference, square and sum rounded once), squares below float32's
# smallest normal number aside: the scan's filter allows 4 times that, and _FILTER_FLOOR.
_FILTER_FLOOR = 1e-36

# The loops' floating-point freedom: that of `vecmath`'s functions (no NaN or infinity, fused
# multiply-adds), and sums may be reordered (so that they vectorise).
_REORDERED_SUMS = vecmath.EXACT_STEPS | {"reassoc"}


@numba.njit(fastmath=_REORDERED_SUMS, cache=True)
def _distances(columns, i, others, lo, hi, out):
    """out[:hi - lo] = the squared distances from column i of `columns` [d, M] to columns lo..hi-1
    of `others` [d, n], in the dtype of `out` (float32 for the KDE and the scan's filter, float64
    for exact distances): one vectorised pass per unit."""
    out = out[:hi - lo]
    for j in range(len(out)):
        out[j] = 0.0
    for c in range(columns.shape[0]):
        row = others[c, lo:hi]
        centre = columns[c, i]
        for j in range(len(row)):
            difference = row[j] - centre
            out[j] += difference * difference


# --- KDE kernel sums ---------------------------------------------------------------------------


@numba.njit(fastmath=_REORDERED_SUMS, cache=True)
def _kernel_chunk(distances, scale, weights, weight_i, kl_floor, column_kl, column_bd):
    """For pairs (i, j) with squared distances `distances` [n] and weights w_j `weights` [n]: the
    Bhattacharyya kernel e = exp(scale * D) (exponent raised to EXP_FLOOR) and the KL kernel
    max(e, kl_floor)**4; adds weight_i times each to `column_kl`, `column_bd` [n] and returns
    (sum_j w_j KL, sum_j w_j BD) in float32."""
    floor = np.float32(EXP_FLOOR)
    sum_kl = np.float32(0.0)
    sum_bd = np.float32(0.0)
    for j in range(len(distances)):
        x = distances[j] * scale
        bd = vecmath.exp(x if x > floor else floor)
        kl = bd if bd > kl_floor else kl_floor
        kl = kl * kl
        kl = kl * kl
        sum_kl += weights[j] * kl
        sum_bd += weights[j] * bd
        column_kl[j] += weight_i * kl
        column_bd[j] += weight_i * bd
    return sum_kl, sum_bd


@numba.njit(fastmath=_REORDERED_SUMS, cache=True)
def _kernel_sums(distances, scale, weights, weight_i, kl_floor, column_kl, column_bd):
    """`_kernel_chunk` in chunks of _ROW_CHUNK pairs, its float32 sums added in float64."""
    sum_kl = 0.0
    sum_bd = 0.0
    for lo in range(0, len(distances), _ROW_CHUNK):
        hi = min(lo + _ROW_CHUNK, len(distances))
        kl, bd = _kernel_chunk(distances[lo:hi], scale, weights[lo:hi], weight_i, kl_floor, column_kl[lo:hi],
                               column_bd[lo:hi])
        sum_kl += kl
        sum_bd += bd
    return sum_kl, sum_bd


@numba.njit(fastmath=_REORDERED_SUMS, cache=True)
def _flush(same_class, other_class, total, class_total):
    """Add float32 column sums (same class, other classes) to the float64 totals over all rows
    and over the class, and zero them."""
    for j in range(len(same_class)):
        total[j] += np.float64(same_class[j]) + np.float64(other_class[j])
        class_total[j] += same_class[j]
        same_class[j] = 0.0
        other_class[j] = 0.0


@numba.njit(fastmath=_REORDERED_SUMS, cache=True, nogil=True)
def _kernel_row_sums(rows, weights, class_end, projection, scales):
    """`kernel_row_sums` of rows sorted by class and, within each class, by `projection`."""
    m = rows.shape[0]
    n_scales = len(scales)
    columns = np.ascontiguousarray(rows.T)
    kl_floor = np.float32(math.exp(EXP_FLOOR / 4))  # so that the 4th power is >= e**EXP_FLOOR too
    distances = np.empty(m, np.float32)
    # column sums of the current block of rows: [scale, kernel, 0 same class / 1 other class, M]
    column = np.zeros((n_scales, 2, 2, m), np.float32)
    sums = np.zeros((n_scales, 2, 2, m))
    reaches = np.sqrt(EXP_FLOOR / scales.astype(np.float64))  # farther apart along the axis: below e**EXP_FLOOR
    for i in range(m):
        first = i + 1  # the pairs (i, j > i); those within i's class come first
        _distances(columns, i, columns, first, m, distances)
        for v in range(n_scales):
            reach = reaches[v]
            kl_same = kl_other = bd_same = bd_other = 0.0
            start = first
            while start < m:  # i's class from row i + 1 on, then each later class
                other = int(start >= class_end[i])
                end = class_end[start]
                lo = start + np.searchsorted(projection[start:end], projection[i] - reach)
                hi = start + np.searchsorted(projection[start:end], projection[i] + reach, side="right")
                kl, bd = _kernel_sums(distances[lo - first:hi - first], scales[v], weights[lo:hi], weights[i],
                                      kl_floor, column[v, 0, other, lo:hi], column[v, 1, other, lo:hi])
                if other:
                    kl_other += kl
                    bd_other += bd
                else:
                    kl_same += kl
                    bd_same += bd
                start = end
            own = weights[i]  # the diagonal term, k_ii = 1
            sums[v, 0, 0, i] += own + kl_same + kl_other
            sums[v, 1, 0, i] += own + bd_same + bd_other
            sums[v, 0, 1, i] += own + kl_same
            sums[v, 1, 1, i] += own + bd_same
        if (i + 1) % _COLUMN_BLOCK == 0 or i == m - 1:  # the block's column sums join the totals
            block_start = (i // _COLUMN_BLOCK) * _COLUMN_BLOCK + 1  # no column before it has any
            for v in range(n_scales):
                for kernel in range(2):
                    _flush(column[v, kernel, 0, block_start:], column[v, kernel, 1, block_start:],
                           sums[v, kernel, 0, block_start:], sums[v, kernel, 1, block_start:])
    return sums


def kernel_row_sums(rows: np.ndarray, weights: np.ndarray, class_end: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Row sums of the KDE's kernels (Kolchinsky & Tracey, as `mi.kde` defines them).

    rows: [M, d] float32, sorted by class; weights: [M] float32, how often each row occurs;
    class_end: [M] int64, one past the last row of each row's class; scales: [V] float32, the
    negative exponent scales of the Bhattacharyya kernels exp(scale * D_ij), D_ij = ||rows_i -
    rows_j||^2 in float32 (the KL kernel of the same variance is its 4th power).

    Returns sums [V, 2, 2, M] float64: sums[v, kernel, restriction, i] = sum_j w_j k_ij over all j
    (restriction 0) or the j of i's class (1), j = i included (k_ii = 1); kernel 0 KL, 1 BD.
    Exponents below EXP_FLOOR are raised to it, or, where two rows' projections on the layer's
    first principal axis alone are that far apart, the pair is left out (for a small noise
    variance most pairs of a spread layer): either changes no sum by 1e-34 relative. Float32
    kernels and partial sums, float64 totals: within 3e-8 bits of float64 kernels on the book's
    layers (benchmarks/RESULTS.md).
    """
    projection = _principal_projection(rows.astype(np.float64))
    order = np.lexsort((projection, class_end))  # classes stay in place, each ordered along the axis
    sums = np.empty((len(scales), 2, 2, len(rows)))
    sums[..., order] = _kernel_row_sums(np.ascontiguousarray(rows[order]), weights[order], class_end,
                                        projection[order], scales)
    return sums


# --- Kraskov's k-th nearest neighbours -----------------------------------------------------------


@numba.njit(cache=True)
def _insert(nearest, value):
    """Put `value` into the ascending list `nearest` [k] in place of its largest entry."""
    position = len(nearest) - 1
    while position > 0 and nearest[position - 1] > value:
        nearest[position] = nearest[position - 1]
        position -= 1
    nearest[position] = value


@numba.njit(cache=True)
def _offer_block(columns, i, lo, hi, nearest, distances):
    """Offer rows lo..hi-1 of `columns` [d, n] (float64), row i excepted, to row i's ascending
    list `nearest` [k] of its k smallest squared distances."""
    _distances(columns, i, columns, lo, hi, distances)
    for j in range(hi - lo):
        if distances[j] < nearest[-1] and lo + j != i:
            _insert(nearest, distances[j])


@numba.njit(cache=True, nogil=True)
def _sweep(columns, projection, slack, k, out):
    """out[i] = the k-th smallest squared distance from row i of `columns` [d, n] (float64, rows
    sorted by `projection` [n]) to the other rows.

    Each row looks at the rows around it in that order, a block at a time on either side, until
    the gap in projection alone (less `slack`, the projections' rounding) exceeds its k-th
    smallest distance so far: exact, and on a layer spread along the axis few pairs per row.
    """
    n = columns.shape[1]
    nearest = np.empty(k)
    distances = np.empty(_SWEEP_BLOCK)
    for i in range(n):
        nearest[:] = np.inf
        left = max(min(i - _SWEEP_BLOCK // 2, n - _SWEEP_BLOCK), 0)  # a block around row i
        right = min(left + _SWEEP_BLOCK, n)
        _offer_block(columns, i, left, right, nearest, distances)
        while True:
            go_left = left > 0 and max(projection[i] - projection[left - 1] - slack, 0.0) ** 2 <= nearest[-1]
            go_right = right < n and max(projection[right] - projection[i] - slack, 0.0) ** 2 <= nearest[-1]
            if not (go_left or go_right):
                break
            if go_left:
                lo = max(left - _SWEEP_BLOCK, 0)
                _offer_block(columns, i, lo, left, nearest, distances)
                left = lo
            if go_right:
                hi = min(right + _SWEEP_BLOCK, n)
                _offer_block(columns, i, right, hi, nearest, distances)
                right = hi
        out[i] = nearest[-1]


@numba.njit(inline="always")
def _within(limit, margin):
    """A squared distance from the scan's filter above this is above `limit` exactly (`margin`:
    the filter's relative error bound)."""
    return limit * (1 + margin) + _FILTER_FLOOR


@numba.njit(fastmath=_REORDERED_SUMS, cache=True)
def _any_within(distances, limit_i, limits, margin):
    """Whether some distances[j] is at most limit_i or _within(limits[j]) (one vectorised pass)."""
    hits = 0
    for j in range(len(distances)):
        hits += (distances[j] <= limit_i) | (distances[j] <= _within(limits[j], margin))
    return hits > 0


@numba.njit(fastmath=vecmath.EXACT_STEPS, cache=True)
def _exact_distance(columns, i, j):
    """The squared distance (float64) between columns i and j of `columns` [d, n] (float64)."""
    squared = 0.0
    for c in range(columns.shape[0]):
        difference = columns[c, j] - columns[c, i]
        squared += difference * difference
    return squared


@numba.njit(cache=True)
def _offer(distances, columns, i, nearest_i, limit_i, nearest, limits, margin):
    """Offer the pairs (i, j = i + 1 + jj) to row i's ascending list of its k smallest squared
    distances (nearest_i [k]) and to each row j's (nearest[jj]) where they are at most limit_i or
    limits[jj], bounds on those lists' final largest entries (kept up to date; float64).

    distances [n]: the pairs' squared distances as the filter computed them; a pair within a bound
    by them (within `margin` relative) gets its exact distance from `columns` [d, M] (float64). A
    chunk of pairs within no bound costs one vectorised comparison. Returns row i's bound.
    """
    for lo in range(0, len(distances), _SCAN_CHUNK):
        hi = min(lo + _SCAN_CHUNK, len(distances))
        if not _any_within(distances[lo:hi], _within(limit_i, margin), limits[lo:hi], margin):
            continue
        for jj in range(lo, hi):
            if distances[jj] > _within(limit_i, margin) and distances[jj] > _within(limits[jj], margin):
                continue
            squared = _exact_distance(columns, i, i + 1 + jj)
            if squared <= limit_i:
                _insert(nearest_i, squared)
                limit_i = min(limit_i, nearest_i[-1])
            if squared <= limits[jj]:
                _insert(nearest[jj], squared)
                limits[jj] = min(limits[jj], nearest[jj, -1])
    return limit_i


@numba.njit(cache=True)
def _sample_bounds(columns, class_end, sample, k, limits):
    """Upper bounds on every row's k-th smallest squared distance to the other rows (limits[0])
    and to the other rows of its class (limits[1]): the k-th smallest to the rows `sample` (row
    indices; columns [d, M] float64, sorted by class; inf where too few are left)."""
    sampled = np.ascontiguousarray(columns[:, sample])
    nearest = np.empty((2, k))
    distances = np.empty(len(sample))
    for i in range(columns.shape[1]):
        _distances(columns, i, sampled, 0, len(sample), distances)
        nearest[:] = np.inf
        for s in range(len(sample)):
            if sample[s] != i:
                if distances[s] < nearest[0, -1]:
                    _insert(nearest[0], distances[s])
                if class_end[sample[s]] == class_end[i] and distances[s] < nearest[1, -1]:
                    _insert(nearest[1], distances[s])
        limits[:, i] = nearest[:, -1]


@numba.njit(cache=True, nogil=True)
def _scan_all_pairs(rows, points, class_end, sample, k, margin):
    """`nearest_distances`' squared distances [2, M] by one pass over all pairs: each pair is
    computed once, in the dtype of `rows` [M, d], and offered to both rows' lists of their k
    smallest where it is within a bound on the final k-th (`_sample_bounds`), by `margin` (the
    relative error of the filter's distances); those get their exact distance from `points` (the
    rows in float64)."""
    m = rows.shape[0]
    columns = np.ascontiguousarray(points.T)
    filter_columns = np.ascontiguousarray(rows.T)
    one_class = class_end[0] == m
    nearest = np.full((2, m, k), np.inf)  # [all rows / the row's class, row, rank]
    limits = np.empty((2, m))
    _sample_bounds(columns, class_end, sample, k, limits)
    distances = np.empty(m, rows.dtype)
    for i in range(m):
        _distances(filter_columns, i, filter_columns, i + 1, m, distances)
        _offer(distances[:m - i - 1], columns, i, nearest[0, i], limits[0, i], nearest[0, i + 1:], limits[0, i + 1:],
               margin)
        if not one_class:
            same = class_end[i] - i - 1
            _offer(distances[:same], columns, i, nearest[1, i], limits[1, i], nearest[1, i + 1:i + 1 + same],
                   limits[1, i + 1:i + 1 + same], margin)
    if one_class:
        nearest[1] = nearest[0]
    return nearest[:, :, k - 1].copy()


def _principal_projection(points: np.ndarray) -> np.ndarray:
    """The coordinates [n] of the rows of `points` [n, d] (float64) along their first principal axis."""
    centred = points - points.mean(0)
    return centred @ np.linalg.eigh(centred.T @ centred)[1][:, -1]


def _swept(points: np.ndarray, k: int) -> np.ndarray:
    """`_sweep`'s k-th smallest squared distances [n] of the rows of `points` [n, d] (float64), in their order."""
    projection = _principal_projection(points)
    order = np.argsort(projection)
    slack = 1e-12 * (1.0 + np.abs(projection).max())  # above the projections' rounding, d |h| 2**-52
    squared = np.empty(len(points))
    out = np.empty(len(points))
    _sweep(np.ascontiguousarray(points[order].T), projection[order], slack, k, out)
    squared[order] = out
    return squared


def nearest_distances(rows: np.ndarray, class_end: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The Euclidean distance from every row of `rows` [M, d] (float32 or float64, sorted by
    class) to its k-th nearest other row, among all rows and among the rows of its class: two
    float64 arrays [M].

    class_end: [M] int64, one past the last row of each row's class; every class needs more than
    k rows. Repeated rows are neighbours at distance 0. Exact: the float64 distance of every pair
    that cannot be ruled out. Layers of up to _SWEEP_UNITS units are swept along their first
    principal axis (all rows, then each class); wider ones are scanned pair by pair, in float32
    for float32 rows, with the exact distance for the pairs near a row's bound.
    """
    m, d = rows.shape
    points = rows.astype(np.float64)
    one_class = class_end[0] == m
    if d > _SWEEP_UNITS:
        sample = np.unique(np.linspace(0, m - 1, min(_SAMPLE, m)).astype(np.int64))
        margin = 4 * (d + 3) * np.finfo(rows.dtype).eps / 2
        return tuple(np.sqrt(_scan_all_pairs(rows, points, class_end, sample, k, margin)))
    squared_all = _swept(points, k)
    if one_class:
        return (np.sqrt(squared_all),) * 2
    squared_class = np.empty(m)
    start = 0
    while start < m:
        end = class_end[start]
        squared_class[start:end] = _swept(points[start:end], k)
        start = end
    return np.sqrt(squared_all), np.sqrt(squared_class)
