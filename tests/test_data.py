"""The 12-bit data set: located, checksummed, decoded as documented; seeded splits."""

import hashlib
import shutil

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
