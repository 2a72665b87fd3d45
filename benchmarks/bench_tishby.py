"""Time the chapter-1 pipeline (training + binned MI) against a straightforward per-seed loop.

    python benchmarks/bench_tishby.py [--seeds 10] [--epochs 200] [--threads 1] [--smoke]

Ours: `ibutils.train.train` (all seeds in one batched ensemble) then
`ibutils.infoplane.binned_plane`. Baseline, written here: for each seed, an `nn.Sequential`
with `torch.optim.Adam`, a shuffled minibatch loop, and at each snapshot a forward pass and a
per-layer `np.unique(axis=0)` estimate. Both use the same seeds, splits, initial weights, snapshots and bins;
the script checks that they agree exactly on the initial networks, and prints seconds per 1,000
epochs per seed, the ratio, and the extrapolated paper-scale wall time (50 seeds x 10,000
epochs x 2 activations, 300 snapshots). No timing is asserted anywhere.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ibutils import data, infoplane, train


def baseline_entropy_bits(codes: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """I(X;T) = H(T) and I(T;Y) by np.unique over rows, the textbook way."""
    def h(rows):
        _, counts = np.unique(rows, axis=0, return_counts=True)
        p = counts / counts.sum()
        return -(p * np.log2(p)).sum()
    h_t = h(codes)
    h_t_given_y = sum((y == c).mean() * h(codes[y == c]) for c in np.unique(y))
    return h_t, h_t - h_t_given_y


def baseline(x, y, train_idx, config: train.TrainConfig, seeds) -> np.ndarray:
    """Per-seed loop; returns I(X;T) `[seeds, snapshots, layers]`."""
    snaps = set(config.snapshot_epochs().tolist())
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    widths = (x.shape[1], *config.hidden, 2)
    act = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[config.activation]
    out = []
    for seed, rows in zip(seeds, train_idx):
        torch.manual_seed(seed)
        start = train.Ensemble(widths, 1, config.activation, device="cpu").initialise([seed], config.init)
        layers = []
        for a, b, w in zip(widths[:-1], widths[1:], start.weights):
            linear = torch.nn.Linear(a, b)
            with torch.no_grad():
                linear.weight.copy_(w[0])
                linear.bias.zero_()
            layers += [linear, act()]
        net = torch.nn.Sequential(*layers[:-1])
        opt = torch.optim.Adam(net.parameters(), lr=config.lr)
        rows = torch.as_tensor(rows)
        per_seed = []

        def snapshot():
            with torch.no_grad():
                h, values = xt, []
                for module in net:
                    h = module(h)
                    if not isinstance(module, torch.nn.Linear) or module is net[-1]:
                        values.append(torch.softmax(h, 1) if module is net[-1] else h)
            lo, hi = (-1.0, 1.0) if config.activation == "tanh" else (0.0, max(v.max().item() for v in values[:-1]))
            bins = 30 if config.activation == "tanh" else 100
            per_layer = []
            for l, v in enumerate(values):
                edges = np.linspace(-1, 1, 31) if l == len(values) - 1 else np.linspace(lo, hi, bins + 1)
                codes = np.clip(np.searchsorted(edges, v.numpy(), side="right") - 1, 0, len(edges) - 2)
                per_layer.append(baseline_entropy_bits(codes, y)[0])
            per_seed.append(per_layer)

        snapshot()
        for epoch in range(1, config.epochs + 1):
            order = rows[torch.randperm(len(rows))]
            for start in range(0, len(order), config.batch_size):
                batch = order[start:start + config.batch_size]
                loss = torch.nn.functional.cross_entropy(net(xt[batch]), yt[batch])
                opt.zero_grad()
                loss.backward()
                opt.step()
            if epoch in snaps:
                snapshot()
        out.append(per_seed)
    return np.array(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--snapshots", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI: checks it runs and agrees")
    args = parser.parse_args()
    if args.smoke:
        args.seeds, args.epochs, args.snapshots = 2, 5, 4
    torch.set_num_threads(args.threads)
    x, y = data.tishby()
    seeds = list(range(args.seeds))
    train_idx, test_idx = data.train_test_split(len(x), seeds)
    config = train.TrainConfig(activation="tanh", epochs=args.epochs, snapshots=args.snapshots)

    started = time.perf_counter()
    run = train.train(x, y, train_idx, test_idx, config, seeds, device="cpu", progress=False)
    trained = time.perf_counter()
    plane = infoplane.binned_plane(run, x, y, progress=False)
    ours = {"training": trained - started, "binning": time.perf_counter() - trained}

    started = time.perf_counter()
    reference = baseline(x, y, train_idx, config, seeds)
    base_total = time.perf_counter() - started

    ours_total = sum(ours.values())
    per_k = 1000 / (args.epochs * args.seeds)
    print(f"tanh 12-10-7-5-4-3-2, {args.seeds} seeds x {args.epochs} epochs, {len(run.epochs)} snapshots, "
          f"{args.threads} thread(s)")
    print(f"{'component':<28}{'ours s':>10}{'baseline s':>12}{'ratio':>8}")
    for name, seconds in ours.items():
        print(f"{'  ' + name:<28}{seconds:>10.2f}")
    print(f"{'pipeline':<28}{ours_total:>10.2f}{base_total:>12.2f}{base_total / ours_total:>8.1f}")
    print(f"{'s per 1,000 epochs per seed':<28}{ours_total * per_k:>10.3f}{base_total * per_k:>12.3f}")
    scale = 50 * 10_000 / (args.seeds * args.epochs) * 2
    snap_scale = 300 / len(run.epochs) * 50 / args.seeds * 2
    estimate = ours["training"] * scale + ours["binning"] * snap_scale
    print(f"paper scale (50 seeds x 10,000 epochs x 2 activations), extrapolated: ours {estimate / 60:.1f} min, "
          f"baseline {base_total * scale / 60:.1f} min")
    # Same initial weights, so the first snapshot must agree exactly; later ones differ only
    # through the shuffle streams.
    gap = np.abs(plane.i_xt[:, 0] - reference[:, 0]).max()
    final_gap = np.abs(plane.i_xt[:, -1].mean(0) - reference[:, -1].mean(0)).max()
    print(f"I(X;T) at epoch 0: max difference {gap:.2e} bits; final seed means differ by at most {final_gap:.2f} bits")
    if gap > 1e-6:
        raise SystemExit("ours and baseline disagree on the initial networks")


if __name__ == "__main__":
    main()
