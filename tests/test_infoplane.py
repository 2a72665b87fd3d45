"""Information-plane trajectories: agree with direct estimates, the ReLU range rule, summaries."""

import dataclasses

import numpy as np
import pytest
import torch

from ibutils import data, infoplane, mi, train


def test_plane_equals_direct_estimates(run, tishby):
    x, y = tishby
    plane = infoplane.binned_plane(run, x, y, chunk=4, progress=False)
    n_layers = len(run.sizes) - 1
    assert plane.i_xt.shape == (2, len(run.epochs), n_layers)
    assert plane.layers[0] == "hidden 1 (10)" and plane.layers[-1] == "output (2)"
    k = len(run.epochs) // 2
    acts = run.ensemble(k, device="cpu").forward(torch.as_tensor(x))
    binning = infoplane.paper_binning(run.config.activation)
    for seed in range(2):
        for l, a in enumerate(acts):
            if l == n_layers - 1:
                expected = mi.binned(a[seed], y, 30, (-1, 1))
            elif binning.value_range is None:
                expected = mi.binned(a[seed], y, 100, tuple(plane.value_range[seed]))
            else:
                expected = mi.binned(a[seed], y, 30, (-1, 1))
            assert plane.i_xt[seed, k, l] == pytest.approx(expected.i_xt, abs=1e-12)
            assert plane.i_ty[seed, k, l] == pytest.approx(expected.i_ty, abs=1e-12)


def test_relu_range_spans_all_hidden_activity(tishby):
    x, y = tishby
    train_idx, test_idx = data.train_test_split(len(x), [3])
    config = train.TrainConfig(activation="relu", epochs=10, snapshots=4, lr=1e-2)
    run = train.train(x, y, train_idx, test_idx, config, [3], device="cpu", progress=False)
    lo, hi = np.inf, -np.inf
    for k in range(len(run.epochs)):
        for a in run.ensemble(k, device="cpu").forward(torch.as_tensor(x))[:-1]:
            lo, hi = min(lo, a.min().item()), max(hi, a.max().item())
    np.testing.assert_allclose(infoplane.activity_range(run, x), [[lo, hi]])
    assert lo == 0.0


def test_histograms_are_distributions(run, tishby):
    x, y = tishby
    plane = infoplane.binned_plane(run, x, y, progress=False)
    for hist, edges in zip(plane.hist, plane.hist_edges):
        np.testing.assert_allclose(hist.sum(1), 1.0)
        assert len(edges) == hist.shape[1] + 1


def test_first_tanh_layer_keeps_the_12_bits(tishby):
    x, y = tishby
    train_idx, test_idx = data.train_test_split(len(x), [0])
    run = train.train(x, y, train_idx, test_idx, train.TrainConfig(epochs=0), [0], device="cpu", progress=False)
    plane = infoplane.binned_plane(run, x, y, progress=False)
    assert plane.i_xt[0, 0, 0] > 11.5
    assert np.all(np.diff(plane.i_xt[0, 0]) <= 1e-12)  # data processing: information only falls with depth


def test_compression_and_largest_drop():
    i_xt = np.array([[1.0, 5.0], [3.0, 4.0], [2.0, 6.0], [2.5, 6.0]])  # [snapshots, layers]
    np.testing.assert_allclose(infoplane.compression(i_xt), [0.5, 0.0])
    np.testing.assert_allclose(infoplane.largest_drop(i_xt), [1.0, 1.0])
    rising = np.cumsum(np.ones((5, 3)), 0)
    np.testing.assert_array_equal(infoplane.largest_drop(rising), 0)


def test_adaptive_output_binning_is_refused(run, tishby):
    x, y = tishby
    with pytest.raises(ValueError, match="output"):
        infoplane.binned_plane(run, x, y, output=infoplane.ADAPTIVE_BINNING, progress=False)


@pytest.mark.parametrize("kwargs, name", [({"bins": 0}, "bins"), ({"value_range": (1, -1)}, "value_range")])
def test_bad_binning(kwargs, name):
    with pytest.raises(ValueError, match=name):
        infoplane.Binning(**kwargs)


def test_saturated_share_picks_the_bins_holding_the_values():
    hist = np.array([[0.5, 0.0, 0.2, 0.3], [0.25, 0.25, 0.25, 0.25]])
    plane = infoplane.InformationPlane(np.arange(2), ["l"], None, None, [hist], [np.linspace(-1, 1, 5)], None)
    np.testing.assert_allclose(infoplane.saturated_share(plane, 0), [0.8, 0.5])  # bins of -1 and +1
    np.testing.assert_allclose(infoplane.saturated_share(plane, 0, (0.0, 1.0)), [0.5, 0.5])  # [0, .5) and [.5, 1]


def test_largest_drop_along_any_axis():
    v = np.array([[0.0, 1.0, 0.7, 0.9, 0.5, 2.0], [3.0, 2.0, 1.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(infoplane.largest_drop(v, axis=1), [0.5, 3.0])
    np.testing.assert_allclose(infoplane.largest_drop(v.T), [0.5, 3.0])
    with pytest.raises(ValueError, match="values"):
        infoplane.largest_drop(np.zeros((0, 2)))


def assert_same_results(a, b):
    assert a.run.seeds == b.run.seeds
    for name in ("train_loss", "train_acc", "test_loss", "test_acc"):
        np.testing.assert_array_equal(getattr(a.run, name), getattr(b.run, name))
    for name in ("i_xt", "i_ty", "value_range"):
        np.testing.assert_array_equal(getattr(a.plane, name), getattr(b.plane, name))
    for x, y in zip(a.plane.hist + a.plane.hist_edges, b.plane.hist + b.plane.hist_edges):
        np.testing.assert_array_equal(x, y)
    for name in ("mean", "std", "snr", "weight_norm"):
        np.testing.assert_array_equal(getattr(a.gradient_stats, name), getattr(b.gradient_stats, name))


def test_tishby_nets_in_worker_processes_equal_one_process(tmp_path, monkeypatch):
    from ibutils import experiments

    configs = {a: train.TrainConfig(activation=a, epochs=6, snapshots=4, batch_size=300) for a in ("tanh", "relu")}
    kwargs = {"train_fraction": 0.5, "gradient_stats": "minibatch", "progress": False}  # last batch: 248
    seeds = [4, 0, 9]
    monkeypatch.setenv("IBUTILS_CACHE_DIR", str(tmp_path / "one"))
    one = experiments.tishby_nets(configs, seeds, workers=1, **kwargs)
    monkeypatch.setenv("IBUTILS_CACHE_DIR", str(tmp_path / "two"))
    two = experiments.tishby_nets(configs, seeds, workers=2, **kwargs)  # one process per configuration
    monkeypatch.setenv("IBUTILS_CACHE_DIR", str(tmp_path / "split"))
    split = experiments.tishby_net(configs["relu"], seeds, workers=2, **kwargs)  # seeds [4, 0] and [9]
    for name in configs:
        assert_same_results(two[name], one[name])
    assert_same_results(split, one["relu"])
    monkeypatch.setenv("IBUTILS_CACHE_DIR", str(tmp_path / "two"))
    again = experiments.tishby_nets(configs, seeds, workers=2, **kwargs)  # from the cache
    assert_same_results(again["tanh"], one["tanh"])
    assert len(list((tmp_path / "two").iterdir())) == 2
    with pytest.raises(ValueError, match="workers"):
        experiments.tishby_net(configs["tanh"], [0], workers=0, **kwargs)


def test_estimate_visits_the_chosen_snapshots_once_for_all_estimators(run, tishby):
    x, y = (a[::8] for a in tishby)  # 512 patterns keep the KDE quick
    visit = infoplane.snapshot_subset(run.epochs, 3)
    assert visit[0] == 0 and visit[-1] == len(run.epochs) - 1 and np.all(np.diff(visit) > 0)
    ranges = infoplane.activity_range(run, x)
    planes = infoplane.estimate(run, x, y, [
        infoplane.UniformBins("bins_100", 100, ranges),
        infoplane.UniformBins("net_input", 30, (-50.0, 50.0), (-50.0, 50.0), net_input=True),
        infoplane.KDE((0.1, 1e-3)),
    ], visit, progress=False)
    assert set(planes) == {"bins_100", "net_input", "kde_upper_0.1", "kde_lower_0.1", "kde_upper_0.001",
                           "kde_lower_0.001"}
    binned = infoplane.binned_plane(run, x, y, hidden=infoplane.Binning(100, None), progress=False)
    np.testing.assert_array_equal(planes["bins_100"].i_xt[..., :-1], binned.i_xt[:, visit, :-1])
    np.testing.assert_array_equal(planes["bins_100"].epochs, run.epochs[visit])
    k, seed = 1, 1
    net = run.ensemble(visit[k], device="cpu")
    acts = net.forward(torch.as_tensor(x))
    net_inputs = net.forward(torch.as_tensor(x), net_input=True)
    for l, (a, z) in enumerate(zip(acts, net_inputs)):
        expected = mi.binned(a[seed], y, 100, (0.0, 1.0) if l == len(acts) - 1 else tuple(ranges[seed]))
        assert planes["bins_100"].i_ty[seed, k, l] == pytest.approx(expected.i_ty, abs=1e-12)
        expected = mi.binned(z[seed], y, 30, (-50.0, 50.0))
        assert planes["net_input"].i_xt[seed, k, l] == pytest.approx(expected.i_xt, abs=1e-12)
        bounds = mi.kde_sweep(a[seed], y, [0.1, 1e-3])
        assert planes["kde_lower_0.001"].i_xt[seed, k, l] == pytest.approx(bounds[1].lower.i_xt, abs=1e-9)
        assert planes["kde_upper_0.1"].i_ty[seed, k, l] == pytest.approx(bounds[0].upper.i_ty, abs=1e-9)


def test_compression_summary_and_verdicts():
    epochs = np.arange(4)
    i_xt = np.zeros((2, 4, 3))
    i_xt[:, :, 0] = [[1, 3, 2.8, 2.8], [1, 3, 2.4, 2.6]]  # hidden 1: seed mean 3 -> 2.7: 0.3 bit
    i_xt[:, :, 1] = [[1, 4, 3, 3], [1, 2, 2, 2]]  # hidden 2: seed mean 3 -> 2.5: 0.5 bit
    i_xt[:, :, 2] = [[0, 1, 1, 1], [0, 1, 1, 1]]  # output: grows only
    plane = infoplane.InformationPlane(epochs, ["a", "b", "out"], i_xt, np.zeros_like(i_xt))
    summary = infoplane.compression_summary(plane)
    assert summary["hidden_layer"] == 1 and summary["hidden"] == pytest.approx(0.5)
    assert summary["hidden_sd"] == pytest.approx(0.5)  # per seed: 1 and 0
    assert summary["output"] == 0 and summary["output_sd"] == 0
    assert (summary["hidden_verdict"], summary["output_verdict"]) == ("compresses", "none")
    assert [infoplane.verdict(b) for b in (0.05, 0.1, 0.3, 0.5, float("nan"))] == [
        "none", "none", "slight", "compresses", "n/a"]


def test_snapshot_subset_breaks_exact_ties_in_log1p():
    """Epoch 42.8 lies exactly midway (in log(1 + epoch)) between 39 and 47 of this schedule,
    since 40 x 48 = 1 + 1919: the subset keeps the choice that log1p's rounding makes (47)."""
    epochs = train.log_spaced_epochs(1919, 40)
    np.testing.assert_array_equal(infoplane.snapshot_subset(epochs, 3), [0, 16, 35])
    assert epochs[15] == 39 and epochs[16] == 47


@pytest.mark.parametrize("n", [1, 0])
def test_snapshot_subset_needs_two(n):
    with pytest.raises(ValueError, match="n >= 2"):
        infoplane.snapshot_subset(np.arange(10), n)


def test_estimators_of_the_chapter_equal_direct_calls(tishby):
    x, y = (a[::8] for a in tishby)
    seeds = [0, 1]
    train_idx, test_idx = data.train_test_split(len(x), seeds)
    config = train.TrainConfig(activation="relu", epochs=20, snapshots=5, lr=4e-3)
    run = train.train(x, y, train_idx, test_idx, config, seeds, progress=False)
    quantised = train.train(x, y, train_idx, test_idx, dataclasses.replace(config, quantise_bits=4), seeds, progress=False)
    k = 2
    planes = infoplane.estimate(run, x, y, [infoplane.EqualMassBins(30, 0.0), infoplane.PrecisionBins(),
                                            infoplane.Kraskov()], [k], progress=False)
    exact = infoplane.estimate(quantised, x, y, [infoplane.QuantisedCodes(4)], [k], progress=False)["quantised"]
    acts = run.ensemble(k, device="cpu").forward(torch.as_tensor(x))
    q_acts = quantised.ensemble(k, device="cpu").forward(torch.as_tensor(x))
    for seed in seeds:
        for l, a in enumerate(acts):
            last = l == len(acts) - 1
            edges = mi.equal_mass_edges(a[seed], 30, low=0.0)
            assert planes["equal_mass"].i_xt[seed, 0, l] == pytest.approx(mi.binned(a[seed], y, bins=edges).i_xt, abs=1e-12)
            assert planes["precision"].i_ty[seed, 0, l] == pytest.approx(mi.binned_precision(a[seed], y).i_ty, abs=1e-12)
            assert planes["kraskov"].i_xt[seed, 0, l] == pytest.approx(mi.kraskov_entropy(a[seed]), abs=1e-9)
            assert planes["kraskov"].i_ty[seed, 0, l] == pytest.approx(mi.kraskov(a[seed], y).i_ty, abs=1e-9)
            # the trainer's quantised layers are their own codes: as many symbols as distinct rows
            codes = mi.quantise(q_acts[l][seed], 4, (0.0, 1.0) if last else None)
            assert exact.i_xt[seed, 0, l] == pytest.approx(mi.discrete(codes, y).i_xt, abs=1e-12)
            if not last:
                assert exact.i_xt[seed, 0, l] == pytest.approx(mi.binned_precision(q_acts[l][seed], y).i_xt, abs=1e-12)


def test_estimator_study_in_worker_processes_equals_one_process(tmp_path, monkeypatch):
    from ibutils import experiments

    configs = {"tanh": train.TrainConfig(epochs=6, snapshots=4), "relu": train.TrainConfig(activation="relu", epochs=6, snapshots=4),
               "tanh, 4-bit": train.TrainConfig(epochs=6, snapshots=4, quantise_bits=4)}
    settings = experiments.EstimatorSettings(snapshots=3, noise_vars=(), bin_sweep=(30,))  # KDE: tested above
    seeds = [2, 0, 5]
    monkeypatch.setenv("IBUTILS_CACHE_DIR", str(tmp_path / "one"))
    one = experiments.estimator_study(configs, seeds, settings=settings, progress=False, workers=1)
    monkeypatch.setenv("IBUTILS_CACHE_DIR", str(tmp_path / "two"))
    two = experiments.estimator_study(configs, seeds, settings=settings, progress=False, workers=2)
    again = experiments.estimator_study(configs, seeds, settings=settings, progress=False, workers=2)  # cached
    for name in configs:
        assert set(one[name].planes) == set(two[name].planes)
        for plane in one[name].planes:
            for study in (two, again):
                np.testing.assert_array_equal(study[name].planes[plane].i_xt, one[name].planes[plane].i_xt)
                np.testing.assert_array_equal(study[name].planes[plane].i_ty, one[name].planes[plane].i_ty)
    assert set(one["tanh, 4-bit"].planes) == {"paper", "quantised"}
    assert set(one["relu"].planes) == {"paper", "kraskov", "net_input", "precision", "equal_mass", "bins_30"}
    matrix = experiments.verdict_matrix(one, ["paper", "kraskov", "quantised"])
    assert matrix["rows"] == list(configs) and np.isnan(matrix["hidden"][0][2]) and matrix["hidden_verdict"][0][2] == "n/a"
    assert not np.isnan(matrix["hidden"][2][2])
    assert experiments.plane_label("kde_lower_0.001") == "KDE lower, σ² = 0.001"
    series = one["relu"].series()
    assert np.shape(series["kraskov"]["i_xt"]) == (6, len(one["relu"].snapshots))


def test_estimator_study_reuses_networks_trained_with_gradient_statistics(tmp_path, monkeypatch):
    """As chapter 6 reuses chapter 1's runs: the same `gradient_stats`, nothing trains again."""
    from ibutils import experiments

    monkeypatch.setenv("IBUTILS_CACHE_DIR", str(tmp_path))
    configs = {"tanh": train.TrainConfig(epochs=6, snapshots=4)}
    settings = experiments.EstimatorSettings(snapshots=2, noise_vars=(), bin_sweep=())
    chapter1 = experiments.tishby_nets(configs, [0, 1], gradient_stats="minibatch", progress=False)

    def untrainable(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(experiments.TishbyNetResult, "compute", untrainable)
    study = experiments.estimator_study(configs, [0, 1], settings=settings, gradient_stats="minibatch", progress=False)
    assert torch.equal(study["tanh"].net.run.params, chapter1["tanh"].run.params)
    with pytest.raises(AssertionError, match="trained again"):  # without statistics: other runs
        experiments.estimator_study(configs, [0, 1], settings=settings, progress=False)
