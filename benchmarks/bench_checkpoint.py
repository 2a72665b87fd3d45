"""What training checkpoints cost on a chapter-1-sized run (50 tanh seeds, paper architecture).

    python benchmarks/bench_checkpoint.py              # about 10 minutes on 2 busy cores
    python benchmarks/bench_checkpoint.py --epochs 50  # a quick look

1. The largest checkpoint of chapter 1's paper profile: the state at the end of 10,000 epochs
   (parameters, Adam's moments, 50 generators, 218 kept snapshots of every seed's parameters),
   written `--repeats` times with `ibutils.store` (checksum, fsync, rename): size and time.
2. Side by side, in turns: `train.train` of 50 seeds for `--epochs` epochs with the paper's 300
   snapshots, without checkpoints, with the default interval (`train.CHECKPOINT_EVERY_S`), and
   with a short one (`--short`, s), which writes many more and bounds the cost from above.
   Reports checkpoints written, wall and CPU times, and ratios to the run without.

Nothing is asserted; the run without checkpoints is the baseline the ratios are taken against.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ibutils import data, store, train

PAPER = train.TrainConfig()  # the paper's tanh network, 10,000 epochs, 300 log-spaced snapshots
SEEDS = range(50)


def largest_checkpoint(folder: Path, repeats: int) -> None:
    """Write the state of the paper run's end, taken from a 1-epoch run padded to 218 snapshots."""
    x, y = data.tishby()
    train_idx, test_idx = data.train_test_split(len(x), SEEDS, 0.8)
    path = folder / "paper.ckpt"
    short = train.TrainConfig(epochs=1, snapshots=2)
    train.train(x, y, train_idx, test_idx, short, SEEDS, progress=False, checkpoint=path, checkpoint_every=0.0)
    state = store.read(path)
    snapshots = len(PAPER.snapshot_epochs())
    state["kept"] = state["kept"][-1:].expand(snapshots, -1).clone()
    state["record"] = {key: value[-1:].repeat(snapshots, 0) for key, value in state["record"].items()}
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        store.write(path, state)
        times.append(time.perf_counter() - start)
    size = path.stat().st_size / 2**20
    print(f"largest checkpoint of chapter 1 (paper, {len(SEEDS)} seeds, {snapshots} kept snapshots): {size:.1f} MiB, "
          f"written in {statistics.median(times):.3f} s (median of {repeats}; min {min(times):.3f}, max {max(times):.3f})")
    every = train.CHECKPOINT_EVERY_S
    print(f"  at the default interval of {every:.0f} s: at most {statistics.median(times) / every:.2%} of the training time")


def side_by_side(folder: Path, epochs: int, short: float, rounds: int) -> None:
    x, y = data.tishby()
    train_idx, test_idx = data.train_test_split(len(x), SEEDS, 0.8)
    config = train.TrainConfig(epochs=epochs)
    writes = []
    real_write = store.write

    def counting_write(path, value):
        writes.append(path)
        real_write(path, value)

    store.write = counting_write
    settings = {"none": None, f"default ({train.CHECKPOINT_EVERY_S:.0f} s)": train.CHECKPOINT_EVERY_S,
                f"short ({short:g} s)": short}
    wall = {name: [] for name in settings}
    cpu = {name: [] for name in settings}
    counts = {name: 0 for name in settings}
    for r in range(rounds):
        for name, every in settings.items():
            path = folder / f"run-{r}-{len(wall[name])}.ckpt"
            kwargs = {} if every is None else {"checkpoint": path, "checkpoint_every": every}
            writes.clear()
            start, start_cpu = time.perf_counter(), time.process_time()
            train.train(x, y, train_idx, test_idx, config, SEEDS, progress=False, **kwargs)
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
            counts[name] = len(writes)
            path.unlink(missing_ok=True)
    base, base_cpu = min(wall["none"]), min(cpu["none"])
    print(f"\ntrain.train, {len(SEEDS)} seeds x {epochs:,} epochs, {len(config.snapshot_epochs())} snapshots, "
          f"best of {rounds} rounds in turns (wall, and CPU time of this process):")
    for name in settings:
        print(f"  checkpoints {name:>16}: {counts[name]:3d} written; wall {min(wall[name]):7.2f} s, "
              f"ratio {min(wall[name]) / base:.3f} (all: {', '.join(f'{t:.1f}' for t in wall[name])}); "
              f"CPU {min(cpu[name]):7.2f} s, ratio {min(cpu[name]) / base_cpu:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=1500, help="epochs of the side-by-side runs")
    parser.add_argument("--short", type=float, default=5.0, help="the short checkpoint interval, s")
    parser.add_argument("--rounds", type=int, default=2, help="turns of the side-by-side runs")
    parser.add_argument("--repeats", type=int, default=10, help="writes of the largest checkpoint")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        largest_checkpoint(Path(folder), args.repeats)
        side_by_side(Path(folder), args.epochs, args.short, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
