"""Where the independent units of an experiment run: this process, a local Dask cluster, or an
existing Dask cluster (Dask distributed, https://distributed.dask.org).

A unit is a pure function of its arguments (a group of seeds of one configuration, one MNIST
network, an estimator pass over stored snapshots): its result depends on nothing but them, so it
may run anywhere and be run again after a worker dies, with the same result bit for bit. Results
travel back to the caller, which alone writes the run cache; workers need no shared disk, and
what the units read (the data sets) travels with them by value.

`Runner(workers, scheduler)` chooses the place:

- With a scheduler, `scheduler=` or else `$IBUTILS_SCHEDULER` (e.g. `tcp://10.0.0.5:8786`): every
  unit goes to that cluster (`dask scheduler` and `dask worker` processes, dask-jobqueue,
  dask-kubernetes, ...). A scheduler that does not answer within `CONNECT_TIMEOUT_S` is a
  ConnectionError naming its address.
- Else, with more than one worker and more than one unit: a `distributed.LocalCluster` that the
  runner starts on first use and closes with itself: one process per worker, one thread each,
  NumPy's BLAS and OpenMP on one thread (set before the worker loads NumPy).
- Else in this process, as a plain loop: no cluster, no start-up cost.

On a cluster the runner tells the dashboard's address, then one line per finished unit (units done
/ total, elapsed), with `progress.note`: on stderr, or on the terminal of the book's executor. A
unit's phases count in the caller's time split as in its worker (`progress.parallel`). A worker
trains on CUDA when it has a CUDA device (`train.train`
picks the device where it runs).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import time
import uuid
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

import ibutils
from ibutils import progress

SCHEDULER_ENV = "IBUTILS_SCHEDULER"
CONNECT_TIMEOUT_S = 5.0  # seconds to wait for a scheduler to answer before giving up

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
_ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
# A local cluster's workers share the cores with the units: no sampling profiler (it walks every
# thread's stack each 10 ms) and rarer system and event-loop checks, so a unit keeps its core.
_QUIET_WORKERS = {"distributed.worker.profile.enabled": False, "distributed.admin.system-monitor.interval": "5s",
                  "distributed.admin.tick.interval": "1s"}


def scheduler_address(scheduler: str | None = None) -> str | None:
    """The Dask scheduler that units go to: `scheduler`, else `$IBUTILS_SCHEDULER`, else None
    (this machine)."""
    if scheduler is None:
        scheduler = os.environ.get(SCHEDULER_ENV) or None
    elif not isinstance(scheduler, str) or not scheduler.strip():
        raise ValueError(f"scheduler must be a Dask scheduler address such as 'tcp://host:8786' or None, "
                         f"got {scheduler!r}")
    return scheduler.strip() if scheduler else None


def local_workers(workers: int | None) -> int:
    """`workers` as a count on this machine: None means one per CPU core this process may run
    on, or 1 when a GPU is present."""
    if workers is None:
        if ibutils.default_device().type != "cpu":
            return 1
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive int or None, got {workers!r}")
    return workers


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """SHA-256 of the source of this ibutils (every module of the package), to check that a
    worker computes with the same code as the client whose run cache keeps the result."""
    digest = hashlib.sha256()
    for path in sorted(Path(ibutils.__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def _allocate_as_usual() -> None:
    """Undo Dask's `MALLOC_TRIM_THRESHOLD_=65536` (set by its nannies for their workers) in this
    worker process: setting it turns off glibc's adaptive mmap threshold, so every block over
    128 kB is mmapped and unmapped on each use, which doubled a chapter-1 unit's CPU time. The
    thresholds set here (mmap above 32 MiB, trim above 64 MiB) are where the adaptive ones end up."""
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        return
    libc = ctypes.CDLL(None)
    if hasattr(libc, "mallopt"):  # glibc
        libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
        libc.mallopt(_M_TRIM_THRESHOLD, 64 << 20)


def _unit(digest: str, fn: Callable, args: tuple, kwargs: dict) -> tuple[Any, dict[str, float]]:
    """One unit on a worker: `fn(*args, **kwargs)` on one torch thread, once the worker is seen to
    run the client's ibutils, with the split of its time (`progress.timed_call`)."""
    if code_digest() != digest:
        raise RuntimeError(f"this Dask worker runs other ibutils code ({Path(ibutils.__file__).parent}, source "
                           f"digest {code_digest()[:12]}) than the client (digest {digest[:12]}): install "
                           f"the same ibutils on every worker")
    _allocate_as_usual()
    torch.set_num_threads(1)
    return progress.timed_call(fn, *args, **kwargs)


def _device_type() -> str:
    return ibutils.default_device().type


class Runner:
    """Runs independent units of work and returns their results, in order, to this process.

    `workers`: how many units may run at once, and so how finely the experiments split their
    work; None means one per CPU core of this machine (1 when it has a GPU) or, with a scheduler,
    the threads of the cluster's workers at the first call that needs them. `scheduler`: see the
    module docstring. Use it as a context manager (or call `close`): that closes the local cluster
    or the connection it opened.
    """

    def __init__(self, workers: int | None = 1, scheduler: str | None = None):
        self.address = scheduler_address(scheduler)
        self._source = "scheduler=" if scheduler is not None else f"${SCHEDULER_ENV}"
        self._workers = None if workers is None else local_workers(workers)
        self._client = self._local = self._saved_env = None

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def workers(self) -> int:
        """How many units may run at once (see the class docstring)."""
        if self._workers is None:
            self._workers = self._cluster_threads() if self.address else local_workers(None)
        return self._workers

    def remote(self, units: int) -> bool:
        """Whether `units` units run outside this process (on a cluster)."""
        return self.address is not None or (self.workers > 1 and units > 1)

    def shows_bars(self, units: int) -> bool:
        """Whether `units` units may draw progress bars: in this process, or on a local cluster
        under the book's executor (its workers report to the executor's channel). Elsewhere the
        bars of several processes would interleave on one terminal, or go to workers' logs."""
        return not self.remote(units) or (self.address is None and progress.collected())

    def map(self, fn: Callable, calls: Sequence[tuple[tuple, dict]], *, shared: dict | None = None,
            label: str = "units") -> list:
        """`[fn(*args, **kwargs, **shared) for args, kwargs in calls]`, on a cluster when
        `remote(len(calls))`, else in this process.

        `fn` must be importable by name (a module-level function or classmethod of ibutils).
        `shared` keyword arguments (the data) are the same for every call. On a cluster each unit
        carries its arguments and the shared data in the task graph: the scheduler hands the units
        out as its workers come free (a dependency on one worker's copy of the data would draw them
        all to that worker), and keeps them, so a unit whose worker dies runs again on another
        worker (up to Dask's `distributed.scheduler.allowed-failures` times). A unit that fails on
        a worker raises here, and the units still waiting are cancelled.
        """
        calls, shared = list(calls), dict(shared or {})
        if not self.remote(len(calls)):
            return [fn(*args, **kwargs, **shared) for args, kwargs in calls]
        client = self._open(len(calls))
        tag = uuid.uuid4().hex[:8]
        with warnings.catch_warnings():  # the data and arguments are in the graph on purpose (see above)
            warnings.filterwarnings("ignore", message="Sending large graph")
            futures = [client.submit(_unit, code_digest(), fn, args, {**kwargs, **shared}, key=f"{label}-{i}-{tag}")
                       for i, (args, kwargs) in enumerate(calls)]
        return self._gather(client, futures, label)

    def _gather(self, client, futures: list, label: str) -> list:
        """The futures' results in order, a progress line on stderr as each one finishes."""
        from distributed import as_completed

        started, place = time.monotonic(), {future.key: i for i, future in enumerate(futures)}
        progress.note(f"{label}: {len(futures)} units on {self._description()}; dashboard {client.dashboard_link}")
        values, splits = [None] * len(futures), [None] * len(futures)
        try:
            with progress.parallel() as section:
                for done, future in enumerate(as_completed(futures, loop=client.loop), 1):
                    # raises the unit's error, or a lost scheduler's
                    values[place[future.key]], splits[place[future.key]] = future.result()
                    progress.note(f"{label}: {done}/{len(futures)} units done, {time.monotonic() - started:.0f} s")
                section.extend(splits)
        except BaseException:
            client.cancel(futures)
            raise
        return values

    def on_workers(self, fn: Callable, *args) -> list:
        """`fn(*args)` on every worker of an existing cluster (`scheduler`), their results as a list;
        workers that fail or leave meanwhile are left out. Nothing (an empty list) without one:
        the workers of a local cluster share this machine's files."""
        if self.address is None:
            return []
        return list(self._open(0).run(fn, *args, on_error="ignore").values())

    def device(self) -> torch.device:
        """The device the units train on: this machine's `ibutils.default_device()` without a
        scheduler; with one, cuda when every worker of the cluster has a CUDA device, else cpu."""
        if self.address is None:
            return ibutils.default_device()
        self._cluster_threads()  # waits for a worker
        types = self.on_workers(_device_type)
        return torch.device("cuda" if types and all(t == "cuda" for t in types) else "cpu")

    def close(self) -> None:
        """Close the connection to the scheduler, and the local cluster if this runner started one."""
        client, local, saved = self._client, self._local, self._saved_env
        self._client = self._local = self._saved_env = None
        try:
            if client is not None:
                client.close()
            if local is not None:
                local.close()
        finally:
            if saved is not None:  # the environment as it was before the local cluster started
                for name in set(os.environ) - set(saved):
                    del os.environ[name]
                os.environ.update(saved)

    def _open(self, units: int):
        """The Dask client: connected to `scheduler`, or to a local cluster of up to `units`
        workers, started now."""
        if self._client is None:
            self._client = self._connect() if self.address else self._start_local(min(self.workers, units))
        return self._client

    def _connect(self):
        from distributed import Client

        try:
            return Client(self.address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
        except (OSError, ValueError) as exc:
            raise ConnectionError(
                f"no Dask scheduler answers at {self.address} (from {self._source}) within {CONNECT_TIMEOUT_S:g} s: "
                f"{exc}. Start one (`dask scheduler`), or leave {SCHEDULER_ENV} unset to run on this machine."
            ) from exc

    def _start_local(self, workers: int):
        import dask
        from distributed import Client, LocalCluster

        # The nannies run in this process and put these (and more of their own) into its
        # environment before they spawn a worker, which reads them when it loads NumPy; `close`
        # puts the environment back as it was.
        self._saved_env = dict(os.environ)
        os.environ.update(_ONE_THREAD)
        with dask.config.set(_QUIET_WORKERS):
            self._local = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address="127.0.0.1:0", memory_limit=0)
        return Client(self._local, set_as_default=False)

    def _cluster_threads(self) -> int:
        """The worker threads of the cluster at `scheduler`, once it has at least one worker."""
        client = self._open(0)
        if not client.nthreads():
            progress.note(f"waiting for a worker to join the Dask cluster at {self.address}")
            client.wait_for_workers(1)
        return sum(client.nthreads().values())

    def _description(self) -> str:
        if self.address is None:
            return f"a local Dask cluster of {len(self._local.workers)} worker processes"
        return f"the Dask cluster at {self.address} ({sum(self._client.nthreads().values())} worker threads)"


def device(scheduler: str | None = None) -> torch.device:
    """The device the experiments' units train on (`Runner.device`): `ibutils.default_device()`
    without a scheduler; on the cluster at `scheduler` (or `$IBUTILS_SCHEDULER`), cuda when all its
    workers have a CUDA device, else cpu. A chapter picks its profile by it."""
    with Runner(scheduler=scheduler) as runner:
        return runner.device()
