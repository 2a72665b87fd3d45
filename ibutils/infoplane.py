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

from ibutils import estimators, mi
from ibutils.progress import phase, progress_bar
from ibutils.train import Run, log_grid

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

    `i_xt`, `i_ty` are `[seeds, snapshots, layers]` in bits; `epochs` is `[snapshots]`.
    A binned plane (`binned_plane`) also has `hist[l]`, `[snapshots, bins_l]`, the fraction of
    layer l's activity values (all units, all inputs, first seed) in each bin, with bin edges
    `hist_edges[l]`, and `value_range`, the hidden layers' `[seeds, 2]` binning range; the planes
    of `estimate` have None there.
    """

    epochs: np.ndarray
    layers: list[str]
    i_xt: np.ndarray
    i_ty: np.ndarray
    hist: list[np.ndarray] | None = None
    hist_edges: list[np.ndarray] | None = None
    value_range: np.ndarray | None = None

    def mean(self) -> tuple[np.ndarray, np.ndarray]:
        """Seed-averaged I(X;T) and I(T;Y), each `[snapshots, layers]` in bits."""
        return self.i_xt.mean(0), self.i_ty.mean(0)


def layer_names(sizes) -> list[str]:
    """'hidden 1 (10)', ..., 'output (2)' for layer widths `sizes` (input first)."""
    names = [f"hidden {i} ({w})" for i, w in enumerate(sizes[1:-1], 1)]
    return names + [f"output ({sizes[-1]})"]


def _snapshot_chunks(run: Run, x: torch.Tensor, chunk: int | None, desc: str, progress: bool,
                     snapshots: np.ndarray | None = None, net_input: bool = False):
    """Yield (positions, activations per layer as `[S, c, N, width]`, net inputs or None) for
    chunks of c snapshots.

    `snapshots` are the indices into `run.epochs` to visit (None: all), and `positions` the
    slice of them this chunk covers. The activations are transposed views of `[S, c, width, N]`
    buffers, the layout the network computes and the binning wants; with `net_input`, the net
    inputs of every layer come in the same layout. `chunk` None takes about 2**21 values of the
    widest layer per chunk, so the temporaries stay small.
    """
    net = run.ensemble(0, device=x.device)
    visit = np.arange(len(run.epochs)) if snapshots is None else np.asarray(snapshots)
    if chunk is None:
        chunk = max(1, 2**21 // (len(run.seeds) * x.shape[0] * max(run.sizes[1:])))

    def stacked(per_snapshot):
        return [torch.stack(layer, 1).transpose(2, 3) for layer in zip(*per_snapshot)]

    for start in progress_bar(range(0, len(visit), chunk), desc=desc, unit="chunk", show=progress):
        acts, net_inputs = [], []
        for k in visit[start:start + chunk]:
            net.load(run.flat_params(k).to(x.device))
            with torch.no_grad():
                acts.append([a.transpose(1, 2) for a in net.forward(x)])
                if net_input:
                    net_inputs.append([z.transpose(1, 2) for z in net.forward(x, net_input=True)])
        yield slice(start, start + len(acts)), stacked(acts), stacked(net_inputs) if net_input else None


def activity_range(run: Run, x, chunk: int | None = None, progress: bool = False) -> np.ndarray:
    """Each seed's [min, max] activity over all hidden layers and snapshots: `[seeds, 2]`."""
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    lo = torch.full((len(run.seeds),), float("inf"))
    hi = torch.full((len(run.seeds),), float("-inf"))
    for _, acts, _ in _snapshot_chunks(run, x, chunk, "activity range", progress):
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
    for ks, acts, _ in _snapshot_chunks(run, x, chunk, f"binning {run.config.activation}", progress):
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


# --- many estimators on the same snapshots (Saxe et al. App. B; Chelombiev et al. 2019; Lorenzen et al. 2022)
#
# `estimate` takes estimators of `ibutils.estimators`, applied to every layer's activity, or
# `LayerEstimator`s, which give the softmax output layer an estimator of its own or measure net
# inputs. The names below (`UniformBins`, ...) are the book's settings of those, kept as aliases.


@dataclass(frozen=True)
class LayerEstimator:
    """An `ibutils.estimators` estimator for the hidden layers (`hidden`) and one for the output
    layer (`output`; None: the same), applied to the units' activity, or with `net_input` to
    their net inputs. `outputs()` are the hidden estimator's."""

    hidden: estimators.Estimator
    output: estimators.Estimator | None = None
    net_input: bool = False

    def outputs(self) -> tuple[str, ...]:
        return self.hidden.outputs()

    def for_layer(self, is_output: bool) -> estimators.Estimator:
        return self.output if is_output and self.output is not None else self.hidden


def UniformBins(name: str, bins: int, hidden_range, output_range=(0.0, 1.0), net_input: bool = False) -> LayerEstimator:
    """`bins` equal bins per unit (`estimators.Binned`), plane `name`.

    Hidden layers are binned on `hidden_range`: (lo, hi), or one range per seed `[S, 2]` (e.g.
    `activity_range`); the output layer on `output_range`. With `net_input`, the units' net inputs
    are binned instead of their activity (Saxe et al. Fig. 14: bins uniform in the net input).
    """
    ranges = np.asarray(hidden_range, dtype=np.float64)
    hidden = (ranges[:, :1], ranges[:, 1:]) if ranges.ndim == 2 else tuple(ranges)
    return LayerEstimator(estimators.Binned(bins, hidden, name), estimators.Binned(bins, output_range, name), net_input)


def EqualMassBins(bins: int = 30, low: float | None = None, name: str = "equal_mass") -> LayerEstimator:
    """Adaptive bins (`estimators.EqualMassBinned`, Chelombiev et al. 2019): per seed, snapshot and
    layer, `bins` bins holding equal shares of the layer's distinct activity values, the lowest
    edge at `low` (the activation's smallest possible value) for hidden layers and 0 for the softmax."""
    return LayerEstimator(estimators.EqualMassBinned(bins, low, name), estimators.EqualMassBinned(bins, 0.0, name))


def PrecisionBins(name: str = "precision") -> estimators.PrecisionBinned:
    """Binning at machine precision (`estimators.PrecisionBinned`, Saxe et al. Fig. 15)."""
    return estimators.PrecisionBinned(name)


def QuantisedCodes(bits: int = 8, name: str = "quantised") -> LayerEstimator:
    """The exact information of a quantised network (`estimators.Quantised`, Lorenzen et al. 2022):
    hidden activity is already on 2**bits levels of the layer's own range, so its codes are the
    layer; the continuous softmax output is read out on `bits` bits of [0, 1]."""
    return LayerEstimator(estimators.Quantised(bits, None, name), estimators.Quantised(bits, (0.0, 1.0), name))


def KDE(noise_vars: tuple[float, ...] = (0.1,)) -> estimators.KDE:
    """Kolchinsky & Tracey estimates at each noise variance (`estimators.KDE`), planes
    `kde_upper_<variance>` and `kde_lower_<variance>` (variance formatted with `:g`)."""
    return estimators.KDE(tuple(noise_vars))


Kraskov = estimators.Kraskov


def snapshot_subset(epochs, n: int) -> np.ndarray:
    """Indices of about `n` of the snapshot `epochs`, spread evenly in log(1 + epoch), the first
    and last included (the expensive estimators visit these): those nearest to the points of
    `train.log_grid` between the first and the last epoch."""
    epochs = np.asarray(epochs, dtype=np.float64)
    if n < 2 or epochs.ndim != 1 or len(epochs) < 2:
        raise ValueError(f"need n >= 2 and at least 2 epochs, got n={n} and epochs of shape {np.shape(epochs)}")
    grid = log_grid(epochs[0], epochs[-1], n)
    return np.unique(np.abs(np.log1p(epochs)[None] - grid[:, None]).argmin(1))


@phase("estimating")
def estimate(run: Run, x, y, estimators, snapshots=None, chunk: int | None = None,
             progress: bool = True) -> dict[str, InformationPlane]:
    """Apply every estimator of `estimators` (`ibutils.estimators` estimators, or `LayerEstimator`s)
    to every layer of every seed of `run` at the snapshots `snapshots` (indices into `run.epochs`;
    None: all), computing each snapshot's activity once for all of them, and handing each
    estimator a layer's activity for all seeds and the chunk's snapshots at once.

    x: `[N, d]` inputs, all equally likely; y: `[N]` labels. Returns one `InformationPlane` (no
    histograms) per plane name the estimators produce, `i_xt`, `i_ty` `[seeds, snapshots, layers]`
    bits, on the epochs visited.
    """
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    visit = np.arange(len(run.epochs)) if snapshots is None else np.asarray(snapshots, dtype=np.int64)
    n_layers = len(run.sizes) - 1
    shape = (len(run.seeds), len(visit), n_layers)
    planes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    layered = [e if isinstance(e, LayerEstimator) else LayerEstimator(e) for e in estimators]
    net_input = any(e.net_input for e in layered)
    for ks, acts, net_inputs in _snapshot_chunks(run, x, chunk, f"estimating {run.config.activation}", progress,
                                                 visit, net_input):
        for l in range(n_layers):
            for estimator in layered:
                t = net_inputs[l] if estimator.net_input else acts[l]
                for name, (i_xt, i_ty) in estimator.for_layer(l == n_layers - 1).estimate(t, y).items():
                    out = planes.setdefault(name, (np.full(shape, np.nan), np.full(shape, np.nan)))
                    out[0][:, ks, l], out[1][:, ks, l] = i_xt, i_ty
    layers = layer_names(run.sizes)
    return {name: InformationPlane(run.epochs[visit], layers, i_xt, i_ty) for name, (i_xt, i_ty) in planes.items()}


# --- verdicts -------------------------------------------------------------------------------------

# Compression, in bits, at or above which a layer "compresses", and at or below which it does not;
# in between it compresses "slightly". The same thresholds as chapter 1's claims.
COMPRESSES, NO_COMPRESSION = 0.5, 0.1


def verdict(bits: float) -> str:
    """'compresses', 'slight' or 'none' for a compression of `bits` (see COMPRESSES, NO_COMPRESSION)."""
    if np.isnan(bits):
        return "n/a"
    return "compresses" if bits >= COMPRESSES else "none" if bits <= NO_COMPRESSION else "slight"


def compression_summary(plane: InformationPlane) -> dict:
    """How much a plane's hidden layers and its output layer compress, in bits.

    `hidden`: the largest compression (`compression`) of the seed-mean I(X;T) of any hidden layer,
    with `hidden_layer` its index and `hidden_sd` the spread (standard deviation over seeds) of
    that layer's per-seed compression; `output`, `output_sd` the same for the output layer; and
    the `verdict` of each.
    """
    mean = compression(plane.i_xt.mean(0))
    per_seed = compression(plane.i_xt)
    layer = int(np.argmax(mean[:-1]))
    return {
        "hidden": float(mean[layer]), "hidden_sd": float(per_seed[:, layer].std()), "hidden_layer": layer,
        "output": float(mean[-1]), "output_sd": float(per_seed[:, -1].std()),
        "hidden_verdict": verdict(mean[layer]), "output_verdict": verdict(mean[-1]),
    }
