"""Linear student-teacher networks: exact information, exact generalisation, and training.

Saxe et al. (2018), Sections 3 and 5 (Fig. 3, 4A-B, 6, 18, 19). Everything here is closed-form
Gaussian theory plus a vectorised trainer for deep linear students; see SPEC 2.4, 2.5, E5, E8.

Conventions (all information in **bits**):

* Input X ~ N(0, cov_x). The teacher's label is Y = W0 X + eps_o, eps_o ~ N(0, output_noise_var I).
* A layer with total weight W (the product W_l ... W_1 of the layers up to it) is analysed as the
  noisy channel T = W X + Z, Z ~ N(0, noise_var I) (SPEC's sigma^2_MI; the noise exists only for
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

import numpy as np
import torch
from tqdm.auto import tqdm

_LN2 = math.log(2.0)
_STREAMS = {"teacher": 0, "train": 1, "init": 2, "shuffle": 3, "test": 4}
_BLOCK_BYTES = 32 * 2**20  # memory for one block of pre-shuffled minibatches


# ----------------------------------------------------------------------------------------------
# Input checking
# ----------------------------------------------------------------------------------------------


def _weights(name: str, w, min_ndim: int = 2) -> torch.Tensor:
    """`w` as a float64 tensor with at least `min_ndim` dimensions and finite entries."""
    try:
        t = w if isinstance(w, torch.Tensor) else torch.from_numpy(np.asarray(w))
    except TypeError:
        raise ValueError(f"{name} must be a real array, got {type(w).__name__}") from None
    if t.ndim < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} dimensions [..., n_out, n_in], got shape {tuple(t.shape)}"
        )
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64)):
        raise ValueError(f"{name} must be a real array, got dtype {t.dtype}")
    t = t.to(torch.float64)
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must be finite")
    return t


def _positive(name: str, value, allow_zero: bool = False) -> float:
    """`value` as a float, checked finite and > 0 (or >= 0 with `allow_zero`)."""
    bound = ">= 0" if allow_zero else "> 0"
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return v


def _covariance(cov_x, n_in: int, device: torch.device) -> torch.Tensor:
    """cov_x as an [n_in, n_in] float64 matrix; a scalar c means the isotropic covariance c I."""
    c = torch.as_tensor(cov_x, dtype=torch.float64, device=device)
    if c.ndim == 0:
        variance = _positive("cov_x", c.item(), allow_zero=True)
        return variance * torch.eye(n_in, dtype=torch.float64, device=device)
    if c.shape != (n_in, n_in):
        raise ValueError(
            f"cov_x must be a scalar variance or an [{n_in}, {n_in}] matrix, got shape {tuple(c.shape)}"
        )
    if not torch.isfinite(c).all() or not torch.allclose(c, c.T, rtol=1e-10, atol=1e-12):
        raise ValueError("cov_x must be a finite symmetric matrix")
    eig = torch.linalg.eigvalsh(c)
    if eig[0] < -1e-10 * max(1.0, eig[-1].item()):
        raise ValueError(f"cov_x must be positive semi-definite, smallest eigenvalue {eig[0].item():.3g}")
    return c


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


def _out(t: torch.Tensor) -> float | np.ndarray:
    """A 0-d tensor as a float, otherwise a NumPy array."""
    return float(t) if t.ndim == 0 else t.cpu().numpy()


# ----------------------------------------------------------------------------------------------
# Exact information (bits)
# ----------------------------------------------------------------------------------------------


def _channel_bits(w: torch.Tensor, cov: torch.Tensor, noise_var: float) -> torch.Tensor:
    """1/2 log2 det(I + w cov w^T / noise_var) for w [..., n_out, n_in], cov [..., n_in, n_in].

    I + (PSD) / noise_var is positive definite even for rank-deficient w, so a Cholesky
    factorisation is always stable: log det = 2 sum log diag(L).
    """
    gram = w @ cov @ w.transpose(-1, -2) / noise_var
    eye = torch.eye(w.shape[-2], dtype=w.dtype, device=w.device)
    chol = torch.linalg.cholesky(eye + (gram + gram.transpose(-1, -2)) / 2)
    return torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1) / _LN2


def _posterior_cov(w: torch.Tensor, cov: torch.Tensor, noise_var: float) -> torch.Tensor:
    """Cov(X | T) = cov - cov w^T (w cov w^T + noise_var I)^-1 w cov for T = w X + Z."""
    eye = torch.eye(w.shape[-2], dtype=w.dtype, device=w.device)
    cov_t = w @ cov @ w.transpose(-1, -2) + noise_var * eye
    a = torch.linalg.solve_triangular(torch.linalg.cholesky(cov_t), w @ cov, upper=False)
    return cov - a.transpose(-1, -2) @ a


def gaussian_channel(w, cov_x, noise_var: float = 1.0) -> float | np.ndarray:
    """Exact I(X; W X + Z) in bits for X ~ N(0, cov_x), Z ~ N(0, noise_var I).

    I = 1/2 log2 det(I + W cov_x W^T / noise_var) (SPEC 2.4; the paper's Eq. 6 omits the 1/2
    and cov_x). Computed by a Cholesky log-determinant, stable for rank-deficient W (the matrix
    I + W cov_x W^T / noise_var is always positive definite).

    Args:
        w: weights [..., n_out, n_in]; leading dimensions are a batch (e.g. seeds).
        cov_x: input covariance, an [n_in, n_in] PSD matrix or a scalar c meaning c I.
        noise_var: variance of the analysis noise Z, > 0.

    Returns:
        bits, a float for a single w or an array of shape [...].
    """
    w = _weights("w", w)
    cov = _covariance(cov_x, w.shape[-1], w.device)
    return _out(_channel_bits(w, cov, _positive("noise_var", noise_var)))


def gaussian_label_information(
    w, w0, cov_x, noise_var: float = 1.0, output_noise_var: float = 1.0
) -> float | np.ndarray:
    """Exact I(T; Y) in bits for T = W X + Z and the teacher's label Y = W0 X + eps_o.

    X ~ N(0, cov_x), Z ~ N(0, noise_var I), eps_o ~ N(0, output_noise_var I), all independent.
    Because T - X - Y is a Markov chain, I(X;Y) = I(T;Y) + I(X;Y|T), so

        I(T;Y) = I(X;Y) - I(X;Y|T)
               = 1/2 log2 det(I + W0 cov_x W0^T / s_o^2) - 1/2 log2 det(I + W0 C W0^T / s_o^2),

    with C = Cov(X|T) = cov_x - cov_x W^T (W cov_x W^T + noise_var I)^-1 W cov_x. This equals
    SPEC 2.4's 1/2 log(|S_T| |S_Y| / |S_TY joint|) (App. G, with cov_x restored).

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

    For independent blocks (cov_RS = 0, e.g. cov_x = I/Ni) C_R|S = cov_RR: SPEC 2.4's formula.
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


def largest_decrease(values, axis: int = 1) -> np.ndarray:
    """The largest fall of a trajectory below its own earlier maximum, along `axis`.

    max_k (max_{j<=k} v_j - v_k): 0 for a non-decreasing trajectory. Used for the claim that I(X;T)
    never decreases; unlike consecutive differences it also catches slow declines over many snapshots.

    Args:
        values: trajectories, e.g. `LinearRun.i_xt` [S, K, L] with snapshots along axis 1.
        axis: the snapshot (time) axis.

    Returns:
        the largest decrease, in the units of `values` (bits for information), with `axis` removed.
    """
    v = np.asarray(values, dtype=float)
    if v.ndim == 0 or v.shape[axis] == 0:
        raise ValueError(f"values must have a non-empty time axis {axis}, got shape {v.shape}")
    return (np.maximum.accumulate(v, axis=axis) - v).max(axis=axis)


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
    """The linear teacher of SPEC E5/E8: X ~ N(0, I/n_in), Y = W0 X + eps_o.

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

    Rounded to unique integers (so early on there can be fewer), increasing, `epochs` last.
    """
    if not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if not isinstance(n_snapshots, (int, np.integer)) or n_snapshots < 2:
        raise ValueError(f"n_snapshots must be an integer >= 2, got {n_snapshots!r}")
    logged = np.geomspace(1, epochs, n_snapshots - 1) if n_snapshots > 2 else np.array([epochs])
    logged = np.unique(np.round(logged).astype(int))
    return np.concatenate([[0], logged])


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
    rather than compression. Check `largest_decrease(run.i_xt)`; the book's settings keep it ~0.

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
        noise_var: analysis noise variance sigma^2_MI for the information (SPEC: 1.0).
        dtype: training precision (information is always computed in float64).
        device: torch device for training.
        threads: CPU intra-op threads while training (restored afterwards); 1 is fastest for these
            small matrices on a shared machine; None leaves torch's setting.
        progress: show a tqdm progress bar over epochs.

    Returns:
        a `LinearRun` with per-layer information (bits) and errors at the snapshot epochs.
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
    seeds = _seeds(seeds)
    snaps = log_epochs(epochs, n_snapshots)
    settings = dict(
        asdict(teacher), n_train=int(n_train), hidden=list(hidden), init_std=init_std, lr=lr,
        epochs=int(epochs), batch_size=batch_size, seeds=list(seeds), n_snapshots=int(n_snapshots),
        noise_var=noise_var, dtype=str(dtype).removeprefix("torch."),
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
        w_tot = maps[-1].cpu()
        train_error[:, k] = ((x @ w_tot.transpose(1, 2) - y) ** 2).sum(-1).mean(-1).numpy()
        test_error[:, k] = teacher.test_error(w_tot, w0)

    if batch_size is None:  # batch GD needs only X^T X and Y^T X: G = W X^T X - Y^T X
        xtx = (x.transpose(1, 2) @ x).to(device, dtype)
        ytx = (y.transpose(1, 2) @ x).to(device, dtype)

        def run_epochs(n_ep: int) -> None:
            _descend(ws, lr, n_ep, lambda w_tot, step: torch.baddbmm(ytx, w_tot, xtx, beta=-1))

    else:  # minibatches from per-seed shuffles, precomputed for a block of epochs
        shufflers = [_rng(s, "shuffle") for s in seeds]
        seed_index = torch.arange(n_seeds, device=device)[:, None]
        xd, yd = x.to(device, dtype), y.to(device, dtype)

        def minibatch_grad(xb: torch.Tensor, yb: torch.Tensor):
            def grad(w_tot: torch.Tensor, step: int) -> torch.Tensor:
                err = torch.baddbmm(yb[:, step], xb[:, step], w_tot.transpose(1, 2), beta=-1)  # y_hat - y
                return torch.bmm(err.transpose(1, 2), xb[:, step])

            return grad

        def run_epochs(n_ep: int) -> None:
            order = np.stack([g.random((n_ep, n_train)).argsort(-1) for g in shufflers])
            idx = torch.from_numpy(order.reshape(n_seeds, -1)).to(device)
            shape = (n_seeds, n_ep * n_train // batch_size, batch_size, -1)
            xb, yb = xd[seed_index, idx].view(shape), yd[seed_index, idx].view(shape)
            _descend(ws, lr, shape[1], minibatch_grad(xb, yb))

    bytes_per_epoch = n_seeds * n_train * (teacher.n_in + teacher.n_out) * torch.finfo(dtype).bits // 8
    block = max(1, _BLOCK_BYTES // bytes_per_epoch)
    saved_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        record(0)
        epoch = 0
        with tqdm(total=int(epochs), disable=not progress, desc="linear students", unit="epoch") as bar:
            for k in range(1, n_k):
                while epoch < snaps[k]:
                    n_ep = int(min(block, snaps[k] - epoch))
                    run_epochs(n_ep)
                    epoch += n_ep
                    bar.update(n_ep)
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
    )
