"""ibutils.progress: the phases' time split, the bars' reports to the executor, the terminal side."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time

import pytest

from ibutils import progress


@pytest.fixture
def clock(monkeypatch):
    """A fresh phase clock, so that phases of other tests do not count."""
    fresh = progress._Clock()
    monkeypatch.setattr(progress, "_clock", fresh)
    return fresh


def _busy(seconds: float) -> None:
    end = time.time() + seconds
    while time.time() < end:
        pass


def test_split_counts_the_innermost_phase(clock):
    started = time.time()
    with progress.phase("training"):
        _busy(0.2)
        with progress.phase("estimating"):  # estimates made at a snapshot while training
            _busy(0.3)
        _busy(0.1)
    _busy(0.1)
    split = progress.split(started)
    assert set(split) == {"training", "estimating", "plotting", "other"}
    assert split["training"] == pytest.approx(0.3, abs=0.05)
    assert split["estimating"] == pytest.approx(0.3, abs=0.05)
    assert split["plotting"] == 0
    assert split["other"] == pytest.approx(0.1, abs=0.05)
    assert sum(split.values()) == pytest.approx(time.time() - started, abs=0.05)


def test_split_counts_only_time_after_started(clock):
    with progress.phase("training"):
        _busy(0.2)
    started = time.time()
    with progress.phase("plotting"):
        _busy(0.1)
    split = progress.split(started)
    assert split["training"] == 0
    assert split["plotting"] == pytest.approx(0.1, abs=0.05)


def test_phase_decorates_functions_and_rejects_unknown_names(clock):
    @progress.phase("estimating")
    def estimate(x):
        """Docstring kept."""
        _busy(0.1)
        return 2 * x

    started = time.time()
    assert estimate(3) == 6 and estimate.__doc__ == "Docstring kept."
    assert progress.split(started)["estimating"] == pytest.approx(0.1, abs=0.05)
    with pytest.raises(ValueError, match="name must be one of"):
        progress.phase("thinking")


def _worker(seconds):
    with progress.phase("training"):
        _busy(seconds)
    _busy(seconds / 3)
    return "done"


def test_parallel_section_splits_as_the_workers_did(clock):
    started = time.time()
    with progress.parallel() as splits:
        # two "workers", one after the other here: 3/4 of their time trains, 1/4 is other
        for _ in range(2):
            value, split = progress.timed_call(_worker, 0.15)
            assert value == "done"
            splits.append(split)
    wall = time.time() - started
    split = progress.split(started)
    assert split["training"] == pytest.approx(0.75 * wall, abs=0.05)
    assert split["other"] == pytest.approx(0.25 * wall, abs=0.05)


def test_bars_report_to_the_channel_not_to_tqdm(tmp_path, monkeypatch, clock):
    channel = tmp_path / "progress.jsonl"
    monkeypatch.setenv(progress.CHANNEL, str(channel))
    assert progress.collected()
    with progress.phase("training"):
        bar = progress.progress_bar(range(5), desc="tanh x 2 seeds", unit="epoch")
        assert not hasattr(bar, "format_dict")  # not a tqdm bar: nothing reaches the notebook
        assert list(bar) == list(range(5))
    events = [json.loads(line) for line in channel.read_text().splitlines()]
    assert all(e["pid"] == os.getpid() for e in events)
    assert [e["phase"] for e in events if "phase" in e] == ["training", None]
    bars = [e for e in events if "bar" in e]
    assert bars[0]["n"] == 0 and bars[0]["total"] == 5 and bars[0]["desc"] == "tanh x 2 seeds"
    assert bars[-1]["n"] == 5 and bars[-1]["done"]


def test_without_the_channel_bars_are_tqdm(monkeypatch):
    monkeypatch.delenv(progress.CHANNEL, raising=False)
    bar = progress.progress_bar(range(3), desc="x", show=False)
    assert bar.disable and list(bar) == [0, 1, 2]
    # TQDM_DISABLE (which the executor sets for other tqdm bars) is read when tqdm is imported
    code = "from ibutils.progress import progress_bar; print(progress_bar(range(3)).disable)"
    env = {k: v for k, v in os.environ.items() if k != progress.CHANNEL}
    for value, disabled in (("1", "True"), ("", "False")):
        out = subprocess.run([sys.executable, "-c", code], env={**env, "TQDM_DISABLE": value},
                             capture_output=True, text=True, check=True).stdout
        assert out.strip() == disabled


def test_a_full_disk_never_fails_the_run(monkeypatch, tmp_path):
    monkeypatch.setenv(progress.CHANNEL, str(tmp_path / "missing-folder" / "progress.jsonl"))
    with progress.progress_bar(total=3, desc="x") as bar:  # the channel cannot be opened
        bar.update(3)


def _event(**kw):
    return json.dumps({"pid": 1, "t": 110.0, **kw}) + "\n"


def test_monitor_status_sums_concurrent_bars():
    monitor = progress.Monitor(io.StringIO())
    with monitor:
        with open(monitor.path, "a") as f:
            f.write(_event(phase="training"))
            f.write(_event(bar=0, desc="tanh x 3 seeds", unit="epoch", n=300, total=1000, start=100.0, done=False))
            f.write(_event(pid=2, bar=0, desc="relu x 3 seeds", unit="epoch", n=100, total=1000, start=100.0,
                           done=False))
            f.write('{"pid": 2, "t": 1')  # a line still being written is left for later
        monitor.read()
        status = monitor.status()
    assert status.startswith("training  tanh x 3 seeds | relu x 3 seeds [")
    assert "20% 400/2,000 epoch" in status
    assert "40.0 epoch/s" in status  # 30/s + 10/s
    assert "1:30 left" in status  # the slower bar: 900 epochs at 10/s


def test_monitor_prints_lines_when_not_a_terminal():
    out = io.StringIO()
    with progress.Monitor(out, every=0.0, tick=0.05) as monitor:
        with open(monitor.path, "a") as f:
            f.write(_event(phase="estimating"))
        time.sleep(0.3)
    lines = out.getvalue().splitlines()
    assert lines and all(line.strip().split("  ")[-1] == "estimating" for line in lines)
    assert not os.path.exists(monitor.path)  # the channel file is removed afterwards


def test_notes_reach_the_terminal_of_the_executor_not_the_notebook(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(progress.CHANNEL, raising=False)
    progress.note("relu: 2/4   units done")
    assert capsys.readouterr().err == "ibutils: relu: 2/4 units done\n"
    out = io.StringIO()
    with progress.Monitor(out, every=0.0, tick=0.05) as monitor:
        monkeypatch.setenv(progress.CHANNEL, monitor.path)
        progress.note("dashboard http://127.0.0.1:8787/status")
        progress.note("relu: 4/4 units done")
        time.sleep(0.3)
    assert capsys.readouterr().err == ""
    assert out.getvalue().splitlines() == ["  ibutils: dashboard http://127.0.0.1:8787/status",
                                           "  ibutils: relu: 4/4 units done"]


def test_monitor_without_stream_discards():
    with progress.Monitor(None) as monitor:
        assert monitor.env == {progress.CHANNEL: os.devnull}


def test_provenance_records_the_split_and_the_box_shows_it(tmp_path, monkeypatch, clock):
    from ibutils import results

    monkeypatch.setenv("IBUTILS_RESULTS_DIR", str(tmp_path))
    started = time.time()
    with progress.phase("training"):
        _busy(0.2)
    prov = results.provenance(started)
    split = prov["time_split_s"]
    assert split["training"] == pytest.approx(0.2, abs=0.05)
    assert sum(split.values()) == pytest.approx(prov["wall_time_s"], abs=0.05)
    path = results.write("toy", "quick", {}, [], {}, prov)
    box = results.reproducibility(path).data
    row = box.split(">Time split<", 1)[1].split("</tr>", 1)[0]
    assert f"training {split['training']:.1f} s" in row
    assert all(name in row for name in ("estimating", "plotting", "other"))


def test_figure_rendering_counts_as_plotting(clock):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backend_bases import FigureCanvasBase

    progress.time_figure_rendering()
    progress.time_figure_rendering()  # wraps once only
    assert not hasattr(FigureCanvasBase.print_figure.__wrapped__, "__wrapped__")
    fig, ax = plt.subplots()
    ax.plot(range(100_000))
    started = time.time()
    for _ in range(3):
        fig.savefig(io.BytesIO(), format="png", dpi=150)
    plt.close(fig)
    split = progress.split(started)
    assert split["plotting"] > 0.9 * (time.time() - started) - 0.01
