"""Chapter 6's estimating, today's code against the code of a base commit, side by side (issue 23).

    .venv/bin/python benchmarks/bench_estimator_study.py            # 1 seed per activation, 1,500 epochs
    .venv/bin/python benchmarks/bench_estimator_study.py --smoke    # tiny networks, for CI: both agree
    .venv/bin/python benchmarks/bench_estimator_study.py --runs runs.pt   # keep the trained runs in a file

The base commit's `ibutils` (default 1a1d8c7, before the estimators were one family) is
extracted with `git archive` into a temporary folder as the package `ibutils_base` (its
`ibutils` imports rewritten), so both run in this one process on one torch thread. One network
per activation of chapter 6 (tanh, softsign, ReLU, softplus; its sizes, optimiser and learning
rate) is trained once with today's trainer; then each side measures the same snapshots (the
activity from today's activation functions) with the chapter's estimators
(`experiments.EstimatorSettings`: KDE at both noise variances, Kraskov, net-input bins, machine
precision, equal-mass bins, the bin sweep), in turn, `--repeats` times
(the best time counts), and the script prints each side's time per layer-snapshot, the ratio,
and the largest difference of every plane. Exits non-zero if a binning plane differs at all or a
KDE or Kraskov plane by more than 1e-6 bits; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import io
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench_estimators import interleaved
from ibutils import data, experiments, infoplane, train

ROOT = Path(__file__).resolve().parents[1]
ACTIVATIONS = ("tanh", "softsign", "relu", "softplus")
FULL = dict(epochs=1500, snapshots=60, measured=30)
SMOKE = dict(epochs=20, snapshots=8, measured=3)
TOLERANCE = 1e-6  # bits, for the KDE and Kraskov planes; the binning planes must agree exactly


def base_package(commit: str, folder: Path):
    """The `ibutils` of `commit` as the package `ibutils_base`, imported from `folder`."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "ibutils"], capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")
    (folder / "ibutils").rename(folder / "ibutils_base")
    for path in (folder / "ibutils_base").glob("*.py"):
        path.write_text(re.sub(r"\bibutils\b(?=[\s.])", "ibutils_base", path.read_text(encoding="utf-8")), encoding="utf-8")
    sys.path.insert(0, str(folder))
    base_experiments, base_infoplane, base_train = (importlib.import_module(f"ibutils_base.{name}")
                                                    for name in ("experiments", "infoplane", "train"))
    # Both sides compute the activity with today's activation functions (softplus's last digits
    # changed with ibutils.vecmath): what is compared is the estimating.
    base_train._activate_ = train._activate_
    return base_experiments, base_infoplane, base_train


def in_base_layout(run: train.Run, base_train):
    """`run` as the base commit's `train.Run`, whose arrays are `[snapshots, seeds]` and whose
    parameters are one flat buffer per snapshot (today's are seeds first)."""
    fields = {f.name for f in dataclasses.fields(base_train.TrainConfig)}
    config = base_train.TrainConfig(**{k: v for k, v in dataclasses.asdict(run.config).items() if k in fields})
    params = torch.stack([run.flat_params(k) for k in range(len(run.epochs))])
    return base_train.Run(config=config, seeds=run.seeds, sizes=run.sizes, epochs=run.epochs, params=params,
                          **{key: getattr(run, key).T for key in run.METRICS})


def trained_runs(size: dict, x, y, path: Path | None) -> dict[str, train.Run]:
    """One seed of each activation on the 12-bit task, as chapter 6 trains them (loaded from `path` if there)."""
    if path is not None and path.exists():
        return torch.load(path, weights_only=False)
    rows = np.random.default_rng(0).permutation(len(x))
    n_train = round(0.8 * len(x))
    runs = {}
    for activation in ACTIVATIONS:
        config = train.TrainConfig(hidden=(10, 7, 5, 4, 3), activation=activation, epochs=size["epochs"],
                                   batch_size=256, optimizer="adam", lr=4e-4, init="fan_in",
                                   snapshots=size["snapshots"])
        runs[activation] = train.train(x, y, rows[None, :n_train], rows[None, n_train:], config, [0], progress=False)
    if path is not None:
        torch.save(runs, path)
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny networks (seconds), for CI")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each side (best counts)")
    parser.add_argument("--base", default="1a1d8c7", help="the commit to compare with")
    parser.add_argument("--runs", type=Path, help="a file to keep the trained networks in (torch.save)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time by this process's CPU time (time.process_time), not wall time: steadier under load")
    parser.add_argument("--measured", type=int, help="snapshots measured per network (default: 30, chapter 6's)")
    parser.add_argument("--epochs", type=int, help="epochs of training (default: 1,500; chapter 6's paper profile: 10,000)")
    args = parser.parse_args()
    size, repeats = (SMOKE, 1) if args.smoke else (FULL, args.repeats)
    size = {**size, "measured": args.measured or size["measured"], "epochs": args.epochs or size["epochs"]}
    torch.set_num_threads(1)
    x, y = data.tishby()
    runs = trained_runs(size, x, y, args.runs)
    failed, totals, count = [], [0.0, 0.0], 0
    with tempfile.TemporaryDirectory() as folder:
        base_experiments, base_infoplane, base_train = base_package(args.base, Path(folder))
        print(f"torch {torch.__version__}, numpy {np.__version__}, 1 torch thread; base {args.base}; "
              f"{'CPU' if args.cpu_time else 'wall'} time\n")
        print(f"{'network':<10}{'layer-snapshots':>16}{'base ms':>10}{'new ms':>9}{'ratio':>7}  largest difference (bits)")
        for activation, run in runs.items():
            visit = infoplane.snapshot_subset(run.epochs, size["measured"])
            settings = dict(snapshots=size["measured"])
            old_run = in_base_layout(run, base_train)

            def new():
                return infoplane.estimate(run, x, y, experiments.EstimatorSettings(**settings).estimators(run, x),
                                          visit, progress=False)

            def base():
                return base_infoplane.estimate(old_run, x, y,
                                               base_experiments.EstimatorSettings(**settings).estimators(old_run, x),
                                               visit, progress=False)

            (base_planes, new_planes), (t_base, t_new) = interleaved([base, new], repeats, time.process_time if args.cpu_time else time.perf_counter)
            cells = len(visit) * (len(run.sizes) - 1) * len(run.seeds)
            differences = {}
            for name, plane in base_planes.items():
                other = new_planes[name]
                differences[name] = max(np.abs(plane.i_xt - other.i_xt).max(), np.abs(plane.i_ty - other.i_ty).max())
                limit = TOLERANCE if name.startswith(("kde", "kraskov")) else 0.0
                if not differences[name] <= limit:
                    failed.append(f"{activation} {name}: {differences[name]:.1e} > {limit:.0e}")
            if set(new_planes) != set(base_planes):
                failed.append(f"{activation}: planes {sorted(new_planes)} != {sorted(base_planes)}")
            worst = max(differences, key=differences.get)
            print(f"{activation:<10}{cells:>16}{1e3 * t_base / cells:>10.2f}{1e3 * t_new / cells:>9.2f}"
                  f"{t_base / t_new:>7.2f}  {differences[worst]:.1e} ({worst}); binning planes "
                  f"{max(v for k, v in differences.items() if not k.startswith(('kde', 'kraskov'))):.0e}", flush=True)
            totals[0], totals[1], count = totals[0] + t_base, totals[1] + t_new, count + cells
    print(f"\n{'all':<10}{count:>16}{1e3 * totals[0] / count:>10.2f}{1e3 * totals[1] / count:>9.2f}"
          f"{totals[0] / totals[1]:>7.2f}")
    if failed:
        print("DISAGREEMENT: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
