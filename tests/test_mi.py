"""Known-answer tests of the information estimators in `ibutils.mi` (all values in bits)."""

import math

import numpy as np
import pytest
import torch

from scipy import special

from ibutils import mi
from ibutils.mi import (MI, KDEBounds, bin_codes, binned, binned_floor, binned_precision, discrete, entropy, kraskov,
                        equal_mass_edges, fake_quantise, kde, kde_sweep, kraskov_entropy, precision_codes, quantise)


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


# float64 kernels agree with the brute force to rounding; the float32 default to its error bound
KDE_TOLERANCE = {"float64": 1e-10, "float32": 1e-6}


@pytest.mark.parametrize("precision", KDE_TOLERANCE)
def test_kde_matches_brute_force_numpy(precision):
    rng = np.random.default_rng(10)
    t = rng.normal(size=(50, 3))
    y = rng.integers(0, 3, size=50)
    expected = reference_kde(t, y, 0.1)
    result = kde(torch.from_numpy(t), y, noise_var=0.1, precision=precision)
    assert result.upper == pytest.approx(expected.upper, abs=KDE_TOLERANCE[precision])
    assert result.lower == pytest.approx(expected.lower, abs=KDE_TOLERANCE[precision])


@pytest.mark.parametrize("precision, tolerance", [("float64", 1e-12), ("float32", 1e-6)])
def test_kde_chunking_does_not_change_the_result(precision, tolerance):
    rng = np.random.default_rng(11)
    t = rng.normal(size=(50, 3)).astype(np.float32)
    y = rng.integers(0, 3, size=50)
    chunked, whole = kde(t, y, chunk_size=7, precision=precision), kde(t, y, precision=precision)
    assert chunked.upper == pytest.approx(whole.upper, abs=tolerance)
    assert chunked.lower == pytest.approx(whole.lower, abs=tolerance)


def clustered_tanh_layer(rng, n, d, gain):
    """Float32 tanh activity of random patterns, spread out (gain 1) or saturated into clusters (gain 10)."""
    return np.tanh(gain * rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) / d).astype(np.float32)


@pytest.mark.parametrize("noise_var", [0.1, 1e-3])
@pytest.mark.parametrize("gain", [1.0, 10.0])
def test_kde_float32_kernels_stay_within_1e_6_bits_of_float64(noise_var, gain):
    """The default's error (measured ~3e-8 bits) on layers like the chapter's, at the sharp 1e-3 kernel too."""
    rng = np.random.default_rng(14)
    t, y = clustered_tanh_layer(rng, 1500, 10, gain), rng.integers(0, 2, 1500)
    fast, exact = kde(t, y, noise_var), kde(t, y, noise_var, precision="float64")
    assert [*fast.upper, *fast.lower] == pytest.approx([*exact.upper, *exact.lower], abs=1e-6)


# --- batched edges, equal-mass edges ---------------------------------------------------------------


def test_binned_with_per_element_edges_equals_separate_calls():
    rng = np.random.default_rng(15)
    t, y = rng.uniform(-1, 1, size=(3, 4, 80, 3)), rng.integers(0, 2, size=80)
    edges = np.sort(rng.uniform(-1.2, 1.2, size=(3, 1, 12)), axis=-1)  # one set per run, shared by 4 snapshots
    result, codes = binned(t, y, bins=edges), bin_codes(t, bins=edges)
    for i, j in np.ndindex(3, 4):
        assert (result.i_xt[i, j], result.i_ty[i, j]) == pytest.approx(binned(t[i, j], y, bins=edges[i, 0]), abs=1e-12)
        np.testing.assert_array_equal(codes[i, j], reference_codes(t[i, j], edges[i, 0]))


def reference_equal_mass_edges(layer, bins, low=None):
    """The rule of `equal_mass_edges` written plainly, for one layer with at least `bins` distinct values."""
    u = np.unique(np.asarray(layer, dtype=np.float64))
    first = [k * len(u) // bins for k in range(1, bins)]
    return np.array([u[0] if low is None else low, *[(u[j - 1] + u[j]) / 2 for j in first], u[-1]])


def distinct_values_per_bin(layer, edges):
    u = np.unique(np.asarray(layer, dtype=np.float64))
    return np.bincount(reference_codes(u, edges), minlength=len(edges) - 1)


@pytest.mark.parametrize("bins", [1, 7, 30])
def test_equal_mass_edges_split_the_distinct_values_evenly(bins):
    rng = np.random.default_rng(16)
    # a saturated tanh layer: most values pile up at exactly -1 and 1, the rest are spread out
    layer = np.tanh(8 * rng.normal(size=(500, 4))).astype(np.float32)
    edges = equal_mass_edges(layer, bins, low=-1.0).numpy()
    assert edges.shape == (bins + 1,) and edges[0] == -1.0 and edges[-1] == layer.max()
    np.testing.assert_array_equal(edges, reference_equal_mass_edges(layer, bins, low=-1.0))
    per_bin = distinct_values_per_bin(layer, edges)
    m = len(np.unique(layer))
    assert per_bin.sum() == m and set(per_bin) <= {m // bins, -(-m // bins)}


def test_equal_mass_binning_equals_discrete_on_hand_made_codes():
    rng = np.random.default_rng(17)
    layer = np.maximum(0, rng.normal(size=(300, 5))).astype(np.float32)  # ReLU-like: many exact zeros
    y = rng.integers(0, 3, size=300)
    edges = equal_mass_edges(layer, 30, low=0.0).numpy()
    by_hand = np.clip(np.digitize(layer, edges) - 1, 0, 29)  # np.histogram's bins, the last one closed
    np.testing.assert_array_equal(by_hand, reference_codes(layer, edges))
    assert binned(layer, y, bins=edges) == pytest.approx(discrete(by_hand, y), abs=1e-12)
    assert binned(layer, y, bins=edges) == pytest.approx(reference_mi(by_hand, y), abs=1e-12)


def test_batched_equal_mass_edges_equal_looped_ones():
    rng = np.random.default_rng(18)
    t = np.tanh(rng.normal(size=(2, 3, 200, 4)) * np.array([0.5, 5.0, 50.0])[:, None, None]).astype(np.float32)
    t[1, 2] = np.float32(0.25)  # a constant layer
    t[0, 1, :, 1:] = 1.0  # a layer with few distinct values
    y = rng.integers(0, 2, size=200)
    edges = equal_mass_edges(torch.from_numpy(t), 30)
    assert edges.shape == (2, 3, 31) and edges.dtype == torch.float64
    result = binned(t, y, bins=edges)
    for i, j in np.ndindex(2, 3):
        np.testing.assert_array_equal(edges[i, j], equal_mass_edges(t[i, j], 30))
        assert (result.i_xt[i, j], result.i_ty[i, j]) == pytest.approx(binned(t[i, j], y, bins=edges[i, j]), abs=1e-12)


@pytest.mark.parametrize("low", [None, 0.0, -1.0])
def test_fewer_distinct_values_than_bins_give_each_value_its_own_bin(low):
    layer = np.array([[0.0, 0.5], [0.5, 0.75], [0.0, 3.0], [0.75, 0.0]])  # 4 distinct values
    edges = equal_mass_edges(layer, 10, low=low).numpy()
    assert edges[0] == (0.0 if low is None else low) and edges[-1] == 3.0
    np.testing.assert_array_equal(edges[:4], [edges[0], 0.25, 0.625, 1.875])
    np.testing.assert_array_equal(distinct_values_per_bin(layer, edges), [1, 1, 1] + [0] * 6 + [1])
    y = np.array([0, 1, 0, 1])
    assert binned(layer, y, bins=edges) == pytest.approx(discrete(reference_codes(layer, edges[:4]), y), abs=1e-12)


@pytest.mark.parametrize("low, lowest", [(None, -1.0), (0.0, -1.0), (-1.0, -1.0), (-0.5, -0.5)])
def test_a_constant_layer_has_one_occupied_bin(low, lowest):
    """A dead ReLU layer (all 0): strictly increasing edges all the same, and no information."""
    layer = np.zeros((50, 3), dtype=np.float32)
    edges = equal_mass_edges(layer, 30, low=low).numpy()
    assert edges[0] == lowest and edges[-1] == 0.0 and np.all(np.diff(edges) > 0)
    assert binned(layer, np.arange(50) % 2, bins=edges) == pytest.approx((0.0, 0.0), abs=1e-12)


def test_equal_mass_edges_fall_between_adjacent_float32_values():
    """Distinct float32 values one ulp apart still get edges strictly between them (float64 midpoints)."""
    values = np.nextafter(np.float32(0.5), np.float32(1), dtype=np.float32)
    layer = np.array([[0.5], [values], [np.nextafter(values, np.float32(1))]], dtype=np.float32)
    edges = equal_mass_edges(layer, 3).numpy()
    np.testing.assert_array_equal(bin_codes(layer, edges).numpy()[:, 0], [0, 1, 2])


# --- machine precision, quantisation ------------------------------------------------------------


@pytest.mark.parametrize("dtype, bits", [(np.float16, np.int16), (np.float32, np.int32), (np.float64, np.int64)])
def test_precision_bins_are_the_distinct_float_values(dtype, bits):
    rng = np.random.default_rng(19)
    t = rng.choice(np.array([-0.0, 0.0, 1e-3, 0.1, -1.0, 1.0, 0.1 + 1e-7], dtype=dtype), size=(2, 300, 3))
    y = rng.integers(0, 2, size=300)
    result = binned_precision(t, y)
    for run in range(2):
        raw = (t[run] + dtype(0.0)).view(bits)  # -0.0 + 0.0 = +0.0: the two zeros are one bin
        assert (result.i_xt[run], result.i_ty[run]) == pytest.approx(reference_mi(raw, y), abs=1e-12)
        assert len(np.unique(raw)) == len(np.unique(t[run])) == len(np.unique(precision_codes(t[run]).numpy()))


def test_precision_bins_separate_neighbouring_floats_and_join_the_zeros():
    one = np.float32(1.0)
    t = np.array([[one], [np.nextafter(one, np.float32(2))], [np.float32(-0.0)], [np.float32(0.0)]])
    assert binned_precision(t, np.zeros(4, dtype=np.int64)).i_xt == pytest.approx(1.5, abs=1e-12)


def reference_quantise(t, bits, lo, hi):
    return np.clip(np.floor((np.asarray(t, np.float64) - lo) * ((2**bits - 1) / (hi - lo)) + 0.5), 0, 2**bits - 1)


def test_quantise_equals_direct_rounding_per_layer_range():
    rng = np.random.default_rng(20)
    t = np.tanh(rng.normal(size=(3, 2, 400, 5)) * 3).astype(np.float32)
    t[2, 1] = 0.5  # a constant layer: code 0
    codes, values = quantise(torch.from_numpy(t), 8), fake_quantise(torch.from_numpy(t), 8)
    assert codes.dtype == torch.int64 and values.dtype == torch.float32 and codes.shape == values.shape == t.shape
    for i, j in np.ndindex(3, 2):
        lo, hi = float(t[i, j].min()), float(t[i, j].max())
        expected = reference_quantise(t[i, j], 8, lo, hi) if hi > lo else np.zeros(t[i, j].shape)
        np.testing.assert_array_equal(codes[i, j].numpy(), expected)
        step = (hi - lo) / 255
        np.testing.assert_array_equal(values[i, j].numpy(), (lo + expected * step).astype(np.float32))
        assert np.abs(values[i, j].numpy() - t[i, j]).max() <= step / 2 * (1 + 1e-6) + 1e-7


def test_quantise_on_a_fixed_range_rounds_halves_up_and_clips():
    t = np.array([[-0.5], [0.0], [2.5], [3.5], [2.4999], [254.5], [255.0], [300.0]])
    np.testing.assert_array_equal(quantise(t, 8, (0.0, 255.0)).numpy()[:, 0], [0, 0, 3, 4, 2, 255, 255, 255])
    lo = np.array([-1.0, 0.0])  # one range per batch element
    batch = np.stack([np.linspace(-1, 1, 50), np.linspace(0, 2, 50)])[:, :, None]
    codes = quantise(batch, 4, (lo, 1.0)).numpy()
    for run in range(2):
        np.testing.assert_array_equal(codes[run], reference_quantise(batch[run], 4, lo[run], 1.0))


def test_quantised_layer_information_is_exact_through_discrete():
    rng = np.random.default_rng(24)
    level = np.repeat(np.arange(4), 16)
    t = (-1 + level * 2 / 3 + rng.uniform(-0.3, 0.3, size=64))[:, None]  # 2 bits: 4 levels, -1 to 1
    codes = quantise(t, 2, (-1.0, 1.0))
    np.testing.assert_array_equal(codes[:, 0].numpy(), level)
    assert discrete(codes, level % 2) == pytest.approx((2.0, 1.0), abs=1e-12)


# --- Kraskov --------------------------------------------------------------------------------------


def reference_kraskov(x, k, eps):
    """SPEC 2.3 by brute force: every pairwise distance, the k-th smallest to another sample."""
    n, d = x.shape
    dist = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    others = dist[~np.eye(n, dtype=bool)].reshape(n, n - 1)
    r = np.partition(others, k - 1, axis=1)[:, k - 1]
    nats = d * np.mean(np.log(r + eps)) + d / 2 * np.log(np.pi) - special.gammaln(d / 2 + 1)
    return (nats + special.digamma(n) - special.digamma(k)) / np.log(2)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_kraskov_equals_brute_force_with_duplicates(k):
    rng = np.random.default_rng(21)
    x = rng.normal(size=(2, 3, 120, 4))
    x[0, 0] = x[0, 0, rng.integers(0, 30, size=120)]  # many duplicates: r = 0 for some samples
    x[1, 2, :60] = 0.5  # half of the samples coincide
    result = kraskov_entropy(x, k=k)
    assert result.shape == (2, 3)
    for i, j in np.ndindex(2, 3):
        assert result[i, j] == pytest.approx(reference_kraskov(x[i, j], k, 1e-16), abs=1e-12)
    assert kraskov_entropy(torch.from_numpy(x[1, 1]).float(), k=k) == pytest.approx(
        reference_kraskov(x[1, 1].astype(np.float32).astype(np.float64), k, 1e-16), abs=1e-12)


def test_kraskov_entropy_of_gaussian_samples():
    """Closed form 0.5 log2 det(2 pi e Sigma) = 5.819 bits. Over 100 draws of N = 4,000 the
    estimate (k = 2) has mean -0.027 bits off and spread 0.035 bits; the mean of 20 draws
    (standard error 0.008) must lie within 0.06 bits."""
    cov = np.array([[2.0, 0.6, 0.0], [0.6, 1.0, -0.3], [0.0, -0.3, 0.5]])
    truth = 0.5 * np.log2(np.linalg.det(2 * np.pi * np.e * cov))
    x = np.random.default_rng(22).multivariate_normal(np.zeros(3), cov, size=(20, 4000))
    assert np.mean(kraskov_entropy(x)) == pytest.approx(truth, abs=0.06)


def test_kraskov_entropy_of_scaled_samples_shifts_by_d_log2_c():
    x = np.random.default_rng(23).normal(size=(500, 3))
    assert kraskov_entropy(4 * x) == pytest.approx(kraskov_entropy(x) + 3 * 2, abs=1e-9)


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
        (lambda: kde(T, Y, precision="float16"), "precision"),
        (lambda: binned(np.zeros((3, 4, 2)), Y, bins=np.tile(np.linspace(-1, 1, 5), (2, 1))), "bins"),
        (lambda: binned(np.zeros((3, 4, 2)), Y, bins=np.zeros((3, 1))), "bins"),
        (lambda: equal_mass_edges(T, 0), "bins"),
        (lambda: equal_mass_edges(T, 2.5), "bins"),
        (lambda: equal_mass_edges(T, True), "bins"),
        (lambda: equal_mass_edges(T, low=0.5), "low"),
        (lambda: equal_mass_edges(T, low=[-1.0, 0.0]), "low"),
        (lambda: equal_mass_edges(T, low=np.nan), "low"),
        (lambda: equal_mass_edges(np.array([[0.0], [np.nan]])), "t"),
        (lambda: equal_mass_edges(np.zeros(4)), "t"),
        (lambda: binned_precision(np.array([[0.0], [np.nan]]), Y[:2]), "t"),
        (lambda: binned_precision(np.array([[0.0], [-np.inf]]), Y[:2]), "t"),
        (lambda: precision_codes(np.zeros((4, 2), dtype=int)), "t"),
        (lambda: quantise(T, 0), "bits"),
        (lambda: quantise(T, 33), "bits"),
        (lambda: quantise(T, 8.0), "bits"),
        (lambda: quantise(T, True), "bits"),
        (lambda: quantise(T, 8, (1.0, 0.0)), "value_range"),
        (lambda: fake_quantise(np.array([[0.0], [np.nan]])), "t"),
        (lambda: kraskov_entropy(T, k=0), "k"),
        (lambda: kraskov_entropy(T, k=4), "k"),  # only 3 other samples
        (lambda: kraskov_entropy(T, k=1.5), "k"),
        (lambda: kraskov_entropy(T, eps=0.0), "eps"),
        (lambda: kraskov_entropy(T, eps=-1e-16), "eps"),
        (lambda: kraskov_entropy(T, eps=np.nan), "eps"),
        (lambda: kraskov_entropy(np.zeros(4)), "t"),
        (lambda: kraskov_entropy(np.array([[0.0], [np.inf]])), "t"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_kde_sweep_equals_kde_at_each_noise_variance():
    rng = np.random.default_rng(7)
    t, y = rng.normal(size=(90, 4)), rng.integers(0, 3, 90)
    variances = [1e-3, 0.05, 0.1, 2.0]
    for precision, tolerance in KDE_TOLERANCE.items():
        for v, bounds in zip(variances, kde_sweep(t, y, variances, chunk_size=13, precision=precision)):
            expected = reference_kde(t, y, v)
            assert np.allclose([*bounds.upper, *bounds.lower], [*expected.upper, *expected.lower], atol=tolerance)


@pytest.mark.parametrize("chunk_size", [1, 4, 17, 200])
def test_kde_sweep_blocks_of_rows_against_later_columns_match_brute_force(chunk_size):
    """Each block of rows meets the columns from its first row on, its mirror image standing in
    for the rest: blocks that cut classes (of 1 to 40 samples) apart must not change the sums."""
    rng = np.random.default_rng(9)
    y = rng.permutation(np.repeat(np.arange(6), [1, 40, 7, 2, 25, 5]))
    t = rng.normal(size=(len(y), 3))
    for v, bounds in zip([0.02, 0.5], kde_sweep(t, y, [0.02, 0.5], chunk_size=chunk_size, precision="float64")):
        expected = reference_kde(t, y, v)
        assert np.allclose([*bounds.upper, *bounds.lower], [*expected.upper, *expected.lower], atol=1e-10)


def test_kde_sweep_keeps_classes_apart_whatever_their_order():
    """Samples are sorted by class inside; labels given in any order must give the same numbers."""
    rng = np.random.default_rng(8)
    t, y = rng.normal(size=(60, 3)), rng.integers(0, 4, 60)
    order = rng.permutation(60)

    def numbers(bounds):
        return [*bounds.upper, *bounds.lower]

    exact = dict(precision="float64")
    assert numbers(kde(t, y, **exact)) == pytest.approx(numbers(kde(t[order], y[order], **exact)), abs=1e-12)
    assert numbers(kde(t, y)) != pytest.approx(numbers(kde(t, rng.permutation(y))), abs=1e-3)


@pytest.mark.parametrize("noise_vars", [[], 0.1, "0.1", [[0.1]], [0.1, -1.0]])
def test_kde_sweep_refuses_bad_noise_vars(noise_vars):
    with pytest.raises(ValueError, match="noise_var"):
        kde_sweep(np.zeros((4, 2)), [0, 1, 0, 1], noise_vars)


def test_kraskov_label_information_of_separated_classes_is_the_label_entropy():
    """Three far-apart Gaussian clusters, one per class: Y is a function of T, so
    I(T;Y) = H(T) - sum_y p(y) H(T | Y = y) = H(Y) = log2 3 bits; batched equals one at a time."""
    gen = torch.Generator().manual_seed(5)
    y = torch.arange(600) % 3
    t = torch.randn(2, 600, 2, generator=gen, dtype=torch.float64) + 100.0 * y[:, None]
    both = kraskov(t, y)
    for b in range(2):
        one = kraskov(t[b], y)
        assert one.i_xt == kraskov_entropy(t[b]) == both.i_xt[b]
        assert one.i_ty == pytest.approx(math.log2(3), abs=0.05)
        assert one.i_ty == pytest.approx(both.i_ty[b], abs=1e-12)
    with pytest.raises(ValueError, match="every class needs more than k = 2 samples"):
        kraskov(t[0], torch.cat([y[:598], torch.tensor([3, 3])]))


@pytest.mark.parametrize("gain", [1.0, 10.0])
def test_kde_compiled_loop_and_torch_blocks_give_the_same_kernel_sums(gain):
    """On the CPU a float32 layer of up to pairwise.MAX_UNITS units goes to the compiled loop, a
    GPU or wider layer to the torch blocks: on the same rows both give the same sums."""
    rng = np.random.default_rng(31)
    t = torch.from_numpy(clustered_tanh_layer(rng, 700, 6, gain))
    classes, order = torch.from_numpy(rng.integers(0, 3, 700)).sort(stable=True)
    weights = torch.from_numpy(rng.integers(1, 5, 700))
    scales = [-1 / (2 * 0.1), -1 / (2 * 1e-3)]
    compiled = mi._compiled_kernel_sums(t[order], weights, classes, scales)
    blocks = mi._block_kernel_sums(t[order], weights, classes, scales, 64, torch.float64)
    np.testing.assert_allclose(compiled.numpy(), blocks.numpy(), rtol=2e-6, atol=1e-30)
