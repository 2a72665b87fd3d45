"""Chapter-1 performance (issue 9): ours against straightforward per-seed and per-layer code.

    python benchmarks/run.py                       # the table, full sizes (about 2 minutes)
    python benchmarks/run.py --smoke               # tiny sizes, for CI: ours and the baselines agree
    python benchmarks/run.py --profile             # where a short pipeline spends its time (cProfile)
    python benchmarks/run.py --chapter --workers 2 # chapter 1 at paper scale, run for real: wall, peak RSS
    python benchmarks/run.py --late                # a step late in training vs early, subnormals kept / flushed
    python benchmarks/run.py --activations         # a softplus step against a tanh step, and softplus's earlier steps

The table has one row per component: our time, the baseline's (`baselines.py`: an
`nn.Sequential` + `torch.optim.Adam` per seed, a per-seed forward pass, `np.unique(axis=0)`
binning per layer, NumPy-broadcast KDE), their ratio, and both extrapolated to the paper's
scale: 2 activations x 50 seeds x 10,000 epochs (13 minibatches of 256 each) with MI at the
218 distinct log-spaced snapshot epochs that `snapshots=300` gives. The table is measured in
this one process on one CPU thread; pin it to a core (`taskset -c 1 ...`) for steadier numbers. Times are the best of `--repeats` runs
(baselines: one run, on fewer seeds, scaled to 50). Each row also checks that ours and the
baseline agree (exits non-zero if not); nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import math
import os
import pstats
import resource
import sys
import tempfile
import time
from dataclasses import replace

import numpy as np
import torch

import baselines
from ibutils import data, experiments, infoplane, mi, results, train

FULL = dict(seeds=50, epochs=30, base_seeds=3, base_epochs=4, kde_small=(4096, 10), kde_large=(10_000, 1024),
            late_epochs=10_000)
SMOKE = dict(seeds=3, epochs=2, base_seeds=2, base_epochs=1, kde_small=(256, 10), kde_large=(512, 64), late_epochs=3)
PAPER_SEEDS, PAPER_EPOCHS = 50, 10_000
PAPER_SNAPSHOTS = len(train.log_spaced_epochs(PAPER_EPOCHS, 300))
NOISE_VAR = 0.1
SMALLEST_NORMAL = torch.finfo(torch.float32).tiny


def best(fn, repeats: int):
    """(result, best wall time in s) over `repeats` calls."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, min(times)


class Table:
    """Rows of timings in seconds, their extrapolation to the paper's scale, and the agreement checks."""

    def __init__(self):
        self.rows, self.failed = [], []

    def add(self, name, ours, base=None, scale=None, difference=None, tolerance=None):
        """`ours`, `base`: seconds for one unit of work; `scale`: units in the paper-scale chapter-1
        pipeline (None: not part of it); `difference` between ours and the baseline must be <= `tolerance`."""
        paper = (ours * scale, base * scale) if scale else (None, None)
        self.rows.append((name, ours, base, *paper, difference))
        if tolerance is not None and not difference <= tolerance:
            self.failed.append(f"{name}: difference {difference:.2e} > {tolerance:.0e}")

    def add_total(self, name):
        """A row summing the paper-scale times of the rows above."""
        ours = sum(row[3] for row in self.rows if row[3] is not None)
        base = sum(row[4] for row in self.rows if row[4] is not None)
        self.rows.append((name, None, None, ours, base, None))

    def print(self):
        print(f"{'component':<44}{'ours ms':>10}{'base ms':>11}{'ratio':>8}{'paper ours':>12}{'paper base':>12}"
              f"{'max diff':>10}")
        for name, ours, base, paper_ours, paper_base, difference in self.rows:
            cells = [f"{1e3 * ours:>10.2f}" if ours else " " * 10, f"{1e3 * base:>11.1f}" if base else " " * 11]
            ratio = base / ours if ours and base else paper_base / paper_ours if paper_ours and paper_base else None
            cells.append(f"{ratio:>8.1f}" if ratio else " " * 8)
            cells += [f"{_duration(t):>12}" if t is not None else " " * 12 for t in (paper_ours, paper_base)]
            cells.append(f"{difference:>10.0e}" if difference is not None else "")
            print(f"{name:<44}" + "".join(cells))


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def steps_per_epoch(n_train: int, config: train.TrainConfig) -> int:
    return math.ceil(n_train / config.batch_size)


def training_rows(table, x, y, size, repeats):
    """Time a minibatch step of every seed at once, and the baseline's per-seed steps; return the
    trained runs (their last snapshot feeds the binning rows)."""
    runs = {}
    for activation in ("tanh", "relu"):
        seeds = list(range(size["seeds"]))
        train_idx, test_idx = data.train_test_split(len(x), seeds)
        config = train.TrainConfig(activation=activation, epochs=size["epochs"], snapshots=2)
        steps = steps_per_epoch(train_idx.shape[1], config)
        run, ours = best(lambda: train.train(x, y, train_idx, test_idx, config, seeds, device="cpu", progress=False),
                         repeats)
        runs[activation] = run

        base_seeds = seeds[:size["base_seeds"]]
        base_config = train.TrainConfig(activation=activation, epochs=size["base_epochs"])
        initial = train.Ensemble(run.sizes, len(base_seeds), activation, device="cpu").initialise(base_seeds)
        xt, yt = torch.as_tensor(x), torch.as_tensor(y)
        warm_up = replace(base_config, epochs=1)
        baselines.train_seed(baselines.sequential(initial, 0), xt, yt, torch.as_tensor(train_idx[0]), warm_up)
        start = time.perf_counter()
        for s in range(len(base_seeds)):
            baselines.train_seed(baselines.sequential(initial, s), xt, yt, torch.as_tensor(train_idx[s]), base_config)
        base = (time.perf_counter() - start) / (len(base_seeds) * base_config.epochs) * len(seeds)
        table.add(f"training step, {activation}, {len(seeds)} seeds", ours / (config.epochs * steps), base / steps,
                  PAPER_EPOCHS * steps * PAPER_SEEDS / len(seeds), _training_difference(x, y, activation), 1e-5)
    return runs


def _training_difference(x, y, activation) -> float:
    """Largest weight difference after 3 full-batch Adam steps from the same start: ours vs baseline."""
    seeds = [0, 1]
    train_idx, test_idx = data.train_test_split(len(x), seeds)
    config = train.TrainConfig(activation=activation, epochs=3, batch_size=None, snapshots=2)
    ours = train.train(x, y, train_idx, test_idx, config, seeds, device="cpu", progress=False).ensemble(-1)
    initial = train.Ensemble(ours.sizes, len(seeds), activation, device="cpu").initialise(seeds)
    difference = 0.0
    for s in seeds:
        model = baselines.sequential(initial, s)
        baselines.train_seed(model, torch.as_tensor(x), torch.as_tensor(y), torch.as_tensor(train_idx[s]), config)
        for w, linear in zip(ours.weights, model[::2]):
            difference = max(difference, (w[s] - linear.weight).abs().max().item())
    return difference


def forward_row(table, x, run, size, repeats):
    """One snapshot's activations of every layer on all N inputs, every seed; returns them `[S, N, width]`."""
    net = run.ensemble(-1, device="cpu")
    xt = torch.as_tensor(x, dtype=torch.float32)
    acts, ours = best(lambda: net.forward(xt), repeats)
    base_seeds = range(size["base_seeds"])
    start = time.perf_counter()
    reference = [baselines.activations(baselines.sequential(net, s), xt) for s in base_seeds]
    base = (time.perf_counter() - start) / len(base_seeds) * len(run.seeds)
    difference = max(np.abs(a[s].numpy() - r).max() for s in base_seeds for a, r in zip(acts, reference[s]))
    # the trainer's snapshot for the metrics (2 activations), the binning (2), the ReLU range pass (1)
    table.add(f"snapshot forward, {len(run.seeds)} seeds x {len(x)} inputs", ours, base,
              5 * PAPER_SNAPSHOTS * PAPER_SEEDS / len(run.seeds), difference, 1e-5)
    return acts


def binning_row(table, acts, y, activation, repeats):
    """Binned I(X;T), I(T;Y) of every layer of every seed at one snapshot: batched vs per layer."""
    n_seeds = len(acts[0])
    fixed = (30, np.full(n_seeds, -1.0), np.full(n_seeds, 1.0))
    if activation == "tanh":
        hidden = fixed
    else:  # the paper's ReLU rule, on this snapshot: 100 bins on each seed's [min, max] of hidden activity
        hidden = (100, np.min([a.amin((1, 2)).numpy() for a in acts[:-1]], 0),
                  np.max([a.amax((1, 2)).numpy() for a in acts[:-1]], 0))
    layers = [(a, *(hidden if l < len(acts) - 1 else fixed)) for l, a in enumerate(acts)]
    ours, t_ours = best(lambda: [mi.binned(a, y, bins, (lo, hi)) for a, bins, lo, hi in layers], repeats)
    start = time.perf_counter()
    base = [[baselines.binned(a[s].numpy(), y, bins, lo[s], hi[s]) for s in range(n_seeds)]
            for a, bins, lo, hi in layers]
    t_base = time.perf_counter() - start
    difference = max(abs(o[q][s] - b[s][q]) for o, b in zip(ours, base) for s in range(n_seeds) for q in (0, 1))
    table.add(f"binned MI, {activation}, {n_seeds} seeds x {len(acts)} layers", t_ours, t_base,
              PAPER_SNAPSHOTS * PAPER_SEEDS / n_seeds, difference, 1e-12)


def kde_rows(table, size, repeats):
    rng = np.random.default_rng(0)
    n, d = size["kde_small"]
    t, y = np.tanh(rng.normal(size=(n, d))), rng.integers(0, 2, size=n)
    ours, t_ours = best(lambda: mi.kde(t, y, NOISE_VAR, precision="float64"), repeats)
    theirs, t_base = best(lambda: baselines.kde(t, y, NOISE_VAR), 1)
    difference = float(np.abs(np.asarray(ours, dtype=float) - np.asarray(theirs, dtype=float)).max())
    table.add(f"KDE, N = {n} x {d}, float64", t_ours, t_base, difference=difference, tolerance=1e-9)

    n, d = size["kde_large"]
    # low-rank tanh activity, like a wide hidden layer, so the estimate is not simply log2 N
    t = torch.from_numpy(np.tanh(rng.normal(size=(n, 8)) @ rng.normal(size=(8, d)) * 0.02).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 10, size=n))
    _, t_ours = best(lambda: mi.kde(t, y, NOISE_VAR), 1)
    table.add(f"KDE, N = {n} x {d}, per snapshot-layer", t_ours)


class Stepper:
    """Chapter 1's ensemble with its Adam state, stepped on the chapter's minibatches
    (what one step of `train.train` does, without snapshots), so that steps can be timed
    from any point of training and the state saved and restored."""

    def __init__(self, x, y, activation: str, seeds, quantise_bits: int | None = None):
        self.seeds = list(seeds)
        train_idx, _ = data.train_test_split(len(x), self.seeds)
        self.config = train.TrainConfig(activation=activation, quantise_bits=quantise_bits)
        self.net = train.Ensemble((x.shape[1], *self.config.hidden, 2), len(self.seeds), activation, device="cpu",
                                  quantise_bits=quantise_bits)
        self.net.initialise(self.seeds, self.config.init)
        self.opt = train._Adam(self.net.params, self.net.grad, self.config.lr)
        xt = torch.as_tensor(x, dtype=torch.float32)
        onehot = torch.nn.functional.one_hot(torch.as_tensor(y), 2).float()
        self.table = torch.cat([xt, onehot], 1).T.contiguous().numpy()  # [d + C, N]
        self.d, self.rows = x.shape[1], torch.as_tensor(train_idx)
        self.generators = [torch.Generator().manual_seed(s + 1_000_003) for s in self.seeds]

    def batches(self, shuffle: bool = True) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch's minibatches `([S, d, B], [S, C, B])`, each seed's rows in a fresh order."""
        rows = self.rows
        if shuffle:
            rows = torch.gather(rows, 1, torch.stack([torch.randperm(rows.shape[1], generator=g)
                                                       for g in self.generators]))
        epoch = torch.from_numpy(np.take(self.table, rows.reshape(-1).numpy(), axis=1))
        epoch = epoch.view(-1, *rows.shape).transpose(0, 1)
        return [(epoch[:, :self.d, i:i + self.config.batch_size], epoch[:, self.d:, i:i + self.config.batch_size])
                for i in range(0, rows.shape[1], self.config.batch_size)]

    def step(self, x_batch, onehot_batch) -> None:
        self.net.backward(x_batch, onehot_batch)
        self.opt.step()

    def state(self) -> dict:
        return {"params": self.net.params.clone(), "m": self.opt.m.clone(), "v": self.opt.v.clone(), "t": self.opt.t}

    def restore(self, state: dict) -> None:
        self.net.params.copy_(state["params"])
        self.opt.m.copy_(state["m"])
        self.opt.v.copy_(state["v"])
        self.opt.t = state["t"]

    def subnormals(self, batches) -> dict[str, int]:
        """Subnormal float32 values met per step over `batches` (from the current state, which it
        advances), per tensor: every layer's activity h and back-propagated gradient dz (the
        last batch's buffers), the parameters' gradient, Adam's moments m and v and its divisor."""
        counts = {}
        for x_batch, onehot_batch in batches:
            self.step(x_batch, onehot_batch)
            acts, grads = self.net._buffers(x_batch.shape[2])
            tensors = {**{f"h{l}": a for l, a in enumerate(acts)}, **{f"dz{l}": g for l, g in enumerate(grads)},
                       "grad": self.net.grad, "m": self.opt.m, "v": self.opt.v, "denom": self.opt.denom}
            for name, t in tensors.items():
                counts[name] = counts.get(name, 0) + int(((t != 0) & (t.abs() < SMALLEST_NORMAL)).sum())
        return {name: round(n / len(batches)) for name, n in counts.items() if n}


def late_state(x, y, activation: str, seeds, epochs: int, cache: bool = True) -> dict:
    """The Stepper's state after `epochs` epochs without flushing subnormals, trained once and
    kept in the run cache when `cache` (keyed by the settings only: a benchmark's starting point)."""
    def compute():
        stepper = Stepper(x, y, activation, seeds)
        torch.set_flush_denormal(False)
        for _ in range(epochs):
            for batch in stepper.batches():
                stepper.step(*batch)
        return stepper.state()
    if not cache:
        return compute()
    key = {"activation": activation, "seeds": list(seeds), "epochs": epochs, "config": "chapter 1", "version": 1}
    return results.cached("benchmark_late_state", key, compute)


def late_mode(size, repeats: int, cache: bool) -> int:
    """Per-step cost early (initial weights) and late (after `size['late_epochs']` epochs) per
    activation, with subnormals kept and flushed: the four timed in turn in every round (one
    epoch of the same minibatches each), so that the ratios compare neighbours in time; and
    the subnormals a late step meets."""
    torch.set_num_threads(1)
    x, y = data.tishby()
    seeds = range(size["seeds"])
    print(f"{size['seeds']} seeds, one epoch of minibatches (data prepared) per timing; best (median) of {repeats} "
          f"rounds; ratios: median over rounds; late = after {size['late_epochs']:,} epochs (trained once, cached)\n")
    print(f"{'activation':<11}{'state':<7}{'kept ms/step':>16}{'flushed ms/step':>18}{'kept / flushed':>16}"
          f"{'/ early, kept':>15}{'/ early, flushed':>18}")
    for activation in ("tanh", "relu"):
        stepper = Stepper(x, y, activation, seeds)
        batches = stepper.batches(shuffle=False)
        states = {"early": stepper.state(), "late": late_state(x, y, activation, seeds, size["late_epochs"], cache)}
        cases = [(name, flush) for name in states for flush in (False, True)]
        times = {case: [] for case in cases}
        for r in range(repeats):
            for name, flush in cases[r % len(cases):] + cases[:r % len(cases)]:
                stepper.restore(states[name])
                torch.set_flush_denormal(flush)
                start = time.perf_counter()
                for batch in batches:
                    stepper.step(*batch)
                times[name, flush].append((time.perf_counter() - start) / len(batches))
                torch.set_flush_denormal(False)
        times = {case: np.array(t) for case, t in times.items()}
        cell = lambda t: f"{1e3 * t.min():.2f} ({1e3 * np.median(t):.2f})"
        ratio = lambda a, b: f"{np.median(times[a] / times[b]):.2f}"
        for name in states:
            print(f"{activation:<11}{name:<7}{cell(times[name, False]):>16}{cell(times[name, True]):>18}"
                  f"{ratio((name, False), (name, True)):>16}{ratio((name, False), ('early', False)):>15}"
                  f"{ratio((name, True), ('early', True)):>18}")
        stepper.restore(states["late"])
        print(f"{'':<11}subnormal values per late step: {stepper.subnormals(batches)}")
    return 0


def _activation_op_times(stepper, context, x_batch, repeats: int) -> tuple[float, float, float]:
    """Seconds per step of the hidden layers' activation (forward, in place on a copy of the net
    input, with the slope f'(z) where the backward pass keeps it), their derivative factors
    (backward, on a copy of a gradient), and of the copies alone, on one minibatch of the
    chapter's network: the best of `repeats` rounds of 20."""
    activation = stepper.net.activation
    with context():
        net_inputs = []
        stepper.net._forward(x_batch, net_inputs=net_inputs)
        zs = net_inputs[:-1]
        keeps_slope = activation in train.KEEPS_SLOPE
        slopes = [torch.empty_like(z) if keeps_slope else None for z in zs]
        hs = [train._activate_(activation, z.clone(), slope) for z, slope in zip(zs, slopes)]
        sources = slopes if keeps_slope else hs
        work, dzs = [torch.empty_like(z) for z in zs], [torch.randn_like(z) for z in zs]

        def forward():
            for z, w, slope in zip(zs, work, slopes):
                train._activate_(activation, w.copy_(z), slope)

        def backward():
            for source, w, dz in zip(sources, work, dzs):
                train._backprop_(activation, w.copy_(dz), source)

        def copies():
            for z, w in zip(zs, work):
                w.copy_(z)

        timed = [best(lambda: [fn() for _ in range(20)], repeats)[1] / 20 for fn in (forward, backward, copies)]
    return tuple(timed)


def _activation_of(variant: str) -> tuple[str, int | None]:
    """"softplus, torch" -> ("softplus", None), "tanh 8-bit" -> ("tanh", 8): the activation and
    quantisation a variant of `activations_mode` trains."""
    words = variant.replace(",", "").split()
    return words[0], 8 if "8-bit" in words else None


def _ours(variant: str) -> str:
    """"softplus, torch" -> "softplus": the variant of today's code that an earlier one is compared with."""
    return variant.split(",")[0]


def activations_mode(size, repeats: int) -> int:
    """Per-step cost of softplus and softsign against tanh (issue 23) on chapter 1's network (the
    one chapter 6 trains with four activations), 50 seeds, batch 256, Adam, subnormals flushed as
    `train.train` does: tanh; softplus, and softplus as it was before `ibutils.vecmath` (torch's
    kernels, `baselines.torch_softplus`) and before issue 23 (`baselines.expm1_softplus`);
    softsign, and softsign by torch's operations (`baselines.torch_softsign`); chapter 6's 8-bit
    tanh network, and with NumPy's fake quantisation (`baselines.numpy_quantise`). All timed in
    turn in every round (one epoch of the same minibatches each, from the initial weights); then
    where a step's activation time goes; and a check that each earlier step gives the same
    gradient as today's: softplus's to rounding, softsign's and the 8-bit network's bit for bit."""
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    x, y = data.tishby()
    seeds = range(size["seeds"])
    variants = {"tanh": contextlib.nullcontext, "softplus": contextlib.nullcontext,
                "softplus, torch": baselines.torch_softplus, "softplus before": baselines.expm1_softplus,
                "softsign": contextlib.nullcontext, "softsign, torch": baselines.torch_softsign,
                "tanh 8-bit": contextlib.nullcontext, "tanh 8-bit, NumPy": baselines.numpy_quantise}
    steppers = {}
    for name, context in variants.items():
        with context():
            activation, bits = _activation_of(name)
            steppers[name] = Stepper(x, y, activation, seeds, quantise_bits=bits)
    batches = steppers["tanh"].batches(shuffle=False)
    states = {name: stepper.state() for name, stepper in steppers.items()}
    grads = {}
    for name in [name for name in variants if name != "tanh"]:
        with variants[name]():
            steppers[name].net.backward(*batches[0])
            grads[name] = steppers[name].net.grad.clone()
    earlier = [name for name in grads if name != _ours(name)]
    differences = {name: float((grads[_ours(name)] - grads[name]).abs().max() / grads[name].abs().max())
                   for name in earlier}
    print(f"{size['seeds']} seeds, {len(batches)} minibatches of {steppers['tanh'].config.batch_size} per timing "
          f"(one epoch from the initial weights); best (median) of {repeats} rounds; ratios: median over rounds\n")
    names = list(variants)
    times = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            steppers[name].restore(states[name])
            with variants[name]():
                start = time.perf_counter()
                for batch in batches:
                    steppers[name].step(*batch)
            times[name].append((time.perf_counter() - start) / len(batches))
    times = {name: np.array(t) for name, t in times.items()}
    print(f"{'activation':<17}{'ms/step':>16}{'/ tanh':>9}{'activation forward':>20}{'backward factor':>17}{'(copies)':>10}")
    for name in names:
        forward, backward, copies = _activation_op_times(steppers[name], variants[name], batches[0][0], repeats)
        print(f"{name:<17}{1e3 * times[name].min():>7.2f} ({1e3 * np.median(times[name]):.2f}){np.median(times[name] / times['tanh']):>9.2f}"
              f"{1e3 * forward:>17.2f} ms{1e3 * backward:>14.2f} ms{1e3 * copies:>7.2f} ms")
    print()
    for name, difference in differences.items():
        ours = _ours(name)
        print(f"{ours} / {name} per step: {np.median(times[ours] / times[name]):.2f}; "
              f"their gradients on the first minibatch differ by {difference:.1e} of the largest")
    exact = differences["softsign, torch"] == differences["tanh 8-bit, NumPy"] == 0
    return 0 if max(differences.values()) < 1e-5 and exact else 1


def table_mode(size, repeats) -> int:
    torch.set_num_threads(1)
    x, y = data.tishby()
    print(f"torch {torch.__version__}, numpy {np.__version__}, {torch.get_num_threads()} torch thread, "
          f"CPU affinity {sorted(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'}; "
          f"paper scale: 2 activations x {PAPER_SEEDS} seeds x {PAPER_EPOCHS:,} epochs, {PAPER_SNAPSHOTS} snapshots\n")
    table = Table()
    runs = training_rows(table, x, y, size, repeats)
    binning_row(table, forward_row(table, x, runs["tanh"], size, repeats), y, "tanh", repeats)
    binning_row(table, runs["relu"].ensemble(-1).forward(torch.as_tensor(x, dtype=torch.float32)), y, "relu", repeats)
    table.add_total("chapter 1 pipeline, one process (sum)")
    kde_rows(table, size, repeats)
    table.print()
    if table.failed:
        print("DISAGREEMENT: " + "; ".join(table.failed), file=sys.stderr)
        return 1
    return 0


def profile_mode(size):
    """cProfile of a short pipeline: training with snapshots, then `binned_plane`."""
    torch.set_num_threads(1)
    x, y = data.tishby()
    seeds = list(range(size["seeds"]))
    train_idx, test_idx = data.train_test_split(len(x), seeds)
    config = train.TrainConfig(epochs=size["epochs"] * 10, snapshots=30)
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    run = train.train(x, y, train_idx, test_idx, config, seeds, device="cpu", progress=False)
    trained = time.perf_counter()
    infoplane.binned_plane(run, x, y, progress=False)
    profiler.disable()
    done = time.perf_counter()
    steps = config.epochs * steps_per_epoch(train_idx.shape[1], config)
    print(f"{len(seeds)} seeds, {config.epochs} epochs ({steps} steps), {len(run.epochs)} snapshots: "
          f"training {trained - start:.2f} s ({1e3 * (trained - start) / steps:.2f} ms/step, profiled), "
          f"binned_plane {done - trained:.2f} s ({1e3 * (done - trained) / len(run.epochs):.1f} ms/snapshot)\n")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def chapter_mode(workers: int | None, smoke: bool):
    """Chapter 1's `tishby_nets` call at paper scale (or tiny with --smoke), without the cache."""
    seeds = range(2 if smoke else PAPER_SEEDS)
    size = dict(epochs=3, snapshots=3) if smoke else {}
    configs = {a: train.TrainConfig(activation=a, **size) for a in ("tanh", "relu")}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        os.environ["IBUTILS_CACHE_DIR"] = cache
        nets = experiments.tishby_nets(configs, seeds, workers=workers, progress=not smoke)
    wall = time.perf_counter() - start
    for activation, net in nets.items():
        print(f"{activation}: {net.seconds} (slowest worker); final seed-mean I(X;T) per layer "
              f"{np.round(net.plane.mean()[0][-1], 3).tolist()} bits")
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    print(f"chapter 1, {len(seeds)} seeds x {configs['tanh'].epochs:,} epochs, workers={workers}: {wall:.1f} s wall; "
          f"peak RSS {self_rss:.2f} GB this process, {child_rss:.2f} GB the largest worker process")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (seconds), for CI")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of ours per row (best counts)")
    parser.add_argument("--profile", action="store_true", help="profile a short pipeline instead of the table")
    parser.add_argument("--chapter", action="store_true", help="run chapter 1's experiments instead of the table")
    parser.add_argument("--late", action="store_true",
                        help="per-step cost late in training vs early, subnormals kept and flushed")
    parser.add_argument("--activations", action="store_true",
                        help="per-step cost of softplus against tanh, and of softplus's earlier steps")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes for --chapter (default: one per CPU core this process may use)")
    args = parser.parse_args()
    size = SMOKE if args.smoke else FULL
    if args.chapter:
        chapter_mode(args.workers, args.smoke)
        return 0
    if args.profile:
        profile_mode(size)
        return 0
    if args.activations:
        return activations_mode(size, 2 if args.smoke else args.repeats)
    if args.late:
        return late_mode(size, 2 if args.smoke else args.repeats, cache=not args.smoke)
    return table_mode(size, 1 if args.smoke else args.repeats)


if __name__ == "__main__":
    sys.exit(main())
