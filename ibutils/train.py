"""A vectorised ensemble trainer: S seeds of the same small MLP trained at once.

All models' parameters live in one flat buffer, layer-major, so layer l's weights are a
contiguous `[S, fan_out, fan_in]` view. A training step is a handful of batched matmuls
(NumPy's BLAS on the CPU, `torch.matmul` elsewhere) with a hand-written backward pass, written
into buffers kept between steps, and an Adam/SGD update over the whole buffer: the Python
overhead per step is independent of S.

Seed `s` of an ensemble gets its own random generator for the initial weights and the
per-epoch shuffles, so its run does not depend on which other seeds train alongside it.

The trainer knows nothing about information: at snapshot epochs it records the metrics,
optionally keeps a copy of the parameters, and calls the `on_snapshot` hooks with the
activations of every layer.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

import ibutils
from ibutils import store, vecmath
from ibutils.progress import phase, progress_bar

ACTIVATIONS = ("tanh", "relu", "softsign", "softplus", "sigmoid", "linear")
# activations whose slope f'(z) the forward pass keeps for the backward pass (the others' slope is a
# cheap function of h = f(z))
KEEPS_SLOPE = frozenset({"softplus"})
INITS = ("fan_in", "fan_out", "glorot")
OPTIMIZERS = ("adam", "sgd")
CHECKPOINT_EVERY_S = 120.0  # default seconds of training between two checkpoints


def _activate_(name: str, z: torch.Tensor, slope: torch.Tensor | None = None) -> torch.Tensor:
    """Apply the activation to `z` in place and return it; for the activations in `KEEPS_SLOPE`,
    also write f'(z) into `slope` (a tensor like z) when given."""
    if name == "tanh":
        if _numpy_ready(z):
            # NumPy's vectorised tanh is ~7x faster than torch's on the CPUs we measured
            np.tanh(z.numpy(), out=z.numpy())
            return z
        return z.tanh_()
    if name == "relu":
        return z.clamp_min_(0)
    if name == "softsign":
        if _numpy_ready(z, torch.float32):  # one pass, no temporary tensor
            vecmath.softsign_(z.numpy())
            return z
        return z.div_(z.abs().add_(1))
    if name == "softplus":
        if _numpy_ready(z, torch.float32) and (slope is None or _numpy_ready(slope, torch.float32)):
            # value and slope in one compiled pass, twice as fast as torch's kernels (RESULTS.md)
            vecmath.softplus_(z.numpy(), None if slope is None else slope.numpy())
            return z
        if slope is not None:
            torch.sigmoid(z, out=slope)
        return torch.ops.aten.softplus.out(z, 1, 20, out=z)  # torch.nn.functional.softplus, in place
    if name == "sigmoid":
        return z.sigmoid_()
    return z


def _numpy_ready(t: torch.Tensor, dtype: torch.dtype | None = None) -> bool:
    """Whether `t.numpy()` views all of `t` in order: a contiguous CPU tensor (of `dtype`)."""
    return t.device.type == "cpu" and t.is_contiguous() and (dtype is None or t.dtype == dtype)


def _backprop_(name: str, dz: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Multiply `dz` in place by f'(z), written in terms of h = f(z), or, for the activations in
    `KEEPS_SLOPE`, the slope f'(z) itself that `_activate_` kept (pass it as `h`)."""
    if name == "tanh":  # the fused kernels autograd uses: dz * (1 - h^2), dz * [h > 0], dz * h (1 - h)
        return torch.ops.aten.tanh_backward.grad_input(dz, h, grad_input=dz)
    if name == "relu":
        return torch.ops.aten.threshold_backward.grad_input(dz, h, 0, grad_input=dz)
    if name == "sigmoid":
        return torch.ops.aten.sigmoid_backward.grad_input(dz, h, grad_input=dz)
    if name == "softsign":
        if _numpy_ready(dz, torch.float32) and _numpy_ready(h, torch.float32):
            vecmath.softsign_backward_(dz.numpy(), h.numpy())
            return dz
        return dz.mul_((1 - h.abs()).square_())
    if name in KEEPS_SLOPE:
        return dz.mul_(h)
    return dz


def fake_quantise_(h: torch.Tensor, bits: int) -> torch.Tensor:
    """Round `h` `[S, units, n]` in place to 2**bits levels spread evenly over each model's
    [min, max] of h (over all units and samples), and return it.

    The levels are lo + k * step, k = round((h - lo) / step), step = (hi - lo) / (2**bits - 1):
    the codes of `ibutils.mi.quantise` up to ties at exact half-steps. A model whose layer is
    constant keeps its values (one level).
    """
    if _numpy_ready(h, torch.float32):  # the same roundings as NumPy's below, in two passes instead of seven
        vecmath.quantise_rows_(h.numpy().reshape(len(h), -1), bits)
        return h
    if _numpy_ready(h):  # NumPy: torch.aminmax over a batch was 100x slower here
        _fake_quantise_numpy_(h.numpy(), bits)
        return h
    lo, hi = torch.aminmax(h.reshape(len(h), -1), dim=1)
    step = hi.sub_(lo).div_(2**bits - 1)
    step = torch.where(step > 0, step, torch.ones_like(step))[:, None, None]
    return h.sub_(lo[:, None, None]).div_(step).round_().mul_(step).add_(lo[:, None, None])


def _fake_quantise_numpy_(a: np.ndarray, bits: int) -> None:
    """`fake_quantise_` of a NumPy array `[S, units, n]`, in place."""
    lo = a.min(axis=(1, 2), keepdims=True)
    step = (a.max(axis=(1, 2), keepdims=True) - lo) / (2**bits - 1)
    step[step <= 0] = 1
    np.subtract(a, lo, out=a)
    np.rint(np.divide(a, step, out=a), out=a)
    np.add(np.multiply(a, step, out=a), lo, out=a)


def _matmul(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """`torch.matmul(a, b, out=out)` for the batched `[S, m, k] @ [S, k, n]` products of the MLPs."""
    if a.device.type == "cpu":
        # NumPy's BLAS runs these tiny batched products about 3x faster than torch.bmm on the
        # CPUs we measured (see benchmarks/RESULTS.md); both accept strided (transposed) views
        result = np.matmul(a.numpy(), b.numpy(), out=None if out is None else out.numpy())
        return torch.from_numpy(result) if out is None else out
    return torch.matmul(a, b, out=out)


def log_grid(first: float, last: float, n: int, log: Callable[[float], float] = np.log1p) -> np.ndarray:
    """`n` points evenly spaced in `log(epoch)` (default log(1 + epoch)) from epoch `first` to
    `last`, given as their `log(epoch)`, `[n]`: the one grid that every snapshot schedule of the
    package is drawn from (`log_spaced_epochs`, `linear.log_epochs`, `infoplane.snapshot_subset`)."""
    return np.linspace(log(first), log(last), n)


def log_spaced_epochs(epochs: int, n: int, *, offset: int = 1) -> np.ndarray:
    """About `n` distinct snapshot epochs in [0, epochs], log-spaced, with 0 and `epochs`.

    Epoch e means "after e epochs of training"; 0 is the initial network. `offset=1` (the
    trainer's schedule): `n` points evenly spaced in log(1 + epoch) from 0 to `epochs`, rounded.
    `offset=0` (the deep linear students', `linear.log_epochs`): epoch 0, then `n - 1` points
    evenly spaced in log(epoch) from 1 to `epochs`, rounded (none between when `n` is 2).
    """
    if epochs < 0 or n < 2:
        raise ValueError(f"need epochs >= 0 and n >= 2, got epochs={epochs}, n={n}")
    if offset not in (0, 1):
        raise ValueError(f"offset must be 0 or 1, got {offset!r}")
    first, points = 1 - offset, n - 1 + offset
    if offset == 0 and (epochs < 1 or points < 2):
        return np.union1d(np.zeros(0, np.int64), [0, epochs])
    grid = log_grid(first, epochs, points, lambda epoch: math.log10(offset + epoch))
    grid = np.rint(np.power(10.0, grid)).astype(np.int64) - offset
    return np.union1d(grid, [0, epochs])


@dataclass(frozen=True)
class TrainConfig:
    """How to train an ensemble of MLPs with a softmax output and cross-entropy loss.

    `hidden` are the hidden widths (input and output widths come from the data).
    `batch_size=None` means full-batch gradient descent. `init` is a truncated normal
    (at 2 std) with std 1/sqrt(fan_in) (IDNNs) or 1/sqrt(fan_out) (ibsgd), or Glorot-uniform;
    biases start at 0.

    `quantise_bits` makes a quantised network (Lorenzen et al. 2022): every hidden layer's
    activity is rounded to one of 2**bits levels spread evenly over that layer's [min, max] on
    the current batch (per model, over all units and samples), in training and in every forward
    pass, with straight-through gradients; the softmax output is left continuous.

    `flush_denormal=True` makes the CPU arithmetic of the training thread treat subnormal
    floats (magnitudes below 1.2e-38 in float32) as zero while `train` runs (x86 FTZ and DAZ,
    `torch.set_flush_denormal`; it covers NumPy's tanh and BLAS products in that thread too).
    Late in training subnormals appear in the softmax tail, in the gradients behind it, and in
    Adam's moments of the weights of silent ReLU units, which decay into the subnormal range
    and stay there (round(0.9 k) = k for the smallest k): about 10,000 per step of a 50-seed
    ReLU ensemble after 10,000 epochs, none in tanh ones. An Intel core takes a slow microcode
    path for operations on them (a 50-seed ReLU run of 5,000 epochs: 231 s kept, 167 s
    flushed); AMD Zen 4 loses about 6% per late step. Flushing changes a result only where a
    subnormal would have decided it: a parameter moves by at most about lr x 1e-30 in Adam (a
    subnormal m over eps = 1e-8), far below its rounding. Chapter 1 at the paper profile gives
    bit-identical losses, accuracies and information either way (benchmarks/RESULTS.md).
    `False` keeps IEEE subnormals. GPU kernels are not affected.
    """

    hidden: tuple[int, ...] = (10, 7, 5, 4, 3)
    activation: str = "tanh"
    epochs: int = 10_000
    batch_size: int | None = 256
    optimizer: str = "adam"
    lr: float = 4e-4
    init: str = "fan_in"
    snapshots: int = 300
    quantise_bits: int | None = None
    flush_denormal: bool = True

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not self.hidden or any(int(w) < 1 for w in self.hidden):
            raise ValueError(f"hidden must be a non-empty tuple of positive widths, got {self.hidden!r}")
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive int or None, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.quantise_bits is not None and (isinstance(self.quantise_bits, bool)
                                               or not isinstance(self.quantise_bits, int)
                                               or not 1 <= self.quantise_bits <= 16):
            raise ValueError(f"quantise_bits must be None or an int in [1, 16], got {self.quantise_bits!r}")
        if not isinstance(self.flush_denormal, bool):
            raise ValueError(f"flush_denormal must be True or False, got {self.flush_denormal!r}")

    def snapshot_epochs(self) -> np.ndarray:
        return log_spaced_epochs(self.epochs, self.snapshots)


class Ensemble:
    """S MLPs of one architecture in one flat parameter buffer.

    `sizes` lists every layer width, input first, output (softmax classes) last.
    With `quantise_bits`, the hidden activity is quantised (`fake_quantise_`, see `TrainConfig`).
    Layer l's weights are `weights[l]`, `[S, fan_out, fan_in]` (torch.nn.Linear's convention),
    its biases `biases[l]`, `[S, fan_out, 1]`. Internally activations are `[S, units, samples]`,
    samples innermost, which makes the small batched matmuls several times faster on a CPU.
    """

    def __init__(self, sizes: Sequence[int], n_models: int, activation: str,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
                 quantise_bits: int | None = None):
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.sizes, self.n_models, self.activation = tuple(sizes), n_models, activation
        self.quantise_bits = quantise_bits
        self.device = torch.device(device) if device is not None else ibutils.default_device()
        shapes = [(n_models, b, a) for a, b in zip(sizes[:-1], sizes[1:])]
        shapes += [(n_models, b, 1) for b in sizes[1:]]
        self.params = torch.zeros(sum(math.prod(s) for s in shapes), device=self.device, dtype=dtype)
        self.grad = torch.zeros_like(self.params)
        views = _split(self.params, shapes)
        grads = _split(self.grad, shapes)
        n = len(sizes) - 1
        self.weights, self.biases = views[:n], views[n:]
        self.weight_grads, self.bias_grads = grads[:n], grads[n:]
        self._workspace: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}

    def initialise(self, seeds: Sequence[int], scheme: str = "fan_in") -> "Ensemble":
        """Draw every model's weights from its own generator, seeded by `seeds[s]`; zero biases."""
        if len(seeds) != self.n_models:
            raise ValueError(f"seeds must have one entry per model ({self.n_models}), got {len(seeds)}")
        if scheme not in INITS:
            raise ValueError(f"scheme must be one of {INITS}, got {scheme!r}")
        self.params.zero_()
        for s, seed in enumerate(seeds):
            gen = torch.Generator().manual_seed(int(seed))
            for w in self.weights:
                fan_out, fan_in = w.shape[1:]
                sample = torch.empty(fan_out, fan_in)
                if scheme == "glorot":
                    limit = math.sqrt(6 / (fan_in + fan_out))
                    sample.uniform_(-limit, limit, generator=gen)
                else:
                    std = 1 / math.sqrt(fan_in if scheme == "fan_in" else fan_out)
                    torch.nn.init.trunc_normal_(sample, 0.0, std, -2 * std, 2 * std, generator=gen)
                w[s].copy_(sample)
        return self

    def _forward(self, h: torch.Tensor, out: list[torch.Tensor] | None = None,
                 saved: list[torch.Tensor] | None = None, net_inputs: list | None = None) -> list[torch.Tensor]:
        """Layer activations `[S, units, n]` for inputs `h`, `[S, d, n]` or shared `[d, n]`,
        written into `out` (one buffer per layer, but the softmax output) when given.

        `saved` (buffers like `out`, when `_saves()`) receives what the backward pass takes each
        hidden layer's f'(z) from when that is not the layer's output: the slope f'(z) itself for
        the activations in `KEEPS_SLOPE`, else, in a quantised network, the activity before
        quantisation. `net_inputs`, a list, receives a copy of every layer's net input
        (pre-activation).
        """
        acts = []
        last = len(self.weights) - 1
        keeps_slope = self.activation in KEEPS_SLOPE
        for l, (w, b) in enumerate(zip(self.weights, self.biases)):
            z = _matmul(w, h, out=None if out is None else out[l]).add_(b)
            if net_inputs is not None:
                net_inputs.append(z.clone())
            if l == last:
                h = torch.softmax(z, 1)
            else:
                h = _activate_(self.activation, z, saved[l] if saved is not None and keeps_slope else None)
                if self.quantise_bits is not None:
                    if saved is not None and not keeps_slope:
                        saved[l].copy_(h)
                    fake_quantise_(h, self.quantise_bits)
            acts.append(h)
        return acts

    def _saves(self) -> bool:
        """Whether the backward pass needs more of the forward pass than the layers' outputs."""
        return self.activation in KEEPS_SLOPE or self.quantise_bits is not None

    def _buffers(self, n: int) -> tuple[list[torch.Tensor], ...]:
        """Per-layer `[S, width, n]` buffers for the activations and their gradients (and, when
        `_saves()`, for `_forward`'s `saved`), kept per n: a training step then
        allocates almost nothing (allocations of these sizes cost more than the arithmetic on
        them on the CPUs we measured)."""
        if n not in self._workspace:
            sets = 3 if self._saves() else 2
            self._workspace[n] = tuple([torch.empty(self.n_models, w, n, device=self.device, dtype=self.params.dtype)
                                        for w in self.sizes[1:]] for _ in range(sets))
        return self._workspace[n]

    def forward(self, x: torch.Tensor, net_input: bool = False) -> list[torch.Tensor]:
        """Activations of every layer for inputs `x`, `[N, d]` shared by all models.

        Returns one `[S, N, width]` tensor per layer: the hidden activations, then the softmax
        probabilities of the output layer; with `net_input=True`, every layer's net input
        W h + b instead (the output layer's logits last).
        """
        if not net_input:
            return [h.transpose(1, 2) for h in self._forward(x.T)]
        net_inputs = []
        self._forward(x.T, net_inputs=net_inputs)
        return [z.transpose(1, 2) for z in net_inputs]

    def _backward(self, x: torch.Tensor, onehot: torch.Tensor,
                  visit: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None) -> None:
        """`backward`, calling `visit(l, dz, h)` at each layer l with the gradient of the mean loss
        with respect to its net input, dz `[S, fan_out, B]`, and its input h `[S, fan_in, B]`
        (buffers that the next call overwrites)."""
        n = x.shape[2]
        acts, grads, *saved = self._buffers(n)
        saved = saved[0] if saved else None
        hs = [x, *self._forward(x, acts, saved)]
        dz = torch.sub(hs[-1], onehot, out=grads[-1]).mul_(1.0 / n)
        for l in range(len(self.weights) - 1, -1, -1):
            _matmul(dz, hs[l].transpose(1, 2), out=self.weight_grads[l])
            torch.sum(dz, dim=2, keepdim=True, out=self.bias_grads[l])
            if visit is not None:
                visit(l, dz, hs[l])
            if l:
                dz = _matmul(self.weights[l].transpose(1, 2), dz, out=grads[l - 1])
                _backprop_(self.activation, dz, hs[l] if saved is None else saved[l - 1])

    def backward(self, x: torch.Tensor, onehot: torch.Tensor, per_sample: bool = False) -> list[torch.Tensor] | None:
        """Fill `self.grad` with d(mean cross-entropy)/d(params) of each model on its batch.

        `x` is `[S, d, B]`, `onehot` is `[S, classes, B]` (samples innermost).
        With `per_sample=True` also return, per layer, the weight gradient of each sample's
        own loss, `[S, B, fan_out, fan_in]` (their mean is `weight_grads[l]`);
        `per_sample_moments` gives their mean and spread without holding them all.
        """
        if not per_sample:
            return self._backward(x, onehot)
        samples = [None] * len(self.weights)

        def keep(l, dz, h):
            samples[l] = torch.einsum("sob,sib->sboi", dz, h) * dz.shape[2]

        self._backward(x, onehot, keep)
        return samples

    def per_sample_moments(self, x: torch.Tensor, onehot: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Fill `self.grad` as `backward` does and return, per layer, the mean and the sum of
        squared deviations over the B samples of each sample's own weight gradient (the
        gradients `backward(x, onehot, per_sample=True)` returns), each float64 `[S, fan_out * fan_in]`,
        in the units of the gradient and its square.

        From sums over the batch, without the `[S, B, fan_out, fan_in]` stack: the gradient of
        sample b is B dz_b h_b^T, so its mean is dz h^T and its sum of squares B^2 (dz^2)(h^2)^T,
        accumulated in float64 (the deviations' sum keeps ~1e-16 of the squares' sum).
        """
        moments = [None] * len(self.weights)

        def accumulate(l, dz, h):
            dz, h, n = dz.double(), h.double(), dz.shape[2]
            mean = _matmul(dz, h.transpose(1, 2))
            squares = _matmul(dz.square(), h.square().transpose(1, 2)).mul_(n * n)
            moments[l] = (mean.flatten(1), squares.sub_(mean.square().mul_(n)).clamp_(min=0).flatten(1))

        self._backward(x, onehot, accumulate)
        return moments

    def load(self, flat: torch.Tensor) -> "Ensemble":
        self.params.copy_(flat)
        return self


def _split(flat: torch.Tensor, shapes) -> list[torch.Tensor]:
    views, start = [], 0
    for shape in shapes:
        size = math.prod(shape)
        views.append(flat[start:start + size].view(shape))
        start += size
    return views


class _Adam:
    """Adam over a flat buffer, with PyTorch's update rule and defaults (beta 0.9/0.999, eps 1e-8).

    Seven elementwise passes, not `torch._fused_adam_` (~30 us less per step here): the fused
    kernel rounds the buffer's last, non-vectorised elements differently, so a seed's run would
    depend on how many seeds train alongside it.
    """

    def __init__(self, params, grad, lr, betas=(0.9, 0.999), eps=1e-8):
        self.params, self.grad, self.lr, self.betas, self.eps = params, grad, lr, betas, eps
        self.m, self.v, self.denom = torch.zeros_like(params), torch.zeros_like(params), torch.empty_like(params)
        self.t = 0

    def step(self):
        b1, b2 = self.betas
        self.t += 1
        self.m.lerp_(self.grad, 1 - b1)
        self.v.mul_(b2).addcmul_(self.grad, self.grad, value=1 - b2)
        torch.sqrt(self.v, out=self.denom).div_(math.sqrt(1 - b2 ** self.t)).add_(self.eps)
        self.params.addcdiv_(self.m, self.denom, value=-self.lr / (1 - b1 ** self.t))

    def state_dict(self) -> dict:
        return {"m": self.m, "v": self.v, "t": self.t}

    def load_state_dict(self, state: dict) -> None:
        self.m.copy_(state["m"])
        self.v.copy_(state["v"])
        self.t = state["t"]


class _SGD:
    def __init__(self, params, grad, lr):
        self.params, self.grad, self.lr = params, grad, lr

    def step(self):
        self.params.add_(self.grad, alpha=-self.lr)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


@dataclass
class Run:
    """What training recorded. Arrays are `[seeds, snapshots]` unless noted (seeds first, as in
    every result type of the package).

    `params` is `[seeds, snapshots, m]` (each model's m parameters, on the CPU, in the order of
    `Ensemble`'s flat buffer: every layer's weights, then every layer's biases) when kept;
    `Run.ensemble(k)` rebuilds the networks of snapshot k. `select` and `join` split a run into
    groups of seeds and put groups back together.
    """

    METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")
    LAYOUT = 2  # 1: metrics [snapshots, seeds], params [snapshots, all seeds' flat buffer]

    config: TrainConfig
    seeds: tuple[int, ...]
    sizes: tuple[int, ...]
    epochs: np.ndarray
    train_loss: np.ndarray
    train_acc: np.ndarray
    test_loss: np.ndarray
    test_acc: np.ndarray
    params: torch.Tensor | None = field(default=None, repr=False)

    def ensemble(self, k: int, device: torch.device | str | None = None) -> Ensemble:
        net = Ensemble(self.sizes, len(self.seeds), self.config.activation, device=device,
                       quantise_bits=self.config.quantise_bits)
        return net.load(self.flat_params(k).to(net.device))

    def flat_params(self, k: int) -> torch.Tensor:
        """All models' parameters at snapshot k as one flat buffer, `Ensemble.params`'s layout."""
        if self.params is None:
            raise ValueError("this run kept no parameters (train with keep_params=True)")
        blocks = torch.split(self.params[:, k], _block_sizes(self.sizes), dim=1)
        return torch.cat([block.reshape(-1) for block in blocks])

    def select(self, index: Sequence[int]) -> "Run":
        """The run of the models at positions `index` (e.g. a group of seeds), parameters included."""
        index = [int(i) for i in index]
        return replace(self, seeds=tuple(self.seeds[i] for i in index),
                       params=None if self.params is None else self.params[index],
                       **{key: getattr(self, key)[index] for key in self.METRICS})

    @classmethod
    def join(cls, parts: Sequence["Run"]) -> "Run":
        """Runs of disjoint groups of seeds of one configuration as one run, seeds in the order
        of `parts`; parameters are kept when every part kept them."""
        params = None
        if all(part.params is not None for part in parts):
            params = torch.cat([part.params for part in parts])
        return replace(parts[0], seeds=tuple(s for part in parts for s in part.seeds), params=params,
                       **{key: np.concatenate([getattr(p, key) for p in parts]) for key in cls.METRICS})


def _block_sizes(sizes: Sequence[int]) -> list[int]:
    """Parameters per model in each block of `Ensemble`'s flat buffer: each layer's weights, then each layer's biases."""
    pairs = list(zip(sizes[:-1], sizes[1:]))
    return [a * b for a, b in pairs] + [b for _, b in pairs]


def _per_model(flat: torch.Tensor, sizes: Sequence[int], n_models: int) -> torch.Tensor:
    """Flat buffers `[snapshots, n_params]` (`Ensemble.params` at each snapshot) as `[models, snapshots, m]`."""
    blocks = torch.split(flat, [n_models * m for m in _block_sizes(sizes)], dim=1)
    return torch.cat([block.reshape(len(flat), n_models, -1) for block in blocks], 2).transpose(0, 1).contiguous()


def _metrics(probs: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean cross-entropy (nats) and accuracy of each model on its rows `idx` (`[S, n]`)."""
    p = torch.gather(probs, 1, idx.unsqueeze(-1).expand(-1, -1, probs.shape[-1]))
    labels = y[idx]
    p_true = torch.gather(p, 2, labels.unsqueeze(-1)).squeeze(-1)
    loss = -torch.log(p_true.clamp_min(1e-30)).mean(1)
    acc = (p.argmax(-1) == labels).float().mean(1)
    return loss.cpu().numpy(), acc.cpu().numpy()


def _take_columns(table: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """`table[:, columns]` for a 2-D table and int64 `columns` on its device."""
    if table.device.type == "cpu":
        return torch.from_numpy(np.take(table.numpy(), columns.numpy(), axis=1))
    return table.index_select(1, columns)


def _hook_owners(hooks: Sequence[Callable]) -> list | None:
    """The distinct objects behind `hooks` (a bound method's object, else the hook itself), or
    None when one of them has no `state_dict()` / `load_state_dict(state)`."""
    owners = []
    for hook in hooks:
        owner = getattr(hook, "__self__", hook)
        if not (callable(getattr(owner, "state_dict", None)) and callable(getattr(owner, "load_state_dict", None))):
            return None
        if not any(owner is seen for seen in owners):
            owners.append(owner)
    return owners


def _digest(*tensors: torch.Tensor) -> str:
    """SHA-256 of the tensors' shapes, dtypes and values: which data a run trains on."""
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(f"{tuple(t.shape)} {t.dtype};".encode())
        digest.update(memoryview(np.ascontiguousarray(t.cpu().numpy())).cast("B"))
    return digest.hexdigest()


def _state(net: Ensemble, opt, generators: list[torch.Generator], record: dict, kept: list | None) -> dict:
    """The state of a run between epochs, as plain data: parameters, optimiser, generators, the
    metrics recorded so far (`[snapshots, seeds]` per key) and the parameters kept (or None)."""
    return {"params": net.params, "optimizer": opt.state_dict(), "generators": [g.get_state() for g in generators],
            "record": {key: np.stack(values) for key, values in record.items()},
            "kept": torch.stack(kept) if kept is not None else None}


def _load_state(state: dict, net: Ensemble, opt, generators: list[torch.Generator], record: dict,
                kept: list | None) -> None:
    """Put `_state`'s `state` back into the run's objects, in place."""
    net.params.copy_(state["params"])
    opt.load_state_dict(state["optimizer"])
    for generator, generator_state in zip(generators, state["generators"]):
        generator.set_state(generator_state)
    for key, values in state["record"].items():
        record[key][:] = list(values)
    if kept is not None:
        kept[:] = list(state["kept"])


class _Checkpoints:
    """A run's checkpoint file: written at the end of an epoch once `every` seconds have passed
    since the last one (or the start), read back when a run with the same `fingerprint` starts.

    Off (`path` None) when no path is given or when a hook cannot save its state.
    """

    def __init__(self, path, every: float, fingerprint: dict, hooks: Sequence[Callable]):
        self.path, self.every = (Path(path) if path is not None else None), every
        self.owners = _hook_owners(hooks)
        if self.path is not None and self.owners is None:
            store.notice(f"no checkpoints for {self.path.name}: a hook has no state_dict / load_state_dict")
            self.path = None
        hook_types = [f"{type(owner).__module__}.{type(owner).__qualname__}" for owner in self.owners or ()]
        self.fingerprint = {**fingerprint, "hooks": hook_types}
        self.last = time.monotonic()

    def restore(self, epochs: int) -> dict | None:
        """The saved state (its hooks' states already loaded), or None to train from the start."""
        if self.path is None or not self.path.exists():
            return None
        try:
            state = store.read(self.path)
        except store.CorruptFile as exc:
            store.notice(f"checkpoint {exc}; training from the start")
            return None
        if state.get("fingerprint") != self.fingerprint:
            store.notice(f"checkpoint {self.path} is of another run (settings, seeds, data or hooks); training from the start")
            return None
        for owner, hook_state in zip(self.owners, state["hooks"]):
            owner.load_state_dict(hook_state)
        store.notice(f"resuming from checkpoint {self.path.name} after epoch {state['epoch']} of {epochs}")
        return state

    def save_if_due(self, state: Callable[[], dict]) -> None:
        """Write `state()` (and the hooks' states) if `every` seconds have passed since the last write."""
        if self.path is None or time.monotonic() - self.last < self.every:
            return
        hooks = [owner.state_dict() for owner in self.owners]
        store.write(self.path, {"fingerprint": self.fingerprint, **state(), "hooks": hooks})
        self.last = time.monotonic()


@phase("training")
def train(x, y, train_idx, test_idx, config: TrainConfig, seeds: Sequence[int], *,
          device: torch.device | str | None = None, keep_params: bool = True,
          on_snapshot: Sequence[Callable[[int, list[torch.Tensor]], None]] = (),
          on_batch: Sequence[Callable[[int, Ensemble, torch.Tensor, torch.Tensor], None]] = (),
          threads: int | None = 1, progress: bool = True,
          checkpoint: str | os.PathLike | None = None, checkpoint_every: float = CHECKPOINT_EVERY_S) -> Run:
    """Train one model per seed on its own rows of (`x`, `y`) and record snapshots.

    Parameters
    ----------
    x : `[N, d]` float inputs, the pool every split indexes into.
    y : `[N]` int class labels in 0..C-1.
    train_idx, test_idx : `[S, n_train]`, `[S, n_test]` row indices per seed.
    config : the architecture, optimiser and schedule.
    seeds : S integers; seed s initialises and shuffles model s.
    keep_params : keep a CPU copy of all parameters at every snapshot (`Run.params`, seeds first).
    on_snapshot : hooks called as `hook(epoch, activations)` with the activations of
        every layer on all N rows of `x`, each `[S, N, width]`.
    on_batch : hooks called as `hook(epoch, net, x_batch, onehot_batch)` for every minibatch
        of every snapshot epoch, after the gradient is in `net.grad` and before the update;
        batches are `[S, d, B]` and `[S, C, B]`. For gradient statistics (`ibutils.gradients`). Epoch 0
        is one pass of (shuffled) minibatches over the initial network, without updates.
    threads : torch intra-op CPU threads while training (None: leave torch's setting). One is
        the default: these layers are so small that a second thread gained 6% on a quiet
        2-core machine and cost up to 10x on a loaded one.

    checkpoint : a file to save the run's state in (`ibutils.store` format: checksummed, written
        atomically) at the end of an epoch once `checkpoint_every` seconds of training have passed
        since the last save, and at the end of training if as long has passed. A run whose
        checkpoint file holds the state of the same run (same config, seeds, data, device, hooks)
        resumes from it, with results bit-for-bit identical to an uninterrupted run's; a damaged
        or foreign file is reported in one line and training starts over. The state is the
        parameters, the optimiser's (Adam's m, v and step count), every seed's shuffling generator,
        the epoch, the metrics and kept parameters so far, and the `state_dict()` of every hook's
        object (a bound method's `__self__`, else the hook): each must have `state_dict()` and
        `load_state_dict(state)`, or no checkpoints are made (said in one line). The caller
        removes the file once it has stored the result.

    Minibatches: each epoch, each seed shuffles its training rows and takes consecutive
    batches of `config.batch_size` (the last one smaller); `None` is full batch.
    Subnormal floats are flushed to zero while training, hooks included, when
    `config.flush_denormal` (the default); the thread's previous setting is restored after.
    """
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, (int, float)) or not checkpoint_every >= 0:
        raise ValueError(f"checkpoint_every must be a number of seconds >= 0, got {checkpoint_every!r}")
    previous, flushing = torch.get_num_threads(), flushing_denormals()
    if threads is not None:
        torch.set_num_threads(threads)
    torch.set_flush_denormal(config.flush_denormal)
    try:
        return _train(x, y, train_idx, test_idx, config, seeds, device, keep_params, on_snapshot, on_batch, progress,
                      checkpoint, checkpoint_every)
    finally:
        torch.set_num_threads(previous)
        torch.set_flush_denormal(flushing)


def flushing_denormals() -> bool:
    """Whether this thread's CPU arithmetic now flushes subnormal floats to zero (torch has a
    setter, `torch.set_flush_denormal`, but no getter): half the smallest normal float32 is 0."""
    return (torch.tensor([torch.finfo(torch.float32).tiny]) * 0.5).item() == 0.0


def _train(x, y, train_idx, test_idx, config, seeds, device, keep_params, on_snapshot, on_batch, progress,
           checkpoint, checkpoint_every) -> Run:
    device = torch.device(device) if device is not None else ibutils.default_device()
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32, device=device)
    y = torch.as_tensor(np.asarray(y), dtype=torch.int64, device=device)
    train_idx = torch.as_tensor(np.asarray(train_idx), dtype=torch.int64, device=device)
    test_idx = torch.as_tensor(np.asarray(test_idx), dtype=torch.int64, device=device)
    seeds = tuple(int(s) for s in seeds)
    if x.dim() != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"x must be [N, d] and y [N]; got x {tuple(x.shape)}, y {tuple(y.shape)}")
    if train_idx.dim() != 2 or train_idx.shape[0] != len(seeds) or test_idx.shape[0] != len(seeds):
        raise ValueError(f"train_idx and test_idx must be [S, n] with S = len(seeds) = {len(seeds)}")
    n_classes = int(y.max()) + 1
    sizes = (x.shape[1], *config.hidden, n_classes)
    n_seeds, n_train = train_idx.shape

    net = Ensemble(sizes, n_seeds, config.activation, device=device,
                   quantise_bits=config.quantise_bits).initialise(seeds, config.init)
    opt = (_Adam if config.optimizer == "adam" else _SGD)(net.params, net.grad, config.lr)
    onehot = torch.nn.functional.one_hot(y, n_classes).float()
    d = x.shape[1]
    # [d + C, N]: inputs and targets, small enough to stay in cache; each epoch gathers its
    # columns into [S, d + C, n_train], samples innermost as Ensemble.backward wants them
    table = torch.cat([x, onehot], 1).T.contiguous()
    batch = n_train if config.batch_size is None else min(config.batch_size, n_train)
    shuffle = batch < n_train
    generators = [torch.Generator().manual_seed(s + 1_000_003) for s in seeds]

    def gather(rows: torch.Tensor) -> torch.Tensor:
        """The table's columns for each seed's `rows` `[S, n_train]`, as `[S, d + C, n_train]`."""
        return _take_columns(table, rows.reshape(-1)).view(-1, n_seeds, n_train).transpose(0, 1)

    def shuffled(gens: list[torch.Generator]) -> torch.Tensor:
        """Each seed's training rows in a fresh random order drawn from its generator, gathered."""
        order = torch.stack([torch.randperm(n_train, generator=g) for g in gens])
        return gather(torch.gather(train_idx, 1, order.to(device)))

    def minibatches(epoch_table: torch.Tensor):
        """Consecutive (inputs `[S, d, B]`, one-hot targets `[S, C, B]`) of an epoch's table."""
        for start in range(0, n_train, batch):
            chunk = epoch_table[:, :, start:start + batch]
            yield chunk[:, :d], chunk[:, d:]

    epoch_table = gather(train_idx)

    snap_epochs = config.snapshot_epochs()
    record = {key: [] for key in Run.METRICS}
    kept = []

    def snapshot(epoch: int) -> None:
        with torch.no_grad():
            acts = net.forward(x)
        for key, idx in (("train", train_idx), ("test", test_idx)):
            loss, acc = _metrics(acts[-1], y, idx)
            record[f"{key}_loss"].append(loss)
            record[f"{key}_acc"].append(acc)
        if keep_params:
            kept.append(net.params.detach().cpu().clone())
        for hook in on_snapshot:
            hook(epoch, acts)

    fingerprint = {"config": asdict(config), "seeds": seeds, "keep_params": keep_params, "device": device.type,
                   "data": _digest(x, y, train_idx, test_idx) if checkpoint is not None else None}
    checkpoints = _Checkpoints(checkpoint, checkpoint_every, fingerprint, (*on_snapshot, *on_batch))

    run_objects = (net, opt, generators, record, kept if keep_params else None)
    resumed = checkpoints.restore(config.epochs)
    if resumed is not None:
        start, next_snap = resumed["epoch"], resumed["next_snap"]
        _load_state(resumed, *run_objects)
    else:
        if on_batch:  # the initial network: one pass of minibatches without updates, for the hooks
            # its own generators, so the training shuffles do not depend on whether hooks are given
            initial = [torch.Generator().manual_seed(s + 2_000_003) for s in seeds]
            for x_batch, onehot_batch in minibatches(shuffled(initial) if shuffle else epoch_table):
                net.backward(x_batch, onehot_batch)
                for hook in on_batch:
                    hook(0, net, x_batch, onehot_batch)
        snapshot(0)
        start, next_snap = 0, 1
    for epoch in progress_bar(range(start + 1, config.epochs + 1), desc=f"{config.activation} x {n_seeds} seeds",
                              unit="epoch", show=progress):
        if shuffle:
            epoch_table = shuffled(generators)
        at_snapshot = next_snap < len(snap_epochs) and epoch == snap_epochs[next_snap]
        for x_batch, onehot_batch in minibatches(epoch_table):
            net.backward(x_batch, onehot_batch)
            for hook in on_batch if at_snapshot else ():
                hook(epoch, net, x_batch, onehot_batch)
            opt.step()
        if at_snapshot:
            snapshot(epoch)
            next_snap += 1
        checkpoints.save_if_due(lambda: {"epoch": epoch, "next_snap": next_snap, **_state(*run_objects)})

    return Run(config=config, seeds=seeds, sizes=sizes, epochs=snap_epochs,
               params=_per_model(torch.stack(kept), sizes, n_seeds) if keep_params else None,
               **{key: np.stack(values, 1) for key, values in record.items()})
