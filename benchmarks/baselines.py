"""Straightforward reference implementations that `run.py` times ours against and checks ours with.

Each is the textbook way to do the job, one seed or one layer at a time: an `nn.Sequential`
with `torch.optim.Adam` per seed, its forward pass layer by layer, binning with
`np.searchsorted` and `np.unique(axis=0)` per layer (Saxe et al. Sec. 2), and the KDE estimates by NumPy
broadcasting over all pairs at once (Saxe et al. Eq. 7-12). All information is in bits.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ibutils import train

ACTIVATIONS = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}


def sequential(net: train.Ensemble, seed: int) -> torch.nn.Sequential:
    """Model `seed` of an ensemble as an `nn.Sequential` of Linear layers and activations (logits out)."""
    layers = []
    for w, b in zip(net.weights, net.biases):
        linear = torch.nn.Linear(w.shape[2], w.shape[1])
        with torch.no_grad():
            linear.weight.copy_(w[seed])
            linear.bias.copy_(b[seed, :, 0])
        layers += [linear, ACTIVATIONS[net.activation]()]
    return torch.nn.Sequential(*layers[:-1])


def train_seed(model: torch.nn.Sequential, x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor,
               config: train.TrainConfig) -> None:
    """`config.epochs` epochs of Adam on the rows `rows` of (x, y): a fresh shuffle every epoch,
    minibatches of `config.batch_size` (None: the whole set, in order)."""
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    batch = config.batch_size or len(rows)
    for _ in range(config.epochs):
        order = rows if config.batch_size is None else rows[torch.randperm(len(rows))]
        for start in range(0, len(order), batch):
            idx = order[start:start + batch]
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()


def activations(model: torch.nn.Sequential, x: torch.Tensor) -> list[np.ndarray]:
    """Every layer's activity on `x` `[N, d]`: the hidden layers, then the softmax output, each `[N, width]`."""
    values, h = [], x
    with torch.no_grad():
        for module in model:
            h = module(h)
            if not isinstance(module, torch.nn.Linear):
                values.append(h.numpy())
        values.append(torch.softmax(h, 1).numpy())
    return values


def row_entropy(codes: np.ndarray) -> float:
    """Plug-in entropy in bits of the rows of a 2-D array, one symbol per distinct row."""
    p = np.unique(codes, axis=0, return_counts=True)[1] / len(codes)
    return float(-(p * np.log2(p)).sum())


def binned(t: np.ndarray, y: np.ndarray, bins: int, lo: float, hi: float) -> tuple[float, float]:
    """I(X;T) and I(T;Y) of one layer `t` `[N, width]` in `bins` equal bins on [lo, hi]
    (np.histogram's bins, on float64 edges): H(T), and H(T) - sum_l p_l H(T | Y = l)."""
    # float() first: NumPy 2 keeps float32 scalars in float32, so np.linspace of a float32 range
    # (a ReLU layer's min and max) would round the edges to float32
    edges = np.linspace(float(lo), float(hi), bins + 1)
    codes = np.clip(np.searchsorted(edges, t.astype(np.float64), side="right") - 1, 0, len(edges) - 2)
    h_t = row_entropy(codes)
    return h_t, h_t - sum(np.mean(y == label) * row_entropy(codes[y == label]) for label in np.unique(y))


def kde(t: np.ndarray, y: np.ndarray, noise_var: float) -> list[tuple[float, float]]:
    """[(I(X;T), I(T;Y)) upper, (...) lower] by the pairwise-KL and Bhattacharyya kernels, in float64."""
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


def _expm1_softplus_activate_(name: str, z: torch.Tensor, slope: torch.Tensor | None = None) -> torch.Tensor:
    if name == "softplus":
        return z.copy_(torch.nn.functional.softplus(z))
    return _TRAINER_ACTIVATE(name, z, slope)


def _expm1_softplus_backprop_(name: str, dz: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    if name == "softplus":
        return dz.mul_(torch.expm1(-h).neg_())
    return _TRAINER_BACKPROP(name, dz, h)


def _torch_softplus_activate_(name: str, z: torch.Tensor, slope: torch.Tensor | None = None) -> torch.Tensor:
    if name == "softplus":
        if slope is not None:
            slope.copy_(z)  # the net input, kept in the slope's buffer
        return torch.ops.aten.softplus.out(z, 1, 20, out=z)
    return _TRAINER_ACTIVATE(name, z, slope)


def _torch_softplus_backprop_(name: str, dz: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    if name == "softplus":
        return torch.ops.aten.softplus_backward.grad_input(dz, h, 1, 20, grad_input=dz)
    return _TRAINER_BACKPROP(name, dz, h)


def _torch_softsign_activate_(name: str, z: torch.Tensor, slope: torch.Tensor | None = None) -> torch.Tensor:
    if name == "softsign":
        return z.div_(z.abs().add_(1))
    return _TRAINER_ACTIVATE(name, z, slope)


def _torch_softsign_backprop_(name: str, dz: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    if name == "softsign":
        return dz.mul_((1 - h.abs()).square_())
    return _TRAINER_BACKPROP(name, dz, h)


_TRAINER_ACTIVATE, _TRAINER_BACKPROP = train._activate_, train._backprop_


class _EarlierActivation:
    """A context in which one of the trainer's activations is an earlier one: `_activate_` and
    `_backprop_` replaced, and the activations whose slope the forward pass keeps. An `Ensemble`
    made and stepped only inside it trains that way."""

    replaced: tuple

    def __enter__(self):
        self.saved = train._activate_, train._backprop_, train.KEEPS_SLOPE
        train._activate_, train._backprop_, train.KEEPS_SLOPE = self.replaced

    def __exit__(self, *exc):
        train._activate_, train._backprop_, train.KEEPS_SLOPE = self.saved


class expm1_softplus(_EarlierActivation):
    """The trainer's softplus at 1a1d8c7 (before issue 23): forward into a new tensor copied back,
    backward f'(z) = 1 - exp(-h) = -expm1(-h) from the output h (nothing kept)."""

    replaced = (_expm1_softplus_activate_, _expm1_softplus_backprop_, frozenset())


class torch_softplus(_EarlierActivation):
    """The trainer's softplus at 589c5ff (issue 23, before `ibutils.vecmath`): torch's kernel in
    place, the net input kept, backward by autograd's kernel from it (`softplus_backward`)."""

    replaced = (_torch_softplus_activate_, _torch_softplus_backprop_, frozenset({"softplus"}))


class torch_softsign(_EarlierActivation):
    """The trainer's softsign at d20febd (before `ibutils.vecmath.softsign_`): torch's operations,
    the same arithmetic in three passes each way, with temporary tensors."""

    replaced = (_torch_softsign_activate_, _torch_softsign_backprop_, train.KEEPS_SLOPE)


def _numpy_fake_quantise_(h: torch.Tensor, bits: int) -> torch.Tensor:
    train._fake_quantise_numpy_(h.numpy(), bits)
    return h


class numpy_quantise:
    """The trainer's fake quantisation at 5f9b1a0 (before `ibutils.vecmath.quantise_rows_`):
    NumPy's reductions and five elementwise passes (the trainer's path for float64 layers), the
    same roundings."""

    def __enter__(self):
        self.saved = train.fake_quantise_
        train.fake_quantise_ = _numpy_fake_quantise_

    def __exit__(self, *exc):
        train.fake_quantise_ = self.saved
