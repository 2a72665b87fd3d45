"""Tests behind the chapter on task-irrelevant inputs (Saxe et al. Fig. 6, SPEC 2.4 / E8).

`tests/test_linear.py` already checks `subspace_information` against joint-covariance
determinants, the chain rule, the full/empty limits, permutations and a Monte-Carlo estimate.
Here: closed forms for the geometry of the chapter (independent blocks, isotropic input), how the
two blocks' information adds up, its symmetries and small-signal limit, and the exact one-step
identity that explains why SGD, and not batch GD, sheds the irrelevant information.
"""

import math

import matplotlib
import numpy as np
import pytest

from ibutils import plots
from ibutils.linear import Teacher, gaussian_channel, init_students, subspace_information, train_students

matplotlib.use("Agg")


def blocks(rng, n_out=4, n_s=3, n_r=5):
    """Random weights [n_out, n_s + n_r] and the mask of the first n_s inputs (the block S)."""
    mask = np.arange(n_s + n_r) < n_s
    return rng.standard_normal((n_out, n_s + n_r)), mask


@pytest.mark.parametrize("a, b, var_x, noise_var", [([1.0, -2.0], [0.5, 0.5, 3.0], 0.2, 1.0),
                                                    ([0.1], [4.0], 1.0, 0.3), ([0.0, 0.0], [1.0], 0.5, 1.0)])
def test_one_unit_closed_form(a, b, var_x, noise_var):
    # T = a.x_S + b.x_R + Z: x_R adds variance |b|^2 v to the noise, so
    # I(T;X_S) = 1/2 log2((|a|^2 v + |b|^2 v + s^2) / (|b|^2 v + s^2))
    a, b = np.array(a), np.array(b)
    sig_a, sig_b = (a @ a) * var_x, (b @ b) * var_x
    expected = 0.5 * math.log2((sig_a + sig_b + noise_var) / (sig_b + noise_var))
    w = np.concatenate([a, b])[None, :]
    got = subspace_information(w, var_x, range(len(a)), noise_var)
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_blocks_read_by_separate_units_add_up():
    # T = [A x_S; B x_R] + Z: each unit group sees one block, so the two informations add up
    # to I(T;X) and each equals the plain channel information of its block
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((3, 4))
    w = np.block([[a, np.zeros((2, 4))], [np.zeros((3, 3)), b]])
    mask = np.arange(7) < 3
    var_x = 1 / 7
    i_s, i_r = subspace_information(w, var_x, mask), subspace_information(w, var_x, ~mask)
    assert i_s == pytest.approx(gaussian_channel(a, var_x), rel=1e-12)
    assert i_r == pytest.approx(gaussian_channel(b, var_x), rel=1e-12)
    assert i_s + i_r == pytest.approx(gaussian_channel(w, var_x), rel=1e-12)


def test_shared_units_make_the_blocks_superadditive():
    # independent blocks: I(T;X_R|X_S) = I(T, X_S; X_R) >= I(T;X_R), so I_S + I_R <= I(T;X),
    # strictly when the same units mix both blocks
    rng = np.random.default_rng(1)
    for _ in range(5):
        w, mask = blocks(rng)
        i_s, i_r = subspace_information(w, 0.3, mask), subspace_information(w, 0.3, ~mask)
        total = gaussian_channel(w, 0.3)
        assert 0 < i_s < total and 0 < i_r < total
        assert i_s + i_r < total - 1e-3


def test_a_block_without_weights_carries_nothing():
    # the teacher of Fig. 6 has zero weights on the irrelevant inputs: its output knows nothing of
    # them, however large the relevant weights; and a block that is alone carries everything
    rng = np.random.default_rng(2)
    w, mask = blocks(rng)
    w[:, ~mask] = 0.0
    assert subspace_information(100 * w, 0.5, ~mask) == pytest.approx(0.0, abs=1e-10)
    assert subspace_information(w, 0.5, mask) == pytest.approx(gaussian_channel(w, 0.5), rel=1e-13)


def test_symmetries():
    rng = np.random.default_rng(3)
    w, mask = blocks(rng, n_out=5)
    var_x, base = 0.2, subspace_information(w, 0.2, mask)
    # rotating the units (isotropic analysis noise) changes nothing
    q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    assert subspace_information(q @ w, var_x, mask) == pytest.approx(base, rel=1e-12)
    # nor does rotating the inputs inside either block (isotropic input covariance)
    rot = np.eye(8)
    rot[np.ix_(mask, mask)] = np.linalg.qr(rng.standard_normal((3, 3)))[0]
    rot[np.ix_(~mask, ~mask)] = np.linalg.qr(rng.standard_normal((5, 5)))[0]
    assert subspace_information(w @ rot, var_x, mask) == pytest.approx(base, rel=1e-12)
    # swapping the roles of the blocks (and the columns with them) swaps the values
    order = np.concatenate([np.flatnonzero(~mask), np.flatnonzero(mask)])
    swapped = subspace_information(w[:, order], var_x, np.arange(8) < 5)
    assert swapped == pytest.approx(subspace_information(w, var_x, ~mask), rel=1e-12)


def test_small_signal_limit():
    # for noise_var >> signal, 1/2 log2 det(I + M) ~ tr(M) / (2 ln 2): each block contributes its own
    # trace, so the blocks add up and I(T;X_S) ~ v ||W_S||_F^2 / (2 s^2 ln 2)
    rng = np.random.default_rng(4)
    w, mask = blocks(rng)
    noise_var, var_x = 1e6, 0.5
    expected = var_x * (w[:, mask] ** 2).sum() / (2 * noise_var * math.log(2))
    assert subspace_information(w, var_x, mask, noise_var) == pytest.approx(expected, rel=1e-4)


def test_sgd_step_imbalance_identity():
    """One exact step of the two-layer trainer: with G = dL/dW (W = W2 W1), the imbalance
    D = W1 W1^T - W2^T W2 changes by lr^2 (|G|^2 W2^T W2 - W1 G^T G W1^T): no first-order term.
    Batch GD's G vanishes at convergence; a minibatch's does not, so SGD keeps shrinking W1 outside
    the output's direction."""
    teacher, seeds, lr = Teacher(n_in=6, n_relevant=2), [7], 0.05
    x, y = teacher.sample(teacher.weights(seeds), 5, seeds)
    w1, w2 = (w[0].numpy() for w in init_students((6, 4, 1), "fan_in", seeds))
    run = train_students(teacher, 5, hidden=(4,), init_std="fan_in", lr=lr, epochs=1, batch_size=5,
                         seeds=seeds, n_snapshots=2, progress=False)
    v1, v2 = run.final_weights[0][0], run.final_weights[1][0]
    g = (x[0].numpy() @ (w2 @ w1).T - y[0].numpy()).T @ x[0].numpy()  # [1, 6], summed squared error
    change = (v1 @ v1.T - v2.T @ v2) - (w1 @ w1.T - w2.T @ w2)
    expected = lr**2 * ((g**2).sum() * w2.T @ w2 - w1 @ g.T @ g @ w1.T)
    assert np.abs(expected).max() > 1e-4  # a non-trivial step
    np.testing.assert_allclose(change, expected, rtol=1e-9, atol=1e-13)


def test_curve_panels():
    rng = np.random.default_rng(5)
    epochs = np.array([0, 1, 10, 100])
    values = rng.random((3, 4))  # [seeds, snapshots]
    fig = plots.curve_panels(epochs, {"A": ("bits", {"hidden": values}), "B": ("error", {"test": 2 * values})},
                             mark=10, title="t")
    assert len(fig.axes) == 2 and fig.axes[1].get_title() == "B"
    mean_line = fig.axes[0].get_lines()[0]
    np.testing.assert_allclose(mean_line.get_ydata(), values.mean(0))
    assert fig.axes[0].get_lines()[-1].get_xdata()[0] == 10  # the mark
    with pytest.raises(ValueError, match="panels"):
        plots.curve_panels(epochs, {})
    with pytest.raises(ValueError, match=r"\[seeds, snapshots\]"):
        plots.curve_panels(epochs, {"A": ("bits", {"hidden": values.T})})
