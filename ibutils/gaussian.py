"""Exact information of a Gaussian channel, in bits: I(X; W X + Z) for Gaussian X and Z (Saxe et al. Sec. 3).

A bottom module (torch and NumPy only), so that both the estimators (`ibutils.mi`, which
re-exports `gaussian_channel` next to the estimates it checks) and the linear-network theory
(`ibutils.linear`, which builds its other closed forms on the checks and the log-determinant
here) can import it without importing each other.

Weights are shaped [..., n_out, n_in]; leading dimensions are a batch (e.g. seeds).
"""

from __future__ import annotations

import math

import numpy as np
import torch

_LN2 = math.log(2.0)


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


def _out(t: torch.Tensor) -> float | np.ndarray:
    """A 0-d tensor as a float, otherwise a NumPy array."""
    return float(t) if t.ndim == 0 else t.cpu().numpy()


def _channel_bits(w: torch.Tensor, cov: torch.Tensor, noise_var: float) -> torch.Tensor:
    """1/2 log2 det(I + w cov w^T / noise_var) for w [..., n_out, n_in], cov [..., n_in, n_in].

    I + (PSD) / noise_var is positive definite even for rank-deficient w, so a Cholesky
    factorisation is always stable: log det = 2 sum log diag(L).
    """
    gram = w @ cov @ w.transpose(-1, -2) / noise_var
    eye = torch.eye(w.shape[-2], dtype=w.dtype, device=w.device)
    chol = torch.linalg.cholesky(eye + (gram + gram.transpose(-1, -2)) / 2)
    return torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1) / _LN2


def gaussian_channel(w, cov_x, noise_var: float = 1.0) -> float | np.ndarray:
    """Exact I(X; W X + Z) in bits for X ~ N(0, cov_x), Z ~ N(0, noise_var I).

    I = 1/2 log2 det(I + W cov_x W^T / noise_var) (Saxe et al. Sec. 3; the paper's Eq. 6 omits the 1/2
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
