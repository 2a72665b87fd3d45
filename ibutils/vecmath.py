"""Float32 elementary functions written for loops that LLVM vectorises (numba, on the CPU), and the
trainer's elementwise steps built on them (softplus, softsign, fake quantisation).

libm's `expf` and `log1pf` are calls that a loop cannot vectorise, and torch's CPU kernels run one
function per pass over memory. The functions here are short polynomials on a reduced argument,
with the power of two set in the exponent bits, so a numba loop that calls them compiles to 8
float32 lanes with AVX2 and can compute several results per element in one pass:

- `exp`: exp(x) for x in [-88, 0], within 2 ulp (`ibutils.pairwise`'s KDE kernels).
- `log1p`: log(1 + u) for u in [0, 1], within 1 ulp.
- `softplus_`: softplus in place, and its slope (the logistic sigmoid) in the same pass: the
  trainer's softplus (`ibutils.train`), within 1.7 ulp (value) and 2.8 ulp (slope) of the exact
  functions, twice as fast as torch's softplus and its backward kernel (benchmarks/RESULTS.md).
- `softsign_`, `softsign_backward_`: the trainer's softsign and its backward factor, bit for bit
  torch's arithmetic, in one pass each instead of torch's three with temporary tensors.
- `quantise_rows_`: the trainer's fake quantisation (8-bit networks), bit for bit NumPy's
  arithmetic, in two passes instead of seven.

`exp` and `log1p` are numba functions for other compiled loops (from Python they take one float32).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

__all__ = ["softplus_", "softsign_", "softsign_backward_", "quantise_rows_"]

# The steps of these functions must run as written (an error term is added after the terms it
# corrects), so no reassociation: only no NaN or infinity and fused multiply-adds.
EXACT_STEPS = {"nnan", "ninf", "nsz", "contract"}

_F = np.float32
# exp(x) = 2**n exp(r), n = round(x / ln 2), r = x - n ln 2 in [-ln2/2, ln2/2], ln 2 in two parts
# (Cody & Waite) so that n * _LN2_HIGH is exact, and exp(r) by its Taylor polynomial of degree 7
# (truncation below 6e-9 relative on that interval).
_LOG2_E = _F(1 / math.log(2))
_LN2_HIGH = _F(0.693359375)  # 355/512: 9 significant bits
_LN2_LOW = _F(math.log(2) - 0.693359375)
_TAYLOR = tuple(_F(1 / math.factorial(k)) for k in range(8))
# Adding 1.5 * 2**23 rounds a float32 below 2**22 in magnitude to an integer, held in the low
# mantissa bits; the extra 127 is float32's exponent bias.
_ROUNDING_SHIFT = _F(1.5 * 2**23 + 127)
# log(1 + f) = 2 atanh(s), s = f / (2 + f), by its Taylor series 2 s (1 + s**2/3 + s**4/5 + ...) to
# s**11: for f in [sqrt(1/2) - 1, sqrt(2) - 1], |s| <= 0.172 and the next term is below 1e-10 relative.
_ATANH = tuple(_F(1 / (2 * k + 1)) for k in range(1, 6))
_SQRT2 = _F(math.sqrt(2))
# Below this exp is 0 (the smallest normal float32 is e**-87.34; from there to here `exp` gives a
# subnormal number, or 0 where the CPU flushes them, as the trainer has it).
_EXP_LOWEST = _F(-88.0)


@intrinsic
def _power_of_two(typingctx, shifted):
    """2**n (float32) from `shifted` = n + _ROUNDING_SHIFT (float32, n an integer in [-127, 127]):
    its low mantissa bits hold n + 127, which shifted into the exponent field make 2**n (0 for
    n = -127)."""
    if shifted != types.float32:
        return None

    def codegen(context, builder, signature, args):
        bits = builder.bitcast(args[0], ir.IntType(32))
        return builder.bitcast(builder.shl(bits, ir.Constant(ir.IntType(32), 23)), ir.FloatType())

    return types.float32(types.float32), codegen


@numba.njit(fastmath=EXACT_STEPS, cache=True)
def exp(x):
    """exp(x) for a float32 x in [-88, 0]: within 2 ulp down to e**-87.34 (float32's smallest
    normal number), a subnormal number or 0 below it, 0 at -88."""
    shifted = x * _LOG2_E + _ROUNDING_SHIFT
    n = shifted - _ROUNDING_SHIFT
    r = (x - n * _LN2_HIGH) - n * _LN2_LOW
    c0, c1, c2, c3, c4, c5, c6, c7 = _TAYLOR
    p = ((((((c7 * r + c6) * r + c5) * r + c4) * r + c3) * r + c2) * r + c1) * r + c0
    return p * _power_of_two(shifted)


@numba.njit(fastmath=EXACT_STEPS, error_model="numpy", cache=True)
def log1p(u):
    """log(1 + u) for a float32 u in [0, 1], within 1 ulp.

    v = 1 + u is rounded and written 2**k (1 + f), 1 + f in [sqrt(1/2), sqrt(2)], k = 0 or 1 (f
    exact). With s = f / (2 + f), log(1 + f) = f - (f**2/2 - s (f**2/2 + R)), R = 2 atanh(s) / s - 2;
    k ln 2 + f is exact with ln 2's first part, and the small terms (ln 2's second part, the
    rounding of v, (u - (v - 1)) / v) are added before f.
    """
    v = _F(1) + u
    halve = v > _SQRT2
    f = (v * _F(0.5) if halve else v) - _F(1)
    s = f / (_F(2) + f)
    q = s * s
    c1, c2, c3, c4, c5 = _ATANH
    r = _F(2) * q * ((((c5 * q + c4) * q + c3) * q + c2) * q + c1)
    half_square = _F(0.5) * f * f
    small = s * (half_square + r) + (u - (v - _F(1))) / v + (_LN2_LOW if halve else _F(0))
    return ((_LN2_HIGH if halve else _F(0)) + f) - (half_square - small)


@numba.njit(fastmath=EXACT_STEPS, error_model="numpy", cache=True)
def _softplus_and_slope(x):
    """(softplus(x), sigmoid(x)) for a float32 x: max(x, 0) + log1p(e) and 1 / (1 + e) or
    e / (1 + e), e = exp(-|x|), so that nothing overflows and small results keep their digits."""
    a = -abs(x)
    e = exp(a if a > _EXP_LOWEST else _EXP_LOWEST)
    reciprocal = _F(1) / (_F(1) + e)
    value = (x if x > 0 else _F(0)) + log1p(e)
    return value, (reciprocal if x > 0 else e * reciprocal)


@numba.njit(fastmath=EXACT_STEPS, error_model="numpy", cache=True)
def _softplus_values(z):
    for i in range(len(z)):
        z[i] = _softplus_and_slope(z[i])[0]


@numba.njit(fastmath=EXACT_STEPS, error_model="numpy", cache=True)
def _softplus_values_and_slopes(z, slope):
    for i in range(len(z)):
        z[i], slope[i] = _softplus_and_slope(z[i])


def softplus_(z: np.ndarray, slope: np.ndarray | None = None) -> np.ndarray:
    """softplus(z) = log(1 + e**z) in place, and, when `slope` is given, its derivative
    sigmoid(z) = 1 / (1 + e**-z) written into `slope`. Returns `z`.

    z: float32, C-contiguous, any shape; slope: float32, C-contiguous, z's shape. Within 1.7 ulp
    (softplus) and 2.8 ulp (slope) of the exact values on float32's normal range; below e**-87.34
    (float32's smallest normal number) both are subnormal or 0 (0 where the CPU flushes
    subnormals), and 0 below e**-88. For z >= 17 softplus(z) rounds to z and the slope to 1.
    """
    _check_float32(z, "z")
    if slope is None:
        _softplus_values(z.reshape(-1))
        return z
    _check_float32(slope, "slope")
    if slope.shape != z.shape:
        raise ValueError(f"slope must have z's shape {z.shape}, got {slope.shape}")
    _softplus_values_and_slopes(z.reshape(-1), slope.reshape(-1))
    return z


@numba.njit(error_model="numpy", cache=True)
def _softsign_values(z):
    for i in range(len(z)):
        z[i] = z[i] / (_F(1) + abs(z[i]))


@numba.njit(error_model="numpy", cache=True)
def _softsign_backward(dz, h):
    for i in range(len(dz)):
        complement = _F(1) - abs(h[i])
        dz[i] *= complement * complement


def softsign_(z: np.ndarray) -> np.ndarray:
    """softsign(z) = z / (1 + |z|) in place, rounded as torch rounds it (float32, C-contiguous, any
    shape). Returns `z`."""
    _check_float32(z, "z")
    _softsign_values(z.reshape(-1))
    return z


def softsign_backward_(dz: np.ndarray, h: np.ndarray) -> np.ndarray:
    """dz * (1 - |h|)**2 into `dz`, the gradient through softsign from its output h = softsign(z)
    (1 - |h| = 1 / (1 + |z|)), rounded as torch's `dz * (1 - h.abs()).square()` (float32,
    C-contiguous, one shape). Returns `dz`."""
    _check_float32(dz, "dz")
    _check_float32(h, "h")
    if h.shape != dz.shape:
        raise ValueError(f"h must have dz's shape {dz.shape}, got {h.shape}")
    _softsign_backward(dz.reshape(-1), h.reshape(-1))
    return dz


@numba.njit(fastmath={"nnan", "nsz"}, cache=True)
def _range(row):
    """(min, max) of a float32 row (vectorised: no NaN, and a zero's sign may go either way)."""
    lo = row[0]
    hi = row[0]
    for j in range(len(row)):
        lo = min(lo, row[j])
        hi = max(hi, row[j])
    return lo, hi


@numba.njit(error_model="numpy", cache=True)
def _quantise_rows(rows, levels):
    for s in range(rows.shape[0]):
        row = rows[s]
        lo, hi = _range(row)
        step = (hi - lo) / levels
        if not step > 0:
            step = _F(1)
        for j in range(len(row)):  # no fused multiply-add: NumPy's roundings, one by one
            row[j] = np.rint((row[j] - lo) / step) * step + lo


def quantise_rows_(rows: np.ndarray, bits: int) -> np.ndarray:
    """Round each row of `rows` [S, n] (float32, C-contiguous, finite) in place to the 2**bits
    levels lo + k step, k = rint((x - lo) / step), step = (hi - lo) / (2**bits - 1), lo and hi the
    row's min and max (step 1 for a constant row), rounded as NumPy rounds these operations one by
    one. Returns `rows`."""
    _check_float32(rows, "rows")
    if rows.ndim != 2 or rows.shape[1] == 0:
        raise ValueError(f"rows must be [S, n] with n >= 1, got shape {rows.shape}")
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 24:
        raise ValueError(f"bits must be an int in [1, 24], got {bits!r}")
    _quantise_rows(rows, _F(2**bits - 1))
    return rows


def _check_float32(array, name: str) -> None:
    if not (isinstance(array, np.ndarray) and array.dtype == np.float32 and array.flags.c_contiguous):
        got = (f"a {'C-contiguous' if array.flags.c_contiguous else 'strided'} {array.dtype} array"
               if isinstance(array, np.ndarray) else type(array).__name__)
        raise TypeError(f"{name} must be a C-contiguous float32 NumPy array, got {got}")
