"""The ensemble trainer: exact gradients, seed independence, determinism, learning."""

import numpy as np
import pytest
import torch

from ibutils import data, linear, train

SIZES = (12, 10, 7, 5, 4, 3, 2)
TORCH_ACTIVATIONS = {
    "tanh": torch.tanh, "relu": torch.relu, "softsign": torch.nn.functional.softsign,
    "softplus": torch.nn.functional.softplus, "sigmoid": torch.sigmoid, "linear": lambda z: z,
}


def autograd_gradient(net: train.Ensemble, x: torch.Tensor, labels: torch.Tensor, hidden) -> torch.Tensor:
    """Each model's gradient of its mean cross-entropy on its batch, by autograd, with `hidden(z)`
    the activity of a hidden layer of net input z (x `[S, d, B]`, labels `[S, B]`)."""
    params = net.params.clone().requires_grad_(True)
    shapes = [w.shape for w in net.weights] + [b.shape for b in net.biases]
    views = train._split(params, shapes)
    n = len(net.weights)
    h = x
    for l in range(n):
        z = torch.baddbmm(views[n + l], views[l], h)
        h = z if l == n - 1 else hidden(z)
    loss = torch.nn.functional.cross_entropy(h.transpose(1, 2).reshape(-1, 2), labels.reshape(-1), reduction="sum")
    (loss / x.shape[2]).backward()
    return params.grad


@pytest.mark.parametrize("activation", train.ACTIVATIONS)
def test_backward_matches_autograd(activation):
    torch.manual_seed(0)
    net = train.Ensemble(SIZES, 3, activation, device="cpu").initialise([0, 1, 2])
    net.params.add_(0.1 * torch.randn_like(net.params))  # non-zero biases too
    x = torch.randn(3, 12, 40)
    labels = torch.randint(0, 2, (3, 40))
    net.backward(x, torch.nn.functional.one_hot(labels, 2).float().transpose(1, 2))
    expected = autograd_gradient(net, x, labels, TORCH_ACTIVATIONS[activation])
    torch.testing.assert_close(net.grad, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("activation", train.ACTIVATIONS)
def test_activation_and_its_derivative_match_autograd(activation, dtype):
    """Elementwise, over net inputs from -120 to 120 (softplus's threshold at 20, float32 exp's
    underflow near -87 and -103): the activity and the backward factor to rounding (tanh takes
    NumPy's kernel, float32 softplus `ibutils.vecmath`'s, float64 softplus torch's)."""
    z = torch.cat([torch.linspace(-120, 120, 200_001), torch.tensor([0.0, 20.0, -20.0])]).to(dtype)
    upstream = torch.rand(len(z), generator=torch.Generator().manual_seed(0), dtype=dtype) + 0.5
    reference = z.clone().requires_grad_(True)
    expected_h = TORCH_ACTIVATIONS[activation](reference)
    expected_h.backward(upstream)
    slope = torch.full_like(z, torch.nan)
    h = train._activate_(activation, z.clone(), slope)
    dz = train._backprop_(activation, upstream.clone(), slope if activation in train.KEEPS_SLOPE else h)
    assert slope.isnan().all() != (activation in train.KEEPS_SLOPE)  # written where it is kept, only there
    torch.testing.assert_close(h, expected_h.detach(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(dz, reference.grad, rtol=1e-6, atol=1e-6)


def test_softplus_on_a_strided_tensor_takes_torch_kernels_to_the_same_values():
    z = torch.linspace(-30, 30, 6_000).reshape(2, -1)
    contiguous, strided = z.T.contiguous(), z.clone().T
    slopes = torch.empty_like(contiguous), torch.empty_like(z).T
    assert not strided.is_contiguous() and not slopes[1].is_contiguous()
    for tensor, slope in zip((contiguous, strided), slopes):
        train._activate_("softplus", tensor, slope)
    torch.testing.assert_close(strided, contiguous, rtol=2e-7, atol=0)
    torch.testing.assert_close(slopes[1], slopes[0], rtol=4e-7, atol=0)


def test_forward_gives_every_layer_and_probabilities():
    net = train.Ensemble(SIZES, 4, "tanh", device="cpu").initialise(range(4))
    acts = net.forward(torch.rand(100, 12))
    assert [tuple(a.shape) for a in acts] == [(4, 100, w) for w in SIZES[1:]]
    torch.testing.assert_close(acts[-1].sum(-1), torch.ones(4, 100))
    assert all(a.abs().max() <= 1 for a in acts[:-1])


def test_init_is_truncated_normal_with_fan_in_std():
    net = train.Ensemble((400, 300, 2), 2, "tanh", device="cpu").initialise([0, 1], "fan_in")
    w = net.weights[0]
    std = 1 / np.sqrt(400)
    assert w.abs().max() <= 2 * std + 1e-7
    # a normal truncated at 2 sd has sd 0.880 of the untruncated one
    assert w.std().item() == pytest.approx(0.880 * std, rel=0.02)
    assert not torch.equal(w[0], w[1])
    assert net.biases[0].abs().max() == 0


def _small_run(tishby, seeds, **kwargs):
    x, y = tishby
    train_idx, test_idx = data.train_test_split(len(x), seeds)
    config = train.TrainConfig(**{"epochs": 20, "snapshots": 5, "lr": 4e-3, **kwargs})
    return train.train(x, y, train_idx, test_idx, config, seeds, device="cpu", progress=False)


def test_training_is_deterministic(tishby):
    a, b = _small_run(tishby, [3, 4]), _small_run(tishby, [3, 4])
    assert torch.equal(a.params, b.params)
    np.testing.assert_array_equal(a.train_loss, b.train_loss)


def test_a_seed_does_not_depend_on_its_companions(tishby):
    alone = _small_run(tishby, [7])
    together = _small_run(tishby, [5, 7, 9])
    net_alone, net_together = alone.ensemble(-1), together.ensemble(-1)
    for w_alone, w_together in zip(net_alone.weights, net_together.weights):
        torch.testing.assert_close(w_alone[0], w_together[1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(alone.test_acc[0], together.test_acc[1])


def test_training_learns_the_task(tishby):
    run = _small_run(tishby, [0, 1], epochs=150, snapshots=4, lr=1e-2)
    assert run.train_loss[:, -1].mean() < 0.6 * run.train_loss[:, 0].mean()
    assert run.test_acc[:, -1].min() > 0.8
    assert run.epochs[0] == 0 and run.epochs[-1] == 150


def test_full_batch_matches_one_batch_the_size_of_the_data(tishby):
    full = _small_run(tishby, [1], batch_size=None, epochs=5)
    big = _small_run(tishby, [1], batch_size=10_000, epochs=5)
    assert torch.equal(full.params, big.params)


def test_snapshot_hooks_see_every_layer(tishby):
    x, y = tishby
    seen = []
    train_idx, test_idx = data.train_test_split(len(x), [0, 1])
    config = train.TrainConfig(epochs=4, snapshots=3)
    train.train(x, y, train_idx, test_idx, config, [0, 1], device="cpu", keep_params=False, progress=False,
                on_snapshot=[lambda epoch, acts: seen.append((epoch, [tuple(a.shape) for a in acts]))])
    assert [e for e, _ in seen] == list(config.snapshot_epochs())
    assert seen[0][1] == [(2, 4096, w) for w in SIZES[1:]]


@pytest.mark.parametrize("outside", [False, True])
@pytest.mark.parametrize("flush", [False, True])
def test_denormals_are_flushed_as_configured_while_training_then_restored(tishby, flush, outside):
    x, y = tishby
    train_idx, test_idx = data.train_test_split(len(x), [0])
    seen = []
    config = train.TrainConfig(epochs=2, snapshots=2, flush_denormal=flush)
    torch.set_flush_denormal(outside)
    try:
        train.train(x, y, train_idx, test_idx, config, [0], device="cpu", progress=False,
                    on_snapshot=[lambda epoch, acts: seen.append(train.flushing_denormals())])
        after = train.flushing_denormals()
    finally:
        torch.set_flush_denormal(False)
    assert seen == [flush, flush]
    assert after == outside


def test_flushing_denormals_leaves_a_short_run_unchanged(tishby):
    flushed, kept = _small_run(tishby, [0, 1], activation="relu"), _small_run(tishby, [0, 1], activation="relu",
                                                                               flush_denormal=False)
    assert torch.equal(flushed.params, kept.params)
    np.testing.assert_array_equal(flushed.train_loss, kept.train_loss)


def test_flushing_denormals_leaves_the_gradient_of_a_confident_network_unchanged(tishby):
    """A very confident softmax makes (p - onehot) / B subnormal, and the backward pass carries it
    into every layer's dz: flushed, those terms are 0, and the weight gradient is the same."""
    x, y = tishby
    net = train.Ensemble(SIZES, 2, "relu", device="cpu").initialise([0, 1])
    net.weights[-1].mul_(3000.0)
    inputs = torch.as_tensor(x[:256].T, dtype=torch.float32).expand(2, -1, -1).contiguous()
    onehot = torch.nn.functional.one_hot(torch.as_tensor(y[:256]), 2).float().T.expand(2, -1, -1).contiguous()
    tiny = torch.finfo(torch.float32).tiny
    grads, subnormals = {}, {}
    for flush in (False, True):
        found = []
        torch.set_flush_denormal(flush)
        try:
            net._backward(inputs, onehot, lambda l, dz, h: found.append(int(((dz != 0) & (dz.abs() < tiny)).sum())))
        finally:
            torch.set_flush_denormal(False)
        grads[flush], subnormals[flush] = net.grad.clone(), sum(found)
    assert subnormals[False] > 0 and subnormals[True] == 0
    assert torch.equal(grads[False], grads[True])


def test_log_spaced_epochs():
    epochs = train.log_spaced_epochs(10_000, 300)
    assert epochs[0] == 0 and epochs[-1] == 10_000
    assert np.all(np.diff(epochs) > 0)
    assert 200 < len(epochs) <= 301
    assert np.all(epochs[:10] == np.arange(10))


def test_one_schedule_gives_the_trainers_and_the_linear_students_epochs():
    """Both schedules come from `log_grid`: spaced in log(1 + epoch) from 0 (the trainer's), or
    in log(epoch) from 1 with 0 added (`linear.log_epochs`), as they were before being merged."""
    np.testing.assert_array_equal(train.log_spaced_epochs(100, 10), [0, 1, 2, 4, 7, 12, 21, 35, 59, 100])
    np.testing.assert_array_equal(train.log_spaced_epochs(100, 10, offset=0), [0, 1, 2, 3, 6, 10, 18, 32, 56, 100])
    np.testing.assert_array_equal(linear.log_epochs(100, 11), train.log_spaced_epochs(100, 11, offset=0))
    np.testing.assert_array_equal(train.log_spaced_epochs(100, 2, offset=0), [0, 100])
    assert len(train.log_spaced_epochs(10_000, 300)) == 218  # chapter 1's 218 snapshots at the paper profile
    with pytest.raises(ValueError, match="offset must be 0 or 1"):
        train.log_spaced_epochs(100, 10, offset=2)


@pytest.mark.parametrize("kwargs, name", [
    ({"activation": "gelu"}, "activation"), ({"init": "he"}, "init"), ({"optimizer": "rmsprop"}, "optimizer"),
    ({"hidden": ()}, "hidden"), ({"epochs": -1}, "epochs"), ({"batch_size": 0}, "batch_size"), ({"lr": 0}, "lr"),
    ({"quantise_bits": 0}, "quantise_bits"), ({"quantise_bits": 8.0}, "quantise_bits"),
    ({"flush_denormal": 1}, "flush_denormal"),
])

def test_bad_config_raises(kwargs, name):
    with pytest.raises(ValueError, match=name):
        train.TrainConfig(**kwargs)


def test_bad_shapes_raise(tishby):
    x, y = tishby
    train_idx, test_idx = data.train_test_split(len(x), [0, 1])
    with pytest.raises(ValueError, match="train_idx"):
        train.train(x, y, train_idx, test_idx, train.TrainConfig(epochs=1), [0], progress=False)
    with pytest.raises(ValueError, match="x must be"):
        train.train(x, y[:10], train_idx, test_idx, train.TrainConfig(epochs=1), [0, 1], progress=False)


def test_per_sample_gradients_average_to_the_batch_gradient():
    net = train.Ensemble(SIZES, 2, "tanh", device="cpu").initialise([0, 1])
    x = torch.randn(2, 12, 16)
    onehot = torch.nn.functional.one_hot(torch.randint(0, 2, (2, 16)), 2).float().transpose(1, 2)
    per_sample = net.backward(x, onehot, per_sample=True)
    for l, samples in enumerate(per_sample):
        assert samples.shape == (2, 16, *net.weights[l].shape[1:])
        torch.testing.assert_close(samples.mean(1), net.weight_grads[l])
    single = train.Ensemble(SIZES, 2, "tanh", device="cpu").load(net.params)
    single.backward(x[..., 3:4].contiguous(), onehot[..., 3:4].contiguous())
    torch.testing.assert_close(per_sample[0][:, 3], single.weight_grads[0])


def test_batch_hooks_run_in_snapshot_epochs_only(tishby):
    x, y = tishby
    calls = []
    train_idx, test_idx = data.train_test_split(len(x), [0])
    config = train.TrainConfig(epochs=6, snapshots=3, batch_size=1024)
    train.train(x, y, train_idx, test_idx, config, [0], device="cpu", progress=False,
                on_batch=[lambda epoch, net, xb, yb: calls.append((epoch, xb.shape[-1]))])
    snaps = [int(e) for e in config.snapshot_epochs()]  # 0 included: one pass over the initial network
    assert snaps[0] == 0 and sorted({e for e, _ in calls}) == snaps
    for epoch in snaps[:2]:
        assert [b for e, b in calls if e == epoch] == [1024, 1024, 1024, 205]


def test_per_sample_moments_match_the_per_sample_gradients():
    torch.manual_seed(1)
    net = train.Ensemble(SIZES, 3, "tanh", device="cpu").initialise([0, 1, 2])
    net.params.add_(0.3 * torch.randn_like(net.params))
    x = torch.randn(3, 12, 40)
    onehot = torch.nn.functional.one_hot(torch.randint(0, 2, (3, 40)), 2).float().transpose(1, 2)
    per_sample = net.backward(x, onehot, per_sample=True)
    grad = net.grad.clone()
    moments = net.per_sample_moments(x, onehot)
    torch.testing.assert_close(net.grad, grad, rtol=0, atol=0)
    for samples, (mean, m2) in zip(per_sample, moments):
        g = samples.double().flatten(2)  # [S, B, D]
        assert mean.dtype == m2.dtype == torch.float64 and mean.shape == g[:, 0].shape
        torch.testing.assert_close(mean, g.mean(1), rtol=1e-5, atol=1e-9)
        torch.testing.assert_close(m2, (g - g.mean(1, keepdim=True)).square().sum(1), rtol=1e-5, atol=1e-9)


def test_quantised_backward_is_straight_through():
    torch.manual_seed(0)
    net = train.Ensemble(SIZES, 3, "tanh", device="cpu", quantise_bits=3).initialise([0, 1, 2])
    x = torch.randn(3, 12, 40)
    labels = torch.randint(0, 2, (3, 40))
    net.backward(x, torch.nn.functional.one_hot(labels, 2).float().transpose(1, 2))

    def straight_through(z):  # quantised forward, identity backward
        h = torch.tanh(z)
        return h + (train.fake_quantise_(h.detach().clone(), 3) - h).detach()

    torch.testing.assert_close(net.grad, autograd_gradient(net, x, labels, straight_through), rtol=1e-4, atol=1e-6)


def test_quantised_layers_take_2_to_the_bits_levels_of_their_range():
    net = train.Ensemble(SIZES, 2, "relu", device="cpu", quantise_bits=4).initialise([0, 1])
    x = torch.rand(500, 12)
    quantised = net.forward(x)
    raw = train.Ensemble(SIZES, 2, "relu", device="cpu").load(net.params).forward(x)
    for q, a in zip(quantised[:1], raw[:1]):  # the first layer sees the same input in both
        for s in range(2):
            lo, hi = a[s].min(), a[s].max()
            step = (hi - lo) / 15
            levels = torch.round((a[s] - lo) / step)
            torch.testing.assert_close(q[s], lo + levels * step)
            assert len(torch.unique(q[s])) <= 16
    for q in quantised[:-1]:
        assert all(len(torch.unique(q[s])) <= 16 for s in range(2))
    assert len(torch.unique(quantised[-1][0])) > 16  # the softmax output stays continuous


def test_net_inputs_are_the_affine_maps_before_the_activation():
    net = train.Ensemble(SIZES, 2, "tanh", device="cpu").initialise([0, 1])
    x = torch.rand(50, 12)
    acts, net_inputs = net.forward(x), net.forward(x, net_input=True)
    h = x.expand(2, -1, -1)
    for l, (z, w, b) in enumerate(zip(net_inputs, net.weights, net.biases)):
        torch.testing.assert_close(z, h @ w.transpose(1, 2) + b.transpose(1, 2))
        expected = torch.softmax(z, -1) if l == len(SIZES) - 2 else torch.tanh(z)
        torch.testing.assert_close(acts[l], expected)
        h = acts[l]


def test_select_and_join_split_a_run_by_seeds(tishby):
    x, y = tishby
    seeds = [3, 1, 4, 5]
    train_idx, test_idx = data.train_test_split(len(x), seeds)
    config = train.TrainConfig(epochs=5, snapshots=4)
    run = train.train(x, y, train_idx, test_idx, config, seeds, progress=False)
    alone = train.train(x, y, train_idx[[2]], test_idx[[2]], config, [4], progress=False)
    picked = run.select([2])
    assert picked.seeds == (4,)
    torch.testing.assert_close(picked.params, alone.params, rtol=0, atol=1e-6)
    np.testing.assert_allclose(picked.test_acc, alone.test_acc)
    joined = train.Run.join([run.select([0, 1]), run.select([2]), run.select([3])])
    assert joined.seeds == run.seeds
    assert torch.equal(joined.params, run.params)
    for key in train.Run.METRICS:
        np.testing.assert_array_equal(getattr(joined, key), getattr(run, key))
