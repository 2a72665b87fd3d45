"""Every estimator of `ibutils.estimators` against the closed forms and brute-force references of
test_mi, batched and not; the probe's and infoplane's estimator names are this family's."""

import math

import numpy as np
import pytest
import torch

from ibutils import estimators, infoplane, mi, probe
from test_mi import reference_kde, reference_kraskov, reference_mi


@pytest.fixture
def layers():
    """Float32 tanh activity [2 seeds, 3 snapshots, 200 rows, 4 units], with duplicate rows in one
    element, and labels in 3 classes."""
    rng = np.random.default_rng(5)
    t = np.tanh(rng.normal(size=(2, 3, 200, 4)) * np.array([0.5, 2.0, 8.0])[:, None, None]).astype(np.float32)
    t[1, 2] = t[1, 2, rng.integers(0, 40, size=200)]
    return t, rng.integers(0, 3, size=200)


def each(t):
    return list(np.ndindex(t.shape[:-2]))


def test_binned_per_seed_ranges_and_streaming_codes_match_the_reference(layers):
    t, y = layers
    lo, hi = np.array([[-1.0], [-0.5]]), np.array([[1.0], [0.7]])
    found = estimators.Binned(10, (lo, hi), name="b").estimate(t, y)["b"]
    assert found.i_xt.shape == (2, 3)
    for s, k in each(t):
        edges = np.linspace(lo[s, 0], hi[s, 0], 11)
        codes = np.clip(np.searchsorted(edges, t[s, k], side="right") - 1, 0, 9)
        assert (found.i_xt[s, k], found.i_ty[s, k]) == pytest.approx(reference_mi(codes, y), abs=1e-12)
    streaming = estimators.Binned(10, (-1.0, 1.0))
    assert mi.discrete(streaming.codes(torch.from_numpy(t[0, 1])), y) == streaming.estimate(t[0, 1], y)["binned"]


def test_floor_precision_and_quantised_codes_match_the_reference(layers):
    t, y = layers
    floor = estimators.BinnedFloor(0.25).estimate(t, y)["binned_floor"]
    precision = estimators.PrecisionBinned().estimate(t, y)["precision"]
    quantised = estimators.Quantised(3).estimate(t, y)["quantised"]
    for s, k in each(t):
        layer = t[s, k].astype(np.float64)
        assert (floor.i_xt[s, k], floor.i_ty[s, k]) == pytest.approx(reference_mi(np.floor(layer / 0.25), y), abs=1e-12)
        assert (precision.i_xt[s, k], precision.i_ty[s, k]) == pytest.approx(
            reference_mi((t[s, k] + np.float32(0)).view(np.int32), y), abs=1e-12)
        levels = np.floor((layer - layer.min()) * 7 / (layer.max() - layer.min()) + 0.5)
        assert (quantised.i_xt[s, k], quantised.i_ty[s, k]) == pytest.approx(reference_mi(levels, y), abs=1e-12)


def test_equal_mass_bins_of_distinct_values_split_them_evenly():
    """64 distinct values in 4 equal-mass bins: 16 each, 2 bits; labels = the bin give I(T;Y) = 2 bits."""
    t = np.linspace(-1, 1, 64)[:, None]
    y = np.repeat(np.arange(4), 16)
    found = estimators.EqualMassBinned(4, low=-1.0).estimate(t, y)["equal_mass"]
    assert found == pytest.approx((2.0, 2.0), abs=1e-12)


def test_kde_at_several_variances_matches_brute_force_on_a_batch_with_duplicates(layers):
    """The default float32 kernels within 1e-6 bits of the brute force; one variance alone as `mi.kde`."""
    t, y = layers
    variances = (0.1, 1e-3)
    found = estimators.KDE(variances).estimate(t, y)
    assert set(found) == {"kde_upper_0.1", "kde_lower_0.1", "kde_upper_0.001", "kde_lower_0.001"}
    for s, k in each(t):
        for v in variances:
            expected = reference_kde(t[s, k].astype(np.float64), y, v)
            for bound in ("upper", "lower"):
                got = found[f"kde_{bound}_{v:g}"]
                assert (got.i_xt[s, k], got.i_ty[s, k]) == pytest.approx(getattr(expected, bound), abs=1e-6)
    single = estimators.KDE(1e-3).estimate(t[1, 2], y)
    assert (single["kde_upper"], single["kde_lower"]) == tuple(mi.kde(t[1, 2], y, 1e-3))


def test_kde_on_distinct_rows_equals_kde_on_all_rows():
    """Rows repeated many times (the weighted path) give the numbers of the rows themselves, in float64 to 1e-12."""
    rng = np.random.default_rng(3)
    base, labels = rng.normal(size=(30, 3)), rng.integers(0, 2, 30)
    index = rng.integers(0, 30, size=400)
    rows, classes, counts = mi.distinct_rows(base[index], labels[index])
    assert counts.sum() == 400 and len(rows) == len(np.unique(index))
    expected = reference_kde(base[index], labels[index], 0.05)
    found = mi.kde(base[index], labels[index], 0.05, precision="float64")
    assert [*found.upper, *found.lower] == pytest.approx([*expected.upper, *expected.lower], abs=1e-12)


def test_distinct_rows_merge_the_two_zeros_and_keep_labels_apart():
    t = np.array([[0.0, 1.0], [-0.0, 1.0], [0.0, 1.0], [2.0, 3.0]])
    rows, classes, counts = mi.distinct_rows(t, np.array([0, 0, 1, 0]))
    assert rows.tolist() == [[0.0, 1.0], [0.0, 1.0], [2.0, 3.0]]
    assert classes.tolist() == [0, 1, 0] and counts.tolist() == [2, 1, 1]


@pytest.mark.parametrize("k", [1, 2, 3])
def test_kraskov_matches_brute_force_with_duplicates(layers, k):
    t, y = layers
    found = estimators.Kraskov(k).estimate(t, y)["kraskov"]
    for s, k_ in each(t):
        layer = t[s, k_].astype(np.float64)
        h_t = reference_kraskov(layer, k, 1e-16)
        h_given_y = sum(np.mean(y == c) * reference_kraskov(layer[y == c], k, 1e-16) for c in np.unique(y))
        assert (found.i_xt[s, k_], found.i_ty[s, k_]) == pytest.approx((h_t, h_t - h_given_y), abs=1e-9)


def test_function_is_called_on_each_batch_element(layers):
    t, y = layers
    calls = []

    def spread(layer, labels):
        calls.append(tuple(layer.shape))
        return float(layer.std()), 0.5

    found = estimators.Function(spread).estimate(t, y)["spread"]
    assert calls == [(200, 4)] * 6 and found.i_xt.shape == (2, 3)
    assert found.i_xt[1, 0] == pytest.approx(float(torch.as_tensor(t[1, 0]).std()))
    with pytest.raises(ValueError, match="spread"):
        estimators.Function(lambda a, b: (math.inf, 0.0), name="spread").estimate(t[0, 0], y)


def test_the_probe_and_infoplane_names_are_this_family():
    for name in ("Binned", "BinnedFloor", "EqualMassBinned", "KDE", "Kraskov", "Function", "StreamingBinning",
                 "WholeLayer", "Estimator"):
        assert getattr(probe, name) is getattr(estimators, name)
    assert infoplane.Kraskov is estimators.Kraskov
    assert isinstance(infoplane.PrecisionBins(), estimators.PrecisionBinned)
    assert infoplane.KDE((0.1, 1e-3)).outputs() == ("kde_upper_0.1", "kde_lower_0.1", "kde_upper_0.001", "kde_lower_0.001")
    bins = infoplane.UniformBins("bins_30", 30, np.array([[0.0, 2.0], [0.0, 3.0]]))
    assert isinstance(bins.for_layer(False), estimators.Binned) and bins.for_layer(True).value_range == (0.0, 1.0)
    assert infoplane.EqualMassBins(30, -1.0).for_layer(True).low == 0.0
    assert infoplane.QuantisedCodes(8).for_layer(True).value_range == (0.0, 1.0)


@pytest.mark.parametrize("make, message", [
    (lambda: estimators.Binned(30, (np.zeros((2, 1)), np.zeros((2, 1)))), "value_range"),
    (lambda: estimators.KDE(()), "noise_var"),
    (lambda: estimators.KDE((0.1, -1.0)), "noise_var"),
    (lambda: estimators.Quantised(0), "bits"),
    (lambda: estimators.PrecisionBinned().estimate(np.zeros(3), [0, 1, 0]), "t"),
])
def test_bad_settings_are_refused_by_name(make, message):
    with pytest.raises(ValueError, match=message):
        make()
