"""Benchmark of the deep-linear-student trainer in `ibutils.linear` against plain autograd backprop.

    .venv/bin/python benchmarks/bench_linear.py           # Fig. 4 size: 10 seeds, P = Ni = Nh = 100
    .venv/bin/python benchmarks/bench_linear.py --smoke   # tiny sizes, for CI

Both sides train the same students on the same teachers, data and minibatch order (SGD, batch 5)
for a short run; the baseline takes one autograd backward pass of the summed loss per step. Prints
steps per second for each, their ratio, the largest difference in the final weights, and the
projected wall time of a Fig. 4 run (10^4 epochs). Also times batch GD (P = 400), whose steps cost
the same for any P, and the cost of recording gradient statistics in a Fig. 21 run (1-1-1
network, SGD with batch 1), and chapter 5's grid of students trained one after the other in
this process against `experiments.linear_students` on one worker process per core, in turn (the
ratio includes starting the workers). Exits non-zero if the trainer and autograd disagree, or
the students trained side by side differ from those trained here in any bit.
"""

import argparse
import itertools
import os
import sys
import tempfile
import time

import numpy as np
import torch

from ibutils import experiments
from ibutils.linear import Teacher, _rng, init_students, train_students

FULL = dict(seeds=10, n_in=100, hidden=100, n_train=100, epochs=300, bgd_epochs=2000, fig21_epochs=500,
            grid_epochs=500, rounds=2)
SMOKE = dict(seeds=2, n_in=10, hidden=10, n_train=20, epochs=5, bgd_epochs=50, fig21_epochs=5, grid_epochs=5,
             rounds=1)
LR, BATCH = 0.01, 5


def autograd_baseline(teacher, n_train, hidden, epochs, seeds):
    """Per-step autograd SGD on L = 1/2 sum ||y - y_hat||^2 with the trainer's shuffles."""
    w0 = teacher.weights(seeds)
    x, y = teacher.sample(w0, n_train, seeds)
    ws = [w.requires_grad_() for w in init_students((teacher.n_in, hidden, teacher.n_out), 1e-3, seeds)]
    shufflers = [_rng(s, "shuffle") for s in seeds]
    rows = torch.arange(len(seeds))[:, None]
    for _ in range(epochs):
        order = torch.from_numpy(np.stack([g.random(n_train).argsort() for g in shufflers]))
        for start in range(0, n_train, BATCH):
            idx = order[:, start : start + BATCH]
            xb, yb = x[rows, idx], y[rows, idx]
            loss = 0.5 * ((xb @ ws[0].transpose(1, 2) @ ws[1].transpose(1, 2) - yb) ** 2).sum()
            loss.backward()
            with torch.no_grad():
                for w in ws:
                    w -= LR * w.grad
                    w.grad = None
    return [w.detach().numpy() for w in ws]


def chapter5_grid(size) -> dict:
    """Chapter 5's 16 ensembles of 5 seeds (P = 1, 2, 4 and 10 times `n_in`; initial std
    1/sqrt(fan-in) or 1e-3; SGD with batch 5 or batch GD), `grid_epochs` epochs each."""
    teacher = Teacher(n_in=size["n_in"], n_relevant=size["n_in"] * 3 // 10)
    return {(p, init, batch): dict(teacher=teacher, n_train=p * size["n_in"], hidden=(size["hidden"],), init_std=init,
                                   lr=LR, epochs=size["grid_epochs"], batch_size=batch, seeds=range(5), n_snapshots=50)
            for p, init, batch in itertools.product((1, 2, 4, 10), ("fan_in", 1e-3), (BATCH, None))}


def side_by_side(size) -> bool:
    """Time `chapter5_grid` in this process and with `experiments.linear_students(workers=None)`,
    in turn for `rounds` rounds, each in an empty run cache; print the times and their ratio, and
    return whether both give the same runs bit for bit."""
    jobs, times, same = chapter5_grid(size), {"one process": [], "side by side": []}, True
    for _ in range(size["rounds"]):
        with tempfile.TemporaryDirectory() as cache:
            os.environ["IBUTILS_CACHE_DIR"] = cache
            start = time.perf_counter()
            alone = {name: train_students(**job, progress=False) for name, job in jobs.items()}
            times["one process"].append(time.perf_counter() - start)
            start = time.perf_counter()
            together = experiments.linear_students(jobs, workers=None, progress=False)
            times["side by side"].append(time.perf_counter() - start)
        same &= all(np.array_equal(alone[name].i_xt, together[name].i_xt) and all(
            np.array_equal(a, b) for a, b in zip(alone[name].final_weights, together[name].final_weights))
            for name in jobs)
    one, two = (np.median(t) for t in times.values())
    print(f"chapter 5's grid ({len(jobs)} ensembles x 5 seeds, {size['grid_epochs']} epochs), median of "
          f"{size['rounds']} rounds: one process {one:.1f} s, side by side on {os.cpu_count()} CPUs {two:.1f} s "
          f"(ratio {two / one:.2f}); identical: {same}")
    return same


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes")
    args = parser.parse_args()
    size = SMOKE if args.smoke else FULL
    torch.set_num_threads(1)
    teacher = Teacher(n_in=size["n_in"])
    seeds = range(size["seeds"])
    steps = size["epochs"] * size["n_train"] // BATCH

    start = time.perf_counter()
    ours = train_students(teacher, size["n_train"], hidden=(size["hidden"],), lr=LR, epochs=size["epochs"],
                          batch_size=BATCH, seeds=seeds, n_snapshots=2, progress=False).final_weights
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    base = autograd_baseline(teacher, size["n_train"], size["hidden"], size["epochs"], seeds)
    t_base = time.perf_counter() - start
    diff = max(np.abs(a - b).max() / np.abs(b).max() for a, b in zip(ours, base))

    net = f"{size['n_in']}-{size['hidden']}-1"
    print(f"SGD batch {BATCH}: {len(seeds)} seeds, {net}, P = {size['n_train']}, {steps} steps")
    print(f"  ours      {steps / t_ours:9.0f} steps/s")
    print(f"  autograd  {steps / t_base:9.0f} steps/s   (ours {t_base / t_ours:.1f}x faster)")
    print(f"  largest relative difference in final weights: {diff:.1e}")
    fig4 = 10_000 * size["n_train"] // BATCH
    print(f"  projected Fig. 4 run (10^4 epochs, {fig4} steps): {fig4 / (steps / t_ours):.0f} s")

    start = time.perf_counter()
    train_students(teacher, 4 * size["n_train"], hidden=(size["hidden"],), lr=0.02, epochs=size["bgd_epochs"],
                   seeds=seeds, n_snapshots=2, progress=False)
    t_bgd = time.perf_counter() - start
    print(f"batch GD, P = {4 * size['n_train']}: {size['bgd_epochs'] / t_bgd:.0f} epochs/s "
          f"(10^4 epochs: {1e4 * t_bgd / size['bgd_epochs']:.1f} s)")

    fig21 = dict(hidden=(1,), lr=1e-3, epochs=size["fig21_epochs"], batch_size=1, seeds=seeds, n_snapshots=60,
                 progress=False)
    timings = {}
    for mode in (None, "minibatch"):
        start = time.perf_counter()
        train_students(Teacher(n_in=1), 100, gradient_stats=mode, **fig21)
        timings[mode] = time.perf_counter() - start
    print(f"Fig. 21 (1-1-1, SGD batch 1, {size['fig21_epochs']} epochs, 60 snapshots): "
          f"{timings[None]:.1f} s, with gradient statistics {timings['minibatch']:.1f} s")
    identical = side_by_side(size)
    if diff > 1e-9:
        print("MISMATCH between the trainer and the autograd baseline", file=sys.stderr)
        sys.exit(1)
    if not identical:
        print("MISMATCH between students trained side by side and in this process", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
