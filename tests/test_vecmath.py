"""`ibutils.vecmath`'s float32 functions against float64 NumPy: the exponential, log1p, and the
trainer's softplus with its slope, in ulp of the exact values, with and without flushed
subnormals; its softsign and fake quantisation against torch's and NumPy's arithmetic, bit for bit."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch

from ibutils import vecmath


@numba.njit
def _exp_all(x, out):
    for j in range(len(x)):
        out[j] = vecmath.exp(x[j])


@numba.njit
def _log1p_all(u, out):
    for j in range(len(u)):
        out[j] = vecmath.log1p(u[j])


def ulps(values: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """|values - exact| in units of float32's last place at `exact` (float64), on float32's normal
    range (exact >= 2**-126)."""
    assert np.all(np.abs(exact) >= 2.0**-126)
    return np.abs(values.astype(np.float64) - exact) / np.ldexp(1.0, np.frexp(exact)[1] - 24)


def test_exp_is_within_2_ulp_and_unbiased_down_to_the_smallest_normal():
    x = np.concatenate([np.linspace(-87.33, 0.0, 1_000_001), [-1e-30, -0.0]]).astype(np.float32)
    out = np.empty_like(x)
    _exp_all(x, out)
    relative = out / np.exp(x.astype(np.float64)) - 1
    assert np.abs(relative).max() < 2 * 2.0**-23
    assert abs(relative.mean()) < 1e-8  # no bias for the sums of many kernels


def test_exp_is_0_at_its_lowest_argument():
    x = np.array([-88.0, -87.9], np.float32)
    out = np.empty_like(x)
    _exp_all(x, out)
    assert out[0] == 0 and 0 <= out[1] < 2.0**-126


def test_log1p_is_within_1_ulp_on_0_to_1():
    u = np.concatenate([np.linspace(0.0, 1.0, 1_000_001), np.logspace(-37, -1, 10_001),
                        [np.sqrt(2) - 1, np.nextafter(np.float32(np.sqrt(2) - 1), 1)]]).astype(np.float32)
    u = u[u > 0]
    out = np.empty_like(u)
    _log1p_all(u, out)
    assert ulps(out, np.log1p(u.astype(np.float64))).max() <= 1
    assert vecmath.log1p(np.float32(0.0)) == 0


NET_INPUTS = np.concatenate([np.linspace(-87.3, 87.3, 2_000_001),
                             np.random.default_rng(0).normal(0, 4, 1_000_000)]).astype(np.float32)


@pytest.fixture(params=[False, True], ids=["subnormals kept", "subnormals flushed"])
def flushing(request):
    """Both states of the CPU's subnormal flushing (the trainer flushes), restored afterwards."""
    torch.set_flush_denormal(request.param)
    yield request.param
    torch.set_flush_denormal(False)


def test_softplus_and_its_slope_are_within_2_and_3_ulp(flushing):
    z = NET_INPUTS.copy()
    slope = np.empty_like(z)
    assert vecmath.softplus_(z, slope) is z
    exact = np.logaddexp(0.0, NET_INPUTS.astype(np.float64))
    exact_slope = 1 / (1 + np.exp(-NET_INPUTS.astype(np.float64)))
    normal = exact_slope >= 2.0**-126
    assert ulps(z[normal], exact[normal]).max() <= 1.7
    assert ulps(slope[normal], exact_slope[normal]).max() <= 2.8
    assert np.all(z[~normal] < 2.0**-126) and np.all(slope[~normal] < 2.0**-126)
    assert np.mean(ulps(z[normal], exact[normal])) < 0.25  # most values correctly rounded


def test_softplus_without_slope_gives_the_same_values():
    with_slope, without = NET_INPUTS.copy(), NET_INPUTS.copy()
    vecmath.softplus_(with_slope, np.empty_like(with_slope))
    vecmath.softplus_(without)
    assert np.array_equal(with_slope, without)


def test_softplus_at_the_ends_of_the_range():
    z = np.array([-1e30, -200.0, -88.0, 0.0, 17.0, 20.0, 100.0, 3e38], np.float32)
    slope = np.empty_like(z)
    vecmath.softplus_(z.reshape(2, 4), slope.reshape(2, 4))
    assert list(z[:3]) == [0, 0, 0] and list(slope[:3]) == [0, 0, 0]
    assert z[3] == np.float32(np.log(2)) and slope[3] == 0.5
    assert list(z[4:]) == [17.0, 20.0, 100.0, np.float32(3e38)] and list(slope[4:]) == [1, 1, 1, 1]


@pytest.mark.parametrize("z, slope, message", [
    (np.zeros(4), None, "z must be a C-contiguous float32 NumPy array, got a C-contiguous float64 array"),
    (np.zeros((4, 4), np.float32).T, None, "got a strided float32 array"),
    (torch.zeros(4), None, "got Tensor"),
    (np.zeros(4, np.float32), np.zeros(4), "slope must be a C-contiguous float32"),
    (np.zeros(4, np.float32), np.zeros(5, np.float32), r"slope must have z's shape \(4,\), got \(5,\)"),
])
def test_softplus_rejects_what_it_cannot_write_in_place(z, slope, message):
    with pytest.raises((TypeError, ValueError), match=message):
        vecmath.softplus_(z, slope)


def test_softsign_and_its_backward_are_torchs_arithmetic_bit_for_bit(flushing):
    rng = np.random.default_rng(1)
    z = np.concatenate([np.linspace(-100, 100, 200_001), rng.normal(0, 3, 100_000), [0.0, -0.0, 1e-40, 3e38, -3e38],
                        rng.normal(0, 1e-30, 1_000)]).astype(np.float32)
    dz = rng.normal(0, 1, len(z)).astype(np.float32)
    expected_h = torch.nn.functional.softsign(torch.from_numpy(z))
    expected_dz = torch.from_numpy(dz) * (1 - expected_h.abs()).square()
    h = vecmath.softsign_(z.copy())
    assert np.array_equal(h, expected_h.numpy())
    assert np.array_equal(vecmath.softsign_backward_(dz.copy(), h), expected_dz.numpy())


def test_softsign_backward_rejects_mismatched_arrays():
    with pytest.raises(ValueError, match=r"h must have dz's shape \(3,\), got \(4,\)"):
        vecmath.softsign_backward_(np.zeros(3, np.float32), np.zeros(4, np.float32))
    with pytest.raises(TypeError, match="h must be a C-contiguous float32 NumPy array, got a C-contiguous float64"):
        vecmath.softsign_backward_(np.zeros(3, np.float32), np.zeros(3))


@pytest.mark.parametrize("shape", [(50, 10, 256), (6, 3, 4096), (3, 1, 1)])
def test_quantise_rows_is_numpys_arithmetic_bit_for_bit(shape):
    """The trainer's fake quantisation, against its NumPy path (float64 layers still take it: the
    same operations in float32 give the same numbers), constant models included."""
    rng = np.random.default_rng(2)
    h = np.tanh(rng.normal(0, 3, shape)).astype(np.float32)
    h[0] = 0.25
    lo = h.min(axis=(1, 2), keepdims=True)
    step = (h.max(axis=(1, 2), keepdims=True) - lo) / 255
    step[step <= 0] = 1
    expected = np.rint((h - lo) / step) * step + lo
    ours = vecmath.quantise_rows_(h.copy().reshape(shape[0], -1), 8).reshape(shape)
    assert np.array_equal(ours.view(np.int32), expected.view(np.int32))
    assert len(np.unique(ours[-1])) <= 256 and np.all(ours[0] == 0.25)


@pytest.mark.parametrize("rows, bits, message", [
    (np.zeros((2, 0), np.float32), 8, r"rows must be \[S, n\] with n >= 1, got shape \(2, 0\)"),
    (np.zeros(4, np.float32), 8, r"rows must be \[S, n\]"),
    (np.zeros((2, 3), np.float32), 0, "bits must be an int in"),
    (np.zeros((2, 3), np.float32), True, "bits must be an int in"),
    (np.zeros((2, 3)), 8, "rows must be a C-contiguous float32"),
])
def test_quantise_rows_rejects_bad_input(rows, bits, message):
    with pytest.raises((TypeError, ValueError), match=message):
        vecmath.quantise_rows_(rows, bits)
