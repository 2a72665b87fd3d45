"""Linear student-teacher networks: exact information, exact generalisation, and training.

Saxe et al. (2018), Sections 3 and 5 (Fig. 3, 4A-B, 6, 18, 19, 21). Everything here is closed-form
Gaussian theory plus a vectorised trainer for deep linear students (with optional gradient
signal-to-noise statistics, Saxe et al. App. I) and the figures of a run. Settings and sources:
the book's Methods page, sections "Exact information of linear networks", "Generalisation
error of a linear student", "Linear student-teacher networks" and "Task-irrelevant inputs".

Conventions (all information in **bits**):

* Input X ~ N(0, cov_x). The teacher's label is Y = W0 X + eps_o, eps_o ~ N(0, output_noise_var I).
* A layer with total weight W (the product W_l ... W_1 of the layers up to it) is analysed as the
  noisy channel T = W X + Z, Z ~ N(0, noise_var I) (the paper's sigma^2_MI; the noise exists only for
  the analysis, the network itself is deterministic).
* Weights are shaped [..., n_out, n_in]; leading dimensions (e.g. seeds) are batch dimensions and
  every function returns one value per batch element.

Where the paper's printed equations drop factors (documented in the chapter too):

* Eq. 6 prints I(T;X) = log|W W^T + s^2 I| - log|s^2 I|: it omits the 1/2 of a Gaussian entropy and
  the input covariance. The exact value, used here, is 1/2 log2 det(I + W cov_x W^T / s^2).
* App. G (Eqs. 22-25) likewise drops cov_x in I(T;Y) (and writes I_Nh where I_No is meant).
* Eq. 5 prints E_g = ||W0 - W||_F^2 + sigma_o^2, which is exact only for unit-variance inputs; for
  X ~ N(0, I/Ni) the expected test error is ||W0 - W||_F^2 / Ni + sigma_o^2 (`expected_test_error`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import matplotlib.pyplot as plt
import numpy as np
import torch

from ibutils import gradients, infoplane, plots, train
from ibutils.gaussian import _channel_bits, _covariance, _out, _positive, _weights, gaussian_channel
from ibutils.progress import phase, progress_bar

_STREAMS = {"teacher": 0, "train": 1, "init": 2, "shuffle": 3, "test": 4}
_BLOCK_BYTES = 32 * 2**20  # memory for one block of pre-shuffled minibatches


# ----------------------------------------------------------------------------------------------
# Input checking
# ----------------------------------------------------------------------------------------------


def _subset_mask(subset, n_in: int) -> torch.Tensor:
    """A boolean mask [n_in] from a boolean mask or a sequence of distinct integer indices."""
    s = torch.as_tensor(np.asarray(subset))
    if s.dtype == torch.bool:
        if s.shape != (n_in,):
            raise ValueError(f"subset as a boolean mask must have shape ({n_in},), got {tuple(s.shape)}")
        return s
    if s.numel() == 0:
        return torch.zeros(n_in, dtype=torch.bool)
    valid = s.ndim == 1 and not s.is_floating_point() and s.min() >= 0 and s.max() < n_in
    if not valid or s.unique().numel() != s.numel():
        raise ValueError(
            f"subset must be a boolean mask of length {n_in} or distinct integer indices in [0, {n_in})"
        )
    mask = torch.zeros(n_in, dtype=torch.bool)
    mask[s] = True
    return mask


# ----------------------------------------------------------------------------------------------
# Exact information (bits)
# ----------------------------------------------------------------------------------------------


def _posterior_cov(w: torch.Tensor, cov: torch.Tensor, noise_var: float) -> torch.Tensor:
    """Cov(X | T) = cov - cov w^T (w cov w^T + noise_var I)^-1 w cov for T = w X + Z."""
    eye = torch.eye(w.shape[-2], dtype=w.dtype, device=w.device)
    cov_t = w @ cov @ w.transpose(-1, -2) + noise_var * eye
    a = torch.linalg.solve_triangular(torch.linalg.cholesky(cov_t), w @ cov, upper=False)
    return cov - a.transpose(-1, -2) @ a


def gaussian_label_information(
    w, w0, cov_x, noise_var: float = 1.0, output_noise_var: float = 1.0
) -> float | np.ndarray:
    """Exact I(T; Y) in bits for T = W X + Z and the teacher's label Y = W0 X + eps_o.

    X ~ N(0, cov_x), Z ~ N(0, noise_var I), eps_o ~ N(0, output_noise_var I), all independent.
    Because T - X - Y is a Markov chain, I(X;Y) = I(T;Y) + I(X;Y|T), so

        I(T;Y) = I(X;Y) - I(X;Y|T)
               = 1/2 log2 det(I + W0 cov_x W0^T / s_o^2) - 1/2 log2 det(I + W0 C W0^T / s_o^2),

    with C = Cov(X|T) = cov_x - cov_x W^T (W cov_x W^T + noise_var I)^-1 W cov_x. This equals
    1/2 log(|S_T| |S_Y| / |S_TY joint|), Saxe et al. App. G with cov_x restored.

    Args:
        w: student weights up to the layer, [..., n_t, n_in].
        w0: teacher weights [..., n_y, n_in], broadcastable against w's batch dimensions.
        cov_x: input covariance, [n_in, n_in] or a scalar (isotropic).
        noise_var: analysis noise variance of T, > 0.
        output_noise_var: teacher's label noise variance sigma_o^2, > 0.

    Returns:
        bits, a float or an array over the broadcast batch dimensions.
    """
    w = _weights("w", w)
    w0 = _weights("w0", w0).to(w.device)
    if w0.shape[-1] != w.shape[-1]:
        raise ValueError(f"w0 must have n_in = {w.shape[-1]} columns like w, got shape {tuple(w0.shape)}")
    try:
        torch.broadcast_shapes(w.shape[:-2], w0.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"w0's batch dimensions {tuple(w0.shape[:-2])} must broadcast with w's {tuple(w.shape[:-2])}"
        ) from None
    cov = _covariance(cov_x, w.shape[-1], w.device)
    noise_var = _positive("noise_var", noise_var)
    output_noise_var = _positive("output_noise_var", output_noise_var)
    given_t = _posterior_cov(w, cov, noise_var)
    return _out(_channel_bits(w0, cov, output_noise_var) - _channel_bits(w0, given_t, output_noise_var))


def subspace_information(w, cov_x, subset, noise_var: float = 1.0) -> float | np.ndarray:
    """Exact I(T; X_S) in bits: what T = W X + Z carries about the input block X_S.

    The complementary block X_R (R = not S) acts as extra noise. By the chain rule
    I(T;X) = I(T;X_S) + I(T;X_R | X_S), and given X_S the channel is T = W_R X_R + (known) + Z with
    X_R | X_S ~ N(., C_R|S), C_R|S = cov_RR - cov_RS cov_SS^-1 cov_SR. Hence

        I(T;X_S) = 1/2 log2 det(I + W cov_x W^T / s^2) - 1/2 log2 det(I + W_R C_R|S W_R^T / s^2)
                 = 1/2 log2 |S_T| - 1/2 log2 |W_R C_R|S W_R^T + s^2 I|.

    For independent blocks (cov_RS = 0, e.g. cov_x = I/Ni) C_R|S = cov_RR: the block formula of the
    book's Methods page.
    S = all inputs gives I(T;X); S = empty gives 0.

    Args:
        w: weights [..., n_out, n_in].
        cov_x: input covariance [n_in, n_in] or a scalar (isotropic); cov_x restricted to S must be
            positive definite.
        subset: the block S, a boolean mask [n_in] or a sequence of distinct integer indices.
        noise_var: analysis noise variance, > 0.

    Returns:
        bits, a float or an array of shape [...].
    """
    w = _weights("w", w)
    cov = _covariance(cov_x, w.shape[-1], w.device)
    noise_var = _positive("noise_var", noise_var)
    s = _subset_mask(subset, w.shape[-1]).to(w.device)
    r = ~s
    cov_rs, cov_ss = cov[r][:, s], cov[s][:, s]
    cond = cov[r][:, r] - cov_rs @ torch.linalg.solve(cov_ss, cov_rs.T) if s.any() else cov[r][:, r]
    return _out(_channel_bits(w, cov, noise_var) - _channel_bits(w[..., r], cond, noise_var))


def expected_test_error(w_total, w0, cov_x, output_noise_var: float = 1.0) -> float | np.ndarray:
    """Exact expected squared error E||Y - W X||^2 of the linear map W on a fresh example.

    E = tr((W0 - W) cov_x (W0 - W)^T) + n_y sigma_o^2. For cov_x = I/Ni this is
    ||W0 - W||_F^2 / Ni + sigma_o^2 (n_y = 1); the paper's Eq. 5 omits the 1/Ni.

    Args:
        w_total: the student's input-output map [..., n_y, n_in].
        w0: teacher weights [..., n_y, n_in], broadcastable against w_total.
        cov_x: input covariance [n_in, n_in] or a scalar (isotropic).
        output_noise_var: label noise variance sigma_o^2, >= 0.

    Returns:
        squared error (units of Y^2) summed over the n_y outputs, a float or an array [...].
    """
    w = _weights("w_total", w_total)
    w0 = _weights("w0", w0).to(w.device)
    if w0.shape[-2:] != w.shape[-2:]:
        raise ValueError(
            f"w0 must have the shape [..., {w.shape[-2]}, {w.shape[-1]}] of w_total, got {tuple(w0.shape)}"
        )
    cov = _covariance(cov_x, w.shape[-1], w.device)
    d = w0 - w
    noise = w.shape[-2] * _positive("output_noise_var", output_noise_var, allow_zero=True)
    return _out(((d @ cov) * d).sum((-1, -2)) + noise)


# ----------------------------------------------------------------------------------------------
# Teacher and data
# ----------------------------------------------------------------------------------------------


def _rng(seed: int, stream: str) -> np.random.Generator:
    """An independent NumPy stream per (seed, purpose), so every seed's draws depend on it alone."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_STREAMS[stream],)))


def _seeds(seeds) -> tuple[int, ...]:
    out = tuple(int(s) for s in np.atleast_1d(np.asarray(seeds)))
    if not out or any(s < 0 for s in out):
        raise ValueError(f"seeds must be a non-empty sequence of non-negative integers, got {seeds!r}")
    return out


@dataclass(frozen=True)
class Teacher:
    """The linear teacher of Saxe et al. Sec. 3 and 5: X ~ N(0, I/n_in), Y = W0 X + eps_o.

    W0 [n_out, n_in] has i.i.d. N(0, sigma_w^2) entries on the first `n_relevant` inputs and zeros on
    the rest (the task-irrelevant inputs of Fig. 6; `n_relevant=None` means all inputs are relevant).
    eps_o ~ N(0, sigma_o^2 I) with sigma_o^2 = sigma_w^2 / snr.
    """

    n_in: int = 100
    n_out: int = 1
    snr: float = 1.0
    sigma_w: float = 1.0
    n_relevant: int | None = None

    def __post_init__(self):
        for name in ("n_in", "n_out"):
            if not isinstance(getattr(self, name), (int, np.integer)) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        _positive("snr", self.snr)
        _positive("sigma_w", self.sigma_w)
        if self.n_relevant is not None and not (
            isinstance(self.n_relevant, (int, np.integer)) and 1 <= self.n_relevant < self.n_in
        ):
            raise ValueError(
                f"n_relevant must be None or an integer in [1, {self.n_in}), got {self.n_relevant!r}"
            )

    @property
    def input_var(self) -> float:
        """Variance of each input coordinate, 1/n_in (cov_x = input_var * I)."""
        return 1.0 / self.n_in

    @property
    def output_noise_var(self) -> float:
        """sigma_o^2 = sigma_w^2 / snr."""
        return self.sigma_w**2 / self.snr

    @property
    def relevant(self) -> np.ndarray:
        """Boolean mask [n_in] of the task-relevant inputs (all True when n_relevant is None)."""
        return np.arange(self.n_in) < (self.n_in if self.n_relevant is None else self.n_relevant)

    def weights(self, seeds) -> torch.Tensor:
        """Teacher weights W0 [n_seeds, n_out, n_in] (float64), one independent draw per seed."""
        k = int(self.relevant.sum())
        w0 = np.zeros((len(_seeds(seeds)), self.n_out, self.n_in))
        for i, s in enumerate(_seeds(seeds)):
            w0[i, :, :k] = self.sigma_w * _rng(s, "teacher").standard_normal((self.n_out, k))
        return torch.from_numpy(w0)

    def sample(self, w0, n_samples: int, seeds, stream: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
        """Draw `n_samples` examples per seed: x [n_seeds, n_samples, n_in], y [n_seeds, n_samples, n_out].

        `w0` is [n_seeds, n_out, n_in] (from `weights`). `stream` is "train" for the training set or
        "test" for a fresh held-out sample; each (seed, stream) has its own random stream.
        """
        seeds = _seeds(seeds)
        w0 = _weights("w0", w0, min_ndim=3)
        if w0.shape != (len(seeds), self.n_out, self.n_in):
            raise ValueError(
                f"w0 must have shape ({len(seeds)}, {self.n_out}, {self.n_in}), got {tuple(w0.shape)}"
            )
        if not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        if stream not in ("train", "test"):
            raise ValueError(f"stream must be 'train' or 'test', got {stream!r}")
        x = np.empty((len(seeds), n_samples, self.n_in))
        noise = np.empty((len(seeds), n_samples, self.n_out))
        for i, s in enumerate(seeds):
            rng = _rng(s, stream)
            x[i] = rng.standard_normal((n_samples, self.n_in)) * math.sqrt(self.input_var)
            noise[i] = rng.standard_normal((n_samples, self.n_out)) * math.sqrt(self.output_noise_var)
        x = torch.from_numpy(x)
        return x, x @ w0.cpu().transpose(1, 2) + torch.from_numpy(noise)

    def test_error(self, w_total, w0) -> float | np.ndarray:
        """Exact expected test error of the student map `w_total` (see `expected_test_error`)."""
        return expected_test_error(w_total, w0, self.input_var, self.output_noise_var)


# ----------------------------------------------------------------------------------------------
# Deep linear students
# ----------------------------------------------------------------------------------------------


def log_epochs(epochs: int, n_snapshots: int) -> np.ndarray:
    """Snapshot epochs: 0, then up to n_snapshots - 1 log-spaced epochs from 1 to `epochs`.

    Rounded to unique integers (so early on there can be fewer), increasing, `epochs` last:
    `train.log_spaced_epochs(epochs, n_snapshots, offset=0)`, spaced in log(epoch) where the
    trainer's schedule is spaced in log(1 + epoch).
    """
    if not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if not isinstance(n_snapshots, (int, np.integer)) or n_snapshots < 2:
        raise ValueError(f"n_snapshots must be an integer >= 2, got {n_snapshots!r}")
    return train.log_spaced_epochs(int(epochs), int(n_snapshots), offset=0)


def init_students(
    layer_sizes: Sequence[int], init_std: float | str, seeds, dtype: torch.dtype = torch.float64
) -> list[torch.Tensor]:
    """Initial weights of deep linear students, one per seed.

    Args:
        layer_sizes: (n_in, n_hidden_1, ..., n_out).
        init_std: std of the i.i.d. Gaussian entries, or "fan_in" for 1/sqrt(fan_in) per layer.
        seeds: the students' seeds.

    Returns:
        per layer l, a tensor [n_seeds, layer_sizes[l+1], layer_sizes[l]].
    """
    fan_in = isinstance(init_std, str)
    if fan_in and init_std != "fan_in":
        raise ValueError(f"init_std must be a number >= 0 or 'fan_in', got {init_std!r}")
    if not fan_in:
        _positive("init_std", init_std, allow_zero=True)
    shapes = zip(layer_sizes[1:], layer_sizes[:-1])
    ws = [np.empty((len(_seeds(seeds)), n_out, n_in)) for n_out, n_in in shapes]
    for i, s in enumerate(_seeds(seeds)):
        rng = _rng(s, "init")
        for w in ws:
            std = 1 / math.sqrt(w.shape[2]) if fan_in else init_std
            w[i] = std * rng.standard_normal(w.shape[1:])
    return [torch.from_numpy(w).to(dtype) for w in ws]


@dataclass
class LinearRun:
    """Trajectories of an ensemble of deep linear students (information in bits).

    Shapes: S seeds, K snapshots, L layers (hidden layers then the output layer).

    Attributes:
        epochs: [K] snapshot epochs (0 = initialisation; epoch e = after e passes over the data).
        i_xt: [S, K, L] exact I(X;T) per layer (analysis noise variance `noise_var`).
        i_ty: [S, K, L] exact I(T;Y) per layer, Y the teacher's noisy label.
        i_x_relevant, i_x_irrelevant: [S, K, L] exact I(T;X_relevant), I(T;X_irrelevant) when the
            teacher has irrelevant inputs, else None.
        train_error: [S, K] mean over the training examples of ||y - y_hat||^2.
        test_error: [S, K] exact expected test error E||Y - W_tot X||^2.
        w0: [S, n_out, n_in] the teachers; final_weights: per layer [S, n_l, n_{l-1}] at the end.
        settings: every argument of the run (teacher fields included), for the results record.
        weight_norm: [S, K, L] Frobenius norm ||W_l||_F of each layer's own weights.
        grad_stats: with `train_students(..., gradient_stats=...)`, the gradient statistics of every
            layer at the snapshot epochs >= 1 (an `ibutils.gradients.Trajectory`), else None.
    """

    epochs: np.ndarray
    i_xt: np.ndarray
    i_ty: np.ndarray
    i_x_relevant: np.ndarray | None
    i_x_irrelevant: np.ndarray | None
    train_error: np.ndarray
    test_error: np.ndarray
    w0: np.ndarray
    final_weights: list[np.ndarray] = field(repr=False)
    settings: dict = field(default_factory=dict)
    weight_norm: np.ndarray | None = None
    grad_stats: gradients.Trajectory | None = None

    @property
    def layer_names(self) -> list[str]:
        """"hidden 1", ..., "hidden L-1", "output"."""
        n = self.i_xt.shape[2]
        return [f"hidden {l + 1}" for l in range(n - 1)] + ["output"]

    @property
    def final_map(self) -> np.ndarray:
        """The students' input-output maps W_L ... W_1 at the end, [S, n_out, n_in]."""
        out = self.final_weights[0]
        for w in self.final_weights[1:]:
            out = w @ out
        return out

    @property
    def overtraining(self) -> np.ndarray:
        """Final minus smallest exact test error over the snapshots, per seed [S] (units of Y^2)."""
        return self.test_error[:, -1] - self.test_error.min(1)

    def series(self) -> dict:
        """The results-JSON layout of the run: seed means, and spreads (`_sd`) across seeds.

        Per layer and snapshot `[L][K]`: i_xt, i_ty (bits), weight_norm (and i_x_relevant,
        i_x_irrelevant with task-irrelevant inputs). Per snapshot `[K]`: train_error, test_error.
        Per layer `[L]`: largest_decrease, the largest fall of I(X;T) of any seed (bits). Scalars:
        overtraining and overtraining_sd. With gradient statistics: grad_epochs `[K']` and
        grad_mean, grad_std, grad_snr `[L][K']` (seed means).
        """
        out = {"epochs": self.epochs, "layers": self.layer_names}
        per_layer = {"i_xt": self.i_xt, "i_ty": self.i_ty, "weight_norm": self.weight_norm,
                     "i_x_relevant": self.i_x_relevant, "i_x_irrelevant": self.i_x_irrelevant}
        for name, values in per_layer.items():
            if values is not None:
                out[name], out[f"{name}_sd"] = values.mean(0).T, values.std(0).T
        for name in ("train_error", "test_error"):
            out[name], out[f"{name}_sd"] = getattr(self, name).mean(0), getattr(self, name).std(0)
        out["largest_decrease"] = infoplane.largest_drop(self.i_xt, axis=1).max(0)
        out["overtraining"], out["overtraining_sd"] = self.overtraining.mean(), self.overtraining.std()
        if self.grad_stats is not None:
            out["grad_epochs"] = self.grad_stats.epochs
            for name in ("mean", "std", "snr"):
                out[f"grad_{name}"] = getattr(self.grad_stats, name).mean(0).T
        return out


def _descend(ws: list[torch.Tensor], lr: float, n_steps: int, total_grad) -> None:
    """`n_steps` in-place gradient-descent steps on the deep linear chain W_L ... W_1.

    The loss depends on the weights only through W = W_L ... W_1, so with G = dLoss/dW
    (`total_grad(W, step)`, [S, n_out, n_in]) the chain rule gives

        dLoss/dW_l = (W_L ... W_{l+1})^T  G  (W_{l-1} ... W_1)^T.

    Both products are computed as row-vector chains of n_out rows (the heads from the output end,
    G W_1^T ... W_{l-1}^T from the input end), so a step costs O(n_out sum_l n_l n_{l-1}) and, for
    batch GD, does not depend on the number of examples. All factors use the weights before the step.
    """
    last = len(ws) - 1
    for step in range(n_steps):
        # heads[l] = ws[last] @ ... @ ws[l + 1]: layer l's output -> network output (None: identity)
        heads, acc = [None] * len(ws), None
        for layer in range(last, 0, -1):
            acc = ws[layer] if acc is None else torch.bmm(acc, ws[layer])
            heads[layer - 1] = acc
        g = total_grad(ws[0] if acc is None else torch.bmm(acc, ws[0]), step)
        for layer, w in enumerate(ws):
            g_next = torch.bmm(g, w.transpose(1, 2)) if layer < last else None
            if heads[layer] is None:
                w.sub_(g, alpha=lr)
            else:
                w.baddbmm_(heads[layer].transpose(1, 2), g, alpha=-lr)
            g = g_next


def _layer_maps(ws: list[torch.Tensor]) -> list[torch.Tensor]:
    """The total weight of every layer, W_l ... W_1, each [S, n_l, n_in] (float64)."""
    maps, acc = [], None
    for w in ws:
        acc = w.to(torch.float64) if acc is None else torch.bmm(w.to(torch.float64), acc)
        maps.append(acc)
    return maps


def layer_gradients(weights: Sequence[torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                    per_sample: bool = False) -> list[torch.Tensor]:
    """Gradients of L = 1/2 sum_b ||W_L ... W_1 x_b - y_b||^2 with respect to every layer's W_l.

    Backpropagation through the linear chain: with a_l the layer activations (a_0 = x) and
    d_L = a_L - y, d_{l-1} = d_l W_l, the gradient is dL/dW_l = sum_b d_l,b a_{l-1},b^T.

    Args:
        weights: per layer [S, n_l, n_{l-1}] (S seeds).
        x: a minibatch [S, B, n_in]; y: its labels [S, B, n_out].
        per_sample: also split the gradient into each example's own term.

    Returns:
        per layer, [S, 1, n_l, n_{l-1}] (the minibatch's gradient) or, with `per_sample`,
        [S, B, n_l, n_{l-1}] (one gradient per example; they sum to the minibatch's).
    """
    if not weights or any(not isinstance(w, torch.Tensor) or w.ndim != 3 for w in weights):
        raise ValueError("weights must be a non-empty sequence of [S, n_l, n_{l-1}] tensors")
    n_seeds, n_in, n_out = weights[0].shape[0], weights[0].shape[2], weights[-1].shape[1]
    if not isinstance(x, torch.Tensor) or x.ndim != 3 or x.shape[0] != n_seeds or x.shape[2] != n_in:
        raise ValueError(f"x must be a [{n_seeds}, B, {n_in}] tensor, got {getattr(x, 'shape', x)!r}")
    if not isinstance(y, torch.Tensor) or y.shape != (n_seeds, x.shape[1], n_out):
        raise ValueError(f"y must be a [{n_seeds}, {x.shape[1]}, {n_out}] tensor, got {getattr(y, 'shape', y)!r}")
    acts = [x]
    for w in weights:
        acts.append(torch.bmm(acts[-1], w.transpose(1, 2)))
    delta, grads = acts[-1] - y, [None] * len(weights)
    for layer in range(len(weights) - 1, -1, -1):
        if per_sample:
            grads[layer] = delta.unsqueeze(-1) * acts[layer].unsqueeze(-2)
        else:
            grads[layer] = torch.bmm(delta.transpose(1, 2), acts[layer]).unsqueeze(1)
        delta = torch.bmm(delta, weights[layer])
    return grads


@phase("training")
def train_students(
    teacher: Teacher,
    n_train: int,
    *,
    hidden: Sequence[int] = (100,),
    init_std: float | str = 1e-3,
    lr: float,
    epochs: int,
    batch_size: int | None = None,
    seeds: Sequence[int] = range(5),
    n_snapshots: int = 40,
    noise_var: float = 1.0,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
    threads: int | None = 1,
    progress: bool = True,
    gradient_stats: str | None = None,
) -> LinearRun:
    """Train an ensemble of deep linear students on their teachers with (minibatch) gradient descent.

    Each seed has its own teacher W0, training set of `n_train` examples, initialisation and
    minibatch order; all seeds train together in batched tensors [S, ...], and every seed's
    trajectory depends only on its seed (a vectorised run equals separate single-seed runs).

    Loss: squared error summed over the examples of a batch, L = 1/2 sum ||y - y_hat||^2 (so the BGD
    learning rate acts on the whole training set's error); plain gradient descent, no momentum.

    The curvature along the data's top direction grows with the weights, so a learning rate that is
    fine early can reach the edge of stability late in overtraining: period-2 oscillations, train
    error spikes and I(X;T) of the deeper layers falling between epochs, an optimisation artefact
    rather than compression. Check `infoplane.largest_drop(run.i_xt)`; the book's settings keep it ~0.

    Args:
        teacher: the `Teacher` (input/output dims, SNR, relevant inputs).
        n_train: P, training examples per seed.
        hidden: widths of the hidden layers, e.g. (100,) for Fig. 3/4, (50,) * 5 for Fig. 18.
        init_std: std of the i.i.d. Gaussian initial weights, or "fan_in" for 1/sqrt(fan_in).
        lr: learning rate, > 0.
        epochs: passes over the training set.
        batch_size: minibatch size for SGD (must divide n_train), reshuffled every epoch;
            None means batch gradient descent on all n_train examples.
        seeds: one student (and teacher and data set) per seed.
        n_snapshots: number of log-spaced snapshot epochs, epoch 0 included (see `log_epochs`).
        noise_var: analysis noise variance sigma^2_MI for the information (the paper: 1.0).
        dtype: training precision (information is always computed in float64).
        device: torch device for training.
        threads: CPU intra-op threads while training (restored afterwards); 1 is fastest for these
            small matrices on a shared machine; None leaves torch's setting.
        progress: show a progress bar over epochs (`ibutils.progress.progress_bar`).
        gradient_stats: None, or "minibatch" / "sample" to record the gradient statistics of Saxe
            et al. App. I (`ibutils.gradients.statistics`) in every snapshot epoch >= 1: the gradient of each
            minibatch of that epoch ("minibatch"), or of each example of each minibatch ("sample";
            for batch GD, whose epoch is a single step), each taken at the weights just before the
            update it drives, as `ibutils.gradients.Recorder` does for the MLP trainer. Recording
            does not change the training trajectory; it holds one epoch's gradients in memory,
            [S, n, n_l, n_{l-1}] per layer (n = minibatches, or examples for "sample").

    Returns:
        a `LinearRun` with per-layer information (bits), weight norms and errors at the snapshot
        epochs (and `grad_stats` when asked for).
    """
    if not isinstance(teacher, Teacher):
        raise ValueError(f"teacher must be a Teacher, got {type(teacher).__name__}")
    if not isinstance(n_train, (int, np.integer)) or n_train < 1:
        raise ValueError(f"n_train must be a positive integer, got {n_train!r}")
    hidden = tuple(hidden)
    if any(not isinstance(h, (int, np.integer)) or h < 1 for h in hidden):
        raise ValueError(f"hidden must be a sequence of positive integers, got {hidden!r}")
    lr = _positive("lr", lr)
    if batch_size is not None and (
        not isinstance(batch_size, (int, np.integer)) or batch_size < 1 or n_train % batch_size
    ):
        raise ValueError(
            f"batch_size must be None or a positive divisor of n_train = {n_train}, got {batch_size!r}"
        )
    noise_var = _positive("noise_var", noise_var)
    if threads is not None and (not isinstance(threads, (int, np.integer)) or threads < 1):
        raise ValueError(f"threads must be None or a positive integer, got {threads!r}")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating-point torch dtype, got {dtype!r}")
    if gradient_stats is not None and gradient_stats not in gradients.MODES:
        raise ValueError(f"gradient_stats must be None or one of {gradients.MODES}, got {gradient_stats!r}")
    seeds = _seeds(seeds)
    snaps = log_epochs(epochs, n_snapshots)
    settings = dict(
        asdict(teacher), n_train=int(n_train), hidden=list(hidden), init_std=init_std, lr=lr,
        epochs=int(epochs), batch_size=batch_size, seeds=list(seeds), n_snapshots=int(n_snapshots),
        noise_var=noise_var, dtype=str(dtype).removeprefix("torch."), gradient_stats=gradient_stats,
    )

    device = torch.device(device)
    w0 = teacher.weights(seeds)
    x, y = teacher.sample(w0, n_train, seeds, "train")
    sizes = (teacher.n_in, *hidden, teacher.n_out)
    ws = [w.to(device) for w in init_students(sizes, init_std, seeds, dtype)]
    relevant = teacher.relevant if teacher.n_relevant is not None else None

    n_seeds, n_layers, n_k = len(seeds), len(ws), len(snaps)
    names = ("i_xt", "i_ty", "i_x_relevant", "i_x_irrelevant")
    rec = {name: np.empty((n_seeds, n_k, n_layers)) for name in names}
    train_error, test_error = np.empty((n_seeds, n_k)), np.empty((n_seeds, n_k))
    weight_norm = np.empty((n_seeds, n_k, n_layers))
    collected: list[list[torch.Tensor]] = []  # gradients of the current snapshot epoch, per step
    grad_rec = np.empty((3, n_seeds, n_k - 1, n_layers))  # mean, std, snr at snapshots k >= 1

    def collect(xb: torch.Tensor, yb: torch.Tensor) -> None:
        """Keep the gradients of the step about to be taken on the minibatch (xb, yb)."""
        collected.append(layer_gradients(ws, xb, yb, per_sample=gradient_stats == "sample"))

    @phase("estimating")
    def record(k: int) -> None:
        bad = [s for i, s in enumerate(seeds) if not all(torch.isfinite(w[i]).all() for w in ws)]
        if bad:
            raise FloatingPointError(
                f"training diverged by epoch {snaps[k]} for seeds {bad}: lower lr (got {lr})"
            )
        maps = _layer_maps(ws)
        var_x, var_o = teacher.input_var, teacher.output_noise_var
        for layer, m in enumerate(maps):
            rec["i_xt"][:, k, layer] = gaussian_channel(m, var_x, noise_var)
            rec["i_ty"][:, k, layer] = gaussian_label_information(m, w0, var_x, noise_var, var_o)
            if relevant is not None:
                rec["i_x_relevant"][:, k, layer] = subspace_information(m, var_x, relevant, noise_var)
                rec["i_x_irrelevant"][:, k, layer] = subspace_information(m, var_x, ~relevant, noise_var)
        for layer, w in enumerate(ws):
            weight_norm[:, k, layer] = torch.linalg.matrix_norm(w.to(torch.float64)).cpu().numpy()
        if collected:
            for layer in range(n_layers):
                stack = torch.cat([step[layer] for step in collected], 1).transpose(0, 1)
                grad_rec[:, :, k - 1, layer] = np.stack(gradients.statistics(stack))
            collected.clear()
        w_tot = maps[-1].cpu()
        train_error[:, k] = ((x @ w_tot.transpose(1, 2) - y) ** 2).sum(-1).mean(-1).numpy()
        test_error[:, k] = teacher.test_error(w_tot, w0)

    xd, yd = x.to(device, dtype), y.to(device, dtype)
    if batch_size is None:  # batch GD needs only X^T X and Y^T X: G = W X^T X - Y^T X
        xtx = (x.transpose(1, 2) @ x).to(device, dtype)
        ytx = (y.transpose(1, 2) @ x).to(device, dtype)

        def run_epochs(n_ep: int, record_gradients: bool = False) -> None:
            if record_gradients:  # n_ep == 1: the epoch's one step starts from the current weights
                collect(xd, yd)
            _descend(ws, lr, n_ep, lambda w_tot, step: torch.baddbmm(ytx, w_tot, xtx, beta=-1))

    else:  # minibatches from per-seed shuffles, precomputed for a block of epochs
        shufflers = [_rng(s, "shuffle") for s in seeds]
        seed_index = torch.arange(n_seeds, device=device)[:, None]

        def minibatch_grad(xb: torch.Tensor, yb: torch.Tensor):
            def grad(w_tot: torch.Tensor, step: int) -> torch.Tensor:
                err = torch.baddbmm(yb[:, step], xb[:, step], w_tot.transpose(1, 2), beta=-1)  # y_hat - y
                return torch.bmm(err.transpose(1, 2), xb[:, step])

            return grad

        def run_epochs(n_ep: int, record_gradients: bool = False) -> None:
            order = np.stack([g.random((n_ep, n_train)).argsort(-1) for g in shufflers])
            idx = torch.from_numpy(order.reshape(n_seeds, -1)).to(device)
            shape = (n_seeds, n_ep * n_train // batch_size, batch_size, -1)
            xb, yb = xd[seed_index, idx].view(shape), yd[seed_index, idx].view(shape)
            grad = minibatch_grad(xb, yb)
            if not record_gradients:
                _descend(ws, lr, shape[1], grad)
                return
            for step in range(shape[1]):  # step by step, each step's gradients kept first
                collect(xb[:, step], yb[:, step])
                _descend(ws, lr, 1, lambda w_tot, _, step=step: grad(w_tot, step))

    bytes_per_epoch = n_seeds * n_train * (teacher.n_in + teacher.n_out) * torch.finfo(dtype).bits // 8
    block = max(1, _BLOCK_BYTES // bytes_per_epoch)
    saved_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        record(0)
        epoch = 0
        with progress_bar(total=int(epochs), desc=f"linear students x {n_seeds} seeds", unit="epoch",
                          show=progress) as bar:
            last = int(gradient_stats is not None)  # the snapshot epoch itself runs on its own
            for k in range(1, n_k):
                while epoch < snaps[k] - last:
                    n_ep = int(min(block, snaps[k] - last - epoch))
                    run_epochs(n_ep)
                    epoch += n_ep
                    bar.update(n_ep)
                if last:
                    run_epochs(1, record_gradients=True)
                    epoch += 1
                    bar.update(1)
                record(k)
    finally:
        torch.set_num_threads(saved_threads)

    return LinearRun(
        epochs=snaps,
        i_xt=rec["i_xt"],
        i_ty=rec["i_ty"],
        i_x_relevant=rec["i_x_relevant"] if relevant is not None else None,
        i_x_irrelevant=rec["i_x_irrelevant"] if relevant is not None else None,
        train_error=train_error,
        test_error=test_error,
        w0=w0.numpy(),
        final_weights=[w.cpu().numpy() for w in ws],
        settings=settings,
        weight_norm=weight_norm,
        grad_stats=None if gradient_stats is None else gradients.Trajectory(
            mode=gradient_stats, epochs=snaps[1:], mean=grad_rec[0], std=grad_rec[1], snr=grad_rec[2],
            weight_norm=weight_norm[:, 1:]),
    )


def sweep_jobs(n_trains: Sequence[int], snrs: Sequence[float], *, n_in: int = 100, sigma_w: float = 1.0,
               **train_kwargs) -> dict[tuple[int, float], dict]:
    """The runs of `sweep` as `train_students` keyword arguments, `{(P, SNR): job}`, to train
    elsewhere (e.g. side by side with `ibutils.experiments.linear_students`).

    Each job is `train_kwargs` with `teacher=Teacher(n_in, snr=SNR, sigma_w=sigma_w)` and
    `n_train=P`, in the order of the grid (SNR outer, P inner).
    """
    n_trains, snrs = list(n_trains), list(snrs)
    if not n_trains or not snrs:
        raise ValueError(f"n_trains and snrs must be non-empty, got {n_trains!r} and {snrs!r}")
    own = [key for key in ("teacher", "n_train") if key in train_kwargs]
    if own:
        raise ValueError(f"train_kwargs must not give {own}: each job's teacher comes from snrs and its "
                         f"n_train from n_trains")
    return {(p, snr): {"teacher": Teacher(n_in=n_in, snr=snr, sigma_w=sigma_w), "n_train": p, **train_kwargs}
            for snr in snrs for p in n_trains}


def sweep(n_trains: Sequence[int], snrs: Sequence[float], *, n_in: int = 100, sigma_w: float = 1.0,
          progress: bool = True, **train_kwargs) -> dict[tuple[int, float], LinearRun]:
    """Train students for every number of examples P in `n_trains` and teacher SNR in `snrs`.

    Each (P, SNR) gets `train_students(Teacher(n_in, snr=SNR, sigma_w=sigma_w), P, **train_kwargs)`
    (the same seeds, hence the same teacher weights, across the grid).

    Returns:
        {(P, SNR): LinearRun}, in the order of the grid (SNR outer, P inner).
    """
    jobs = sweep_jobs(n_trains, snrs, n_in=n_in, sigma_w=sigma_w, **train_kwargs)
    return {key: train_students(**job, progress=False)
            for key, job in progress_bar(jobs.items(), desc="P x SNR sweep", unit="run", show=progress)}


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------


def plot_errors(ax, run: LinearRun, ylim=None) -> None:
    """Train error and exact test error against epoch (log-log), seed mean with a ±1 sd band."""
    curves = {"train": run.train_error, "test (exact)": run.test_error}
    plots.learning_curves(ax, run.epochs, curves, ylabel="squared error")
    ax.set(yscale="log", ylim=ylim)


def plot_plane(ax, run: LinearRun, xlim=None, ylim=None):
    """The information plane of a run (seed means, exact, bits), layers labelled at their last point.

    Returns the scatter artist (for a colour bar).
    """
    i_xt, i_ty = run.i_xt.mean(0), run.i_ty.mean(0)
    xlim = xlim or (0, 1.08 * i_xt.max() + 1e-3)
    ylim = ylim or (0, 1.15 * i_ty.max() + 1e-4)
    points = plots.information_plane(ax, run.epochs, i_xt, i_ty, xlim=xlim, ylim=ylim)
    for layer, name in enumerate(run.layer_names):
        ax.annotate(name, (i_xt[-1, layer], i_ty[-1, layer]), textcoords="offset points", xytext=(4, -9),
                    fontsize=8, color="0.3")
    return points


def run_figure(run: LinearRun, *, title: str = "", error_ylim=None, plane_xlim=None, plane_ylim=None):
    """Two panels: errors against epoch (`plot_errors`) and the information plane (`plot_plane`).

    Returns the Figure (7.2 x 3 inches, the width of the site's column).
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(plots.COLUMN_WIDTH, 3.0))
    plot_errors(left, run, error_ylim)
    points = plot_plane(right, run, plane_xlim, plane_ylim)
    fig.colorbar(points, ax=right, label="epoch")
    if title:
        fig.suptitle(title)
    return fig


def sweep_frame(runs: dict[tuple[int, float], LinearRun], n_train: int, snr: float):
    """One frame of the P x SNR slider: the run at (n_train, snr) among the `sweep` results `runs`.

    Left, its train and exact test error; middle, its information plane, titled with the largest
    fall of I(X;T) of any layer and seed; right, overtraining (final minus smallest test error, seed
    mean) against P / Ni for every SNR, the current run marked; the first two side by side, the
    third below them, so that it fits the site's column. Axes are fixed across the sweep so
    frames compare. Returns the Figure (7.2 x 5.6 inches).
    """
    if (n_train, snr) not in runs:
        raise ValueError(f"(n_train, snr) = ({n_train!r}, {snr!r}) is not in the sweep: {sorted(runs)}")
    run = runs[(n_train, snr)]
    means = [np.r_[r.train_error.mean(0), r.test_error.mean(0)] for r in runs.values()]
    # train error falls to ~0 when P <= Ni (interpolation): the axis stops at 1e-3
    error_ylim = (max(1e-3, 0.7 * min(m.min() for m in means)), 1.5 * max(m.max() for m in means))
    plane_xlim = (0, 1.08 * max(r.i_xt.mean(0).max() for r in runs.values()))
    plane_ylim = (0, 1.15 * max(r.i_ty.mean(0).max() for r in runs.values()))
    n_in = run.w0.shape[-1]

    fig, panels = plt.subplot_mosaic([["errors", "plane"], ["overtraining", "overtraining"]],
                                     figsize=(plots.COLUMN_WIDTH, 5.6))
    left, middle, right = panels["errors"], panels["plane"], panels["overtraining"]
    plot_errors(left, run, error_ylim)
    left.set_title(f"P = {n_train}, P/Ni = {n_train / n_in:g}, SNR = {snr:g}")
    points = plot_plane(middle, run, plane_xlim, plane_ylim)
    middle.set_title(f"largest fall of I(X;T): {infoplane.largest_drop(run.i_xt, axis=1).max():.1e} bits")
    fig.colorbar(points, ax=middle, label="epoch")
    snr_values = sorted({s for _, s in runs})
    for s, colour in zip(snr_values, plots.OKABE_ITO):
        ps = sorted(p for p, s2 in runs if s2 == s)
        ot = [runs[(p, s)].overtraining.mean() for p in ps]
        right.plot(np.array(ps) / n_in, ot, "o-", color=colour, ms=4, label=f"SNR {s:g}")
    right.plot([n_train / n_in], [run.overtraining.mean()], "o", ms=12, mfc="none", mec="k", mew=1.5)
    ratios = sorted({p / n_in for p, _ in runs})
    right.set(xscale="log", yscale="log", xlabel="P / Ni", ylabel="overtraining (final - min test error)")
    right.set_xticks(ratios, [f"{r:g}" for r in ratios])
    right.minorticks_off()
    right.legend()
    return fig


def gradient_figure(runs: dict[str, LinearRun], snr_floor: float = 1e-6):
    """Saxe et al. Fig. 21: per run (a column), the errors, each layer's gradient SNR, and ||W_l||_F.

    The runs need `grad_stats` (`train_students(..., gradient_stats=...)`). SNR and weight norm on
    log-log axes: each seed a thin line, the median across seeds a thick one; the SNR axis stops at
    `snr_floor` (batch GD's mean gradient decays towards float round-off). Returns the Figure.
    """
    missing = [label for label, run in runs.items() if run.grad_stats is None]
    if not runs or missing:
        raise ValueError(f"runs must be non-empty and have gradient statistics; missing for {missing}")
    fig, axes = plt.subplots(3, len(runs), figsize=(3.5 * len(runs), 8), squeeze=False, sharex=True)
    for column, (label, run) in zip(axes.T, runs.items()):
        g = run.grad_stats
        plot_errors(column[0], run)
        column[0].set(title=label, xlabel="")
        for l, (name, colour) in enumerate(zip(run.layer_names, plots.OKABE_ITO)):
            for ax, epochs, values in ((column[1], g.epochs, g.snr), (column[2], run.epochs, run.weight_norm)):
                ax.plot(np.maximum(epochs, 1), values[:, :, l].T, color=colour, lw=0.5, alpha=0.35)
                ax.plot(np.maximum(epochs, 1), np.median(values[:, :, l], 0), color=colour, lw=1.8, label=name)
        column[1].set(xscale="log", yscale="log", ylim=(snr_floor, None), ylabel="gradient SNR (|mean| / |std|)")
        column[2].set(xscale="log", yscale="log", xlabel="epoch", ylabel="weight norm $\\|W_l\\|_F$")
        column[1].legend()
    return fig


def live_figure(n_train: int = 100, snr: float = 1.0, lr: float = 0.005, epochs: int = 3000,
                init_std: float = 1e-3, hidden_layers: int = 1, width: int = 100, n_in: int = 100,
                seeds: int = 3):
    """Train a small batch-GD ensemble on the spot and draw `run_figure`: the book's live control.

    Returns the Figure.
    """
    teacher = Teacher(n_in=n_in, snr=snr)
    run = train_students(teacher, n_train, hidden=(width,) * hidden_layers, init_std=init_std, lr=lr,
                         epochs=epochs, seeds=range(seeds), n_snapshots=60, progress=False)
    title = (f"P = {n_train}, SNR = {snr:g}, lr = {lr:g}: overtraining {run.overtraining.mean():.3g}, "
             f"largest fall of I(X;T) {infoplane.largest_drop(run.i_xt, axis=1).max():.1e} bits")
    return run_figure(run, title=title)
