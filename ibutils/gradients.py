"""Gradient signal-to-noise statistics: the "drift and diffusion" phases (Saxe et al. App. I).

For one layer's weights W and a stack of n gradients g_1..g_n of the loss with respect to W
(one per minibatch of an epoch for SGD, one per training sample for full-batch descent):

* mean norm  m = || (1/n) sum_i g_i ||_F, the systematic "signal" of the update;
* std norm   s = || std_i(g_i) ||_F, the element-wise standard deviation across the n
  gradients, reduced by the Frobenius norm; s^2 is the trace of the gradients' covariance;
* SNR        = m / s.

Shwartz-Ziv & Tishby (2017) read a fall of the SNR from high to low as the switch from a
"drift" phase (fitting) to a "diffusion" phase they tied to compression; Saxe et al. (Fig. 20,
21) show the same fall in networks that never compress.

Standard deviation convention: the population form (divide by n, ddof = 0), as the authors'
code (`ibsgd/loggingreporter.py`, `np.std` over the batches of an epoch) computes it. It is
defined for n = 1 (s = 0). With ddof = 1 every s would be larger by sqrt(n / (n - 1)): 4% for
the 13 minibatches of a 3,277-sample epoch in batches of 256, 0.015% for 3,277 per-sample
gradients, so the SNR transition does not depend on the choice.

`Recorder` collects these statistics during training through `ibutils.train.train`'s hooks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

MODES = ("minibatch", "sample")


class Statistics(NamedTuple):
    """Gradient statistics per seed (arrays `[seeds]`, float64, units of the gradient).

    `snr` is `mean / std`: inf where std = 0 < mean, NaN where both are 0.
    """

    mean: np.ndarray
    std: np.ndarray
    snr: np.ndarray


def _as_stack(grads) -> torch.Tensor:
    """`grads` `[n, seeds, ...]` as a float tensor `[seeds, n, D]` (a view where the layout allows)."""
    try:
        g = grads if isinstance(grads, torch.Tensor) else torch.from_numpy(np.asarray(grads))
    except TypeError:
        raise ValueError(f"grads must be a real array [n, seeds, ...], got {type(grads).__name__}") from None
    if g.ndim < 2 or g.shape[0] < 1 or g.shape[1] < 1:
        raise ValueError(f"grads must have shape [n, seeds, ...] with n, seeds >= 1, got {tuple(g.shape)}")
    if not (g.is_floating_point() or g.dtype in (torch.int32, torch.int64)):
        raise ValueError(f"grads must be real numbers, got dtype {g.dtype}")
    if not g.is_floating_point():
        g = g.to(torch.float64)
    # [seeds, n, D]: a view for the per-sample layout [seeds, n, out, in] the trainer returns
    return g.detach().movedim(0, 1).reshape(g.shape[1], g.shape[0], -1)


class _Moments:
    """Running count, mean and sum of squared deviations of gradients, per seed and element.

    Stacks are merged one at a time with Chan, Golub & LeVeque's pairwise update, so a long
    stream (every sample of an epoch) never has to be held at once. Within a stack the
    centring is done in its precision and the squares are summed in float64; the running
    mean and sums are float64.
    """

    def __init__(self):
        self.n, self.mean, self.m2 = 0, None, None

    def add(self, g: torch.Tensor) -> None:
        """Merge a stack `[seeds, n_b, D]`."""
        mean_b = g.mean(1, dtype=torch.float64)
        m2_b = torch.linalg.vector_norm(g - mean_b.unsqueeze(1).to(g.dtype), dim=1, dtype=torch.float64).square_()
        self.merge(g.shape[1], mean_b, m2_b)

    def merge(self, n_b: int, mean_b: torch.Tensor, m2_b: torch.Tensor) -> None:
        """Merge the moments of `n_b` gradients: their mean and sum of squared deviations, float64 `[seeds, D]`."""
        if self.n == 0:
            self.n, self.mean, self.m2 = n_b, mean_b, m2_b
            return
        n = self.n + n_b
        delta = mean_b - self.mean
        self.m2 += m2_b + delta.square() * (self.n * n_b / n)
        self.mean += delta * (n_b / n)
        self.n = n

    def statistics(self) -> Statistics:
        m = torch.linalg.vector_norm(self.mean, dim=-1).cpu().numpy()
        s = (self.m2.sum(-1) / self.n).sqrt_().cpu().numpy()
        if not (np.isfinite(m).all() and np.isfinite(s).all()):
            raise ValueError("grads must be finite")
        with np.errstate(divide="ignore", invalid="ignore"):
            snr = m / s
        return Statistics(m, s, snr)


def statistics(grads) -> Statistics:
    """Norm of the mean, norm of the element-wise std (ddof = 0), and their ratio, per seed.

    Args:
        grads: a stack of n gradients of one layer's weights, `[n, seeds, ...]` (torch or
            NumPy, any float dtype; the trailing dimensions, e.g. `[fan_out, fan_in]`, are
            flattened into one vector per gradient). Means and sums of squares are
            accumulated in float64; the centring is done in the input's precision (float32
            gradients keep ~7 significant digits of s, ample for an SNR).

    Returns:
        `Statistics(mean, std, snr)`, each `[seeds]`: m = ||mean_i g_i||_F,
        s = ||std_i g_i||_F (population std over the n gradients), m / s.

    Raises:
        ValueError: `grads` is not a real `[n, seeds, ...]` array, or has non-finite entries.
    """
    moments = _Moments()
    moments.add(_as_stack(grads))
    return moments.statistics()


@dataclass
class Trajectory:
    """Per-layer gradient statistics over training (see `statistics`), one value per seed.

    `epochs` is `[K]`; `mean`, `std`, `snr` and `weight_norm` are `[seeds, K, layers]`:
    the norms of the mean and std of the gradients collected during epoch `epochs[k]`, their
    ratio, and the Frobenius norm ||W_l||_F of the weights at the end of that epoch.
    `mode` says what the gradients were: "minibatch" or "sample" (see `Recorder`).
    """

    mode: str
    epochs: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    snr: np.ndarray
    weight_norm: np.ndarray

    def series(self) -> dict:
        """The results-JSON layout: seed means per layer (`snr[l][k]`), on the epochs `grad_epochs`.

        The SNR is the mean over seeds of each seed's ratio (as the authors average it), so it
        is not the ratio of the mean `grad_mean` to the mean `grad_std`. A seed whose gradient
        is exactly zero (e.g. a ReLU network whose units all fell silent) has no SNR (0/0) and
        is left out of that mean.
        """
        return {
            "grad_epochs": self.epochs,
            "grad_mode": self.mode,
            "grad_mean": self.mean.mean(0).T,
            "grad_std": self.std.mean(0).T,
            "snr": np.nanmean(self.snr, 0).T,
            "weight_norm": self.weight_norm.mean(0).T,
        }


class Recorder:
    """Collects gradient statistics of every layer's weights at the snapshot epochs of a run.

    Pass `on_batch=[recorder.on_batch]` and `on_snapshot=[recorder.on_snapshot]` to
    `ibutils.train.train`. During each snapshot epoch it takes, per layer, either the gradient
    of every minibatch (`mode="minibatch"`: the SGD statistic of the book's Methods page and of the authors'
    code) or the gradient of every training sample (`mode="sample"`: for full-batch descent,
    whose epoch has a single gradient; paper App. I, Fig. 21D), each at the weights just
    before the update it drives (at epoch 0, the initial weights, which `train` passes once
    through without updating), and folds them into running moments; at the end of the
    epoch it turns them into `Statistics` and takes the weights' norms. Biases are left out, as
    in the paper. `trajectory()` returns the record.

    Per-sample gradients are summarised `chunk` samples at a time (`Ensemble.per_sample_moments`:
    their mean and sum of squared deviations, without the stack of gradients), so memory stays
    bounded; the batch's own gradient in `net.grad` is restored afterwards, so training is
    unchanged.
    """

    def __init__(self, mode: str = "minibatch", chunk: int = 256):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
        self.mode, self.chunk = mode, chunk
        self._net, self._epoch, self._moments = None, None, []
        self._epochs: list[int] = []
        self._stats: list[list[Statistics]] = []  # [K][layers]
        self._norms: list[np.ndarray] = []  # [K] of [seeds, layers]

    def on_batch(self, epoch: int, net, x: torch.Tensor, onehot: torch.Tensor) -> None:
        """`train`'s on_batch hook: fold this batch's gradient (or its per-sample gradients) in."""
        if epoch != self._epoch:
            self._net, self._epoch = net, epoch
            self._moments = [_Moments() for _ in net.weight_grads]
        if self.mode == "minibatch":
            for moments, g in zip(self._moments, net.weight_grads):
                moments.add(g.reshape(g.shape[0], 1, -1))
            return
        batch_grad = net.grad.clone()
        for start in range(0, x.shape[2], self.chunk):
            x_chunk, onehot_chunk = x[:, :, start:start + self.chunk], onehot[:, :, start:start + self.chunk]
            for moments, (mean, m2) in zip(self._moments, net.per_sample_moments(x_chunk, onehot_chunk)):
                moments.merge(x_chunk.shape[2], mean, m2)
        net.grad.copy_(batch_grad)

    def on_snapshot(self, epoch: int, activations) -> None:
        """`train`'s on_snapshot hook: turn the epoch's moments into statistics."""
        if epoch != self._epoch or not self._moments:
            raise ValueError(f"no gradients were collected in snapshot epoch {epoch}: pass on_batch too")
        self._epochs.append(epoch)
        self._stats.append([moments.statistics() for moments in self._moments])
        self._norms.append(np.stack([torch.linalg.matrix_norm(w.double()).cpu().numpy()
                                     for w in self._net.weights], -1))
        self._moments = []

    def state_dict(self) -> dict:
        """The statistics recorded so far, as plain data, for `train`'s checkpoints, which take it
        at the end of an epoch: gradients that no `on_snapshot` has turned into statistics yet are
        not part of it."""
        return {"mode": self.mode, "chunk": self.chunk, "epoch": self._epoch, "epochs": list(self._epochs),
                "stats": np.asarray(self._stats, dtype=np.float64), "norms": np.asarray(self._norms, dtype=np.float64)}

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state_dict()` of a recorder with the same mode and chunk."""
        if (state["mode"], state["chunk"]) != (self.mode, self.chunk):
            raise ValueError(f"state is of a recorder with mode {state['mode']!r} and chunk {state['chunk']}, "
                             f"not {self.mode!r} and {self.chunk}")
        self._net, self._epoch, self._moments = None, state["epoch"], []
        self._epochs = list(state["epochs"])
        self._stats, self._norms = list(state["stats"]), list(state["norms"])  # [layers, 3, seeds], [seeds, layers]

    def trajectory(self) -> Trajectory:
        """The statistics recorded so far (`[seeds, K, layers]` arrays, see `Trajectory`)."""
        if not self._epochs:
            raise ValueError("no snapshot epoch was recorded")
        fields = np.asarray(self._stats).transpose(2, 3, 0, 1)  # [K, layers, 3, seeds] -> [3, seeds, K, layers]
        norms = np.asarray(self._norms).transpose(1, 0, 2)
        return Trajectory(self.mode, np.asarray(self._epochs, dtype=np.int64), *fields, norms)
