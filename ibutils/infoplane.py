"""Information-plane trajectories of a trained ensemble, by binning (Saxe et al. 2018, Sec. 2).

The trainer keeps each snapshot's parameters (a few MB), so activations are recomputed here
one chunk of snapshots at a time and never all held at once. That also lets the ReLU rule
of the paper work: its bins span the minimum to maximum activity over the whole run, which is
known only after training, so a first pass finds the range and a second pass bins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ibutils import mi
from ibutils.progress import phase, progress_bar
from ibutils.train import Run

BOUNDED = ("tanh", "softsign", "sigmoid")


@dataclass(frozen=True)
class Binning:
    """Equal-width bins per unit: `bins` bins on `value_range`, or, with `value_range=None`,
    on each run's [min, max] activity over all hidden layers and snapshots (the paper's ReLU rule).
    """

    bins: int = 30
    value_range: tuple[float, float] | None = (-1.0, 1.0)

    def __post_init__(self):
        if self.bins < 1:
            raise ValueError(f"bins must be at least 1, got {self.bins}")
        if self.value_range is not None and not self.value_range[0] < self.value_range[1]:
            raise ValueError(f"value_range must be (lo, hi) with lo < hi or None, got {self.value_range}")


TANH_BINNING = Binning(30, (-1.0, 1.0))
ADAPTIVE_BINNING = Binning(100, None)


def paper_binning(activation: str) -> Binning:
    """Saxe et al.'s rule: 30 bins on [-1, 1] for bounded units, 100 bins on the run's range otherwise."""
    return TANH_BINNING if activation in BOUNDED else ADAPTIVE_BINNING


@dataclass
class InformationPlane:
    """Binned information of every layer over training.

    `i_xt`, `i_ty` are `[seeds, snapshots, layers]` in bits; `epochs` is `[snapshots]`;
    `hist[l]` is `[snapshots, bins_l]`, the fraction of layer l's activity values (all units,
    all inputs, first seed) in each bin, with bin edges `hist_edges[l]`; `value_range` is the
    hidden layers' `[seeds, 2]` binning range.
    """

    epochs: np.ndarray
    layers: list[str]
    i_xt: np.ndarray
    i_ty: np.ndarray
    hist: list[np.ndarray]
    hist_edges: list[np.ndarray]
    value_range: np.ndarray

    def mean(self) -> tuple[np.ndarray, np.ndarray]:
        """Seed-averaged I(X;T) and I(T;Y), each `[snapshots, layers]` in bits."""
        return self.i_xt.mean(0), self.i_ty.mean(0)


def layer_names(sizes) -> list[str]:
    """'hidden 1 (10)', ..., 'output (2)' for layer widths `sizes` (input first)."""
    names = [f"hidden {i} ({w})" for i, w in enumerate(sizes[1:-1], 1)]
    return names + [f"output ({sizes[-1]})"]


def _snapshot_chunks(run: Run, x: torch.Tensor, chunk: int | None, desc: str, progress: bool):
    """Yield (snapshot slice, activations per layer as `[S, c, N, width]`) for chunks of c snapshots.

    The activations are transposed views of `[S, c, width, N]` buffers, the layout the network
    computes and the binning wants. `chunk` None takes about 2**21 values of the widest layer
    per chunk, so the temporaries stay small.
    """
    net = run.ensemble(0, device=x.device)
    if chunk is None:
        chunk = max(1, 2**21 // (len(run.seeds) * x.shape[0] * max(run.sizes[1:])))
    for start in progress_bar(range(0, len(run.epochs), chunk), desc=desc, unit="chunk", show=progress):
        ks = range(start, min(start + chunk, len(run.epochs)))
        per_snapshot = []
        for k in ks:
            net.load(run.params[k].to(x.device))
            with torch.no_grad():
                per_snapshot.append([a.transpose(1, 2) for a in net.forward(x)])
        yield slice(ks.start, ks.stop), [torch.stack(layer, 1).transpose(2, 3) for layer in zip(*per_snapshot)]


def activity_range(run: Run, x, chunk: int | None = None, progress: bool = False) -> np.ndarray:
    """Each seed's [min, max] activity over all hidden layers and snapshots: `[seeds, 2]`."""
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    lo = torch.full((len(run.seeds),), float("inf"))
    hi = torch.full((len(run.seeds),), float("-inf"))
    for _, acts in _snapshot_chunks(run, x, chunk, "activity range", progress):
        for a in acts[:-1]:
            a_lo, a_hi = torch.aminmax(a.reshape(a.shape[0], -1), dim=1)
            lo, hi = torch.minimum(lo, a_lo.cpu()), torch.maximum(hi, a_hi.cpu())
    return torch.stack([lo, hi], 1).numpy()


@phase("estimating")
def binned_plane(run: Run, x, y, hidden: Binning | None = None, output: Binning = TANH_BINNING,
                 chunk: int | None = None, progress: bool = True) -> InformationPlane:
    """Binned I(X;T) and I(T;Y) of every layer of every seed at every snapshot of `run`.

    x: `[N, d]` inputs, all equally likely (for the 12-bit task, all 4096 patterns);
    y: `[N]` labels. `hidden` bins the hidden layers (default `paper_binning` of the run's
    activation); `output` bins the softmax output layer (default 30 bins on [-1, 1], as for tanh,
    in both networks so their output layers are comparable). `chunk` snapshots are evaluated
    at a time (None: as many as keep about 2**21 values per layer).
    """
    hidden = hidden or paper_binning(run.config.activation)
    if output.value_range is None:
        raise ValueError("output must have a fixed value_range: the adaptive range covers hidden layers only")
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    n_seeds, n_snaps, n_layers = len(run.seeds), len(run.epochs), len(run.sizes) - 1
    if hidden.value_range is None:
        ranges = activity_range(run, x, chunk, progress)
        if not (ranges[:, 1] > ranges[:, 0]).all():
            raise ValueError("some run has constant hidden activity: its adaptive bin range is empty")
    else:
        ranges = np.tile(np.asarray(hidden.value_range, dtype=np.float64), (n_seeds, 1))
    i_xt = np.zeros((n_seeds, n_snaps, n_layers))
    i_ty = np.zeros_like(i_xt)
    hist = [np.zeros((n_snaps, hidden.bins)) for _ in range(n_layers - 1)]
    hist.append(np.zeros((n_snaps, output.bins)))
    for ks, acts in _snapshot_chunks(run, x, chunk, f"binning {run.config.activation}", progress):
        for l, a in enumerate(acts):
            if l < n_layers - 1:
                bins, per_seed = hidden.bins, (ranges[:, :1], ranges[:, 1:])
                first = (ranges[0, 0], ranges[0, 1])
            else:
                bins, per_seed = output.bins, output.value_range
                first = output.value_range
            i_xt[:, ks, l], i_ty[:, ks, l] = mi.binned(a, y, bins, per_seed)
            codes = mi.bin_codes(a[0], bins, first).reshape(a.shape[1], -1)  # first seed, for the histogram
            counts = torch.zeros(codes.shape[0], bins, dtype=torch.float64)
            counts.scatter_add_(1, codes, torch.ones_like(codes, dtype=torch.float64))
            hist[l][ks] = (counts / codes.shape[1]).numpy()
    hist_edges = [np.linspace(ranges[0, 0], ranges[0, 1], hidden.bins + 1)] * (n_layers - 1)
    hist_edges.append(np.linspace(*output.value_range, output.bins + 1))
    return InformationPlane(run.epochs, layer_names(run.sizes), i_xt, i_ty, hist, hist_edges, ranges)


def compression(i_xt: np.ndarray) -> np.ndarray:
    """Compression of each layer in bits: max over snapshots of I(X;T) minus its final value.

    `i_xt` is `[..., snapshots, layers]`; returns `[..., layers]`.
    """
    return i_xt.max(-2) - i_xt[..., -1, :]


def largest_drop(values, axis: int = -2) -> np.ndarray:
    """The largest fall of a trajectory below its own earlier maximum, along `axis`, per trajectory.

    max_k (max_{j<=k} v_j - v_k): 0 for a non-decreasing trajectory. Unlike consecutive
    differences it also catches slow declines over many snapshots. The default axis fits
    `[..., snapshots, layers]` arrays; the result has `axis` removed, in the units of `values`.
    """
    v = np.asarray(values, dtype=float)
    if v.ndim == 0 or v.shape[axis] == 0:
        raise ValueError(f"values must have a non-empty time axis {axis}, got shape {v.shape}")
    return (np.maximum.accumulate(v, axis=axis) - v).max(axis=axis)


def saturated_share(plane: InformationPlane, layer: int, values=(-1.0, 1.0)) -> np.ndarray:
    """Share of a layer's activity (first seed) in the bins holding `values`, per snapshot.

    For tanh units `values=(-1, 1)` are the two saturation bins; for the softmax output use
    `(0, 1)`. Returns `[snapshots]`, fractions in [0, 1].
    """
    edges = plane.hist_edges[layer]
    bins = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
    return plane.hist[layer][:, np.unique(bins)].sum(1)
