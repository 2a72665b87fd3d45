"""The compiled pair loops of `ibutils.pairwise` against brute-force NumPy in float64: the KDE's
kernel sums (pairs left out along the principal axis, weights, classes) and Kraskov's k-th
neighbours on both paths (swept and scanned), exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ibutils import pairwise


def sorted_by_class(rng, sizes, d, scale=1.0):
    """Random rows [sum(sizes), d] float32 sorted by class, their classes and class ends."""
    classes = np.repeat(np.arange(len(sizes)), sizes)
    rows = (scale * rng.normal(size=(len(classes), d))).astype(np.float32)
    class_end = np.cumsum(sizes)[classes].astype(np.int64)
    return rows, classes, class_end


def reference_kernel_sums(rows, weights, classes, scales):
    """sums[v, kernel, restriction, i] by every pairwise distance in float64."""
    h = rows.astype(np.float64)
    d = ((h[:, None, :] - h[None, :, :]) ** 2).sum(-1)
    same = classes[:, None] == classes[None, :]
    sums = np.empty((len(scales), 2, 2, len(rows)))
    for v, scale in enumerate(scales):
        bd = np.exp(float(scale) * d)
        for kernel, k in enumerate((bd**4, bd)):
            sums[v, kernel, 0] = (k * weights).sum(1)
            sums[v, kernel, 1] = (k * same * weights).sum(1)
    return sums


@pytest.mark.parametrize("d, spread", [(1, 1.0), (3, 0.3), (10, 1.0), (3, 30.0)])
def test_kernel_row_sums_match_every_pair_in_float64(d, spread):
    """Spread 30 puts most pairs beyond the floor along the axis (left out), spread 0.3 none."""
    rng = np.random.default_rng(d)
    rows, classes, class_end = sorted_by_class(rng, [40, 1, 75, 30], d, spread)
    rows[10:20] = rows[0]  # repeated rows
    weights = rng.integers(1, 4, len(rows)).astype(np.float32)
    scales = np.array([-1.25, -125.0, -0.01], np.float32)
    sums = pairwise.kernel_row_sums(rows, weights, class_end, scales)
    expected = reference_kernel_sums(rows, weights, classes, scales)
    floor_terms = len(rows) * weights.max() * math.exp(pairwise.EXP_FLOOR)
    np.testing.assert_allclose(sums, expected, rtol=2e-6, atol=floor_terms)
    assert (sums >= weights[None, None, None, :]).all()  # the diagonal term


def brute_force_kth(rows, classes, k):
    """Every row's k-th smallest float64 distance to the other rows, and to those of its class."""
    h = rows.astype(np.float64)
    d = np.sqrt(((h[:, None, :] - h[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    within = np.where(classes[:, None] == classes[None, :], d, np.inf)
    return np.sort(d, 1)[:, k - 1], np.sort(within, 1)[:, k - 1]


@pytest.mark.parametrize("d", [1, 2, 5, pairwise._SWEEP_UNITS, pairwise._SWEEP_UNITS + 1, 16, 60])
@pytest.mark.parametrize("k", [1, 2, 4])
def test_nearest_distances_are_exact_on_both_paths(d, k):
    """Narrow layers are swept along their principal axis, wide ones scanned: both exact, with
    repeated rows (distance 0), a row repeated more than k times, and classes of uneven sizes."""
    rng = np.random.default_rng(100 * d + k)
    rows, classes, class_end = sorted_by_class(rng, [300, 7, 500], d)
    rows[:40] = rows[rng.integers(0, 40, 40)]
    rows[350:360] = rows[400]
    r_all, r_class = pairwise.nearest_distances(rows, class_end, k)
    expected_all, expected_class = brute_force_kth(rows, classes, k)
    np.testing.assert_allclose(r_all, expected_all, rtol=1e-14, atol=0)
    np.testing.assert_allclose(r_class, expected_class, rtol=1e-14, atol=0)
    assert (r_all[350:360] == 0).all() and (r_all[400] == 0)


@pytest.mark.parametrize("d", [3, 12])
def test_nearest_distances_of_float64_rows_below_float32_resolution(d):
    """Float64 rows 1e-9 apart, indistinguishable in float32: the distances stay exact."""
    rng = np.random.default_rng(7)
    rows = 1.0 + 1e-9 * rng.normal(size=(400, d))
    one_class = np.full(len(rows), len(rows))
    r_all, r_class = pairwise.nearest_distances(rows, one_class, 2)
    expected, _ = brute_force_kth(rows, np.zeros(len(rows)), 2)
    np.testing.assert_allclose(r_all, expected, rtol=1e-6)
    assert (r_all > 0).all()
    np.testing.assert_array_equal(r_class, r_all)
