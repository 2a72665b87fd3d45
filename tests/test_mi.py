"""Known-answer tests of the information estimators in `ibutils.mi` (all values in bits)."""

import math

import numpy as np
import pytest
import torch

from ibutils.mi import MI, KDEBounds, bin_codes, binned, binned_floor, discrete, entropy, kde, kde_sweep


def all_patterns(n_bits):
    """Row i = binary expansion of i, most significant bit first (the layout of var_u.mat)."""
    return (np.arange(2**n_bits)[:, None] >> np.arange(n_bits - 1, -1, -1)) & 1


def plugin_entropy(counts):
    p = np.asarray(counts, dtype=float) / np.sum(counts)
    return float(-(p * np.log2(p)).sum())


def reference_mi(codes, y):
    """Per-layer plug-in estimate: I(X;T) = H(T), I(T;Y) = H(T) - sum_l p_l H(T|Y=l) (SPEC 2.1)."""
    def row_entropy(rows):
        return plugin_entropy(np.unique(rows, axis=0, return_counts=True)[1])

    h_t = row_entropy(codes)
    h_t_given_y = sum(np.mean(y == label) * row_entropy(codes[y == label]) for label in np.unique(y))
    return h_t, h_t - h_t_given_y


def reference_kde(t, y, noise_var):
    """Brute-force SPEC 2.2 with explicit pairwise differences, entropies without the H(T|X) constant."""
    dist = ((t[:, None, :] - t[None, :, :]) ** 2).sum(-1)

    def mixture_entropy(d, denominator):
        return -np.mean(np.log(np.mean(np.exp(-d / denominator), axis=1)))

    bounds = []
    for denominator in (2 * noise_var, 8 * noise_var):
        h_t = mixture_entropy(dist, denominator)
        h_t_given_y = sum(
            np.mean(y == label) * mixture_entropy(dist[np.ix_(y == label, y == label)], denominator)
            for label in np.unique(y)
        )
        bounds.append(MI(h_t / math.log(2), (h_t - h_t_given_y) / math.log(2)))
    return KDEBounds(*bounds)


@pytest.fixture
def tishby_like_labels():
    """4096 labels with 2118 ones, as in var_u.mat (P(y=1) = 0.51709), in a shuffled order."""
    y = np.zeros(4096, dtype=np.int64)
    y[:2118] = 1
    return np.random.default_rng(0).permutation(y)


# --- discrete -----------------------------------------------------------------------------------


def test_label_entropy_of_tishby_data(tishby_like_labels):
    assert entropy(tishby_like_labels) == pytest.approx(0.99916, abs=1e-5)
    assert entropy(np.arange(8)) == pytest.approx(3.0, abs=1e-12)


def test_identity_layer_on_12_bit_patterns_has_12_bits_and_all_label_information(tishby_like_labels):
    patterns = all_patterns(12)
    as_floats = patterns.astype(np.float32)
    for result in (discrete(patterns, tishby_like_labels), binned(as_floats, tishby_like_labels)):
        assert result.i_xt == pytest.approx(12.0, abs=1e-12)
        assert result.i_ty == pytest.approx(entropy(tishby_like_labels), abs=1e-12)


def test_constant_layer_carries_no_information(tishby_like_labels):
    result = discrete(np.full((4096, 3), 7), tishby_like_labels)
    assert isinstance(result, MI) and isinstance(result.i_xt, float)
    assert result == pytest.approx((0.0, 0.0), abs=1e-12)


def test_1024_equiprobable_symbols_give_10_bits():
    codes = np.repeat(np.arange(1024), 4)[:, None]
    assert discrete(codes, np.zeros(4096, dtype=np.int64)).i_xt == pytest.approx(10.0, abs=1e-12)


def test_layer_copying_the_label_has_i_ty_equal_to_h_y():
    y = np.random.default_rng(1).integers(0, 5, size=300)
    result = discrete(y[:, None], y)
    assert result.i_ty == pytest.approx(entropy(y), abs=1e-12)
    assert result.i_xt == pytest.approx(entropy(y), abs=1e-12)


def wide_codes_with_near_duplicates(rng):
    """Rows over codes 0..1023 (base 2**10, so 12 units need 120 bits) that differ only in
    unit 0: packing without re-densifying would wrap unit 0 out of the int64 key."""
    codes = rng.integers(0, 1024, size=(40, 12))[rng.integers(0, 40, size=(2, 1100))]
    changed = rng.random((2, 1100)) < 0.5
    codes[..., 0] = np.where(changed, rng.integers(0, 1024, size=(2, 1100)), codes[..., 0])
    codes[:, 0], codes[:, 1] = 0, 1023
    return codes


@pytest.mark.parametrize(
    "make_codes",
    [
        lambda rng: rng.integers(0, 3, size=(3, 4, 300, 4)),
        wide_codes_with_near_duplicates,
        # codes spanning nearly all of int64, and negative: columns are ranked before packing
        lambda rng: rng.choice(np.array([-(2**62), -7, 0, 3, 2**62]), size=(2, 200, 6)),
    ],
    ids=["small-alphabet", "wide-1024-codes", "huge-span"],
)
def test_batched_discrete_equals_per_layer_np_unique(make_codes):
    rng = np.random.default_rng(2)
    codes = make_codes(rng)
    y = rng.integers(0, 3, size=codes.shape[-2])
    result = discrete(codes, y)
    assert result.i_xt.shape == result.i_ty.shape == codes.shape[:-2]
    for index in np.ndindex(codes.shape[:-2]):
        expected = reference_mi(codes[index], y)
        assert (result.i_xt[index], result.i_ty[index]) == pytest.approx(expected, abs=1e-12)
    assert discrete(torch.from_numpy(codes[(0,) * (codes.ndim - 2)]), y) == pytest.approx(
        reference_mi(codes[(0,) * (codes.ndim - 2)], y), abs=1e-12
    )


# --- binning ------------------------------------------------------------------------------------


def test_bin_codes_follow_numpy_histogram():
    edges = np.linspace(-1, 1, 31)
    values = np.concatenate([edges, np.random.default_rng(3).uniform(-1, 1, 200)])
    codes = bin_codes(values[:, None], 30).numpy()[:, 0]
    expected = [np.histogram([v], bins=30, range=(-1, 1))[0].argmax() for v in values]
    np.testing.assert_array_equal(codes, expected)
    assert codes[-201] == 29  # the top edge 1.0 is in the last bin (closed)
    outside_and_ends = np.array([[-1.5], [-1.0], [1.0], [7.0]])
    np.testing.assert_array_equal(bin_codes(outside_and_ends, 30)[:, 0].numpy(), [0, 0, 29, 29])


def reference_codes(values, edges):
    """np.histogram's bin of each value, compared in float64: the semantics `bin_codes` promises."""
    return np.clip(np.searchsorted(edges, np.asarray(values, np.float64), side="right") - 1, 0, len(edges) - 2)


def at_and_next_to(edges, dtype):
    """Every edge, rounded to `dtype`, its three neighbours on each side in `dtype`, and random
    values around the range: where arithmetic binning goes wrong if it is not exact."""
    with np.errstate(over="ignore"):  # float16 cannot hold the huge range: those values are dropped
        rounded = np.asarray(edges).astype(dtype)
        values, up, down = [rounded], rounded, rounded
        for _ in range(3):
            up, down = np.nextafter(up, dtype(np.inf)), np.nextafter(down, dtype(-np.inf))
            values += [up, down]
        span = edges[-1] - edges[0]
        values.append(np.random.default_rng(12).uniform(edges[0] - span / 5, edges[-1] + span / 5, 500).astype(dtype))
    values = np.concatenate(values)
    return values[np.isfinite(values)]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize(
    "bins, value_range",
    [(30, (-1.0, 1.0)), (29, (-1.0, 1.0)), (100, (0.0, 41.77)), (17, (-3.7, 1e-3)), (1000, (-5.5, 1234.5)),
     (1, (-1.0, 1.0)), (10, (1.0, 1.0 + 1e-6)), (5, (0.0, 1e-30)), (3, (-1e30, 1e30))],
    ids=["tanh", "29", "relu", "offset", "1000", "one-bin", "narrow", "tiny", "huge"],
)
def test_bin_codes_are_exact_at_and_next_to_every_edge(dtype, bins, value_range):
    edges = np.linspace(*value_range, bins + 1)
    values = at_and_next_to(edges, dtype)[:, None]
    expected = reference_codes(values, edges)
    np.testing.assert_array_equal(bin_codes(values, bins, value_range).numpy(), expected)
    np.testing.assert_array_equal(bin_codes(values, edges).numpy(), expected)


def test_per_run_ranges_are_exact_at_their_own_edges():
    lo, hi = np.array([-0.1, 0.0, 0.3]), np.array([8.7, 5.0, 1.2])
    values = [at_and_next_to(np.linspace(a, b, 101), np.float32)[:1200] for a, b in zip(lo, hi)]
    t = np.stack(values)[:, :, None]  # [runs, samples, 1]
    codes = bin_codes(t, 100, (lo, hi)).numpy()
    for run, (a, b) in enumerate(zip(lo, hi)):
        np.testing.assert_array_equal(codes[run], reference_codes(t[run], np.linspace(a, b, 101)))


def test_binned_equals_per_layer_np_unique_on_random_layers():
    rng = np.random.default_rng(13)
    gain = np.geomspace(0.3, 30, 4)[None, :, None, None]  # from spread out to saturated, as in training
    t = np.tanh(gain * rng.normal(size=(3, 4, 500, 6))).astype(np.float32)
    t[0, 0, :40] = np.linspace(-1, 1, 31)[rng.integers(0, 31, size=(40, 6))]  # values on the edges
    y = rng.integers(0, 3, size=500)
    lo = np.array([-1.0, -0.8, -1.2])[:, None]
    result = binned(t, y, 30, (lo, 1.0))
    for run, snapshot in np.ndindex(3, 4):
        codes = reference_codes(t[run, snapshot], np.linspace(lo[run, 0], 1.0, 31))
        expected = reference_mi(codes, y)
        assert (result.i_xt[run, snapshot], result.i_ty[run, snapshot]) == pytest.approx(expected, abs=1e-12)


def test_explicit_edges_give_the_same_codes_as_int_bins():
    edges = np.linspace(-2, 3, 21)
    values = np.concatenate([edges, np.random.default_rng(4).uniform(-3, 4, 300)])[:, None]
    np.testing.assert_array_equal(
        bin_codes(values, edges).numpy(), bin_codes(values, 20, (-2, 3)).numpy()
    )


def test_per_run_value_range_equals_separate_calls():
    rng = np.random.default_rng(5)
    t = rng.uniform(-2, 3, size=(2, 3, 60, 4))
    y = rng.integers(0, 2, size=60)
    lo, hi = np.array([[-1.0], [0.0]]), 2.5  # lo broadcasts over the 3 columns of the batch
    result, codes = binned(t, y, 10, (lo, hi)), bin_codes(t, 10, (lo, hi))
    for i, j in np.ndindex(2, 3):
        separate = binned(t[i, j], y, 10, (lo[i, 0], hi))
        assert (result.i_xt[i, j], result.i_ty[i, j]) == pytest.approx(separate, abs=1e-12)
        np.testing.assert_array_equal(codes[i, j], bin_codes(t[i, j], 10, (lo[i, 0], hi)))


def test_torch_float32_input_equals_numpy_input():
    t = np.random.default_rng(6).uniform(-1, 1, size=(100, 5)).astype(np.float32)
    y = np.arange(100) % 2
    assert binned(torch.from_numpy(t), torch.from_numpy(y)) == binned(t, y)


def test_floor_binning_hand_example():
    t = np.array([[-0.6, 0.2], [-0.1, 0.4], [0.7, 1.2], [-0.6, 0.3]])
    y = np.array([0, 1, 1, 0])
    # width 0.5: codes (-2,0), (-1,0), (1,2), (-2,0): symbols A B C A, and Y is a function of T
    assert binned_floor(t, y, 0.5) == pytest.approx((1.5, 1.0), abs=1e-12)
    # width 1: codes (-1,0), (-1,0), (0,1), (-1,0): p(T) = (3/4, 1/4); H(Y|T) = 3/4 H(1/3, 2/3)
    expected = (plugin_entropy([3, 1]), 1.0 - 0.75 * plugin_entropy([2, 1]))
    assert binned_floor(t, y, 1.0) == pytest.approx(expected, abs=1e-12)


# --- KDE ----------------------------------------------------------------------------------------


def test_kde_identical_points_carry_no_information():
    bounds = kde(np.ones((64, 3)), np.arange(64) % 2)
    assert bounds.upper == pytest.approx((0.0, 0.0), abs=1e-12)
    assert bounds.lower == pytest.approx((0.0, 0.0), abs=1e-12)


def test_kde_far_apart_points_give_log2_n_and_h_y():
    rng = np.random.default_rng(7)
    t = rng.normal(size=(200, 5)) * 1e3
    y = rng.integers(0, 3, size=200)
    for bound in kde(t, y):
        assert bound == pytest.approx((math.log2(200), entropy(y)), abs=1e-9)


def test_kde_two_separated_clusters_give_one_bit():
    jitter = np.random.default_rng(8).normal(size=(100, 2)) * 1e-6
    t = np.repeat([[0.0, 0.0], [100.0, 100.0]], 50, axis=0) + jitter
    y = np.repeat([0, 1], 50)
    for bound in kde(t, y):
        assert bound == pytest.approx((1.0, 1.0), abs=1e-6)


def test_kde_upper_is_at_least_lower_on_random_inputs():
    rng = np.random.default_rng(9)
    for _ in range(5):
        t, y = rng.normal(size=(80, 4)), rng.integers(0, 2, size=80)
        bounds = kde(t, y, noise_var=rng.uniform(0.01, 1.0))
        assert bounds.upper.i_xt >= bounds.lower.i_xt


def test_kde_matches_brute_force_numpy():
    rng = np.random.default_rng(10)
    t = rng.normal(size=(50, 3))
    y = rng.integers(0, 3, size=50)
    expected = reference_kde(t, y, 0.1)
    result = kde(torch.from_numpy(t), y, noise_var=0.1)
    assert result.upper == pytest.approx(expected.upper, abs=1e-10)
    assert result.lower == pytest.approx(expected.lower, abs=1e-10)


def test_kde_chunking_does_not_change_the_result():
    rng = np.random.default_rng(11)
    t = rng.normal(size=(50, 3)).astype(np.float32)
    y = rng.integers(0, 3, size=50)
    chunked, whole = kde(t, y, chunk_size=7), kde(t, y)
    assert chunked.upper == pytest.approx(whole.upper, abs=1e-12)
    assert chunked.lower == pytest.approx(whole.lower, abs=1e-12)


# --- bad input ----------------------------------------------------------------------------------

T = np.zeros((4, 2))
Y = np.array([0, 1, 0, 1])


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: discrete(T, Y), "codes"),  # floats
        (lambda: discrete(np.zeros(4, dtype=int), Y), "codes"),  # 1-D
        (lambda: discrete(np.zeros((0, 2), dtype=int), Y[:0]), "codes"),  # empty
        (lambda: discrete(np.zeros((4, 2), dtype=np.uint64), Y), "codes"),
        (lambda: discrete(np.zeros((4, 2), dtype=int), Y[:3]), "y"),  # labels not matching rows
        (lambda: discrete(np.zeros((4, 2), dtype=int), Y.astype(float)), "y"),
        (lambda: discrete(np.zeros((4, 2), dtype=int), Y[None]), "y"),
        (lambda: entropy(np.array([0.0, 1.0])), "labels"),
        (lambda: binned(np.array([[0.0], [np.nan]]), Y[:2]), "t"),
        (lambda: binned(np.array([[0.0], [np.inf]]), Y[:2]), "t"),
        (lambda: binned(np.zeros((4, 2), dtype=int), Y), "t"),
        (lambda: binned(np.zeros(4), Y), "t"),
        (lambda: binned(np.zeros((4, 0)), Y), "t"),
        (lambda: binned(T, Y, bins=0), "bins"),
        (lambda: binned(T, Y, bins=2.5), "bins"),
        (lambda: binned(T, Y, bins=[0.0, 0.0, 1.0]), "bins"),
        (lambda: binned(T, Y, bins=[[0.0, 1.0]]), "bins"),
        (lambda: binned(T, Y, bins=[0.0, np.nan]), "bins"),
        (lambda: binned(T, Y, bins=[-1.0, 0.0, 1.0], value_range=(-1, 1)), "value_range"),
        (lambda: binned(T, Y, value_range=(1, -1)), "value_range"),
        (lambda: binned(T, Y, value_range=(0, 0)), "value_range"),
        (lambda: binned(T, Y, value_range=(0, np.nan)), "value_range"),
        (lambda: binned(T, Y, value_range=5), "value_range"),
        (lambda: binned(np.zeros((3, 4, 2)), Y, value_range=(np.zeros(2), 1)), "value_range"),
        (lambda: binned_floor(T, Y, 0), "bin_width"),
        (lambda: binned_floor(T, Y, -0.1), "bin_width"),
        (lambda: binned_floor(T, Y, np.nan), "bin_width"),
        (lambda: binned_floor(T, Y, "0.1"), "bin_width"),
        (lambda: binned_floor(T + 1.0, Y, 1e-300), "bin_width"),
        (lambda: kde(T, Y, noise_var=0), "noise_var"),
        (lambda: kde(T, Y, noise_var=-1.0), "noise_var"),
        (lambda: kde(T, Y, noise_var=np.inf), "noise_var"),
        (lambda: kde(np.zeros((2, 4, 2)), Y), "t"),
        (lambda: kde(np.array([[0.0], [np.nan]]), Y[:2]), "t"),
        (lambda: kde(T, Y[:3]), "y"),
        (lambda: kde(T, Y, chunk_size=0), "chunk_size"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_kde_sweep_equals_kde_at_each_noise_variance():
    rng = np.random.default_rng(7)
    t, y = rng.normal(size=(90, 4)), rng.integers(0, 3, 90)
    variances = [1e-3, 0.05, 0.1, 2.0]
    for v, bounds in zip(variances, kde_sweep(t, y, variances, chunk_size=13)):
        expected = reference_kde(t, y, v)
        assert np.allclose([*bounds.upper, *bounds.lower], [*expected.upper, *expected.lower], atol=1e-10)


@pytest.mark.parametrize("chunk_size", [1, 4, 17, 200])
def test_kde_sweep_blocks_of_rows_against_later_columns_match_brute_force(chunk_size):
    """Each block of rows meets the columns from its first row on, its mirror image standing in
    for the rest: blocks that cut classes (of 1 to 40 samples) apart must not change the sums."""
    rng = np.random.default_rng(9)
    y = rng.permutation(np.repeat(np.arange(6), [1, 40, 7, 2, 25, 5]))
    t = rng.normal(size=(len(y), 3))
    for v, bounds in zip([0.02, 0.5], kde_sweep(t, y, [0.02, 0.5], chunk_size=chunk_size)):
        expected = reference_kde(t, y, v)
        assert np.allclose([*bounds.upper, *bounds.lower], [*expected.upper, *expected.lower], atol=1e-10)


def test_kde_sweep_keeps_classes_apart_whatever_their_order():
    """Samples are sorted by class inside; labels given in any order must give the same numbers."""
    rng = np.random.default_rng(8)
    t, y = rng.normal(size=(60, 3)), rng.integers(0, 4, 60)
    order = rng.permutation(60)

    def numbers(bounds):
        return [*bounds.upper, *bounds.lower]

    assert numbers(kde(t, y)) == pytest.approx(numbers(kde(t[order], y[order])), abs=1e-12)
    assert numbers(kde(t, y)) != pytest.approx(numbers(kde(t, rng.permutation(y))), abs=1e-3)


@pytest.mark.parametrize("noise_vars", [[], 0.1, "0.1", [[0.1]], [0.1, -1.0]])
def test_kde_sweep_refuses_bad_noise_vars(noise_vars):
    with pytest.raises(ValueError, match="noise_var"):
        kde_sweep(np.zeros((4, 2)), [0, 1, 0, 1], noise_vars)
