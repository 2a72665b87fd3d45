"""The three-neuron toy model (ibutils.toy) against closed forms, limits, the SPEC E4 numbers and sampling."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from scipy.special import ndtr

from ibutils import toy

TANH_31_EDGES = np.linspace(-1, 1, 31)  # 30 intervals (the paper's "30 bins")
TANH_30_EDGES = np.linspace(-1, 1, 30)  # 29 intervals (the IDNNs code)


# --- the numbers measured for SPEC E4 -----------------------------------------------------------


def test_tanh_curve_matches_spec():
    w = np.array([5.0, 10.0])
    np.testing.assert_allclose(toy.information(w), [2.78, 2.04], atol=0.005)
    np.testing.assert_allclose(toy.information(w, edges=TANH_31_EDGES), toy.information(w))
    w_star, i_star = toy.peak()
    assert abs(i_star - 4.90) < 0.005 and abs(w_star - 0.87) < 0.005


def test_idnns_29_intervals_match_spec():
    w_star, i_star = toy.peak(edges=TANH_30_EDGES)
    assert abs(i_star - 4.85) < 0.005 and abs(w_star - 0.87) < 0.005
    assert abs(toy.information(10.0, edges=TANH_30_EDGES) - 2.03) < 0.005


def test_relu_curve_matches_spec():
    np.testing.assert_allclose(toy.information([1.0, 5.0, 10.0], "relu"), [3.33, 4.60, 5.11], atol=0.005)
    # SPEC's other widths: 1.0 and 4/3, from 0 upward
    for width, expected in ((1.0, [0.73, 2.35, 2.98]), (4 / 3, [0.46, 2.08, 2.73])):
        edges = width * np.arange(0, 100)
        np.testing.assert_allclose(toy.information([1.0, 5.0, 10.0], "relu", edges), expected, atol=0.005)


def test_netinput_bins_match_spec():
    bits = toy.information([1.0, 2.0, 5.0, 10.0], "tanh", toy.netinput_edges(30), space="netinput")
    np.testing.assert_allclose(bits, [0.50, 1.42, 2.61, 3.59], atol=0.005)


def test_netinput_edges_through_float_tanh_would_be_wrong():
    # Documented pitfall: tanh(50 * k / 29) rounds to 1.0 for large k, merging edges.
    activity = np.tanh(toy.netinput_edges(30))
    assert np.sum(np.abs(activity) == 1.0) > 10
    with pytest.raises(ValueError, match="strictly increasing"):
        toy.information(10.0, "tanh", activity)


# --- limits and symmetry -----------------------------------------------------------------------


def test_small_w_limit_depends_on_whether_zero_is_an_edge():
    # Even number of equal bins on [-1, 1]: 0 is an edge, the two central bins split the mass.
    assert toy.information(1e-6, edges=TANH_31_EDGES) == pytest.approx(1.0, abs=1e-12)
    # Odd number: 0 is inside the central bin, which takes all the mass.
    assert toy.information(1e-6, edges=TANH_30_EDGES) == pytest.approx(0.0, abs=1e-12)


def test_zero_weight_is_a_single_bin():
    for activation in toy.ACTIVATIONS:
        assert toy.information(0.0, activation) == 0.0


def test_large_w_limit_is_one_bit():
    bits = toy.information([10.0, 100.0, 1e4, 1e8])
    assert np.all(np.diff(bits) < 0)
    assert bits[-1] == pytest.approx(1.0, abs=1e-5)


def test_symmetric_in_w():
    w = np.linspace(0.1, 10, 50)
    for activation in ("tanh", "relu", "softplus", "hardtanh"):
        np.testing.assert_array_equal(toy.information(-w, activation), toy.information(w, activation))


def test_relu_rises_monotonically():
    bits = toy.information(np.linspace(0, 10, 501), "relu")
    assert np.all(np.diff(bits) >= 0) and bits[-1] > bits[1] + 3


def test_netinput_bins_do_not_compress_on_0_to_10():
    bits = toy.information(np.linspace(0, 10, 501), "tanh", toy.netinput_edges(), space="netinput")
    assert np.all(np.diff(bits) >= 0)


# --- closed forms ------------------------------------------------------------------------------


def test_sigmoid_is_tanh_at_half_the_weight():
    # sigmoid(z) = (1 + tanh(z / 2)) / 2 maps 30 bins on [0, 1] onto 30 bins on [-1, 1].
    w = np.linspace(0, 20, 81)
    np.testing.assert_allclose(toy.information(w, "sigmoid"), toy.information(w / 2, "tanh"), atol=1e-12)


def test_hardtanh_atoms_land_in_the_end_bins():
    # Clipping at +-1 only moves mass inside the end bins, which are unbounded: same bins as linear.
    w = np.array([0.1, 1.0, 3.0, 10.0])
    np.testing.assert_allclose(toy.bin_probabilities(w, "hardtanh", TANH_31_EDGES),
                               toy.bin_probabilities(w, "linear", TANH_31_EDGES), atol=1e-15)
    assert toy.bin_probabilities(3.0, "hardtanh")[-1] == pytest.approx(ndtr(-(1 - 1 / 15) / 3.0), rel=1e-12)


def test_relu_atom_at_zero_is_in_the_first_bin():
    width = 2 / 30
    p = toy.bin_probabilities(2.0, "relu")
    assert p[0] == pytest.approx(ndtr(width / 2.0), rel=1e-12)  # P(w X < width), half of it the atom


def test_linear_with_fine_bins_is_differential_entropy_minus_log_width():
    # H(T) -> h(w X) - log2(width) = log2(sqrt(2 pi e) w / width) when width << w.
    w = np.array([2.0, 10.0])
    expected = np.log2(np.sqrt(2 * np.pi * np.e) * w / (2 / 30))
    np.testing.assert_allclose(toy.information(w, "linear"), expected, atol=1e-3)


def test_netinput_space_equals_activity_edges_where_float_is_exact():
    z = np.linspace(-3, 3, 13)
    w = np.array([0.3, 1.0, 4.0])
    for activation in ("tanh", "softsign", "sigmoid", "softplus", "linear"):
        np.testing.assert_allclose(toy.information(w, activation, z, space="netinput"),
                                   toy.information(w, activation, toy.activate(z, activation)), atol=1e-12)
    positive = z[z > 0]
    np.testing.assert_allclose(toy.information(w, "relu", positive, space="netinput"),
                               toy.information(w, "relu", positive), atol=1e-12)


def test_probabilities_sum_to_one_with_the_right_shape():
    w = np.linspace(0, 5, 12).reshape(3, 4)
    for activation in toy.ACTIVATIONS:
        edges = toy.default_edges(activation, w_max=5.0)
        p = toy.bin_probabilities(w, activation, edges)
        assert p.shape == (3, 4, len(edges) - 1)
        np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-12)
        assert np.all(p >= 0)
        assert toy.information(w, activation).shape == (3, 4)
    assert isinstance(toy.information(1.0), float)


def test_upper_tail_bins_keep_their_precision():
    # Phi(8.5) - Phi(8) is 1 - 1 in float64; the survival side keeps it.
    p = toy.bin_probabilities(1.0, "linear", [-1.0, 8.0, 8.5, 9.0])
    assert p[1] == pytest.approx(ndtr(-8.0) - ndtr(-8.5), rel=1e-12)
    assert p[1] > 0


def test_long_w_arrays_are_chunked_without_changing_values(monkeypatch):
    w = np.linspace(0, 10, 301)
    full = toy.information(w, "relu")
    monkeypatch.setattr(toy, "_CHUNK_ELEMENTS", 5000)  # about 3 weights per chunk
    np.testing.assert_array_equal(toy.information(w, "relu"), full)


# --- agreement with sampling through ibutils.mi.binned ------------------------------------------


@pytest.mark.parametrize("activation, w, space", [
    ("tanh", 0.87, "activity"), ("tanh", 10.0, "activity"), ("hardtanh", 2.0, "activity"),
    ("relu", 5.0, "activity"), ("tanh", 5.0, "netinput"),
])
def test_exact_agrees_with_monte_carlo(activation, w, space):
    # The plug-in estimate from n samples has mean I + bias (Miller-Madow, here 1e-5 to 2e-4 bits)
    # and standard deviation sd (1e-4 to 4e-3 bits); 5 sd leaves a 1-in-1.7-million false alarm.
    n = 10**6
    exact = toy.information(w, activation, space=space)
    bias, sd = toy.plugin_error(w, n, activation, space=space)
    sampled = toy.sampled_information(w, n, activation, space=space, seed=1)
    assert abs(sampled - (exact + bias)) <= 5 * sd


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("call, match", [
    (lambda: toy.information(1.0, "gelu"), "activation"),
    (lambda: toy.information(1.0, edges=[0.5, 0.2, 0.9]), "strictly increasing"),
    (lambda: toy.information(1.0, edges=[0.1]), "edges"),
    (lambda: toy.information(1.0, edges=[[0.1, 0.2]]), "edges"),
    (lambda: toy.information(1.0, edges=[-np.inf, 0.0, 1.0]), "edges"),
    (lambda: toy.information(np.nan), "w"),
    (lambda: toy.information(1.0, space="output"), "space"),
    (lambda: toy.default_edges("tanh", bins=-3), "bins"),
    (lambda: toy.default_edges("tanh", bins=0), "bins"),
    (lambda: toy.default_edges("tanh", bins=2.5), "bins"),
    (lambda: toy.default_edges("relu", w_max=-1.0), "w_max"),
    (lambda: toy.information(1e6, "relu"), "pass edges"),
    (lambda: toy.netinput_edges(1), "n"),
    (lambda: toy.netinput_edges(30, span=0.0), "span"),
    (lambda: toy.peak(bounds=(2.0, 1.0)), "bounds"),
    (lambda: toy.plugin_error(1.0, 0), "n"),
    (lambda: toy.plugin_error([1.0, 2.0], 10), "w"),
    (lambda: toy.sampled_information(1.0, 10, "relu", space="netinput"), "strictly increasing"),
])
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --- figures -----------------------------------------------------------------------------------


def test_figures_draw_and_frames_do_not_leak():
    before = set(plt.get_fignums())
    fig, axes = plt.subplots(1, 3)
    toy.plot_activation_bins(axes[0], "relu")
    toy.plot_staircase(axes[1], 10.0)
    toy.plot_information(axes[2], [0, 1, 2], [0, 2, 1], limit=1.0, mark_peak=True)
    assert axes[1].get_title().endswith("2.04 bits")
    plt.close(fig)
    for frame in (toy.weight_frame(2.0, "relu", n_grid=11), toy.bins_frame(100, n_grid=11)):
        assert len(frame.axes) >= 1
        plt.close(frame)
    assert set(plt.get_fignums()) == before
