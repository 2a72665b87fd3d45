"""`python -m ibutils run` as a person uses it: progress on the terminal, one clear line for every
mistake, and no half-written notebook after a kill.

Most tests run the real command line in a subprocess on small chapters of their own: a driver
points `ibutils.execute` at a book and build folder under tmp_path (nothing in book/ or _build/
is touched) and calls the CLI; each chapter runs in a real kernel.
"""

from __future__ import annotations

import json
import os
import pty
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from ibutils import execute

ROOT = execute.ROOT

# Runs the CLI with the book in <root>/book and the build tree in <root>/_build.
DRIVER = """
import os, sys
from pathlib import Path
from ibutils import execute
from ibutils.__main__ import main
root = Path(sys.argv[1])
execute.ROOT, execute.BOOK, execute.BUILD = root, root / "book", root / "_build"
execute.SRC, execute.HTML = execute.BUILD / "src", execute.BUILD / "html"
execute.RESULTS = Path(os.environ.get("TEST_RESULTS_DIR") or execute.BUILD / "results")
execute.CACHE = execute.BUILD / "cache"
sys.exit(main(sys.argv[2:]))
"""

TRAINING = """
import time
import numpy as np
from ibutils import results, train
started = time.time()
x = np.random.default_rng(0).integers(0, 2, (256, 12)).astype(np.float32)
y = (x.sum(1) > 6).astype(np.int64)
rows = np.stack([np.arange(200)] * 2)
# each snapshot pauses longer than a bar's report interval (0.5 s) and the monitor's tick (0.25 s),
# so that a report between the first and the last is on screen however fast the machine trains
pause = [lambda epoch, activations: time.sleep(0.6)]
run = train.train(x, y, rows, rows[:, :50] + 200, train.TrainConfig(hidden=(8,), epochs=EPOCHS, batch_size=64,
                  snapshots=5), seeds=[0, 1], on_snapshot=pause)
claims = [results.check("learns", "final training accuracy", run.train_acc[:, -1].mean(), 0.5),
          results.check("impossible", "an accuracy above one", run.train_acc[:, -1].mean(), 1.5)]
results.write("training", profile, {"epochs": EPOCHS}, claims, {}, results.provenance(started))
"""


def _chapter(book: Path, stem: str, *cells: str) -> Path:
    """Write a chapter notebook `book/<stem>.ipynb`: a parameters cell, then `cells`."""
    params = nbformat.v4.new_code_cell('profile = "paper"')
    params.metadata["tags"] = ["parameters"]
    doc = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {stem}"), params,
                                          *map(nbformat.v4.new_code_cell, cells)])
    doc.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    book.mkdir(parents=True, exist_ok=True)
    nbformat.write(doc, book / f"{stem}.ipynb")
    return book / f"{stem}.ipynb"


@pytest.fixture
def tree(tmp_path) -> Path:
    """A repository root of its own: config and toc, an empty book/."""
    for name in ("_config.yml", "_toc.yml"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    (tmp_path / "book").mkdir()
    return tmp_path


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IBUTILS_", "TQDM_", "PYTEST_"))}
    return {**env, **extra}


def _cli(root: Path, *args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", DRIVER, str(root), *args], env=env or _env(),
                          capture_output=True, text=True, timeout=timeout)


def _error_line(proc: subprocess.CompletedProcess) -> str:
    """The one line a mistake prints: nothing else on stdout or stderr, and no traceback."""
    assert proc.stdout == "", proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


# ------------------------------------------------------------------ mistakes, one line each
@pytest.mark.parametrize("args, expected", [
    (["run", "99"], "no chapter matches '99': name one by its number, id or notebook name (chapters: 01_tanh_vs_relu"),
    (["run", "02", "--profile", "fast"], "unknown profile 'fast': use one of quick, paper"),
], ids=["chapter", "profile"])
def test_unknown_chapter_or_profile(args, expected):
    proc = subprocess.run([sys.executable, "-m", "ibutils", *args], env=_env(), capture_output=True, text=True)
    assert proc.returncode == 2
    assert _error_line(proc).startswith(f"python -m ibutils: error: {expected}")


def test_wrong_ibutils_data(tmp_path):
    for value, expected in ((tmp_path / "nowhere", "is not a folder: set it to the folder that holds var_u.mat"),
                            (tmp_path, "holds no var_u.mat: put the file there")):
        proc = subprocess.run([sys.executable, "-m", "ibutils", "run", "02", "--profile", "quick"],
                              env=_env(IBUTILS_DATA=str(value)), capture_output=True, text=True)
        assert proc.returncode == 2
        assert _error_line(proc).startswith(f"python -m ibutils: error: IBUTILS_DATA={value} {expected}")


def _failed_line(proc: subprocess.CompletedProcess, stem: str) -> str:
    """A chapter that failed in its kernel: exit status 1, its error in one line, no traceback."""
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr and "-----" not in proc.stdout + proc.stderr
    ends = [line for line in proc.stdout.splitlines() if line.startswith(f"[1/1] {stem}: ") and "FAILED" in line]
    assert len(ends) == 1, proc.stdout
    assert proc.stdout.splitlines()[-1].endswith(f"; 1 failed: {stem}")
    return ends[0].split("FAILED: ", 1)[1]


def test_data_missing_offline(tree):
    _chapter(tree / "book", "01_data", "from ibutils import data\ndata.tishby()")
    # no IBUTILS_DATA, an empty user cache, and every download refused (a proxy on a closed port)
    offline = _env(XDG_CACHE_HOME=str(tree / "cache"), https_proxy="http://127.0.0.1:9",
                   HTTPS_PROXY="http://127.0.0.1:9", no_proxy="", NO_PROXY="")
    line = _failed_line(_cli(tree, "run", "01", "--profile", "quick", env=offline), "01_data")
    assert line.startswith("FileNotFoundError: var_u.mat was not found")
    assert "set the environment variable IBUTILS_DATA to a folder holding var_u.mat" in line


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs, filled: every write there fails with ENOSPC. Needs root (CI is root)."""
    mount = tmp_path / "full"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root): full-disk test not run")
    try:
        for name in ("cache", "results"):
            (mount / name).mkdir()
        fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


@pytest.mark.parametrize("where", ["cache", "results"])
def test_full_disk(tree, full_disk, where):
    _chapter(tree / "book", "01_disk",
             "import numpy as np\nfrom ibutils import results\n"
             "value = results.cached('big', {'n': 1}, lambda: np.zeros(100_000))\n"
             "results.write('disk', profile, {}, [], {'value': value})")
    env = _env(IBUTILS_CACHE_DIR=str(full_disk / "cache") if where == "cache" else str(tree / "cache"),
               **({"TEST_RESULTS_DIR": str(full_disk / "results")} if where == "results" else {}))
    line = _failed_line(_cli(tree, "run", "01", "--profile", "quick", env=env), "01_disk")
    assert line.startswith("OSError: [Errno 28] ")
    assert "No space left on device" in line and line.count("free some space") == 1
    assert "IBUTILS_CACHE_DIR" in line


def test_make_lab_without_the_lab_extra(tmp_path):
    """Offline (pip reaches no index), `make lab` says in one line how to get JupyterLab."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    (venv / ".ibutils-installed").touch()  # the dev set-up is there, only the lab extra is missing
    offline = _env(PIP_NO_INDEX="1", PIP_FIND_LINKS="", PIP_CONFIG_FILE=os.devnull)
    proc = subprocess.run(["make", "-s", "lab", f"VENV={venv}"], cwd=ROOT, env=offline, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode != 0
    ours = [line for line in proc.stderr.splitlines() if line.startswith("make lab:")]
    assert len(ours) == 1 and "could not install JupyterLab" in ours[0] and "--find-links" in ours[0], proc.stderr
    assert "Traceback" not in proc.stderr and "ERROR:" not in proc.stderr  # pip's own output went to its log
    assert not (venv / ".ibutils-lab-installed").exists()


# ---------------------------------------------------------------------- progress on the terminal
def test_progress_shows_on_the_terminal(tree):
    """On a terminal (a pty here): name and profile at the start, a live bar with the phase while it
    trains, wall time and the claims verdict at the end, a summary table; and no bar in the notebook."""
    _chapter(tree / "book", "01_training", TRAINING.replace("EPOCHS", "3000"))
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(tree), "run", "01", "--profile", "quick"],
                            stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, env=_env(COLUMNS="200"))
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the pty closes when the command ends
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.wait(timeout=60) == 0
    screen = b"".join(chunks).decode()
    shown = [part.strip() for line in screen.split("\n") for part in line.split("\r") if part.strip()]
    assert shown[0] == "[1/1] 01_training: running, profile quick"
    bars = [s for s in shown if s.split("  ", 1)[-1].startswith("training  tanh x 2 seeds [")]
    assert bars, screen
    assert any("% " in s and "/3,000 epoch" in s and "epoch/s" in s and " left" in s for s in bars), bars
    end = [s for s in shown if s.startswith("[1/1] 01_training: ") and " s, " in s]
    assert len(end) == 1 and "1 of 2 claims hold (training" in end[0], shown
    assert "chapter" in shown[-3] and "result" in shown[-3] and shown[-1].startswith("1 chapter(s) in")
    assert "WARNING" not in screen and "Warning" not in screen  # e.g. the kernel's plain-TCP warning

    executed = nbformat.read(tree / "_build" / "src" / "book" / "01_training.ipynb", as_version=4)
    outputs = json.dumps([c.outputs for c in executed.cells if c.cell_type == "code"])
    assert "epoch" not in outputs and "widget-view" not in outputs


# ------------------------------------------------------------------ kills and damaged copies
def _complete(path: Path) -> bool:
    try:
        json.loads(path.read_text())
        return True
    except ValueError:
        return False


def test_killed_runs_leave_no_half_written_notebook(tree):
    """SIGKILL at random points of a run: the mirror never holds a half-written notebook, and the
    next run completes."""
    _chapter(tree / "book", "01_slow", "import os, time\ntime.sleep(float(os.environ['SLEEP']))\nprint('done')")
    _chapter(tree / "book", "02_other", "print('other')")
    assert _cli(tree, "run", "--profile", "quick", env=_env(SLEEP="0")).returncode == 0
    mirror = tree / "_build" / "src" / "book"
    rng = random.Random(17)
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(tree), "run", "01", "--profile", "quick"],
                                env=_env(SLEEP="1"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        time.sleep(rng.uniform(0.2, 4.0))
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:  # it had finished
            pass
        proc.wait()
        copies = list(mirror.glob("*.ipynb"))
        assert {p.name for p in copies} == {"01_slow.ipynb", "02_other.ipynb"}
        assert all(_complete(p) for p in copies)
    proc = _cli(tree, "run", "01", "--profile", "quick", env=_env(SLEEP="0"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "not a complete notebook" not in proc.stderr
    assert not list(mirror.glob(".*"))  # partial files of the killed runs removed
    assert '"done\\n"' in (mirror / "01_slow.ipynb").read_text()


def test_damaged_copy_is_reported_and_treated_as_not_executed(tree):
    """An executed copy cut short (as older versions left after a kill) is named in one line and
    replaced by the placeholder; the run goes on."""
    _chapter(tree / "book", "01_first", "print(1)")
    _chapter(tree / "book", "02_second", "print(2)")
    mirror = tree / "_build" / "src" / "book"
    mirror.mkdir(parents=True)
    (mirror / "01_first.ipynb").write_text('{\n "cells": [\n  {\n   "cell_type": "co')
    proc = _cli(tree, "run", "02", "--profile", "quick")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [line] = proc.stderr.splitlines()
    assert line.startswith("_build/src/book/01_first.ipynb: not a complete notebook (NotJSONError: Notebook "
                           "does not appear to be JSON")
    assert line.endswith("; treated as not executed")
    doc = nbformat.read(mirror / "01_first.ipynb", as_version=4)
    assert any(execute.PLACEHOLDER_TAG in c.metadata.get("tags", []) for c in doc.cells)


def test_readers_of_the_mirror_skip_damaged_copies(tmp_path, monkeypatch, capsys):
    src = tmp_path / "src"
    (src / "book").mkdir(parents=True)
    monkeypatch.setattr(execute, "SRC", src)
    (src / "book" / "01_tanh_vs_relu.ipynb").write_text('{"cells": [')
    assert not execute.executed("book/01_tanh_vs_relu.ipynb")
    assert not execute._has_widget_state()
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all("01_tanh_vs_relu.ipynb: not a complete notebook" in line for line in err)
