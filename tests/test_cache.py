"""The run cache's files (`ibutils.store`, `results.cached`): every result type round trips bit
for bit, loading never runs code, damaged entries are reported in one line and recomputed, writes
are atomic."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import math
import os
import pickle
import re
import struct

import numpy as np
import pytest
import torch

from ibutils import experiments, gradients, infoplane, linear, mi, results, store, train

TINY = train.TrainConfig(hidden=(6, 4, 3), epochs=12, batch_size=512, snapshots=6)


def assert_identical(a, b, where="value"):
    """`a` and `b` are the same: types, dtypes, shapes and every bit of every number (NaN included)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        a, b = a.numpy(), b.numpy()
    if isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes(), where
    elif isinstance(a, float):
        assert struct.pack("<d", a) == struct.pack("<d", b), f"{where}: {a!r} != {b!r}"
    elif dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            assert_identical(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            assert_identical(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("IBUTILS_CACHE_DIR", str(tmp_path / "runs"))
    return tmp_path / "runs"


@pytest.fixture(scope="module")
def tishby_result(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IBUTILS_CACHE_DIR", str(tmp_path_factory.mktemp("runs")))
        return experiments.tishby_net(TINY, [0, 1], gradient_stats="minibatch", progress=False)


def _roundtrip(value):
    path = results.cache_path("thing", {"value": repr(type(value))})
    results.save_cached(path, value)
    return results.load_cached(path)


def test_plain_values_round_trip_bit_for_bit():
    value = {
        "floats": [0.1, -0.0, math.inf, -math.inf, math.nan, 5e-324, 1.7976931348623157e308],
        "ints": (0, -1, 2**80, True, False, None), 3: "integer key", (1, "a"): "tuple key",
        "nested": [{"a": ()}, [], {}],
        "numpy": [np.arange(6, dtype=np.int16).reshape(2, 3), np.float32(np.nan), np.bool_(True),
                  np.array(["ab", "c"]), np.zeros((0, 4)), np.arange(10.0)[::3], np.array(1 + 2j),
                  np.asfortranarray(np.random.default_rng(0).normal(size=(3, 5)))],
        "torch": [torch.arange(5, dtype=torch.float16), torch.ones(2, 3, dtype=torch.bool),
                  torch.randn(4, 3).T, torch.tensor([], dtype=torch.int64), torch.float64],
    }
    assert_identical(store.loads(store.dumps(value)), value)
    # through the run cache too, where `torch.tensor.T` comes back contiguous with the same values
    assert_identical(_roundtrip(value), value)


def test_every_cached_result_type_round_trips(tishby_result):
    run = train.train(*_tishby_problem(), TINY, [0, 1], progress=False)  # with its kept parameters
    assert run.params is not None and run.params.dtype == torch.float32
    statistics = gradients.Statistics(np.ones(2), np.zeros(2), np.array([np.inf, np.nan]))
    kde = experiments.KDEPlane(0.1, *np.random.default_rng(1).random((4, 3, 2)))
    mnist = experiments.MnistNetResult(
        dataclasses.replace(tishby_result.run, seeds=(0,)), ["hidden 1 (6)", "output (2)"], [kde], 0.5,
        np.random.default_rng(2).random((3, 2)), np.random.default_rng(3).random((3, 2)),
        tishby_result.gradient_stats, 512, np.arange(7), {"total": 1.5})
    teacher = linear.Teacher(n_in=8, n_relevant=3)
    students = linear.train_students(teacher, 16, hidden=(4,), lr=0.05, epochs=5, seeds=[0, 1], n_snapshots=3,
                                     progress=False, gradient_stats="minibatch", batch_size=8)
    claim = results.check("a", "holds", 1.0, 0.5, figure="Fig. 1")
    values = [tishby_result, run, mnist, students, teacher, statistics,
              mi.KDEBounds(mi.MI(1.0, 2.0), mi.MI(np.float64(0.5), np.float64(0.25))), infoplane.TANH_BINNING, claim]
    for value in values:
        assert_identical(_roundtrip(value), value, type(value).__name__)


def _tishby_problem():
    from ibutils import data

    x, y = data.tishby()
    return (x, y, *data.train_test_split(len(x), [0, 1], 0.8))


class NotAllowed:
    pass


@dataclasses.dataclass
class UnlistedResult:
    value: int


@pytest.mark.parametrize("bad, where", [
    ({"a": [1, NotAllowed()]}, "value['a'][1]"),
    (UnlistedResult(1), "value"),
    (np.array([1, "a"], dtype=object), "value"),
    (lambda: 1, "value"),
    ({"x": torch.ones(2, requires_grad=True)}, "value['x']"),
    ([torch.ones(2, dtype=torch.bfloat16)], "value[0]"),
    ({1, 2}, "value"),
])
def test_anything_else_is_refused_when_saving(bad, where):
    path = results.cache_path("thing", {"a": 1})
    with pytest.raises(ValueError, match="^" + re.escape(f"{where}: cannot store")):
        results.save_cached(path, bad)
    assert not path.parent.exists() or not any(path.parent.iterdir())  # nothing written


def test_a_file_naming_another_type_is_refused_without_running_it(tishby_result):
    """Loading rebuilds only ALLOWED_TYPES; a file naming anything else (with a valid checksum) is corrupt."""
    data = store.dumps(infoplane.TANH_BINNING)
    assert b'"ibutils.infoplane.Binning"' in data
    forged = _with_new_checksum(data.replace(b'"ibutils.infoplane.Binning"', b'"os.system"'))
    with pytest.raises(store.CorruptFile, match="not in ibutils.store.ALLOWED_TYPES"):
        store.loads(forged)


def _with_new_checksum(data: bytes) -> bytes:
    """A store file whose header's sizes and checksum fit its (edited) body."""
    head_end = data.index(b"\n", len(store.MAGIC))
    header = json.loads(data[len(store.MAGIC):head_end])
    body = data[head_end + 1:]
    tree = body[:len(body) - header["blob"]]
    header.update(tree=len(tree), sha256=hashlib.sha256(body).hexdigest())
    return store.MAGIC + json.dumps(header).encode() + b"\n" + body


def test_a_pickle_is_never_loaded(cache):
    path = results.cache_path("thing", {"a": 1})
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps({"a": 1}))  # e.g. an entry of the old torch.save format
    assert results.load_cached(path) is None


def _damaged(data: bytes) -> list[tuple[str, bytes]]:
    """Truncations and single-byte flips in the header, the tree and the blob."""
    blob_start = len(data) - json.loads(data[len(store.MAGIC):data.index(b"\n", len(store.MAGIC))])["blob"]
    cuts = [("empty", b""), ("magic only", data[:len(store.MAGIC)]), ("half", data[:len(data) // 2]),
            ("one byte short", data[:-1]), ("one byte more", data + b"\0")]
    flips = [("magic", 3), ("header", len(store.MAGIC) + 5), ("tree", blob_start - 10), ("blob", blob_start + 7),
             ("last byte", len(data) - 1)]
    return cuts + [(f"flip in {name}", data[:i] + bytes([data[i] ^ 0x10]) + data[i + 1:]) for name, i in flips]


def test_damaged_entries_are_reported_in_one_line_and_recomputed(capsys):
    value = {"x": np.arange(100.0), "label": "the value"}
    path = results.cache_path("thing", {"a": 1})
    results.save_cached(path, value)
    good = path.read_bytes()
    for name, damaged in _damaged(good):
        path.write_bytes(damaged)
        capsys.readouterr()
        calls = []
        again = results.cached("thing", {"a": 1}, lambda: calls.append(1) or value)
        err = capsys.readouterr().err
        assert calls == [1], name
        assert err.count("\n") == 1 and err.startswith("ibutils: run cache entry ") and str(path) in err, (name, err)
        assert "recomputing" in err
        assert_identical(again, value)
        assert path.read_bytes() == good, name  # replaced by a whole entry
    capsys.readouterr()
    assert_identical(results.load_cached(path), value)
    assert capsys.readouterr().err == ""


def test_a_damaged_experiment_entry_is_recomputed_to_the_same_result(tishby_result, cache, capsys):
    first = experiments.tishby_net(TINY, [0, 1], gradient_stats="minibatch", progress=False)
    (entry,) = cache.glob("tishby_net-*.entry")
    data = entry.read_bytes()
    entry.write_bytes(data[: len(data) * 2 // 3])
    capsys.readouterr()
    again = experiments.tishby_net(TINY, [0, 1], gradient_stats="minibatch", progress=False)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and entry.name in err and "recomputing" in err
    assert_identical(dataclasses.replace(again, seconds={}), dataclasses.replace(first, seconds={}))
    assert_identical(dataclasses.replace(again, seconds={}), dataclasses.replace(tishby_result, seconds={}))
    assert [p.name for p in cache.iterdir()] == [entry.name]  # no checkpoints or temporaries left


def test_a_failed_write_keeps_the_old_entry_and_leaves_no_temporary(cache, monkeypatch):
    path = results.cache_path("thing", {"a": 1})
    results.save_cached(path, {"v": 1})

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.os, "fsync", full_disk)
    with pytest.raises(OSError, match=rf"cannot write {path}: No space left on device; free some space") as info:
        results.save_cached(path, {"v": 2})
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert results.load_cached(path) == {"v": 1}
    assert [p.name for p in cache.iterdir()] == [path.name]


def test_temporaries_of_killed_writers_are_removed_on_the_next_write(cache):
    path = results.cache_path("thing", {"a": 1})
    path.parent.mkdir(parents=True)
    dead = store._temporary_name(path).name.replace(f".{os.getpid()}.", ".999999999.")
    (cache / dead).write_bytes(b"half a file")
    results.save_cached(path, {"v": 1})
    assert [p.name for p in cache.iterdir()] == [path.name]


def test_an_entry_in_an_older_layout_is_recomputed_not_misread(tishby_result, monkeypatch, capsys):
    """A Run cached with its arrays `[snapshots, seeds]` (layout 1, before seeds came first) is
    refused when read, named in one line, and recomputed; written now, it reads back."""
    run = tishby_result.run
    path = results.cache_path("run", {"a": 1})
    with monkeypatch.context() as old:
        old.setattr(train.Run, "LAYOUT", 1)  # the writer of an old entry
        results.save_cached(path, {"run": run})
    with pytest.raises(store.CorruptFile, match="layout 1, but this ibutils reads layout 2"):
        store.read(path)
    capsys.readouterr()
    calls = []
    again = results.cached("run", {"a": 1}, lambda: calls.append(1) or {"run": run})
    assert calls == [1] and "recomputing" in capsys.readouterr().err
    assert_identical(again["run"], run)
    assert_identical(results.load_cached(path)["run"], run)
    assert run.train_acc.shape == (len(run.seeds), len(run.epochs))  # seeds first
    assert run.params.shape[:2] == (len(run.seeds), len(run.epochs))
