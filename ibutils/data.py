"""Data sets and train/test splits. Nothing here trains or estimates.

The 12-bit task of Shwartz-Ziv & Tishby (2017) ships as `var_u.mat` in their public
IDNNs repository. It is never bundled with ibutils: `tishby()` finds it on disk or
downloads it once into the user cache, checking its SHA-256 either way.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path

import numpy as np
import scipy.io

TISHBY_FILE = "var_u.mat"
TISHBY_SHA256 = "0ba9551878a855396a8de0cbaae620788ede1e7b1eb2b8373bbe017d5ea02036"
TISHBY_URL = "https://raw.githubusercontent.com/ravidziv/IDNNs/master/data/var_u.mat"


def data_cache_dir() -> Path:
    """Where downloaded data sets live: `$XDG_CACHE_HOME/ibutils/data` (default ~/.cache)."""
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "ibutils" / "data"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _verified(path: Path, sha256: str) -> Path:
    digest = _sha256(path)
    if digest != sha256:
        raise ValueError(f"{path} has sha256 {digest}, expected {sha256}: not the expected file")
    return path


def _locate_tishby(path: str | os.PathLike | None) -> Path:
    if path is not None:
        path = Path(path)
        path = path / TISHBY_FILE if path.is_dir() else path
        if not path.is_file():
            raise ValueError(f"path {str(path)!r} is neither {TISHBY_FILE} nor a folder holding it")
        return _verified(path, TISHBY_SHA256)
    candidates = []
    if os.environ.get("IBUTILS_DATA"):
        candidates.append(Path(os.environ["IBUTILS_DATA"]) / TISHBY_FILE)
    cached = data_cache_dir() / TISHBY_FILE
    candidates.append(cached)
    for candidate in candidates:
        if candidate.is_file():
            return _verified(candidate, TISHBY_SHA256)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".part")
        urllib.request.urlretrieve(TISHBY_URL, tmp)
    except OSError as err:
        raise FileNotFoundError(
            f"{TISHBY_FILE} was not found ({', '.join(map(str, candidates))}) and could not be "
            f"downloaded from {TISHBY_URL} ({err}). Supply it with tishby(path=...) or set the "
            f"environment variable IBUTILS_DATA to a folder holding {TISHBY_FILE}."
        ) from err
    _verified(tmp, TISHBY_SHA256)
    os.replace(tmp, cached)
    return cached


def tishby(path: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The 12-bit task of Shwartz-Ziv & Tishby: all 4096 binary patterns and their labels.

    Looks for the file at `path` (the file or its folder), then in `$IBUTILS_DATA`, then in
    `data_cache_dir()`, and finally downloads it from the IDNNs repository; the SHA-256 is
    checked in every case.

    Returns `x`, float32 `[4096, 12]` with entries in {0, 1}, and `y`, int64 `[4096]`
    in {0, 1}, rows in the file's order (row i is the binary expansion of i).
    """
    mat = scipy.io.loadmat(_locate_tishby(path))
    x = mat["F"].astype(np.float32)
    y = mat["y"].reshape(-1).astype(np.int64)
    return x, y


def train_test_split(n_samples: int, seeds, train_fraction: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random train/test splits, one permutation per seed.

    Seed `s` always gives the same split, whatever other seeds are asked for.
    The training set has `round(train_fraction * n_samples)` rows (3277 of 4096 at 0.8).

    Returns `train_idx` int64 `[n_seeds, n_train]` and `test_idx` int64 `[n_seeds, n_test]`,
    each row sorted.
    """
    seeds = np.atleast_1d(np.asarray(seeds))
    if seeds.ndim != 1 or seeds.size == 0 or not np.issubdtype(seeds.dtype, np.integer):
        raise ValueError(f"seeds must be a non-empty 1-D sequence of integers, got {seeds!r}")
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must lie in (0, 1), got {train_fraction}")
    n_train = int(np.rint(train_fraction * n_samples))
    if not 0 < n_train < n_samples:
        raise ValueError(f"n_samples={n_samples} with train_fraction={train_fraction} leaves an empty set")
    perms = np.stack([np.random.default_rng([int(s), n_samples]).permutation(n_samples) for s in seeds])
    return np.sort(perms[:, :n_train], axis=1), np.sort(perms[:, n_train:], axis=1)
