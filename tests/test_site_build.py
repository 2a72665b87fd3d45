"""What the site build adds to the runs: the reproducibility box, the published data, the primer figure."""

import json
import re

import matplotlib
import nbformat
import pytest

from ibutils import execute, plots, results

matplotlib.use("Agg")


def _write_record(tmp_path, monkeypatch, provenance, settings=None, chapter="tanh_vs_relu"):
    monkeypatch.setenv("IBUTILS_RESULTS_DIR", str(tmp_path))
    return results.write(chapter, "quick", settings or {"epochs": 1500, "deep_epochs": 20, "lr": 0.1},
                         [results.check("a", "s", 1.0, 0.5)], {"x": [1.0, 2.0]}, provenance)


def test_reproducibility_box_shows_what_the_run_recorded(tmp_path, monkeypatch):
    path = _write_record(tmp_path, monkeypatch, {
        "wall_time_s": 628.4, "device": "cpu (x86_64, 2 threads)", "seeds": [0, 1, 2, 3, 4, 5],
        "python": "3.11.7", "torch": "2.13.0+cpu", "numpy": "2.4.6", "ibutils": "0.1.0",
        "git_commit": "fdf59b181c90070b3f7d44ed455d8dcf6ce77c3e", "finished_utc": "2026-11-29T04:17:39Z",
        "seconds": {"tanh": "<fast>"}})
    box = results.reproducibility(path).data
    assert 'class="ibutils-repro" data-chapter="tanh_vs_relu" data-profile="quick"' in box
    for text in ("6 (0–5)", "epochs = 1,500, deep_epochs = 20", "10 min 28 s", "cpu (x86_64, 2 threads)",
                 "torch 2.13.0+cpu", "ibutils 0.1.0", ">fdf59b181c90<", "2026-11-29 04:17:39 UTC",
                 "tanh_vs_relu.json", "make chapter NAME=tanh_vs_relu PROFILE=quick"):
        assert text in box, text
    assert "lr" not in box  # only the epochs of the settings
    assert "&lt;fast&gt;" in box and "<fast>" not in box  # further provenance, escaped


def test_reproducibility_box_says_what_was_not_recorded(tmp_path, monkeypatch):
    box = results.reproducibility(_write_record(tmp_path, monkeypatch, {"wall_time_s": 12.34, "seeds": [3, 7]},
                                                settings={"bins": 30, "mc_seed": 5})).data
    for text in ("2 (3, 7)", "not applicable", "12.3 s", "not recorded (not run from a git checkout)"):
        assert text in box, text
    assert "mc_seed" not in box  # the recorded seeds come first
    box = results.reproducibility(_write_record(tmp_path, monkeypatch, {}, settings={"mc_seed": 5})).data
    assert "mc_seed = 5" in box and re.search(r"Wall time</th><td[^>]*>not recorded<", box)


def test_reproducibility_box_needs_a_results_record(tmp_path):
    with pytest.raises(ValueError, match="path"):
        results.reproducibility(tmp_path / "missing.json")
    (tmp_path / "other.json").write_text(json.dumps({"not": "a record"}))
    with pytest.raises(ValueError, match="path"):
        results.reproducibility(tmp_path / "other.json")


def test_reading_guide_is_an_information_plane_sketch():
    fig = plots.reading_guide(snapshots=20)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "I(X;T) (bits)" and ax.get_ylabel() == "I(T;Y) (bits)"
    assert "not data" in ax.get_title()
    assert len(fig.axes) == 2  # the plane and its epoch colour bar
    with pytest.raises(ValueError, match="snapshots"):
        plots.reading_guide(snapshots=3)


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """execute's folders moved into tmp_path: two chapters, both with results, one executed."""
    book, src, res = tmp_path / "book", tmp_path / "_build" / "src", tmp_path / "_build" / "results"
    for folder in (book, src / "book", res):
        folder.mkdir(parents=True)
    for module_attr, value in (("BOOK", book), ("SRC", src), ("RESULTS", res), ("ROOT", tmp_path)):
        monkeypatch.setattr(execute, module_attr, value)
    for name in ("01_done", "02_waiting"):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_markdown_cell(f"# {name}")]
        nbformat.write(nb, book / f"{name}.ipynb")
        (res / f"{name[3:]}.json").write_text(json.dumps(
            {"chapter": name[3:], "profile": "quick", "claims": [], "series": {"x": [1.0, 2.0], "y": [3.0, 4.0]}}))
    nbformat.write(nbformat.read(book / "01_done.ipynb", as_version=4), src / "book" / "01_done.ipynb")
    return book, src, res


def test_stage_marks_unexecuted_chapters_and_publishes_only_executed_ones(mirror, capsys):
    book, src, res = mirror
    for name in ("_config.yml", "_toc.yml"):
        (execute.ROOT / name).write_text("")
    execute.stage(fresh=False)
    assert execute.executed(book / "01_done.ipynb") and not execute.executed(book / "02_waiting.ipynb")
    placeholder = nbformat.read(src / "book" / "02_waiting.ipynb", as_version=4)
    assert f":class: {execute.PLACEHOLDER_TAG}" in placeholder.cells[1].source

    published = execute.stage_results()
    assert sorted(p.name for p in published.iterdir()) == ["done", "done.json"]
    assert (published / "done" / "done.csv").read_text().splitlines() == ["x,y", "1.0,3.0", "2.0,4.0"]
    assert "waiting.json not published" in capsys.readouterr().out


def test_site_figures_are_the_same_bytes_every_build(mirror):
    first = execute.site_figures()[0].read_bytes()
    assert first.startswith(b"<?xml") and b"<svg" in first
    assert execute.site_figures()[0].read_bytes() == first
