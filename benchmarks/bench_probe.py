"""Benchmark of `ibutils.probe`: what a measurement costs, and that memory stays flat.

    .venv/bin/python benchmarks/bench_probe.py            # a 1,024-unit layer on 10,000 samples
    .venv/bin/python benchmarks/bench_probe.py --smoke    # tiny sizes, for CI

The model is 100-1024-10 (tanh), the measured layer its 1,024 tanh units; the reference set is N
random inputs with 10 classes, measured in batches of 1,024.

1. Overhead, per estimator: `Probe.measure` against its baseline, the same work done by hand
   and without a probe: a bare forward pass of the model over the reference set (same batches,
   no hooks) plus the estimator's own cost on the layer's activations of the whole set, already
   in memory (`mi.binned`, `mi.binned_floor`, `mi.kde`). Medians of interleaved repeats; the
   ratio is the figure (target at most 1.2). Both sides must give the same bits, to the last
   digit, or the script exits non-zero.
2. Memory, in a fresh process each: the peak resident set (VmHWM in /proc/self/status) over
   200 measurements with `Binned` (30 bins), read after measurements 1, 10, 50, 100 and 200,
   against the bound of `Probe`'s docstring; and side by side a "keep every activation" loop
   (what a probe that stores activations per measurement would do) over its first measurements.
   Linux only (/proc).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time

import torch
from torch import nn

from ibutils import mi
from ibutils.probe import KDE, Binned, BinnedFloor, Probe

FULL = dict(n=10_000, width=1024, d_in=100, kde_n=2_000, repeats=5, measurements=200, kept=6)
SMOKE = dict(n=600, width=64, d_in=20, kde_n=300, repeats=2, measurements=12, kept=3)
BATCH = 1024
MIB = 2**20


def setup(n: int, width: int, d_in: int):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(d_in, width), nn.Tanh(), nn.Linear(width, 10))
    x = torch.randn(n, d_in)
    y = torch.randint(0, 10, (n,))
    return model, x, y


def bare_forward(model, x) -> None:
    with torch.no_grad():
        for batch in x.split(BATCH):
            model(batch)


def layer_activity(model, x) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model[1](model[0](batch)) for batch in x.split(BATCH)])


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def overhead(size: dict) -> list[dict]:
    """Median seconds of a measurement and of its baseline (forward + estimator), per estimator."""
    cases = [("Binned(30, [-1, 1])", Binned(30, (-1.0, 1.0)), lambda t, y: [mi.binned(t, y, 30, (-1.0, 1.0))], size["n"]),
             ("BinnedFloor(0.5)", BinnedFloor(0.5), lambda t, y: [mi.binned_floor(t, y, 0.5)], size["n"]),
             ("KDE(0.1)", KDE(0.1), lambda t, y: list(mi.kde(t, y, 0.1)), size["kde_n"])]
    rows = []
    for label, estimator, by_hand, n in cases:
        model, x, y = setup(n, size["width"], size["d_in"])
        probe = Probe(model, x, y, layers=["1"], estimators=[estimator], batch_size=BATCH)
        t = layer_activity(model, x)
        probe_bits = [tuple(r[3:]) for r in probe.measure(0)]
        if probe_bits != [tuple(b) for b in by_hand(t, y)]:
            sys.exit(f"{label}: the probe gives {probe_bits}, by hand {by_hand(t, y)}")
        measure, forward, estimate = [], [], []
        for step in range(1, size["repeats"] + 1):  # interleaved, so a busy moment hits both sides
            measure.append(timed(lambda: probe.measure(step)))
            forward.append(timed(lambda: bare_forward(model, x)))
            estimate.append(timed(lambda: by_hand(t, y)))
        m, f, e = (statistics.median(v) for v in (measure, forward, estimate))
        rows.append(dict(estimator=label, n=n, measure_s=m, forward_s=f, estimator_s=e, ratio=m / (f + e)))
    return rows


def _peak_and_current() -> tuple[float, float]:
    """VmHWM and VmRSS of this process, MiB."""
    fields = dict(line.split(":", 1) for line in open("/proc/self/status", encoding="ascii"))
    return tuple(int(fields[k].split()[0]) / 1024 for k in ("VmHWM", "VmRSS"))


def memory_child(size: dict, keep: bool) -> dict:
    """Run in a fresh process: peak RSS over repeated measurements (or, with `keep`, over a loop
    that stores each measurement's activations)."""
    torch.set_num_threads(1)
    model, x, y = setup(size["n"], size["width"], size["d_in"])
    probe = Probe(model, x, y, layers=["1"], estimators=[Binned(30, (-1.0, 1.0))], batch_size=BATCH)
    bare_forward(model, x)
    # a measurement of a few rows first: code loaded on first use is not the probe's data
    Probe(model, x[:64], y[:64], layers=["1"], estimators=[Binned(30, (-1.0, 1.0))]).measure(0)
    _, before = _peak_and_current()
    marks, kept = {}, []
    total = size["kept"] if keep else size["measurements"]
    for k in range(1, total + 1):
        if keep:
            kept.append(layer_activity(model, x))
        else:
            probe.measure(k)
        if k in (1, 2, 10, 50, 100, 200) or k == total:
            marks[k] = _peak_and_current()[0]
    return dict(rss_after_setup=before, peak=marks)


def bound_mib(size: dict) -> float:
    """The docstring's bound for this run, above the resident set after set-up: a batch's forward activations (B x width floats, twice: the linear layer and
    the tanh), about 32 MiB of coding temporaries, the packed keys (8 N ceil(width / 12) bytes)
    and mi.discrete's temporaries on them (taken as 8 N-long int64 arrays)."""
    forward = 2 * BATCH * size["width"] * 4
    keys = 8 * size["n"] * math.ceil(size["width"] / 12)
    return (forward + 32 * MIB + keys + 8 * 8 * size["n"]) / MIB


def memory(size: dict) -> dict:
    out = {}
    for keep in (False, True):
        cmd = [sys.executable, __file__, "--child", "keep" if keep else "probe", *(["--smoke"] if size is SMOKE else [])]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out["keep_activations" if keep else "probe"] = json.loads(done.stdout)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes")
    parser.add_argument("--child", choices=["probe", "keep"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = SMOKE if args.smoke else FULL
    if args.child:
        print(json.dumps(memory_child(size, keep=args.child == "keep")))
        return
    torch.set_num_threads(1)
    print(f"model {size['d_in']}-{size['width']}-10 (tanh), measured layer: {size['width']} units, "
          f"batches of {BATCH}, 1 thread\n")
    print("1. Overhead: Probe.measure vs a bare forward pass + the estimator on activations in memory")
    print(f"{'estimator':22s} {'N':>6s} {'measure':>9s} {'forward':>9s} {'estimator':>10s} {'ratio':>6s}")
    for r in overhead(size):
        print(f"{r['estimator']:22s} {r['n']:6d} {r['measure_s']:8.3f}s {r['forward_s']:8.3f}s "
              f"{r['estimator_s']:9.3f}s {r['ratio']:6.2f}")
    print("   (same bits on both sides, to the last digit)\n")
    found = memory(size)
    probe, keep = found["probe"], found["keep_activations"]
    print(f"2. Memory: peak RSS (VmHWM, MiB) over {size['measurements']} measurements, N = {size['n']:,}")
    base = probe["rss_after_setup"]
    print(f"   resident after set-up (a bare forward pass, a measurement of 64 rows): {base:.1f} MiB; "
          f"bound of Probe's docstring above it: {bound_mib(size):.1f} MiB")
    for k, peak in probe["peak"].items():
        print(f"   after measurement {int(k):4d}: peak {peak:8.1f} MiB  (+{peak - base:.1f} above set-up)")
    peaks = list(probe["peak"].values())
    growth = peaks[-1] - peaks[min(1, len(peaks) - 1)]
    kept = list(keep["peak"].items())
    per_kept = (kept[-1][1] - kept[0][1]) / (int(kept[-1][0]) - int(kept[0][0]))
    layer_mib = size["n"] * size["width"] * 4 / MIB
    print(f"   growth of the peak from measurement {list(probe['peak'])[min(1, len(peaks) - 1)]} to "
          f"{list(probe['peak'])[-1]}: {growth:+.1f} MiB")
    print(f"   side by side, keeping every measurement's activations ({layer_mib:.1f} MiB each): the peak grows "
          f"{per_kept:.1f} MiB per measurement, i.e. {per_kept * size['measurements'] / 1024:.1f} GiB "
          f"over {size['measurements']}")
    if growth > 0.5 * bound_mib(size) or peaks[-1] - base > bound_mib(size):
        sys.exit("memory grew beyond the stated bound")


if __name__ == "__main__":
    main()
