"""Progress of a run as it happens, and where its time went.

- `progress_bar(...)`: a progress bar over a loop (training epochs, snapshot chunks). In Jupyter
  it is tqdm's notebook bar, in a terminal tqdm's text bar. Under the book's executor
  (`python -m ibutils run`), which names a file in `$IBUTILS_PROGRESS`, it draws nothing in the
  notebook (so neither the executed copy nor the page built from it holds a bar) and appends
  its state as JSON lines to that file instead; the executor's `Monitor` reads them and draws
  the bar on its terminal. Worker processes inherit the variable, so their bars reach the same
  terminal.
- `phase(name)`: marks code (a `with` block or a decorated function) as one of `PHASES`,
  "training", "estimating" or "plotting". Time counts for the innermost phase open, so the
  estimates a trainer makes at its snapshots count as estimating. `split(started)` gives the
  seconds of each phase since a `time.time()` stamp, and "other" for the rest of the wall time
  (loading data, checking claims, code outside any phase); `ibutils.results.provenance` records
  it, and the reproducibility box shows it. Where worker processes do the work (`timed_call` in
  each, `parallel` around them), the section's wall time splits as the workers' time did.
  `time_figure_rendering()` counts the rendering of every matplotlib figure as plotting.
- `note(message)`: one line for the person running (a Dask dashboard's address, units done): on
  the executor's terminal under the executor (never in the notebook), else on stderr.

This module imports nothing from ibutils: every other module may use it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Iterable, TextIO

CHANNEL = "IBUTILS_PROGRESS"  # environment variable: the file bars and phases are reported to
PHASES = ("training", "estimating", "plotting")
_PARALLEL = "parallel"  # pseudo-phase: worker processes do the work (see `parallel`)
_MIN_INTERVAL = 0.5  # seconds between two reports of one bar to the channel


# --------------------------------------------------------------------------- the channel
class _Channel:
    """Appends one JSON line per event to the file named by `$IBUTILS_PROGRESS`, if set.

    Lines are short and written with one `write` on an O_APPEND descriptor, so those of several
    processes never mix. Reporting never fails a run: write errors (a full disk) are ignored."""

    def __init__(self):
        self.fd: int | None = None
        self.pid: int | None = None
        self.path: str | None = None

    def emit(self, event: dict) -> None:
        path = os.environ.get(CHANNEL)
        if not path:
            return
        try:
            if self.pid != os.getpid() or self.path != path:  # a forked child opens its own
                self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                self.pid, self.path = os.getpid(), path
            line = json.dumps({"pid": os.getpid(), "t": round(time.time(), 3), **event}) + "\n"
            os.write(self.fd, line.encode())
        except OSError:
            pass


_channel = _Channel()


def collected() -> bool:
    """Whether bars go to the executor's channel (then bars of several processes never interleave)."""
    return bool(os.environ.get(CHANNEL))


# ------------------------------------------------------------------------------ the bars
class _ChannelBar:
    """tqdm's interface (`update`, `close`, iteration, `with`) reporting to the channel."""

    _ids = itertools.count()

    def __init__(self, iterable: Iterable | None, total: int | None, desc: str, unit: str):
        self.iterable, self.desc, self.unit = iterable, desc, unit
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.n, self.id = total, 0, next(self._ids)
        self.start = time.time()
        self._sent, self._closed = 0.0, False
        self._send()

    def _send(self, done: bool = False) -> None:
        self._sent = time.time()
        _channel.emit({"bar": self.id, "desc": self.desc, "unit": self.unit, "n": self.n,
                       "total": self.total, "start": round(self.start, 3), "done": done})

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.time() - self._sent >= _MIN_INTERVAL or self.n == self.total:
            self._send()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._send(done=True)

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update()
        finally:
            self.close()

    def __enter__(self) -> "_ChannelBar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it", show: bool = True):
    """A progress bar over `iterable` (or `total` steps, advanced with `update(n)`).

    Under the executor it reports to the channel (see the module docstring); elsewhere it is
    `tqdm.auto.tqdm`, which `TQDM_DISABLE=1` switches off. `show=False` draws and reports nothing.
    """
    if show and collected():
        return _ChannelBar(iterable, total, desc, unit)
    from tqdm.auto import tqdm

    options = {} if show else {"disable": True}  # not disable=False: it would override TQDM_DISABLE
    return tqdm(iterable, total=total, desc=desc, unit=unit, mininterval=1.0, **options)


def note(message: str) -> None:
    """Tell the person running something in one line, `ibutils: <message>`: through the channel to
    the executor's terminal when `collected()`, else on stderr."""
    message = " ".join(message.split())
    if collected():
        _channel.emit({"note": message})
    else:
        print(f"ibutils: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- the phases
class _Clock:
    """The phases open in this process and the stretches of time each phase has had.

    A stretch is `(start, end, shares)`: `shares` maps phases to the fraction of the stretch
    they get ({name: 1.0} for an ordinary phase; the workers' split for a parallel section)."""

    def __init__(self):
        self.open: list[str] = []
        self.since = time.time()  # when the innermost open phase last became innermost
        self.stretches: list[tuple[float, float, dict[str, float]]] = []

    def _close_stretch(self, now: float) -> None:
        if self.open and self.open[-1] != _PARALLEL:
            self.stretches.append((self.since, now, {self.open[-1]: 1.0}))
        self.since = now

    def _report(self) -> None:
        current = self.open[-1] if self.open and self.open[-1] != _PARALLEL else None
        _channel.emit({"phase": current})

    def enter(self, name: str) -> None:
        self._close_stretch(time.time())
        self.open.append(name)
        self._report()

    def exit(self, shares: dict[str, float] | None = None) -> None:
        now = time.time()
        if shares is not None:  # a parallel section ends
            self.stretches.append((self.since, now, shares))
            self.since = now
        else:
            self._close_stretch(now)
        self.open.pop()
        self._report()

    def split(self, started: float) -> dict[str, float]:
        now = time.time()
        stretches = list(self.stretches)
        if self.open and self.open[-1] != _PARALLEL:
            stretches.append((self.since, now, {self.open[-1]: 1.0}))
        seconds = dict.fromkeys(PHASES, 0.0)
        for start, end, shares in stretches:
            overlap = min(end, now) - max(start, started)
            if overlap > 0:
                for name, share in shares.items():
                    seconds[name] += overlap * share
        seconds["other"] = max(0.0, now - started - sum(seconds.values()))
        return {name: round(value, 2) for name, value in seconds.items()}


_clock = _Clock()


class phase(contextlib.ContextDecorator):
    """Count the time of a `with phase("training"):` block, or of every call of a function
    decorated `@phase("training")`, as that phase (one of `PHASES`; the innermost open one counts)."""

    def __init__(self, name: str):
        if name not in PHASES:
            raise ValueError(f"name must be one of {PHASES}, got {name!r}")
        self.name = name

    def __enter__(self) -> "phase":
        _clock.enter(self.name)
        return self

    def __exit__(self, *exc) -> bool:
        _clock.exit()
        return False


def split(started: float) -> dict[str, float]:
    """Seconds since `started` (a `time.time()` stamp) spent in each of `PHASES` in this process,
    and "other": the rest of the wall time. Rounded to 0.01 s; they sum to the wall time."""
    return _clock.split(started)


def timed_call(fn: Callable, *args, **kwargs) -> tuple[Any, dict[str, float]]:
    """`(fn(*args, **kwargs), its split)`: what a worker process returns, for `parallel`."""
    started = time.time()
    value = fn(*args, **kwargs)
    return value, split(started)


@contextlib.contextmanager
def parallel():
    """A section in which worker processes do the work, each call wrapped in `timed_call`.

    Yields a list; append each worker's split to it. The section's wall time then splits among
    the phases as the workers' time did, summed over the workers (their start-up included in
    the same proportion)."""
    splits: list[dict[str, float]] = []
    _clock.enter(_PARALLEL)
    try:
        yield splits
    finally:
        total = sum(sum(s.values()) for s in splits)
        shares = {name: sum(s.get(name, 0.0) for s in splits) / total for name in PHASES} if total > 0 else {}
        _clock.exit(shares)


def time_figure_rendering() -> None:
    """Count every rendering of a matplotlib figure (shown inline, saved, a slider's frame) as
    plotting: wraps `FigureCanvasBase.print_figure`, through which all of them pass, once."""
    from matplotlib.backend_bases import FigureCanvasBase

    if not getattr(FigureCanvasBase.print_figure, "_ibutils_plotting", False):
        FigureCanvasBase.print_figure = phase("plotting")(FigureCanvasBase.print_figure)
        FigureCanvasBase.print_figure._ibutils_plotting = True


# --------------------------------------------------------------------- the terminal side
def _clock_text(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Monitor:
    """Shows on a terminal what a chapter's kernel (and its worker processes) report.

    `with Monitor(stream) as monitor:` creates the channel file; give the kernel
    `monitor.env` in its environment. A thread reads the new lines every `tick` seconds and
    shows one status line: elapsed time, the phases open, and the bars running (their names,
    done / total with a bar, rate, time left; several bars at once are summed, their time left
    is the longest). Notes (`note`) are printed as lines of their own, as they come. On a
    terminal (`stream.isatty()`) the line is redrawn in place and erased at the end; otherwise
    (a log, CI) it is printed as a new line every `every` seconds. With `stream` None, the
    reports are discarded (the channel is os.devnull).
    """

    def __init__(self, stream: TextIO | None, every: float = 15.0, tick: float = 0.25):
        self.stream, self.every, self.tick = stream, every, tick
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.bars: dict[tuple[int, int], dict] = {}
        self.phases: dict[int, str | None] = {}
        self.notes: list[str] = []  # received, not yet printed
        self.started = time.time()
        self.path: str | None = None
        self._offset, self._rest = 0, b""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._shown, self._printed_at, self._width = "", 0.0, 0

    @property
    def env(self) -> dict[str, str]:
        return {CHANNEL: self.path}

    def __enter__(self) -> "Monitor":
        if self.stream is None:
            self.path = os.devnull
            return self
        fd, self.path = tempfile.mkstemp(prefix="ibutils-progress-", suffix=".jsonl")
        os.close(fd)
        self.started = time.time()
        self._thread = threading.Thread(target=self._loop, name="ibutils-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.stream is None:
            return
        self._stop.set()
        self._thread.join()
        self.read()
        self._print_notes()
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    def _loop(self) -> None:
        while not self._stop.wait(self.tick):
            self.read()
            self.show()

    def read(self) -> None:
        """Take in the lines written since the last read (a last, unfinished line waits)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except OSError:
            return
        self._offset += len(data)
        *lines, self._rest = (self._rest + data).split(b"\n")
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if "phase" in event:
                self.phases[event["pid"]] = event["phase"]
            elif "note" in event:
                self.notes.append(event["note"])
            elif "bar" in event:
                self.bars[event["pid"], event["bar"]] = event

    def status(self, graph: bool = True) -> str:
        """The status line as it stands, without the elapsed time (`graph`: with a drawn bar)."""
        phases = [name for name in PHASES if name in self.phases.values()]
        parts = [" + ".join(phases)] if phases else []
        running = [b for b in self.bars.values() if not b["done"]]
        if running:
            parts.append(_bars_text(running, graph))
        return "  ".join(parts)

    def _print_notes(self) -> None:
        """Print the notes received, each on its own line above the status line (which the next
        `show` draws again)."""
        if not self.notes:
            return
        erase = "\r" + " " * self._width + "\r" if self.tty and self._width else ""
        self.stream.write(erase + "".join(f"  ibutils: {text}\n" for text in self.notes))
        self.stream.flush()
        self.notes.clear()
        self._shown, self._width = "", 0

    def show(self) -> None:
        self._print_notes()
        text = self.status()
        if not text:
            return
        now = time.time()
        line = f"  {_clock_text(now - self.started)}  {text}"
        if self.tty:
            width = shutil.get_terminal_size().columns - 1
            if len(line) > width:  # a narrow terminal: the numbers matter more than the drawing
                line = f"  {_clock_text(now - self.started)}  {self.status(graph=False)}"[:width]
            if line == self._shown:
                return
            self.stream.write("\r" + line.ljust(self._width))
            self._shown, self._width = line, len(line)
        elif now - self._printed_at >= self.every:
            self.stream.write(line + "\n")
            self._printed_at = now
        else:
            return
        self.stream.flush()


def _bars_text(bars: list[dict], graph: bool = True) -> str:
    """'tanh x 6 seeds | relu x 6 seeds [#####.....] 45% 1,350/3,000 epoch, 210 epoch/s, 0:08 left'
    (without the bracketed drawing when not `graph`)."""
    names = " | ".join(dict.fromkeys(b["desc"] for b in bars if b["desc"]))
    units = {b["unit"] for b in bars}
    unit = units.pop() if len(units) == 1 else "steps"
    done = sum(b["n"] for b in bars)
    rates = [b["n"] / (b["t"] - b["start"]) for b in bars if b["n"] and b["t"] > b["start"]]
    text = names
    if all(b["total"] for b in bars):
        total = sum(b["total"] for b in bars)
        filled = int(20 * done / total)
        text += f" [{'#' * filled}{'.' * (20 - filled)}]" if graph else ""
        text += f" {100 * done / total:.0f}% {done:,}/{total:,} {unit}"
    else:
        text += f" {done:,} {unit}"
    if rates:
        text += f", {sum(rates):,.1f} {unit}/s"
    if rates and len(rates) == len(bars) and all(b["total"] for b in bars):
        left = max((b["total"] - b["n"]) * (b["t"] - b["start"]) / b["n"] for b in bars)
        text += f", {_clock_text(left)} left"
    return text
