"""ibutils.cluster: the experiments' units on real Dask processes.

A scheduler and two workers are started as a user starts them (`dask scheduler`, `dask worker`,
separate processes, each in its own process group, on 127.0.0.1), with no shared disk: each worker
has its own run cache and no copy of the data (no IBUTILS_DATA, an empty user cache, no network),
so the data can only reach it by value. Every process a test starts is killed (its whole group)
when the test ends, whether it passed or not.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import operator
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ibutils import cluster, data, experiments, infoplane, progress, store, train
from test_cache import assert_identical

DASK = Path(sys.executable).parent / "dask"
CONFIGS = {a: train.TrainConfig(activation=a, epochs=60, snapshots=6, batch_size=256) for a in ("tanh", "relu")}
SEEDS = [3, 0, 7]
SWEEP = {"train_fraction": 0.8, "gradient_stats": "minibatch", "progress": False}


class _Process:
    """A command in its own process group, its output in `log`."""

    def __init__(self, args: list, log: Path, env: dict):
        self.log = log
        with log.open("w") as out:
            self.proc = subprocess.Popen([str(a) for a in args], stdout=out, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)

    def kill(self) -> None:
        """SIGKILL to the whole group (a `dask worker` is a nanny and its worker process)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


@dataclasses.dataclass
class _Cluster:
    address: str
    scheduler: _Process
    workers: list[_Process]
    caches: list[Path]  # each worker's run cache


@contextlib.contextmanager
def _dask_cluster(folder: Path, n_workers: int = 2):
    """`dask scheduler` and `n_workers` x `dask worker` (one thread each) on 127.0.0.1; all killed on exit."""
    from distributed import Client

    folder.mkdir(parents=True, exist_ok=True)
    started: list[_Process] = []
    env = {k: v for k, v in os.environ.items() if k not in ("IBUTILS_DATA", "IBUTILS_CACHE_DIR", "IBUTILS_SCHEDULER")}
    try:
        scheduler = _Process([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address",
                              "127.0.0.1:0", "--scheduler-file", folder / "scheduler.json"], folder / "scheduler.log", env)
        started.append(scheduler)
        address = _scheduler_address(folder / "scheduler.json", scheduler)
        workers, caches = [], []
        for i in range(n_workers):
            caches.append(folder / f"worker{i}-cache")
            worker_env = {**env, "IBUTILS_CACHE_DIR": str(caches[-1]), "XDG_CACHE_HOME": str(folder / f"worker{i}-home")}
            workers.append(_Process([DASK, "worker", address, "--nthreads", "1", "--nworkers", "1", "--name",
                                     f"worker{i}", "--no-dashboard", "--local-directory", folder / f"worker{i}-dir"],
                                    folder / f"worker{i}.log", worker_env))
            started.append(workers[-1])
        with Client(address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(n_workers, timeout=180)
        yield _Cluster(address, scheduler, workers, caches)
    finally:
        for process in reversed(started):
            process.kill()


def _scheduler_address(file: Path, scheduler: _Process, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert scheduler.proc.poll() is None, f"dask scheduler exited: {scheduler.log.read_text()}"
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            return json.loads(file.read_text())["address"]
        time.sleep(0.1)
    raise AssertionError(f"dask scheduler wrote no {file.name} within {timeout} s: {scheduler.log.read_text()}")


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    with _dask_cluster(tmp_path_factory.mktemp("dask")) as running:
        yield running


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The sweep in this process, one group of seeds per configuration."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IBUTILS_CACHE_DIR", str(tmp_path_factory.mktemp("reference")))
        patch.delenv("IBUTILS_SCHEDULER", raising=False)
        return experiments.tishby_nets(CONFIGS, SEEDS, workers=1, checkpoint_every=None, **SWEEP)


def _assert_same(result, expected) -> None:
    assert_identical(dataclasses.replace(result, seconds={}), dataclasses.replace(expected, seconds={}))


def _assert_cache_holds_entries_only(cache: Path, count: int) -> None:
    """`count` whole entries, nothing else (no checkpoint, no temporary file)."""
    names = sorted(p.name for p in cache.iterdir())
    assert len(names) == count and all(n.endswith(".entry") and not n.startswith(".") for n in names), names
    for path in cache.iterdir():
        store.read(path)  # checksummed: raises on a partial or altered file


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_sweep_on_dask_processes_equals_one_process(dask_cluster, reference, tmp_path, monkeypatch, capsys):
    """Seeds in groups of two and one ([3, 0], [7]) per configuration, four units on two workers;
    checkpoints made on the workers and removed from their caches at the end."""
    monkeypatch.setenv("IBUTILS_CACHE_DIR", str(tmp_path / "client"))
    started = time.time()
    on_cluster = experiments.tishby_nets(CONFIGS, SEEDS, workers=4, scheduler=dask_cluster.address,
                                         checkpoint_every=0.0, **SWEEP)
    split = progress.split(started)  # the workers' phases count here
    assert split["training"] > 0 and split["estimating"] > 0
    for name in CONFIGS:
        _assert_same(on_cluster[name], reference[name])
    err = capsys.readouterr().err
    assert f"4 units on the Dask cluster at {dask_cluster.address}" in err and "dashboard http://127.0.0.1:" in err
    assert "tishby_nets: 4/4 units done" in err
    _assert_cache_holds_entries_only(tmp_path / "client", 2)
    assert not [p for cache in dask_cluster.caches if cache.exists() for p in cache.iterdir()]  # checkpoints removed
    assert cluster.device(dask_cluster.address).type == "cpu"


def test_a_selection_of_seeds_is_those_seeds_trained_alone(reference, tmp_path, monkeypatch):
    """What chapter 4 does with chapter 1's runs: the first seeds of an ensemble are the networks,
    planes and gradient statistics of an ensemble of just those seeds."""
    monkeypatch.setenv("IBUTILS_CACHE_DIR", str(tmp_path))
    alone = experiments.tishby_nets(CONFIGS, SEEDS[:2], workers=1, checkpoint_every=None, **SWEEP)
    for name, result in reference.items():
        _assert_same(result.select([0, 1]), alone[name])
        later = result.select([2])
        assert later.run.seeds == (SEEDS[2],) and later.plane.hist is None
        np.testing.assert_array_equal(later.gradient_stats.snr, result.gradient_stats.snr[[2]])
        with pytest.raises(ValueError, match=r"index must list positions in \[0, 3\)"):
            result.select([1, 3])


def test_grouping_and_the_environment_variable(dask_cluster, reference, tmp_path, monkeypatch):
    """$IBUTILS_SCHEDULER alone sends the runs to the cluster; one seed per group, three units."""
    monkeypatch.setenv("IBUTILS_CACHE_DIR", str(tmp_path / "client"))
    monkeypatch.setenv("IBUTILS_SCHEDULER", dask_cluster.address)
    single = experiments.tishby_net(CONFIGS["relu"], SEEDS, workers=3, checkpoint_every=None, **SWEEP)
    _assert_same(single, reference["relu"])
    _assert_cache_holds_entries_only(tmp_path / "client", 1)


def test_the_worker_that_runs_a_group_does_not_matter(dask_cluster, reference):
    """One group of seeds pinned to each worker in turn, and run in this process: all the same."""
    from distributed import Client

    config = CONFIGS["tanh"]
    args = (config, SEEDS, SWEEP["train_fraction"], infoplane.paper_binning("tanh"), SWEEP["gradient_stats"],
            data.tishby(), False)
    here = experiments.TishbyNetResult.compute(*args)
    with Client(dask_cluster.address, set_as_default=False) as client:
        workers = sorted(client.nthreads())
        assert len(workers) == 2
        futures = [client.submit(experiments.TishbyNetResult.compute, *args, workers=[w], allow_other_workers=False,
                                 pure=False) for w in workers]
        pinned = [future.result() for future in futures]
        assert {w for who in client.who_has(futures).values() for w in who} == set(workers)
    for result in pinned:
        _assert_same(result, here)
    _assert_same(here, reference["tanh"])


def test_a_worker_killed_mid_sweep(tmp_path, reference, monkeypatch):
    """SIGKILL to one `dask worker` (nanny and worker) while it trains: its unit runs again on the
    other worker, from the start (its checkpoint stayed on the dead worker's disk), and the sweep
    ends with the same results and a run cache of whole entries only."""
    monkeypatch.setenv("IBUTILS_CACHE_DIR", str(tmp_path / "client"))
    with _dask_cluster(tmp_path / "dask") as running:
        outcome = {}

        def sweep():
            try:
                outcome["value"] = experiments.tishby_nets(CONFIGS, SEEDS, workers=2, scheduler=running.address,
                                                           checkpoint_every=0.1, **SWEEP)
            except BaseException as exc:  # noqa: BLE001 - reported by the test below
                outcome["error"] = exc

        thread = threading.Thread(target=sweep, daemon=True)
        thread.start()
        victim = _first_to_checkpoint(running.caches, thread)
        assert thread.is_alive(), "the sweep ended before a worker could be killed"
        running.workers[victim].kill()
        thread.join(timeout=300)
        assert not thread.is_alive(), "the sweep did not finish after the kill"
        assert "error" not in outcome, outcome.get("error")
        for name in CONFIGS:
            _assert_same(outcome["value"][name], reference[name])
        _assert_cache_holds_entries_only(tmp_path / "client", 2)
        assert list(running.caches[victim].glob("*.ckpt")), "the killed worker had not checkpointed"
        assert not list(running.caches[1 - victim].glob("*.ckpt"))  # the survivor's were removed


def test_a_lost_scheduler_is_an_error_not_a_hang(tmp_path, monkeypatch):
    """SIGKILL to the scheduler while a unit trains: the call raises, naming the lost connection."""
    monkeypatch.setenv("IBUTILS_CACHE_DIR", str(tmp_path / "client"))
    with _dask_cluster(tmp_path / "dask", n_workers=1) as running:
        outcome = {}

        def sweep():
            try:
                experiments.tishby_net(CONFIGS["tanh"], SEEDS, scheduler=running.address, checkpoint_every=0.1, **SWEEP)
            except BaseException as exc:  # noqa: BLE001 - checked below
                outcome["error"] = exc

        thread = threading.Thread(target=sweep, daemon=True)
        thread.start()
        _first_to_checkpoint(running.caches, thread)
        running.scheduler.kill()
        thread.join(timeout=120)
        assert not thread.is_alive(), "the call hangs after the scheduler died"
        assert "lost the connection to the scheduler" in str(outcome.get("error")), outcome
        assert not (tmp_path / "client").exists() or not list((tmp_path / "client").iterdir())


def _first_to_checkpoint(caches: list[Path], sweep: threading.Thread, timeout: float = 180) -> int:
    """The index of the first worker whose run cache holds a checkpoint (it is training)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and sweep.is_alive():
        for i, cache in enumerate(caches):
            if cache.exists() and any(cache.glob("*.ckpt")):
                return i
        time.sleep(0.02)
    raise AssertionError("no worker wrote a checkpoint")


def test_an_unreachable_scheduler_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("IBUTILS_CACHE_DIR", str(tmp_path))
    address = f"tcp://127.0.0.1:{_free_port()}"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(ConnectionError, match=f"no Dask scheduler answers at {address} \\(from scheduler=\\)"):
        experiments.tishby_net(CONFIGS["tanh"], SEEDS, scheduler=address, **SWEEP)
    assert time.monotonic() - started < 60  # CONNECT_TIMEOUT_S (5 s) and the imports, not a hang
    monkeypatch.setenv("IBUTILS_SCHEDULER", address)
    with pytest.raises(ConnectionError, match=r"\(from \$IBUTILS_SCHEDULER\)"):
        experiments.tishby_net(CONFIGS["tanh"], SEEDS, **SWEEP)
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="scheduler"):
        experiments.tishby_net(CONFIGS["tanh"], SEEDS, scheduler=8786, **SWEEP)


def test_a_local_cluster_runs_units_in_order_and_puts_the_environment_back(monkeypatch, capsys):
    monkeypatch.delenv("IBUTILS_SCHEDULER", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    before = dict(os.environ)
    with cluster.Runner(2) as runner:
        assert runner.remote(3) and not runner.remote(1)
        assert runner.map(operator.sub, [((10, k), {}) for k in range(5)], label="subtract") == [10, 9, 8, 7, 6]
        with pytest.raises(ZeroDivisionError):
            runner.map(operator.truediv, [((1, 1), {}), ((1, 0), {})])
    assert dict(os.environ) == before
    err = capsys.readouterr().err
    assert "subtract: 5 units on a local Dask cluster of 2 worker processes; dashboard http://127.0.0.1:" in err
    assert "subtract: 5/5 units done" in err
    with cluster.Runner(1) as runner:  # one worker: in this process, nothing started
        assert runner.map(operator.sub, [((1, 2), {}), ((3, 1), {})]) == [-1, 2] and runner._client is None


def test_under_the_executor_a_local_cluster_reports_to_its_channel(tmp_path, monkeypatch, capsys):
    """The notes go to the executor's terminal, not into the notebook; the workers may draw bars."""
    channel = tmp_path / "progress.jsonl"
    monkeypatch.delenv("IBUTILS_SCHEDULER", raising=False)
    monkeypatch.setenv(progress.CHANNEL, str(channel))
    with cluster.Runner(2) as runner:
        assert runner.shows_bars(3)
        assert runner.map(operator.sub, [((10, k), {}) for k in range(3)], label="subtract") == [10, 9, 8]
    assert capsys.readouterr().err == ""
    notes = [json.loads(line)["note"] for line in channel.read_text().splitlines() if '"note"' in line]
    assert notes[0].startswith("subtract: 3 units on a local Dask cluster") and notes[-1].startswith("subtract: 3/3")
    monkeypatch.delenv(progress.CHANNEL)
    assert not cluster.Runner(2).shows_bars(3) and cluster.Runner(2).shows_bars(1)


def test_a_worker_with_other_code_refuses_the_unit():
    with pytest.raises(RuntimeError, match="other ibutils code"):
        cluster._unit("0" * 64, operator.add, (1, 2), {})
    value, split = cluster._unit(cluster.code_digest(), operator.add, (1, 2), {})
    assert value == 3 and set(split) == {"training", "estimating", "plotting", "other"}
    with pytest.raises(ValueError, match="workers"):
        cluster.Runner(0)
