"""Benchmark of `ibutils.mi` against plain NumPy baselines, with a check that the results agree.

    .venv/bin/python benchmarks/bench_mi.py           # full sizes (about a minute on 2 cores)
    .venv/bin/python benchmarks/bench_mi.py --smoke   # tiny sizes, for CI

On a machine shared with other busy processes, `--threads 1` avoids torch's worker threads
waiting for each other (that can slow small element-wise ops a hundredfold).

Prints one row per component: our time, the baseline's time, their ratio, and the largest
difference between the two results in bits. Times are the best of a few runs (wall clock), so
they are sensitive to other load on the machine. Exits non-zero if a comparison disagrees.
"""

import argparse
import math
import sys
import time

import numpy as np
import torch

from ibutils.mi import binned, kde

FULL = {"binned": (10, 20, 4096, 10), "kde_compare": (4096, 10), "kde_large": (10_000, 1024)}
SMOKE = {"binned": (2, 3, 256, 10), "kde_compare": (256, 10), "kde_large": (512, 64)}
NOISE_VAR = 0.1


def timed(fn, repeats):
    """(result, best wall time in ms) over `repeats` calls."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return result, 1e3 * best


def row_entropy(codes):
    """Plug-in entropy in bits of the rows of a 2-D array, one symbol per distinct row."""
    p = np.unique(codes, axis=0, return_counts=True)[1] / len(codes)
    return -(p * np.log2(p)).sum()


def baseline_binned(t, y, n_bins=30):
    """One layer at a time: np.histogram-style codes on [-1, 1], then np.unique over rows (SPEC 2.1)."""
    edges = np.linspace(-1, 1, n_bins + 1)
    i_xt, i_ty = np.empty(t.shape[:-2]), np.empty(t.shape[:-2])
    for index in np.ndindex(t.shape[:-2]):
        codes = np.clip(np.searchsorted(edges, t[index], side="right") - 1, 0, n_bins - 1)
        h_t = row_entropy(codes)
        h_t_given_y = sum(np.mean(y == label) * row_entropy(codes[y == label]) for label in np.unique(y))
        i_xt[index], i_ty[index] = h_t, h_t - h_t_given_y
    return i_xt, i_ty


def baseline_kde(t, y, noise_var):
    """SPEC 2.2 by NumPy broadcasting over all pairs at once; returns ((upper), (lower)) in bits."""
    dist = sum((t[:, None, k] - t[None, :, k]) ** 2 for k in range(t.shape[1]))

    def mixture_entropy(exponent):  # -(1/N) sum_i log((1/N) sum_j exp(exponent_ij)), stable
        peak = exponent.max(axis=1, keepdims=True)
        return -np.mean(peak[:, 0] + np.log(np.mean(np.exp(exponent - peak), axis=1)))

    bounds = []
    for denominator in (2 * noise_var, 8 * noise_var):
        h_t = mixture_entropy(-dist / denominator)
        h_t_given_y = sum(
            np.mean(y == label) * mixture_entropy(-dist[np.ix_(y == label, y == label)] / denominator)
            for label in np.unique(y)
        )
        bounds.append((h_t / math.log(2), (h_t - h_t_given_y) / math.log(2)))
    return bounds


def max_difference(ours, theirs):
    return float(np.max(np.abs(np.asarray(ours, dtype=float) - np.asarray(theirs, dtype=float))))


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (seconds), for CI")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = SMOKE if args.smoke else FULL
    rng = np.random.default_rng(0)
    rows = []

    seeds, snapshots, n, d = sizes["binned"]
    # tanh activity whose saturation grows over the snapshots, as in training
    gain = np.geomspace(0.5, 50, snapshots)[:, None, None]
    t = np.tanh(gain * rng.normal(size=(seeds, snapshots, n, d))).astype(np.float32)
    y = rng.integers(0, 2, size=n)
    ours, ours_ms = timed(lambda: binned(t, y), 3)
    theirs, theirs_ms = timed(lambda: baseline_binned(t, y), 1)
    name = f"binned, {seeds}x{snapshots} layers of {n}x{d}"
    rows.append((name, ours_ms, theirs_ms, max_difference(ours, theirs), 1e-12))

    n, d = sizes["kde_compare"]
    t = np.tanh(rng.normal(size=(n, d)))
    y = rng.integers(0, 2, size=n)
    ours, ours_ms = timed(lambda: kde(t, y, NOISE_VAR), 3)
    theirs, theirs_ms = timed(lambda: baseline_kde(t, y, NOISE_VAR), 1)
    rows.append((f"kde, {n}x{d}, float64", ours_ms, theirs_ms, max_difference(ours, theirs), 1e-9))

    n, d = sizes["kde_large"]
    # low-rank tanh activity, like a wide hidden layer, so the estimate is not simply log2 N
    t = torch.from_numpy(np.tanh(rng.normal(size=(n, 8)) @ rng.normal(size=(8, d)) * 0.02).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 10, size=n))
    large, large_ms = timed(lambda: kde(t, y, NOISE_VAR), 1)
    rows.append((f"kde, {n}x{d} (no baseline)", large_ms, math.nan, math.nan, math.nan))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU\n")
    print(f"{'component':<38} {'ours ms':>10} {'baseline ms':>12} {'ratio':>8} {'max |diff| bits':>16}")
    for name, ours_ms, theirs_ms, diff, _ in rows:
        ratio = theirs_ms / ours_ms
        print(f"{name:<38} {ours_ms:>10.1f} {theirs_ms:>12.1f} {ratio:>8.1f} {diff:>16.2e}")
    print(f"\nkde {sizes['kde_large']}: upper {tuple(large.upper)}, lower {tuple(large.lower)} bits")
    failed = [name for name, _, _, diff, tolerance in rows if diff > tolerance]
    if failed:
        print(f"DISAGREEMENT in: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
