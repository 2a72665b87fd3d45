"""Gradient signal-to-noise statistics (SPEC 2.6): known answers and the training-time recorder."""

import math

import numpy as np
import pytest
import torch

from ibutils import data, gradients, train


def test_statistics_of_a_hand_made_stack():
    # one seed, two gradients of a 2x2 layer: entries (1, 3) and (4, 4) and zeros
    g = np.zeros((2, 1, 2, 2))
    g[:, 0, 0, 0] = [1.0, 3.0]
    g[:, 0, 1, 1] = [4.0, 4.0]
    stats = gradients.statistics(g)
    # mean [[2, 0], [0, 4]] -> sqrt(20); population std [[1, 0], [0, 0]] -> 1
    np.testing.assert_allclose(stats.mean, [math.sqrt(20)])
    np.testing.assert_allclose(stats.std, [1.0])
    np.testing.assert_allclose(stats.snr, [math.sqrt(20)])


def test_statistics_are_per_seed_and_match_numpy_with_ddof_0():
    rng = np.random.default_rng(0)
    g = rng.normal(0.3, 2.0, (13, 4, 5, 3))
    stats = gradients.statistics(torch.from_numpy(g).float())
    flat = g.reshape(13, 4, -1)
    m = np.linalg.norm(flat.mean(0), axis=-1)
    s = np.linalg.norm(flat.std(0, ddof=0), axis=-1)
    np.testing.assert_allclose(stats.mean, m, rtol=1e-6)
    np.testing.assert_allclose(stats.std, s, rtol=1e-6)
    np.testing.assert_allclose(stats.snr, m / s, rtol=1e-6)
    # each seed's numbers depend on its own gradients only
    alone = gradients.statistics(g[:, 2:3])
    np.testing.assert_allclose(alone.snr, stats.snr[2:3], rtol=1e-6)


def test_statistics_of_n_independent_draws_recover_the_true_snr():
    # g = mu + noise, noise N(0, sigma^2) per element: m -> ||mu||, s -> sigma sqrt(D)
    rng = np.random.default_rng(1)
    mu = np.array([3.0, -4.0, 0.0, 0.0])  # ||mu|| = 5, D = 4
    g = mu + 0.5 * rng.standard_normal((200_000, 1, 4))
    stats = gradients.statistics(g)
    assert stats.mean[0] == pytest.approx(5.0, abs=0.01)
    assert stats.std[0] == pytest.approx(0.5 * 2, rel=0.01)
    assert stats.snr[0] == pytest.approx(5.0, rel=0.01)


def test_statistics_edge_cases():
    same = np.ones((5, 2, 3))
    assert np.isinf(gradients.statistics(same).snr).all()
    assert np.isnan(gradients.statistics(np.zeros((5, 2, 3))).snr).all()
    single = gradients.statistics(np.full((1, 1, 2), 2.0))  # one gradient: no spread (ddof 0)
    assert single.std[0] == 0 and single.mean[0] == pytest.approx(math.sqrt(8))
    with pytest.raises(ValueError, match="grads"):
        gradients.statistics(np.ones(4))
    with pytest.raises(ValueError, match="grads"):
        gradients.statistics(np.full((3, 1, 2), np.nan))
    with pytest.raises(ValueError, match="grads"):
        gradients.statistics(np.zeros((0, 1, 2)))
    with pytest.raises(ValueError, match="mode"):
        gradients.Recorder("batch")
    with pytest.raises(ValueError, match="chunk"):
        gradients.Recorder("sample", chunk=0)


def test_per_sample_statistics_of_softmax_regression_at_zero_weights():
    # One softmax layer W [2, d] at W = 0: p = (1/2, 1/2), so sample i's cross-entropy gradient is
    # (p - onehot_i) x_i^T = a_i / 2 [x_i; -x_i] with a_i = +1 for label 1, -1 for label 0.
    # Closed form: m = ||mean_i a_i x_i|| / sqrt(2), s = sqrt(sum_j var_i(a_i x_ij) / 2).
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 6, 40))  # [S, d, B]
    labels = rng.integers(0, 2, (2, 40))
    net = train.Ensemble((6, 2), 2, "tanh", device="cpu")  # params start at zero
    onehot = torch.nn.functional.one_hot(torch.from_numpy(labels), 2).float().transpose(1, 2)
    recorder = gradients.Recorder("sample")
    recorder.on_batch(1, net, torch.from_numpy(x).float(), onehot)
    recorder.on_snapshot(1, None)
    record = recorder.trajectory()

    ax = (2 * labels - 1)[:, None, :] * x  # [S, d, B]
    m = np.linalg.norm(ax.mean(-1), axis=-1) / math.sqrt(2)
    s = np.sqrt(ax.var(-1).sum(-1) / 2)
    assert record.mean.shape == (2, 1, 1)
    np.testing.assert_allclose(record.mean[:, 0, 0], m, rtol=1e-5)
    np.testing.assert_allclose(record.std[:, 0, 0], s, rtol=1e-5)
    np.testing.assert_allclose(record.snr[:, 0, 0], m / s, rtol=1e-5)
    np.testing.assert_allclose(record.weight_norm, 0.0)
    assert record.mode == "sample" and record.epochs.tolist() == [1]


def test_minibatch_recorder_keeps_each_batch_gradient():
    # the trainer overwrites net.grad every batch: the recorder must keep copies
    net = train.Ensemble((3, 4, 2), 2, "relu", device="cpu").initialise([0, 1])
    recorder = gradients.Recorder("minibatch")
    stacks = [torch.randn(5, *g.shape) for g in net.weight_grads]
    for b in range(5):
        for g, stack in zip(net.weight_grads, stacks):
            g.copy_(stack[b])
        recorder.on_batch(7, net, None, None)
    recorder.on_snapshot(7, None)
    record = recorder.trajectory()
    for l, stack in enumerate(stacks):
        expected = gradients.statistics(stack)
        np.testing.assert_allclose(record.mean[:, 0, l], expected.mean)
        np.testing.assert_allclose(record.std[:, 0, l], expected.std)
        np.testing.assert_allclose(record.weight_norm[:, 0, l],
                                   torch.linalg.matrix_norm(net.weights[l].double()).numpy())
    with pytest.raises(ValueError, match="snapshot epoch 8"):
        recorder.on_snapshot(8, None)


def test_merged_moments_are_exact_for_gradients_far_from_zero():
    # float32 gradients with mean 1e4 and spread ~1, folded in one at a time: a naive
    # sum-of-squares variance would lose every digit; the pairwise merge keeps them
    rng = np.random.default_rng(4)
    stack = (1e4 + rng.standard_normal((40, 3, 6))).astype(np.float32)
    net = train.Ensemble((3, 2), 3, "tanh", device="cpu")
    recorder = gradients.Recorder("minibatch")
    for g in stack:
        net.weight_grads[0].copy_(torch.from_numpy(g).view(3, 2, 3))
        recorder.on_batch(1, net, None, None)
    recorder.on_snapshot(1, None)
    flat = stack.astype(np.float64)
    np.testing.assert_allclose(recorder.trajectory().std[:, 0, 0], np.linalg.norm(flat.std(0), axis=-1), rtol=1e-6)
    np.testing.assert_allclose(recorder.trajectory().mean[:, 0, 0], np.linalg.norm(flat.mean(0), axis=-1), rtol=1e-7)


def test_per_sample_recording_restores_the_batch_gradient():
    net = train.Ensemble((4, 3, 2), 2, "relu", device="cpu").initialise([5, 6])
    x = torch.randn(2, 4, 50)
    onehot = torch.nn.functional.one_hot(torch.randint(0, 2, (2, 50)), 2).float().transpose(1, 2)
    net.backward(x, onehot)
    before = net.grad.clone()
    gradients.Recorder("sample", chunk=7).on_batch(1, net, x, onehot)
    torch.testing.assert_close(net.grad, before, rtol=0, atol=0)


def test_recorder_during_full_batch_training_matches_a_sample_by_sample_loop():
    torch.set_num_threads(1)
    x, y = data.tishby()
    seeds = [3, 4]
    train_idx, test_idx = data.train_test_split(len(x), seeds, 0.02)  # 81 training samples
    config = train.TrainConfig(hidden=(5, 3), epochs=3, batch_size=None, lr=1e-2, snapshots=4)
    recorder = gradients.Recorder("sample", chunk=16)  # 81 samples in 6 chunks
    run = train.train(x, y, train_idx, test_idx, config, seeds, on_batch=[recorder.on_batch],
                      on_snapshot=[recorder.on_snapshot], progress=False)
    record = recorder.trajectory()
    np.testing.assert_array_equal(record.epochs, run.epochs)  # epoch 0 too: a pass without updates
    assert record.snr.shape == (2, len(run.epochs), 3)
    # full batch: epoch 0's pass and epoch 1's step both take their gradients at the initial weights
    np.testing.assert_allclose(record.snr[:, 0], record.snr[:, 1], rtol=1e-6)

    # epoch 0's gradients are taken at the initial weights: redo them one sample at a time
    net = run.ensemble(0, device="cpu")
    xt = torch.as_tensor(x, dtype=torch.float32)
    onehot = torch.nn.functional.one_hot(torch.as_tensor(y), 2).float()
    idx = torch.as_tensor(train_idx)
    per_sample = [[] for _ in net.weights]
    for i in range(idx.shape[1]):
        rows = idx[:, i:i + 1]
        net.backward(xt[rows].transpose(1, 2), onehot[rows].transpose(1, 2))
        for l, g in enumerate(net.weight_grads):
            per_sample[l].append(g.clone())
    for l, grads in enumerate(per_sample):
        expected = gradients.statistics(torch.stack(grads))
        np.testing.assert_allclose(record.mean[:, 0, l], expected.mean, rtol=1e-4)
        np.testing.assert_allclose(record.std[:, 0, l], expected.std, rtol=1e-4)
    # weight norms at the end of each snapshot epoch are those of the kept parameters
    final = run.ensemble(len(run.epochs) - 1, device="cpu")
    for l, w in enumerate(final.weights):
        np.testing.assert_allclose(record.weight_norm[:, -1, l], torch.linalg.matrix_norm(w).numpy(), rtol=1e-5)


def test_tishby_net_records_gradient_statistics_only_when_asked(tmp_path, monkeypatch):
    from ibutils import experiments

    monkeypatch.setenv("IBUTILS_CACHE_DIR", str(tmp_path))
    torch.set_num_threads(1)
    config = train.TrainConfig(hidden=(4, 3), epochs=4, batch_size=64, snapshots=3)
    plain = experiments.tishby_net(config, [0, 1], train_fraction=0.1, progress=False)
    assert plain.gradient_stats is None and "snr" not in plain.series()
    with_stats = experiments.tishby_net(config, [0, 1], train_fraction=0.1, gradient_stats="sample",
                                        progress=False)
    assert len(list(tmp_path.iterdir())) == 2  # its own cache entry, and the plain one is untouched
    g = with_stats.gradient_stats
    assert g.mode == "sample" and g.snr.shape == (2, len(g.epochs), 3)
    np.testing.assert_array_equal(g.epochs, with_stats.run.epochs)
    # recording (here: recomputing each batch's per-sample gradients) does not change training
    np.testing.assert_array_equal(with_stats.run.train_loss, plain.run.train_loss)
    series = with_stats.series()
    np.testing.assert_allclose(series["snr"], g.snr.mean(0).T)
    assert np.shape(series["weight_norm"]) == (3, len(g.epochs))
    with pytest.raises(ValueError, match="gradient_stats"):
        experiments.tishby_net(config, [0], gradient_stats="batch", progress=False)


def test_gradient_panels_draw_one_column_per_group_on_log_axes():
    from ibutils import plots

    rng = np.random.default_rng(3)
    shape = (2, 5, 3)
    record = gradients.Trajectory("minibatch", np.arange(1, 6), *(rng.uniform(0.1, 1, shape) for _ in range(4)))
    fig = plots.gradient_panels({"tanh": {"SGD": record, "BGD": record}, "relu": {"SGD": record}}, 1,
                                layer_name="layer 2")
    assert len(fig.axes) == 6
    assert all(ax.get_xscale() == ax.get_yscale() == "log" for ax in fig.axes)
    assert [ax.get_title() for ax in fig.axes[:2]] == ["tanh layer 2", "relu layer 2"]
    # rows: gradient norms, SNR, weight norm; the SNR of the first group's first run
    np.testing.assert_allclose(fig.axes[2].lines[0].get_ydata(), record.snr[:, :, 1].mean(0))
    assert fig.get_size_inches()[0] <= plots.COLUMN_WIDTH


def test_series_leaves_seeds_without_an_snr_out_of_its_mean():
    ones = np.ones((2, 3, 1))
    snr = np.array([[[2.0], [4.0], [8.0]], [[np.nan], [np.nan], [6.0]]])  # seed 1 died: 0/0
    record = gradients.Trajectory("sample", np.array([1, 2, 3]), ones, ones, snr, ones)
    series = record.series()
    np.testing.assert_allclose(series["snr"], [[2.0, 4.0, 7.0]])
    np.testing.assert_allclose(series["grad_mean"], [[1.0, 1.0, 1.0]])
    assert series["grad_mode"] == "sample" and series["grad_epochs"].tolist() == [1, 2, 3]


def test_information_plane_grid_shares_axes_and_checks_columns():
    from ibutils import plots

    epochs, i_xt, i_ty = np.arange(5), np.linspace(0, 10, 10).reshape(5, 2), np.linspace(0, 1, 10).reshape(5, 2)
    panel = (epochs, i_xt, i_ty)
    fig = plots.information_plane_grid({"tanh": {"SGD": panel, "BGD": panel}, "relu": {"SGD": panel, "BGD": panel}})
    planes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in planes] == ["tanh, SGD", "tanh, BGD", "relu, SGD", "relu, BGD"]
    assert all(ax.get_xlim() == planes[0].get_xlim() for ax in planes)
    # three columns are drawn as three rows of two, a column per row title
    three = {row: {"SGD": panel, "BGD": panel, "BGD fast": panel} for row in ("tanh", "relu")}
    fig = plots.information_plane_grid(three)
    planes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in planes] == ["tanh, SGD", "relu, SGD", "tanh, BGD", "relu, BGD",
                                                 "tanh, BGD fast", "relu, BGD fast"]
    assert fig.get_size_inches()[0] <= plots.COLUMN_WIDTH + 0.1
    with pytest.raises(ValueError, match="columns"):
        plots.information_plane_grid({"tanh": {"SGD": panel}, "relu": {"BGD": panel}})
