"""Compiled loops over the pairs of rows of a narrow layer (numba, on the CPU): the KDE's kernel
sums and Kraskov's nearest-neighbour distances (`ibutils.mi`).

Both go over each pair of rows once, above the diagonal, compute its squared distance by direct
differences into a buffer of one row's pairs, and use it at once: no distance matrix is stored,
and the row i's and row j's sums (or neighbour lists) both get the pair. This is what makes the
estimators of chapter 6 fast on layers of a few units, where a matrix product has too little
work per pair to pay for its passes over memory (benchmarks/RESULTS.md, issue 23); wide layers
keep `mi`'s block products.

Rows come sorted by class, so the pairs of a row with the rest of its class are the first part of
its range, and every sum or list restricted to a class is the same loop on that part.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

__all__ = ["MAX_UNITS", "EXP_FLOOR", "kernel_row_sums", "nearest_distances"]

# Layers up to this many units use these loops (their cost grows with the units, a matrix
# product's does not; at 32 both cost about the same here).
MAX_UNITS = 32
# Kernel terms are added in float32 at most this many at a time (per SIMD lane: a few) before the
# float64 totals get them; longer float32 sums lose small terms against large partial sums.
_CHUNK = 256
_COLUMN_BLOCK = 32
# `nearest_distances`: layers of up to _SWEEP_UNITS units are swept along their first principal
# axis, _SWEEP_BLOCK rows at a time on either side of a row; wider ones scan all pairs once,
# _SCAN_CHUNK at a time, with bounds from _WINDOW rows on either side of a row along one unit.
_SWEEP_UNITS = 7
_SWEEP_BLOCK = 32
_SCAN_CHUNK = 64
_SAMPLE = 256
# Squared distances computed in float32 from float32 rows are within (d + 2) 2**-24 relative of
# the exact ones (each difference, square and sum rounded once; below 3e-6 for d <= MAX_UNITS),
# squares below float32's smallest normal number aside: the scan's filter allows for both.
_FILTER_MARGIN = 1e-5
_FILTER_FLOOR = 1e-36
# Kernel exponents below this are raised to it: ln of float32's smallest normal number, rounded up
# (terms below e**-87 would be subnormal, and they add below 1e-37 to sums >= 1).
EXP_FLOOR = -87.0

# The loops' floating-point freedom: no NaN or infinity (inputs are checked) and fused multiply-adds;
# sums may be reordered (so that they vectorise), the exponential's steps may not.
_EXACT_STEPS = {"nnan", "ninf", "nsz", "contract"}
_REORDERED_SUMS = _EXACT_STEPS | {"reassoc"}

# exp(x) = 2**n * exp(r), n = round(x / ln 2), r = x - n ln 2 in [-ln2/2, ln2/2]; ln 2 in two parts
# (Cody & Waite) so that n * _LN2_HIGH is exact; exp(r) by its Taylor polynomial of degree 7
# (truncation below 6e-9 relative on that interval).
_LOG2_E = np.float32(1 / math.log(2))
_LN2_HIGH = np.float32(0.693359375)  # 355/512, 9 significant bits
_LN2_LOW = np.float32(math.log(2) - 0.693359375)
_TAYLOR = tuple(np.float32(1 / math.factorial(k)) for k in range(8))
# Adding 1.5 * 2**23 rounds a float32 below 2**22 in magnitude to an integer held in the low
# mantissa bits; the extra 127 is float32's exponent bias.
_ROUNDING_SHIFT = np.float32(1.5 * 2**23 + 127)


@intrinsic
def _power_of_two(typingctx, shifted):
    """2**n (float32) from `shifted` = n + _ROUNDING_SHIFT (float32, n an integer in [-126, 127]):
    its low mantissa bits hold n + 127, which moved into the exponent field make 2**n."""
    if shifted != types.float32:
        return None

    def codegen(context, builder, signature, args):
        bits = builder.bitcast(args[0], ir.IntType(32))
        return builder.bitcast(builder.shl(bits, ir.Constant(ir.IntType(32), 23)), ir.FloatType())

    return types.float32(types.float32), codegen


@numba.njit(fastmath=_EXACT_STEPS, cache=True)
def _exp(x):
    """exp(x) for a float32 x in [EXP_FLOOR, 0], within 2 ulp (the loops inline it and vectorise)."""
    shifted = x * _LOG2_E + _ROUNDING_SHIFT
    n = shifted - _ROUNDING_SHIFT
    r = (x - n * _LN2_HIGH) - n * _LN2_LOW
    c0, c1, c2, c3, c4, c5, c6, c7 = _TAYLOR
    p = ((((((c7 * r + c6) * r + c5) * r + c4) * r + c3) * r + c2) * r + c1) * r + c0
    return p * _power_of_two(shifted)


@numba.njit(fastmath=_REORDERED_SUMS, cache=True)
def _distances(columns, i, lo, hi, out):
    """out[:hi - lo] = the squared distances from column i of `columns` [d, n] to columns lo..hi-1,
    in the dtype of `columns` and `out` (float32 for the KDE, float64 for Kraskov): a pass over
    the block per unit, vectorised."""
    out = out[:hi - lo]
    for j in range(len(out)):
        out[j] = 0.0
    for c in range(columns.shape[0]):
        block = columns[c, lo:hi]
        centre = columns[c, i]
        for j in range(len(block)):
            difference = block[j] - centre
            out[j] += difference * difference


@numba.njit(fastmath=_REORDERED_SUMS, cache=True)
def _distances_to(columns, i, others, out):
    """out = the squared distances from column i of `columns` [d, M] to every column of `others` [d, n]."""
    for j in range(len(out)):
        out[j] = 0.0
    for c in range(columns.shape[0]):
        row = others[c]
        centre = columns[c, i]
        for j in range(len(row)):
            difference = row[j] - centre
            out[j] += difference * difference


@numba.njit(fastmath=_REORDERED_SUMS, cache=True)
def _kernel_chunk(distances, scale, weights, weight_i, kl_floor, column_kl, column_bd):
    """For pairs with squared distances `distances` [n] and weights `weights` [n]: the
    Bhattacharyya kernel e = exp(scale * D) (its exponent raised to EXP_FLOOR) and the KL kernel
    max(e, kl_floor)**4; adds weight_i times each to `column_kl`, `column_bd` [n] and returns
    (sum of w_j KL, sum of w_j BD) in float32.

    Arrays are whole views and the loop runs over their length: numba then knows no index is
    negative, and LLVM vectorises the loop (8 pairs at a time with AVX2).
    """
    floor = np.float32(EXP_FLOOR)
    sum_kl = np.float32(0.0)
    sum_bd = np.float32(0.0)
    for j in range(len(distances)):
        x = distances[j] * scale
        bd = _exp(x if x > floor else floor)
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
    """`_kernel_chunk` over `distances` in chunks of _CHUNK pairs, its float32 sums added in float64."""
    sum_kl = 0.0
    sum_bd = 0.0
    for lo in range(0, len(distances), _CHUNK):
        hi = min(lo + _CHUNK, len(distances))
        kl, bd = _kernel_chunk(distances[lo:hi], scale, weights[lo:hi], weight_i, kl_floor, column_kl[lo:hi],
                               column_bd[lo:hi])
        sum_kl += kl
        sum_bd += bd
    return sum_kl, sum_bd


@numba.njit(fastmath=_REORDERED_SUMS, cache=True, nogil=True)
def kernel_row_sums(rows, weights, class_end, projection, scales):
    """Row sums of the KDE's kernels over the pairs of `rows`.

    rows: [M, d] float32, sorted by class and within a class by `projection` [M] (float64, the
    rows' coordinates along a unit vector); weights: [M] float32 (how often each row occurs);
    class_end: [M] int64, one past the last row of each row's class; scales: [V] float32, the
    negative exponent scales of the Bhattacharyya kernels exp(scale * D_ij), D_ij = ||rows_i -
    rows_j||^2 (the KL kernel of a variance is its 4th power).

    Returns sums [V, 2, 2, M] float64: sums[v, kernel, restriction, i] = sum_j w_j k_ij over all j
    (restriction 0) or the j of i's class (1), j = i included (k_ii = 1), kernel 0 KL and 1 BD.
    Terms with an exponent below EXP_FLOOR are raised to e**EXP_FLOOR, or left out where the rows'
    projections alone are that far apart (D_ij >= (projection_i - projection_j)**2): for a small
    noise variance most pairs of a spread layer. Kernel sums are float32 over at most _CHUNK terms
    of a row or _COLUMN_BLOCK of a column, then float64: 4e-10 to 2e-8 bits from float64 sums at
    N = 4,096 (longer float32 sums lose small terms against large partial sums: 2.6e-7 bits over
    blocks of 512 rows).
    """
    m, d = rows.shape
    n_scales = len(scales)
    columns = np.ascontiguousarray(rows.T)
    kl_floor = np.float32(math.exp(EXP_FLOOR / 4))  # so that the 4th power is >= e**EXP_FLOOR too
    distances = np.empty(m, np.float32)
    # column sums of the current block of rows: [scale, kernel, 0 same class / 1 other class, M]
    column = np.zeros((n_scales, 2, 2, m), np.float32)
    sums = np.zeros((n_scales, 2, 2, m))
    for i in range(m):
        first = i + 1  # the pairs (i, j > i); those within i's class come first
        _distances(columns, i, first, m, distances)
        for v in range(n_scales):
            reach = math.sqrt(EXP_FLOOR / scales[v])  # farther along the projection: below e**EXP_FLOOR
            kl = np.zeros(2)  # [same class, other classes]
            bd = np.zeros(2)
            start = first
            while start < m:
                other = int(start >= class_end[i])
                end = class_end[start]
                lo = start + np.searchsorted(projection[start:end], projection[i] - reach)
                hi = start + np.searchsorted(projection[start:end], projection[i] + reach, side="right")
                kl_sum, bd_sum = _kernel_sums(distances[lo - first:hi - first], scales[v], weights[lo:hi], weights[i],
                                              kl_floor, column[v, 0, other, lo:hi], column[v, 1, other, lo:hi])
                kl[other] += kl_sum
                bd[other] += bd_sum
                start = end
            own = weights[i]  # the diagonal term, k_ii = 1
            sums[v, 0, 0, i] += own + kl[0] + kl[1]
            sums[v, 1, 0, i] += own + bd[0] + bd[1]
            sums[v, 0, 1, i] += own + kl[0]
            sums[v, 1, 1, i] += own + bd[0]
        if (i + 1) % _COLUMN_BLOCK == 0 or i == m - 1:  # the block's column sums join the totals
            first = (i // _COLUMN_BLOCK) * _COLUMN_BLOCK + 1  # no column before it has any
            for v in range(n_scales):
                for kernel in range(2):
                    for j in range(first, m):
                        same_class, other_class = column[v, kernel, 0, j], column[v, kernel, 1, j]
                        sums[v, kernel, 0, j] += np.float64(same_class) + np.float64(other_class)
                        sums[v, kernel, 1, j] += same_class
                        column[v, kernel, 0, j] = 0.0
                        column[v, kernel, 1, j] = 0.0
    return sums


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
    """Offer the rows lo..hi-1 (not row i itself) to row i's ascending list `nearest` [k] of its
    k smallest squared distances."""
    _distances(columns, i, lo, hi, distances)
    k = len(nearest)
    for j in range(hi - lo):
        if distances[j] < nearest[k - 1] and lo + j != i:
            _insert(nearest, distances[j])


@numba.njit(cache=True)
def _sweep(columns, projection, k, out):
    """out[i] = the k-th smallest squared distance (float64) from row i to the other rows, for
    rows `columns` [d, n] (float64) sorted by their `projection` [n] on a unit vector.

    Since D_ij >= (projection_j - projection_i)**2, each row looks at the rows around it in
    that order, a block at a time on either side, until the gap in projection alone exceeds its
    k-th smallest distance so far: exact, and a small share of the pairs where the layer is
    spread along the projection.
    """
    n = columns.shape[1]
    nearest = np.empty(k)
    distances = np.empty(_SWEEP_BLOCK)
    for i in range(n):
        nearest[:] = np.inf
        left = max(min(i - _SWEEP_BLOCK // 2, n - _SWEEP_BLOCK), 0)  # a block around row i
        right = min(left + _SWEEP_BLOCK, n)
        _offer_block(columns, i, left, right, nearest, distances)
        while left > 0 or right < n:
            limit = nearest[k - 1] * (1 + 1e-12)  # the projections' rounding
            go_left = left > 0 and (projection[i] - projection[left - 1]) ** 2 <= limit
            go_right = right < n and (projection[right] - projection[i]) ** 2 <= limit
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
        out[i] = nearest[k - 1]


@numba.njit(cache=True)
def _principal_projection(points):
    """The coordinates [n] of the rows of `points` [n, d] (float64) along their first principal axis."""
    centred = points - points.sum(0) / len(points)
    _, vectors = np.linalg.eigh(centred.T @ centred)
    return centred @ np.ascontiguousarray(vectors[:, -1])


@numba.njit(cache=True)
def _kth_squared(points, k, out):
    """out[i] = the k-th smallest squared distance from row i of `points` [n, d] (float64) to the
    other rows, by `_sweep` along the rows' first principal axis."""
    projection = _principal_projection(points)
    order = np.argsort(projection)
    squared = np.empty(len(points))
    _sweep(np.ascontiguousarray(points[order].T), projection[order], k, squared)
    out[order] = squared


@numba.njit(fastmath=_REORDERED_SUMS, cache=True)
def _any_within(distances, limit_i, limits):
    """Whether some distances[j] may be at most limit_i or limits[j]: within them after
    `_within` (one vectorised pass)."""
    hits = 0
    for j in range(len(distances)):
        hits += (distances[j] <= limit_i) | (distances[j] <= _within(limits[j]))
    return hits > 0


@numba.njit(inline="always")
def _within(limit):
    """A squared distance computed in the filter's dtype that exceeds this exceeds `limit` exactly."""
    return limit * (1 + _FILTER_MARGIN) + _FILTER_FLOOR


@numba.njit(fastmath=_EXACT_STEPS, cache=True)
def _exact_distance(columns, i, j):
    """The squared distance (float64) between columns i and j of `columns` [d, n] (float64)."""
    squared = 0.0
    for c in range(columns.shape[0]):
        difference = columns[c, j] - columns[c, i]
        squared += difference * difference
    return squared


@numba.njit(cache=True)
def _offer(distances, columns, i, first, nearest_i, limit_i, nearest, limits):
    """Offer the pairs (i, j = first + jj) to row i's ascending list of its k smallest squared
    distances (nearest_i [k]) and to each row j's (nearest[jj]), where they are at most limit_i
    or limits[jj], bounds on those lists' final largest entries (kept up to date; float64).

    distances [n]: the pairs' squared distances as the filter computed them (float32 for float32
    rows); a pair within a bound by them gets its exact distance from `columns` [d, M] (float64).
    A chunk of pairs within no bound costs one vectorised comparison.
    """
    k = nearest_i.shape[0]
    for lo in range(0, len(distances), _SCAN_CHUNK):
        hi = min(lo + _SCAN_CHUNK, len(distances))
        if not _any_within(distances[lo:hi], _within(limit_i), limits[lo:hi]):
            continue
        for jj in range(lo, hi):
            if distances[jj] > _within(limit_i) and distances[jj] > _within(limits[jj]):
                continue
            squared = _exact_distance(columns, i, first + jj)
            if squared <= limit_i:
                _insert(nearest_i, squared)
                limit_i = min(limit_i, nearest_i[k - 1])
            if squared <= limits[jj]:
                _insert(nearest[jj], squared)
                limits[jj] = min(limits[jj], nearest[jj, k - 1])
    return limit_i


@numba.njit(cache=True)
def _sample_bounds(columns, class_end, k, limits):
    """Upper bounds on every row's k-th smallest squared distance to the other rows (limits[0])
    and to the other rows of its class (limits[1]): the k-th smallest to an evenly spaced sample
    of _SAMPLE rows (columns [d, M] float64, sorted by class; inf where the sample is too small)."""
    m = columns.shape[1]
    sample = np.unique(np.linspace(0, m - 1, min(_SAMPLE, m)).astype(np.int64))
    sampled = np.ascontiguousarray(columns[:, sample])
    nearest = np.empty(k)
    nearest_class = np.empty(k)
    distances = np.empty(len(sample))
    for i in range(m):
        _distances_to(columns, i, sampled, distances)
        nearest[:] = np.inf
        nearest_class[:] = np.inf
        for s in range(len(sample)):
            if sample[s] != i:
                if distances[s] < nearest[k - 1]:
                    _insert(nearest, distances[s])
                if class_end[sample[s]] == class_end[i] and distances[s] < nearest_class[k - 1]:
                    _insert(nearest_class, distances[s])
        limits[0, i] = nearest[k - 1]
        limits[1, i] = nearest_class[k - 1]


@numba.njit(fastmath=_REORDERED_SUMS, cache=True, nogil=True)
def _scan_all_pairs(rows, points, class_end, k):
    """`nearest_distances` by one pass over all pairs, for wide layers: each pair is computed
    once, in the dtype of `rows` [M, d], and offered to both rows' lists of their k smallest
    squared distances where it is within a bound on the final k-th (`_sample_bounds`); those get
    their exact distance from `points` (the rows in float64). Returns the squared distances [2, M] (all rows, the row's class)."""
    m, d = rows.shape
    columns = np.ascontiguousarray(points.T)
    filter_columns = np.ascontiguousarray(rows.T)
    one_class = class_end[0] == m
    nearest = np.full((2, m, k), np.inf)  # [all rows / the row's class, row, rank]
    limits = np.empty((2, m))
    _sample_bounds(columns, class_end, k, limits)
    distances = np.empty(m, rows.dtype)
    for i in range(m):
        _distances(filter_columns, i, i + 1, m, distances)
        _offer(distances[:m - i - 1], columns, i, i + 1, nearest[0, i], limits[0, i], nearest[0, i + 1:],
               limits[0, i + 1:])
        if not one_class:
            same = class_end[i] - i - 1
            _offer(distances[:same], columns, i, i + 1, nearest[1, i], limits[1, i], nearest[1, i + 1:i + 1 + same],
                   limits[1, i + 1:i + 1 + same])
    if one_class:
        nearest[1] = nearest[0]
    return nearest[:, :, k - 1].copy()


@numba.njit(cache=True, nogil=True)
def nearest_distances(rows, class_end, k):
    """The Euclidean distance (float64) from every row of `rows` [M, d] (sorted by class) to its
    k-th nearest other row, among all rows and among the rows of its class: two arrays [M].

    class_end: [M] int64, one past the last row of each row's class; every class needs more
    than k rows. Repeated rows are neighbours at distance 0. Exact: float64 differences of the
    rows, for the pairs that cannot be ruled out; layers of up to _SWEEP_UNITS units by `_sweep`
    along their first principal axis, wider ones by `_scan_all_pairs` (the same numbers; each is
    the faster where it is used, benchmarks/RESULTS.md).
    """
    m, d = rows.shape
    points = rows.astype(np.float64)
    if d > _SWEEP_UNITS:
        return np.sqrt(_scan_all_pairs(rows, points, class_end, k))
    squared = np.empty((2, m))
    _kth_squared(points, k, squared[0])
    if class_end[0] == m:  # one class
        squared[1] = squared[0]
    start = 0
    while start < m and class_end[0] != m:
        end = class_end[start]
        _kth_squared(points[start:end], k, squared[1, start:end])
        start = end
    return np.sqrt(squared)
