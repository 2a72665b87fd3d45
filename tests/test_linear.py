"""Tests for ibutils.linear: exact Gaussian information, exact test error, teacher, trainer.

Closed forms and exact cases first; then independent routes (joint-covariance determinants in
NumPy, Monte-Carlo from samples) so that no test just re-evaluates the module's own formula.
"""

import functools
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from ibutils import experiments, gradients, infoplane, linear, mi
from ibutils.linear import (
    Teacher,
    _rng,
    expected_test_error,
    gaussian_channel,
    gradient_figure,
    gaussian_label_information,
    init_students,
    layer_gradients,
    live_figure,
    log_epochs,
    run_figure,
    subspace_information,
    sweep,
    sweep_frame,
    sweep_jobs,
    train_students,
)
from test_cache import assert_identical


def half_log2det(m):
    return 0.5 * np.linalg.slogdet(m)[1] / math.log(2)


def random_cov(rng, n):
    a = rng.standard_normal((n, n))
    return a @ a.T / n + 0.2 * np.eye(n)


def joint_mi_bits(cov, a, b):
    """I(A;B) = 1/2 log2(|S_A||S_B|/|S_AB|) from a joint covariance and index lists a, b."""
    ab = list(a) + list(b)
    block = lambda idx: half_log2det(cov[np.ix_(idx, idx)])
    return block(a) + block(b) - block(ab)


def joint_cov_tx(w, cov_x, noise_var):
    """Covariance of (T, X) for T = W X + Z: [[W S W^T + s I, W S], [S W^T, S]]."""
    n_t = w.shape[0]
    top = np.hstack([w @ cov_x @ w.T + noise_var * np.eye(n_t), w @ cov_x])
    return np.vstack([top, np.hstack([cov_x @ w.T, cov_x])])


# ---------------------------------------------------------------------------------------------
# gaussian_channel
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("w, var_x, noise_var", [(0.7, 2.0, 1.0), (3.0, 0.01, 0.5), (0.0, 1.0, 1.0)])
def test_channel_scalar_closed_form(w, var_x, noise_var):
    expected = 0.5 * math.log2(1 + w**2 * var_x / noise_var)
    assert gaussian_channel([[w]], var_x, noise_var) == pytest.approx(expected, abs=1e-14)


def test_channel_orthogonal_closed_form():
    # W = sqrt(s) Q with Q orthogonal, cov_x = c I: n/2 log2(1 + s c / noise_var)
    n, s, c, noise_var = 7, 3.0, 0.1, 0.4
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((n, n)))
    expected = n / 2 * math.log2(1 + s * c / noise_var)
    assert gaussian_channel(math.sqrt(s) * q, c, noise_var) == pytest.approx(expected, rel=1e-12)


def test_channel_rank_deficient():
    rng = np.random.default_rng(1)
    u, v = rng.standard_normal((6, 1)), rng.standard_normal((4, 1))
    # rank one, more outputs than inputs: 1/2 log2(1 + |u|^2 |v|^2 / noise_var) for cov_x = I
    expected = 0.5 * math.log2(1 + (u**2).sum() * (v**2).sum() / 2.0)
    assert gaussian_channel(u @ v.T, np.eye(4), 2.0) == pytest.approx(expected, rel=1e-12)
    assert gaussian_channel(np.zeros((3, 5)), 1.0) == 0.0
    # tall W = [A; 0] carries exactly what A carries
    a = rng.standard_normal((2, 3))
    tall = np.vstack([a, np.zeros((4, 3))])
    assert gaussian_channel(tall, 0.5) == pytest.approx(gaussian_channel(a, 0.5), rel=1e-13)


def test_channel_general_cov_and_batch():
    rng = np.random.default_rng(2)
    cov = random_cov(rng, 4)
    w = rng.standard_normal((3, 2, 4))
    got = gaussian_channel(w, cov, 0.7)
    assert got.shape == (3,)
    for i in range(3):
        expected = joint_mi_bits(joint_cov_tx(w[i], cov, 0.7), [0, 1], [2, 3, 4, 5])
        assert got[i] == pytest.approx(expected, rel=1e-10)
    # torch input gives the same values
    np.testing.assert_allclose(gaussian_channel(torch.from_numpy(w), cov, 0.7), got, rtol=1e-14)


def test_channel_monte_carlo_mixture_density():
    """I = E[log p(t|x) - log p(t)] with p(t) the exact mixture over fresh x_j: no Gaussian marginal used."""
    rng = np.random.default_rng(3)
    w, noise_var, n = np.array([[1.2, -0.5], [0.3, 0.9]]), 0.5, 3000
    x = rng.standard_normal((n, 2))
    t = x @ w.T + math.sqrt(noise_var) * rng.standard_normal((n, 2))
    centres = rng.standard_normal((n, 2)) @ w.T
    log_cond = -((t - x @ w.T) ** 2).sum(1) / (2 * noise_var)
    d2 = ((t[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
    log_marg = np.log(np.exp(-d2 / (2 * noise_var)).mean(1))
    estimate = (log_cond - log_marg).mean() / math.log(2)
    assert estimate == pytest.approx(gaussian_channel(w, 1.0, noise_var), abs=0.05)


def test_channel_monte_carlo_sample_covariance():
    rng = np.random.default_rng(4)
    w, cov = rng.standard_normal((2, 3)), random_cov(rng, 3)
    x = rng.multivariate_normal(np.zeros(3), cov, size=1_000_000)
    t = x @ w.T + rng.standard_normal((1_000_000, 2))
    estimate = half_log2det(np.cov(t.T)) - half_log2det(np.cov((t - x @ w.T).T))
    assert estimate == pytest.approx(gaussian_channel(w, cov), abs=0.01)


def test_channel_against_kde_bounds_on_samples():
    """mi.kde on samples of W X tends to exact closed forms built on gaussian_channel.

    For t_j = W x_j, x_j ~ N(0, cov), S = W cov W^T, the pairwise-KL (upper) estimate with noise
    variance s tends, as N grows, to -E_i log E_j exp(-|t_i - t_j|^2 / 2s) =
    I(s) + 1/2 tr(S (S + s I)^-1) nats, with I(s) the exact channel information; the Bhattacharyya
    (lower) estimate is the same with 4s. The gaussian_channel value lies between the two.
    """
    rng = np.random.default_rng(13)
    w, cov, noise_var, n = np.array([[1.5, -0.4], [0.2, 0.8]]), np.array([[1.0, 0.3], [0.3, 0.5]]), 0.5, 2500
    x = rng.multivariate_normal(np.zeros(2), cov, size=n)
    bounds = mi.kde(x @ w.T, np.zeros(n, dtype=int), noise_var=noise_var)
    s = w @ cov @ w.T
    offset = lambda v: 0.5 * np.trace(s @ np.linalg.inv(s + v * np.eye(2))) / math.log(2)
    assert bounds.upper.i_xt == pytest.approx(gaussian_channel(w, cov, noise_var) + offset(noise_var), abs=0.02)
    assert bounds.lower.i_xt == pytest.approx(gaussian_channel(w, cov, 4 * noise_var) + offset(4 * noise_var),
                                              abs=0.02)
    assert bounds.lower.i_xt < gaussian_channel(w, cov, noise_var) < bounds.upper.i_xt


# ---------------------------------------------------------------------------------------------
# gaussian_label_information
# ---------------------------------------------------------------------------------------------


def test_label_information_perfect_student():
    # T = W0 X + Z and Y = W0 X + eps: two noisy copies of the signal s = W0 S W0^T
    rng = np.random.default_rng(5)
    w0, var_x, noise_var, out_var = rng.standard_normal((1, 10)), 0.1, 1.0, 0.5
    s = float((w0 @ w0.T)[0, 0]) * var_x
    rho2 = s**2 / ((s + noise_var) * (s + out_var))
    got = gaussian_label_information(w0, w0, var_x, noise_var, out_var)
    assert got == pytest.approx(-0.5 * math.log2(1 - rho2), rel=1e-12)
    # a noiseless perfect student knows all the input tells about Y: I(X;Y) = 1/2 log2(1 + s / out_var)
    big = gaussian_label_information(w0, w0, var_x, 1e-9, out_var)
    assert big == pytest.approx(0.5 * math.log2(1 + s / out_var), rel=1e-7)


def test_label_information_exact_cases_and_joint_route():
    rng = np.random.default_rng(6)
    w0 = np.array([[1.0, 0.0, 0.0]])
    assert gaussian_label_information(np.array([[0.0, 2.0, -1.0]]), w0, 1.0) == pytest.approx(0.0, abs=1e-15)
    assert gaussian_label_information(np.zeros((4, 3)), w0, 1.0) == pytest.approx(0.0, abs=1e-15)
    cov = random_cov(rng, 5)
    w, w0 = rng.standard_normal((3, 5)), rng.standard_normal((2, 5))
    # joint covariance of (T, Y) (SPEC 2.4 / App. G with cov_x restored)
    s_t = w @ cov @ w.T + 0.8 * np.eye(3)
    s_y = w0 @ cov @ w0.T + 0.3 * np.eye(2)
    joint = np.block([[s_t, w @ cov @ w0.T], [w0 @ cov @ w.T, s_y]])
    expected = joint_mi_bits(joint, [0, 1, 2], [3, 4])
    got = gaussian_label_information(w, w0, cov, 0.8, 0.3)
    assert got == pytest.approx(expected, rel=1e-10)
    # data processing: I(T;Y) <= min(I(T;X), I(X;Y))
    assert got <= min(gaussian_channel(w, cov, 0.8), gaussian_channel(w0, cov, 0.3))


def test_label_information_broadcasts_over_seeds():
    rng = np.random.default_rng(7)
    w, w0 = rng.standard_normal((4, 3, 6)), rng.standard_normal((4, 1, 6))
    got = gaussian_label_information(w, w0, 1 / 6)
    assert got.shape == (4,)
    assert got[2] == pytest.approx(gaussian_label_information(w[2], w0[2], 1 / 6), rel=1e-13)


# ---------------------------------------------------------------------------------------------
# subspace_information
# ---------------------------------------------------------------------------------------------


def test_subspace_limits():
    rng = np.random.default_rng(8)
    w, cov = rng.standard_normal((3, 5)), random_cov(rng, 5)
    assert subspace_information(w, cov, range(5)) == pytest.approx(gaussian_channel(w, cov), rel=1e-13)
    assert subspace_information(w, cov, []) == 0.0
    assert subspace_information(w, cov, np.zeros(5, bool)) == 0.0


def test_subspace_against_joint_covariance_and_chain_rule():
    rng = np.random.default_rng(9)
    n_t, n_in, noise_var = 3, 6, 0.6
    w, cov = rng.standard_normal((n_t, n_in)), random_cov(rng, n_in)  # correlated blocks
    s, r = [1, 4], [0, 2, 3, 5]
    joint = joint_cov_tx(w, cov, noise_var)  # order: T (0..2), X (3..8)
    t_idx, xs, xr = list(range(n_t)), [n_t + i for i in s], [n_t + i for i in r]
    i_s = subspace_information(w, cov, s, noise_var)
    assert i_s == pytest.approx(joint_mi_bits(joint, t_idx, xs), rel=1e-10)
    # I(T;X_R|X_S) = 1/2 log2(|S_TS| |S_RS| / (|S_S| |S_TRS|)), from the joint covariance alone
    sub = lambda idx: half_log2det(joint[np.ix_(idx, idx)])
    conditional = sub(t_idx + xs) + sub(xr + xs) - sub(xs) - sub(t_idx + xr + xs)
    assert i_s + conditional == pytest.approx(gaussian_channel(w, cov, noise_var), rel=1e-10)


def test_subspace_independent_blocks_formula_and_symmetry():
    rng = np.random.default_rng(10)
    w, var_x, noise_var = rng.standard_normal((4, 7)), 1 / 7, 1.0
    mask = np.array([1, 1, 0, 0, 1, 0, 0], bool)
    # SPEC 2.4: 1/2 log|S_T| - 1/2 log|W_R S_RR W_R^T + s I| for independent blocks
    s_t = var_x * w @ w.T + noise_var * np.eye(4)
    w_r = w[:, ~mask]
    expected = half_log2det(s_t) - half_log2det(var_x * w_r @ w_r.T + noise_var * np.eye(4))
    assert subspace_information(w, var_x, mask, noise_var) == pytest.approx(expected, rel=1e-12)
    by_index = subspace_information(w, var_x, np.flatnonzero(mask), noise_var)
    assert by_index == pytest.approx(expected, rel=1e-14)
    # permuting input coordinates (columns of W, rows/cols of cov_x, the subset) changes nothing
    cov = random_cov(rng, 7)
    perm = rng.permutation(7)
    before = subspace_information(w, cov, mask, noise_var)
    after = subspace_information(w[:, perm], cov[np.ix_(perm, perm)], mask[perm], noise_var)
    assert after == pytest.approx(before, rel=1e-11)
    # batched over leading dimensions
    wb = rng.standard_normal((2, 3, 4, 7))
    got = subspace_information(wb, cov, mask, noise_var)
    assert got.shape == (2, 3)
    assert got[1, 2] == pytest.approx(subspace_information(wb[1, 2], cov, mask, noise_var), rel=1e-13)


def test_subspace_monte_carlo_sample_covariance():
    rng = np.random.default_rng(11)
    w, cov = rng.standard_normal((2, 3)), random_cov(rng, 3)
    x = rng.multivariate_normal(np.zeros(3), cov, size=1_000_000)
    t = x @ w.T + rng.standard_normal((1_000_000, 2))
    estimate = joint_mi_bits(np.cov(np.hstack([t, x[:, :1]]).T), [0, 1], [2])
    assert estimate == pytest.approx(subspace_information(w, cov, [0]), abs=0.01)


# ---------------------------------------------------------------------------------------------
# expected_test_error
# ---------------------------------------------------------------------------------------------


def test_expected_test_error_closed_form():
    rng = np.random.default_rng(12)
    w, w0 = rng.standard_normal((1, 20)), rng.standard_normal((1, 20))
    expected = ((w0 - w) ** 2).sum() / 20 + 0.7
    assert expected_test_error(w, w0, 1 / 20, 0.7) == pytest.approx(expected, rel=1e-13)
    assert expected_test_error(w0, w0, 1 / 20, 0.7) == pytest.approx(0.7, rel=1e-15)


def test_expected_test_error_against_fresh_samples():
    teacher = Teacher(n_in=10, n_out=2, snr=2.0)
    seeds = [0, 1]
    w0 = teacher.weights(seeds)
    w = w0 + 0.8 * torch.randn(w0.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x, y = teacher.sample(w0, 200_000, seeds, "test")
    empirical = ((y - x @ w.transpose(1, 2)) ** 2).sum(-1).mean(-1).numpy()
    np.testing.assert_allclose(empirical, teacher.test_error(w, w0), rtol=0.015)


# ---------------------------------------------------------------------------------------------
# Teacher
# ---------------------------------------------------------------------------------------------


def test_teacher_weights_and_data():
    teacher = Teacher(n_in=10, n_out=1, snr=4.0, sigma_w=2.0, n_relevant=3)
    assert teacher.output_noise_var == 1.0 and teacher.input_var == 0.1
    np.testing.assert_array_equal(teacher.relevant, np.arange(10) < 3)
    w0 = teacher.weights([5, 6])
    assert w0.shape == (2, 1, 10) and (w0[..., 3:] == 0).all() and (w0[..., :3] != 0).all()
    # each seed's draws depend on that seed alone, and repeat exactly
    torch.testing.assert_close(teacher.weights([6])[0], w0[1], rtol=0, atol=0)
    x, y = teacher.sample(w0, 8, [5, 6])
    x6, y6 = teacher.sample(w0[1:], 8, [6])
    assert x.shape == (2, 8, 10) and y.shape == (2, 8, 1)
    torch.testing.assert_close(x[1], x6[0], rtol=0, atol=0)
    torch.testing.assert_close(y[1], y6[0], rtol=0, atol=0)
    assert not torch.equal(teacher.sample(w0, 8, [5, 6], "test")[0], x)


def test_log_epochs():
    e = log_epochs(1000, 10)
    assert e[0] == 0 and e[-1] == 1000 and (np.diff(e) > 0).all() and len(e) <= 10
    np.testing.assert_array_equal(log_epochs(3, 10), [0, 1, 2, 3])
    np.testing.assert_array_equal(log_epochs(343, 2), [0, 343])


# ---------------------------------------------------------------------------------------------
# Trainer
# ---------------------------------------------------------------------------------------------


def test_batch_gd_reaches_least_squares():
    teacher = Teacher(n_in=5, n_out=1)
    run = train_students(teacher, 20, hidden=(6,), init_std=0.3, lr=0.05, epochs=3000, seeds=[0, 1],
                         n_snapshots=12, progress=False)
    x, y = teacher.sample(teacher.weights([0, 1]), 20, [0, 1])
    w_ls = torch.linalg.solve(x.transpose(1, 2) @ x, x.transpose(1, 2) @ y).transpose(1, 2)
    w_tot = torch.from_numpy(run.final_weights[1] @ run.final_weights[0])
    torch.testing.assert_close(w_tot, w_ls, rtol=1e-6, atol=1e-6)
    residual = ((y - x @ w_ls.transpose(1, 2)) ** 2).sum(-1).mean(-1)
    np.testing.assert_allclose(run.train_error[:, -1], residual, rtol=1e-8)
    assert (np.diff(run.train_error, axis=1) <= 1e-12).all()  # small-lr batch GD never increases the loss


def test_descent_step_matches_autograd():
    teacher = Teacher(n_in=6, n_out=2)
    kw = dict(hidden=(4, 3), init_std=0.5, lr=1e-3, epochs=1, seeds=[3], n_snapshots=2, progress=False)
    x, y = teacher.sample(teacher.weights([3]), 10, [3])
    for batch_size in (None, 10):  # one step on all 10 examples, by either code path
        run = train_students(teacher, 10, batch_size=batch_size, **kw)
        ws = [w.requires_grad_() for w in init_students((6, 4, 3, 2), 0.5, [3])]
        loss = 0.5 * ((x @ (ws[2] @ ws[1] @ ws[0]).transpose(1, 2) - y) ** 2).sum()
        loss.backward()
        for w, final in zip(ws, run.final_weights):
            np.testing.assert_allclose(final, (w - 1e-3 * w.grad).detach().numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("batch_size", [None, 5])
def test_vectorised_seeds_equal_single_runs_and_deterministic(batch_size):
    teacher = Teacher(n_in=8, n_out=1, n_relevant=3)
    kw = dict(hidden=(7, 5), init_std="fan_in", lr=0.02, epochs=30, batch_size=batch_size, n_snapshots=6,
              progress=False)
    together = train_students(teacher, 20, seeds=[0, 4], **kw)
    again = train_students(teacher, 20, seeds=[0, 4], **kw)
    np.testing.assert_array_equal(together.i_xt, again.i_xt)
    alone = train_students(teacher, 20, seeds=[4], **kw)
    for name in ("i_xt", "i_ty", "i_x_relevant", "i_x_irrelevant", "train_error", "test_error"):
        np.testing.assert_allclose(getattr(together, name)[1], getattr(alone, name)[0],
                                   rtol=1e-10, atol=1e-13)


def test_float32_training_tracks_float64():
    kw = dict(hidden=(8,), init_std=0.1, lr=0.02, epochs=50, batch_size=5, seeds=[0, 1], n_snapshots=5,
              progress=False)
    single = train_students(Teacher(n_in=8), 20, dtype=torch.float32, **kw)
    double = train_students(Teacher(n_in=8), 20, **kw)
    np.testing.assert_allclose(single.i_xt, double.i_xt, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(single.test_error, double.test_error, rtol=1e-5)


def test_run_records_exact_quantities():
    teacher = Teacher(n_in=10, n_out=1, n_relevant=4)
    run = train_students(teacher, 10, hidden=(6,), init_std=0.2, lr=0.05, epochs=40, batch_size=5,
                         seeds=[1, 2], n_snapshots=5, progress=False)
    k, n_layers = len(run.epochs), 2
    assert run.i_xt.shape == run.i_ty.shape == run.i_x_relevant.shape == (2, k, n_layers)
    assert run.train_error.shape == run.test_error.shape == (2, k)
    w1, w2 = run.final_weights
    layers = [w1, w2 @ w1]
    for layer, m in enumerate(layers):
        np.testing.assert_allclose(run.i_xt[:, -1, layer], gaussian_channel(m, 0.1), rtol=1e-12)
        i_ty = gaussian_label_information(m, run.w0, 0.1)
        np.testing.assert_allclose(run.i_ty[:, -1, layer], i_ty, rtol=1e-10)
        i_irr = subspace_information(m, 0.1, range(4, 10))
        np.testing.assert_allclose(run.i_x_irrelevant[:, -1, layer], i_irr, rtol=1e-12)
    test_error = expected_test_error(layers[-1], run.w0, 0.1, 1.0)
    np.testing.assert_allclose(run.test_error[:, -1], test_error, rtol=1e-12)
    # relevant and irrelevant blocks are independent here, so each is at most the total
    assert (run.i_x_relevant <= run.i_xt + 1e-12).all() and (run.i_x_irrelevant <= run.i_xt + 1e-12).all()
    assert train_students(Teacher(n_in=4), 4, hidden=(3,), init_std=0.0, lr=0.1, epochs=2, n_snapshots=2,
                          progress=False).i_x_relevant is None


def autograd_gradients(ws, x, y):
    """Per-example gradients of 1/2 ||W_L...W_1 x - y||^2 by autograd, per layer [S, B, n_l, n_{l-1}]."""
    per_layer = [[] for _ in ws]
    for b in range(x.shape[1]):
        leaves = [w.detach().clone().requires_grad_() for w in ws]
        out = x[:, b : b + 1]
        for w in leaves:
            out = out @ w.transpose(1, 2)
        (0.5 * ((out - y[:, b : b + 1]) ** 2).sum()).backward()
        for kept, w in zip(per_layer, leaves):
            kept.append(w.grad)
    return [torch.stack(kept, 1) for kept in per_layer]


def test_layer_gradients_match_autograd():
    teacher = Teacher(n_in=5, n_out=2)
    ws = init_students((5, 4, 3, 2), 0.7, [0, 1])
    x, y = teacher.sample(teacher.weights([0, 1]), 6, [0, 1])
    expected = autograd_gradients(ws, x, y)
    per_sample = layer_gradients(ws, x, y, per_sample=True)
    batch = layer_gradients(ws, x, y)
    for e, p, b in zip(expected, per_sample, batch):
        assert p.shape == e.shape and b.shape == (2, 1, *e.shape[2:])
        torch.testing.assert_close(p, e, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(b[:, 0], e.sum(1), rtol=1e-12, atol=1e-14)


def test_batch_gd_gradient_statistics_are_per_sample_at_the_epoch_start():
    teacher, seeds = Teacher(n_in=3), [0, 1]
    kw = dict(hidden=(2,), init_std=0.5, lr=0.05, seeds=seeds, progress=False)
    run = train_students(teacher, 8, epochs=3, n_snapshots=4, gradient_stats="sample", **kw)
    before = train_students(teacher, 8, epochs=2, n_snapshots=2, **kw).final_weights  # weights entering epoch 3
    x, y = teacher.sample(teacher.weights(seeds), 8, seeds)
    grads = autograd_gradients([torch.from_numpy(w) for w in before], x, y)
    g = run.grad_stats
    assert g.mode == "sample" and list(g.epochs) == [1, 2, 3] and g.snr.shape == (2, 3, 2)
    for layer, per_sample in enumerate(grads):
        stats = gradients.statistics(per_sample.transpose(0, 1))
        np.testing.assert_allclose(g.mean[:, 2, layer], stats.mean, rtol=1e-10)
        np.testing.assert_allclose(g.std[:, 2, layer], stats.std, rtol=1e-10)
        np.testing.assert_allclose(g.snr[:, 2, layer], stats.snr, rtol=1e-10)
        np.testing.assert_allclose(run.weight_norm[:, -1, layer],
                                   np.linalg.norm(run.final_weights[layer], axis=(1, 2)), rtol=1e-13)
    np.testing.assert_array_equal(g.weight_norm, run.weight_norm[:, 1:])


def test_sgd_gradient_statistics_follow_the_training_steps():
    """Minibatch statistics of epoch 1 = those of an autograd SGD loop with the trainer's shuffles."""
    teacher, seeds, n, batch, lr = Teacher(n_in=4), [2, 3], 12, 3, 0.1
    run = train_students(teacher, n, hidden=(3,), init_std=0.4, lr=lr, epochs=1, batch_size=batch, seeds=seeds,
                         n_snapshots=2, gradient_stats="minibatch", progress=False)
    x, y = teacher.sample(teacher.weights(seeds), n, seeds)
    ws = init_students((4, 3, 1), 0.4, seeds)
    order = torch.from_numpy(np.stack([_rng(s, "shuffle").random(n).argsort() for s in seeds]))
    rows, kept = torch.arange(len(seeds))[:, None], [[], []]
    for start in range(0, n, batch):
        idx = order[:, start : start + batch]
        step = [g.sum(1) for g in autograd_gradients(ws, x[rows, idx], y[rows, idx])]
        for layer, g in enumerate(step):
            kept[layer].append(g)
            ws[layer] = ws[layer] - lr * g
    for layer in range(2):
        stats = gradients.statistics(torch.stack(kept[layer]))
        np.testing.assert_allclose(run.grad_stats.mean[:, 0, layer], stats.mean, rtol=1e-10)
        np.testing.assert_allclose(run.grad_stats.std[:, 0, layer], stats.std, rtol=1e-10)
        np.testing.assert_allclose(run.final_weights[layer], ws[layer].numpy(), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("batch_size, mode", [(None, "sample"), (None, "minibatch"), (4, "minibatch"), (4, "sample")])
def test_recording_gradients_leaves_training_unchanged(batch_size, mode):
    kw = dict(hidden=(5, 3), init_std=0.3, lr=0.02, epochs=40, batch_size=batch_size, seeds=[0, 1],
              n_snapshots=7, progress=False)
    plain = train_students(Teacher(n_in=6), 16, **kw)
    recorded = train_students(Teacher(n_in=6), 16, gradient_stats=mode, **kw)
    np.testing.assert_array_equal(plain.i_xt, recorded.i_xt)
    np.testing.assert_array_equal(plain.test_error, recorded.test_error)
    assert plain.grad_stats is None and recorded.grad_stats.snr.shape == (2, len(plain.epochs) - 1, 3)
    if batch_size is None and mode == "minibatch":  # a single gradient per epoch: no spread
        np.testing.assert_array_equal(recorded.grad_stats.std, 0.0)


def test_series_and_overtraining():
    run = train_students(Teacher(n_in=6, n_relevant=2), 6, hidden=(4,), init_std=0.2, lr=0.05, epochs=50,
                         seeds=[0, 1, 2], n_snapshots=8, gradient_stats="sample", progress=False)
    k = len(run.epochs)
    np.testing.assert_allclose(run.overtraining, run.test_error[:, -1] - run.test_error.min(1))
    assert (run.overtraining >= 0).all()
    series = run.series()
    assert series["layers"] == ["hidden 1", "output"] == run.layer_names
    assert np.shape(series["i_xt"]) == np.shape(series["i_ty_sd"]) == np.shape(series["weight_norm"]) == (2, k)
    np.testing.assert_allclose(series["i_xt"][1], run.i_xt[:, :, 1].mean(0))
    np.testing.assert_allclose(series["test_error"], run.test_error.mean(0))
    np.testing.assert_allclose(series["largest_decrease"], infoplane.largest_drop(run.i_xt, axis=1).max(0))
    assert np.shape(series["i_x_irrelevant"]) == (2, k) and np.shape(series["grad_snr"]) == (2, k - 1)
    assert series["overtraining"] == pytest.approx(run.overtraining.mean())
    np.testing.assert_allclose(run.final_map, run.final_weights[1] @ run.final_weights[0])
    fig = gradient_figure({"recorded": run})
    assert len(fig.axes) == 3
    plt.close(fig)


_JOB = dict(teacher=Teacher(n_in=4), n_train=8, hidden=(3,), init_std=0.1, lr=0.02, epochs=20, seeds=[0, 1],
            n_snapshots=4)


def test_sweep_runs_the_grid():
    kw = dict(hidden=(3,), init_std=0.1, lr=0.02, epochs=20, seeds=[0, 1], n_snapshots=4)
    runs = sweep([4, 8], [0.5, 2.0], n_in=4, progress=False, **kw)
    assert list(runs) == [(4, 0.5), (8, 0.5), (4, 2.0), (8, 2.0)]
    alone = train_students(Teacher(n_in=4, snr=2.0), 4, progress=False, **kw)
    np.testing.assert_array_equal(runs[(4, 2.0)].test_error, alone.test_error)
    fig = sweep_frame(runs, 8, 0.5)
    assert len(fig.axes) == 4  # three panels and a colour bar
    plt.close(fig)
    with pytest.raises(ValueError, match="not in the sweep"):
        sweep_frame(runs, 6, 0.5)
    fig = run_figure(runs[(4, 0.5)], title="t")
    assert len(fig.axes) == 3
    plt.close(fig)
    with pytest.raises(ValueError, match="gradient statistics"):
        gradient_figure({"no stats": runs[(4, 0.5)]})
    fig = live_figure(n_train=8, n_in=4, width=3, epochs=10, seeds=2)
    assert len(fig.axes) == 3
    plt.close(fig)


def test_divergence_is_reported():
    with pytest.raises(FloatingPointError, match="lower lr"):
        train_students(Teacher(n_in=4), 40, hidden=(4,), init_std=1.0, lr=50.0, epochs=200, n_snapshots=3,
                       seeds=[0], progress=False)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: gaussian_channel([1.0, 2.0], 1.0), "w must have at least 2 dimensions"),
        (lambda: gaussian_channel([[1.0, np.nan]], 1.0), "w must be finite"),
        (lambda: gaussian_channel(np.ones((2, 3)), np.eye(2)), "cov_x must be a scalar variance or an \\[3"),
        (lambda: gaussian_channel(np.ones((2, 2)), np.array([[1.0, 0.5], [0.0, 1.0]])), "symmetric"),
        (lambda: gaussian_channel(np.ones((2, 2)), np.diag([1.0, -1.0])), "positive semi-definite"),
        (lambda: gaussian_channel(np.ones((2, 2)), -1.0), "cov_x must be a finite number >= 0"),
        (lambda: gaussian_channel(np.ones((2, 2)), 1.0, 0.0), "noise_var must be a finite number > 0"),
        (lambda: gaussian_label_information(np.ones((2, 3)), np.ones((1, 4)), 1.0), "w0 must have n_in = 3"),
        (lambda: gaussian_label_information(np.ones((2, 3)), np.ones((1, 3)), 1, 1, 0), "output_noise_var"),
        (lambda: gaussian_label_information(np.ones((2, 2, 3)), np.ones((3, 1, 3)), 1.0), "must broadcast"),
        (lambda: subspace_information(np.ones((2, 3)), 1.0, [0, 3]), "subset must be"),
        (lambda: subspace_information(np.ones((2, 3)), 1.0, [0, 0]), "subset must be"),
        (lambda: subspace_information(np.ones((2, 3)), 1.0, np.ones(2, bool)), "mask must have shape"),
        (lambda: expected_test_error(np.ones((1, 3)), np.ones((2, 3)), 1.0), "w0 must have the shape"),
        (lambda: expected_test_error(np.ones((1, 3)), np.ones((1, 3)), 1.0, -1.0), "output_noise_var"),
        (lambda: Teacher(n_in=0), "n_in must be a positive integer"),
        (lambda: Teacher(snr=0.0), "snr must be"),
        (lambda: Teacher(n_in=10, n_relevant=10), "n_relevant must be"),
        (lambda: Teacher(n_in=3).sample(torch.zeros(1, 1, 3), 0, [0]), "n_samples must be"),
        (lambda: Teacher(n_in=3).sample(torch.zeros(2, 1, 3), 5, [0]), "w0 must have shape \\(1, 1, 3\\)"),
        (lambda: Teacher(n_in=3).sample(torch.zeros(1, 1, 3), 5, [0], "valid"), "stream must be"),
        (lambda: Teacher().weights([]), "seeds must be"),
        (lambda: init_students((3, 2), "xavier", [0]), "init_std must be a number >= 0 or 'fan_in'"),
        (lambda: log_epochs(0, 10), "epochs must be"),
        (lambda: log_epochs(10, 1), "n_snapshots must be"),
        (lambda: train_students(Teacher(n_in=4), 10, lr=0.1, epochs=5, batch_size=3), "batch_size must be"),
        (lambda: train_students(Teacher(n_in=4), 10, lr=-0.1, epochs=5), "lr must be"),
        (lambda: train_students(Teacher(n_in=4), 10, hidden=(0,), lr=0.1, epochs=5), "hidden must be"),
        (lambda: train_students(Teacher(n_in=4), 0, lr=0.1, epochs=5), "n_train must be"),
        (lambda: train_students("teacher", 10, lr=0.1, epochs=5), "teacher must be a Teacher"),
        (lambda: train_students(Teacher(n_in=4), 10, lr=0.1, epochs=5, threads=0), "threads must be"),
        (lambda: train_students(Teacher(n_in=4), 10, lr=0.1, epochs=5, dtype=torch.int64), "dtype must be"),
        (lambda: train_students(Teacher(n_in=4), 10, lr=0.1, epochs=5, gradient_stats="all"), "gradient_stats must"),
        (lambda: layer_gradients([], torch.zeros(1, 2, 3), torch.zeros(1, 2, 1)), "weights must be"),
        (lambda: layer_gradients([torch.zeros(1, 1, 3)], torch.zeros(1, 2, 4), torch.zeros(1, 2, 1)), "x must be"),
        (lambda: layer_gradients([torch.zeros(1, 1, 3)], torch.zeros(1, 2, 3), torch.zeros(1, 3, 1)), "y must be"),
        (lambda: sweep([], [1.0], lr=0.1, epochs=2), "n_trains and snrs must be non-empty"),
        (lambda: sweep_jobs([4], [1.0], n_train=4, lr=0.1, epochs=2), r"must not give \['n_train'\]: each job's"),
        (lambda: experiments.linear_students([{}]), "jobs must be a mapping"),
        (lambda: experiments.linear_students({"a": 3}), r"jobs\['a'\] must be a mapping"),
        (lambda: experiments.linear_students({"a": {"n_train": 4, "lr": 0.1}}), "must give a linear.Teacher"),
        (lambda: experiments.linear_students({"a": {**_JOB, "epoch": 2}}), "unexpected keyword argument 'epoch'"),
        (lambda: experiments.linear_students({"a": {**_JOB, "progress": False}}), r"must not set \['progress'\]"),
    ],
)
def test_bad_input_raises(call, match, tmp_path, monkeypatch):
    monkeypatch.setenv("IBUTILS_CACHE_DIR", str(tmp_path))
    with pytest.raises(ValueError, match=match):
        call()


def test_students_side_by_side_equal_one_process_and_are_cached(tmp_path, monkeypatch):
    """`experiments.linear_students` on a local cluster of two worker processes gives every run bit
    for bit as `train_students` here; a second call reads them all from the run cache."""
    monkeypatch.setenv("IBUTILS_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("IBUTILS_SCHEDULER", raising=False)
    settings = {key: value for key, value in _JOB.items() if key not in ("teacher", "n_train")}
    jobs = {"sgd": {**_JOB, "batch_size": 2, "seeds": range(3)},
            ("deep", 2): {**_JOB, "hidden": (3, 2), "seeds": [4], "gradient_stats": "sample"},
            **{("sweep", *key): job for key, job in sweep_jobs([4, 8], [2.0], n_in=3, **settings).items()}}
    runs = experiments.linear_students(jobs, workers=2, progress=False)
    assert list(runs) == list(jobs)
    for name, job in jobs.items():
        assert_identical(runs[name], train_students(**job, progress=False), str(name))

    def untrainable(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(linear, "train_students", functools.wraps(train_students)(untrainable))
    assert_identical(experiments.linear_students(jobs, workers=2), runs)
    with pytest.raises(AssertionError, match="trained again"):  # another setting is another entry
        experiments.linear_students({"sgd": {**jobs["sgd"], "lr": 0.01}})


def test_students_train_the_longest_first(tmp_path, monkeypatch):
    monkeypatch.setenv("IBUTILS_CACHE_DIR", str(tmp_path))
    order = []

    @functools.wraps(train_students)
    def recording(**job):
        order.append(job["epochs"])
        return train_students(**job)

    monkeypatch.setattr(linear, "train_students", recording)
    jobs = {"short": {**_JOB, "epochs": 3}, "long": {**_JOB, "epochs": 300, "batch_size": 1}}
    assert list(experiments.linear_students(jobs, progress=False)) == ["short", "long"]
    assert order == [300, 3]
