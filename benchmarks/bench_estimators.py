"""The estimators of the estimator chapter (issue 13), ours against straightforward baselines.

    .venv/bin/python benchmarks/bench_estimators.py           # full sizes (about 2 minutes)
    .venv/bin/python benchmarks/bench_estimators.py --smoke   # tiny sizes, for CI: ours and the baselines agree

Each row times ours and a baseline in this one process, on one torch thread, on the same
tanh (or ReLU) activity of the 4,096 12-bit patterns, and prints their ratio and the largest
difference between them (bits, or the edges themselves). Baselines:

- KDE: the float64 code of `mi.kde_sweep` before issue 13 (blocks of rows against the whole
  distance matrix, both kernels by exp), against ours in float64 and in the default float32
  kernels; noise variance 0.1 alone, and 0.1 with 1e-3 as the chapter sweeps them; once at
  the MNIST size.
- Kraskov: the full distance matrix in NumPy and `np.partition`, one layer at a time.
- Equal-mass edges, precision binning, quantised codes: `np.unique` per layer, then the
  plug-in information of the rows by `np.unique(axis=0)`.

Exits non-zero if any row disagrees beyond its tolerance; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
import torch
from scipy import special

from ibutils import mi

FULL = dict(n_bits=12, widths=(10, 20), layers=50, kraskov_layers=4, mnist=(10_000, 1024))
SMOKE = dict(n_bits=7, widths=(4, 6), layers=3, kraskov_layers=2, mnist=(300, 64))
NOISE_VARS = [0.1, 1e-3]
BINS = 30


def interleaved(fns, repeats: int, clock=time.perf_counter):
    """(results, best times in s) of the functions `fns`, called in turn `repeats` times, so that
    a machine busy with other work slows them alike; `clock` e.g. `time.process_time` to count
    this process's CPU time only (steadier on a loaded machine)."""
    times, results = [[] for _ in fns], [None for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = clock()
            results[i] = fn()
            times[i].append(clock() - start)
    return results, [min(t) for t in times]


def layers(n_bits: int, width: int, count: int, activation: str = "tanh") -> np.ndarray:
    """`count` float32 layers [count, 2**n_bits, width] of random networks on all n_bits-bit
    patterns, from spread out to saturated (gains 0.3 to 30, as over training)."""
    rng = np.random.default_rng(width)
    x = ((np.arange(2**n_bits)[:, None] >> np.arange(n_bits)) & 1) - 0.5
    gains = np.geomspace(0.3, 30, count)[:, None, None]
    net_input = gains * (x @ rng.normal(size=(count, n_bits, width)) / math.sqrt(n_bits))
    return (np.tanh(net_input) if activation == "tanh" else np.maximum(net_input, 0)).astype(np.float32)


def labels(n: int) -> np.ndarray:
    return np.random.default_rng(1).permutation(np.arange(n) < round(0.51709 * n)).astype(np.int64)


# --- baselines ----------------------------------------------------------------------------------


def previous_kde_sweep(t: np.ndarray, y: np.ndarray, noise_vars) -> list[list[float]]:
    """[i_xt upper, i_ty upper, i_xt lower, i_ty lower] per variance: `mi.kde_sweep` as it was
    before issue 13 (commit e83de39, the same torch and NumPy calls): float64, blocks of 2**20 / N
    rows against all N columns, both kernels by exp."""
    labels, class_sizes = torch.unique(torch.as_tensor(y), return_inverse=True, return_counts=True)[1:]
    labels, order = labels.sort(stable=True)
    ends = class_sizes.cumsum(0).tolist()
    blocks = [slice(end - size, end) for size, end in zip(class_sizes.tolist(), ends)]
    h = torch.as_tensor(t).to(torch.float64)[order]
    h = h - h.mean(0)
    n, sq_norms, step = len(h), (h * h).sum(1), max(1, 2**20 // len(h))
    log_sums = torch.zeros(len(noise_vars), 2, 2, dtype=torch.float64)
    for start in range(0, n, step):
        rows = slice(start, start + step)
        dist = (sq_norms[rows, None] + sq_norms[None, :] - 2.0 * (h[rows] @ h.T)).clamp_(min=0.0)
        dist[:, rows].fill_diagonal_(0.0)
        kernel = torch.empty_like(dist)
        for v, var in enumerate(noise_vars):
            for k, denominator in enumerate((2 * var, 8 * var)):
                torch.mul(dist, -1.0 / denominator, out=kernel)
                np.exp(kernel.numpy(), out=kernel.numpy())
                per_class = torch.stack([kernel[:, block].sum(1) for block in blocks], 1)
                log_sums[v, k, 0] += per_class.sum(1).log_().sum()
                log_sums[v, k, 1] += per_class.gather(1, labels[rows, None]).log_().sum()
    sizes = class_sizes.to(torch.float64)
    i_xt = (math.log(n) - log_sums[..., 0] / n) / math.log(2)
    i_ty = i_xt + (log_sums[..., 1] / n - (sizes * sizes.log()).sum() / n) / math.log(2)
    return torch.stack([i_xt, i_ty], -1).reshape(len(noise_vars), 4).tolist()  # [KL i_xt, i_ty, BD i_xt, i_ty]


def brute_force_kraskov(t: np.ndarray, k: int = 2, eps: float = 1e-16) -> float:
    """Kraskov entropy (paper App. B.3), full distance matrix (differences per unit), `np.partition`; bits."""
    n, d = t.shape
    x = t.astype(np.float64)
    dist = np.sqrt(sum((x[:, None, u] - x[None, :, u]) ** 2 for u in range(d)))
    np.fill_diagonal(dist, np.inf)  # the sample itself is not a neighbour
    r = np.partition(dist, k - 1, axis=1)[:, k - 1]
    nats = d * np.mean(np.log(r + eps)) + d / 2 * np.log(np.pi) - special.gammaln(d / 2 + 1)
    return (nats + special.digamma(n) - special.digamma(k)) / np.log(2)


def row_information(codes: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Plug-in I(X;T) = H(T) and I(T;Y) = H(T) - sum_l p_l H(T|Y=l) of the rows of `codes`, by np.unique."""
    def h(rows):
        p = np.unique(rows, axis=0, return_counts=True)[1] / len(rows)
        return float(-(p * np.log2(p)).sum())

    h_t = h(codes)
    return h_t, h_t - sum(np.mean(y == c) * h(codes[y == c]) for c in np.unique(y))


def plain_equal_mass_edges(layer: np.ndarray, bins: int, low: float) -> np.ndarray:
    """Equal-mass edges of one layer by np.unique (for layers with at least `bins` distinct values)."""
    u = np.unique(layer.astype(np.float64))
    gaps = [u[len(u) * k // bins - 1:len(u) * k // bins + 1].mean() for k in range(1, bins)]
    return np.array([low, *gaps, u[-1]])


# --- rows ---------------------------------------------------------------------------------------


class Table:
    def __init__(self):
        self.failed = []
        print(f"{'component':<52}{'ours ms':>10}{'base ms':>11}{'ratio':>8}{'max diff':>10}")

    def row(self, name, ours, base, difference, tolerance):
        ratio = f"{base / ours:>8.1f}" if base else " " * 8
        base_ms = f"{1e3 * base:>11.1f}" if base else " " * 11
        print(f"{name:<52}{1e3 * ours:>10.2f}{base_ms}{ratio}{difference:>10.0e}", flush=True)
        if not difference <= tolerance:
            self.failed.append(f"{name}: difference {difference:.1e} > {tolerance:.0e}")


def kde_rows(table, t, y, repeats, label, noise_vars):
    """The KDE sweep before issue 13 against ours with float64 and with float32 kernels."""
    def ours(precision):
        return lambda: np.array([[*b.upper, *b.lower] for b in mi.kde_sweep(t, y, noise_vars, precision=precision)])

    (base, *results), (t_base, *times) = interleaved(
        [lambda: np.array(previous_kde_sweep(t, y, noise_vars)), ours("float64"), ours("float32")], repeats)
    for precision, result, t_ours, tolerance in zip(("float64", "float32"), results, times, (1e-9, 1e-4)):
        table.row(f"KDE {noise_vars}, {label}, {precision}", t_ours, t_base, np.abs(result - base).max(), tolerance)


def batched_row(table, name, ours_fn, base_fn, n_layers, repeats, tolerance):
    """A batched estimator against a per-layer loop; both return per-layer numbers [layers, ...]."""
    (ours, base), (t_ours, t_base) = interleaved([ours_fn, base_fn], repeats)
    table.row(f"{name}, per layer", t_ours / n_layers, t_base / n_layers,
              float(np.abs(np.asarray(ours, np.float64) - np.asarray(base, np.float64)).max()), tolerance)


def binning_rows(table, size, repeats):
    n_bits, width, count = size["n_bits"], size["widths"][0], size["layers"]
    y = labels(2**n_bits)
    for activation, low in (("tanh", -1.0), ("relu", 0.0)):
        ts = layers(n_bits, width, count, activation)
        shape = f"{count} x {ts.shape[1]} x {width}"
        batched_row(table, f"equal-mass edges, {activation}, {shape}",
                    lambda: mi.equal_mass_edges(ts, BINS, low).numpy(),
                    lambda: [plain_equal_mass_edges(t, BINS, low) for t in ts], count, repeats, 0.0)
        edges = mi.equal_mass_edges(ts, BINS, low)
        batched_row(table, f"equal-mass binned MI, {activation}, {shape}",
                    lambda: np.stack(mi.binned(ts, y, bins=edges), 1),
                    lambda: [row_information(np.searchsorted(e[1:-1], t, side="right"), y)
                             for t, e in zip(ts, edges.numpy())], count, repeats, 1e-12)
        batched_row(table, f"precision binning MI, {activation}, {shape}",
                    lambda: np.stack(mi.binned_precision(ts, y), 1),
                    lambda: [row_information(t.view(np.int32), y) for t in ts + np.float32(0)], count, repeats, 1e-12)
        batched_row(table, f"8-bit quantised MI, {activation}, {shape}",
                    lambda: np.stack(mi.discrete(mi.quantise(ts, 8), y), 1),
                    lambda: [row_information(np.floor((t - t.min()) * (255 / (float(t.max()) - t.min())) + 0.5), y)
                             for t in ts.astype(np.float64)], count, repeats, 1e-12)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (seconds), for CI")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each side per row (best counts)")
    args = parser.parse_args()
    size, repeats = (SMOKE, 1) if args.smoke else (FULL, args.repeats)
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, numpy {np.__version__}, {torch.get_num_threads()} torch thread\n")
    table = Table()
    n = 2**size["n_bits"]
    for width in size["widths"]:
        t = layers(size["n_bits"], width, 3)[1]  # a middle gain: neither spread out nor saturated
        for noise_vars in ([0.1], NOISE_VARS):
            kde_rows(table, t, labels(n), repeats, f"N = {n} x {width}", noise_vars)
    n_mnist, width = size["mnist"]
    rng = np.random.default_rng(2)  # a wide low-rank tanh layer, like a hidden layer of the MNIST net
    t = np.tanh(rng.normal(size=(n_mnist, 8)) @ rng.normal(size=(8, width)) * 0.05).astype(np.float32)
    kde_rows(table, t, rng.integers(0, 10, size=n_mnist), 1, f"N = {n_mnist} x {width}", NOISE_VARS)
    ts = layers(size["n_bits"], size["widths"][0], size["kraskov_layers"])
    batched_row(table, f"Kraskov entropy, {ts.shape[1]} x {ts.shape[2]}", lambda: mi.kraskov_entropy(ts),
                lambda: [brute_force_kraskov(t) for t in ts], len(ts), 1, 1e-9)
    binning_rows(table, size, repeats)
    if table.failed:
        print("DISAGREEMENT: " + "; ".join(table.failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
