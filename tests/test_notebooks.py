"""The chapter notebooks: listed in the toc, committed stripped, parametrised, and runnable.

`test_notebook_runs[<chapter>]` executes each chapter with profile="quick" through
`ibutils.execute` into the mirror `_build/src`, so one `pytest` run both tests the chapters
and leaves the executed copies that `make site` / `python -m ibutils build` turn into the site.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib

import nbformat
import pytest
import yaml

from ibutils import execute

ROOT = execute.ROOT
NOTEBOOKS = execute.notebooks()
IDS = [nb.stem for nb in NOTEBOOKS]
QUICK_TIMEOUT = 1800  # seconds per cell


def _toc_files(node) -> list[str]:
    """Every `file:` (and the root) named in a jb-book toc, depth first."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("root", "file") and isinstance(value, str):
                found.append(value)
            else:
                found += _toc_files(value)
    elif isinstance(node, list):
        for item in node:
            found += _toc_files(item)
    return found


def _strip_suffix(path: str) -> str:
    return re.sub(r"\.(ipynb|md)$", "", path)


@pytest.fixture(scope="module")
def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    return [_strip_suffix(f) for f in _toc_files(toc)]


def test_there_are_chapters():
    assert NOTEBOOKS, "no book/*.ipynb found"


def test_toc_lists_every_notebook(toc_files):
    missing = [nb.relative_to(ROOT).with_suffix("").as_posix() for nb in NOTEBOOKS]
    missing = [m for m in missing if m not in toc_files]
    assert not missing, f"notebooks not listed in _toc.yml: {missing}"


def test_toc_entries_exist(toc_files):
    absent = [f for f in toc_files
              if not any((ROOT / f"{f}{suffix}").exists() for suffix in (".ipynb", ".md"))]
    assert not absent, f"_toc.yml lists files that do not exist: {absent}"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=IDS)
def test_notebook_name(nb):
    assert re.fullmatch(r"\d\d[a-z]?_[a-z0-9_]+", nb.stem), (
        f"{nb.name}: chapter notebooks are named NN_<chapter-id>.ipynb (NNx_ for a sibling chapter), "
        "and write _build/results/<chapter-id>.json")


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=IDS)
def test_notebook_is_stripped(nb):
    doc = nbformat.read(nb, as_version=4)
    problems = []
    for key in ("widgets", "papermill"):
        if key in doc.metadata:
            problems.append(f"notebook metadata has {key!r}")
    for i, cell in enumerate(doc.cells):
        if cell.cell_type == "code":
            if cell.get("outputs"):
                problems.append(f"cell {i} has outputs")
            if cell.get("execution_count") is not None:
                problems.append(f"cell {i} has execution_count {cell.execution_count}")
        if "injected-parameters" in cell.metadata.get("tags", []):
            problems.append(f"cell {i} is papermill's injected-parameters cell")
        for key in ("papermill", "execution"):
            if key in cell.metadata:
                problems.append(f"cell {i} metadata has {key!r}")
    assert not problems, (f"{nb.name} is not committed stripped: {problems}. "
                          "Clear outputs (e.g. `nbstripout --keep-id`) and never commit "
                          "an executed copy from _build/src.")


def _assigns_profile_paper(source: str) -> bool:
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign):
            targets, value = [node.target], node.value
        else:
            continue
        if (any(isinstance(t, ast.Name) and t.id == "profile" for t in targets)
                and isinstance(value, ast.Constant) and value.value == "paper"):
            return True
    return False


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=IDS)
def test_notebook_has_parameters_cell(nb):
    doc = nbformat.read(nb, as_version=4)
    cells = [c for c in doc.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{nb.name}: {len(cells)} cells tagged 'parameters', need exactly 1"
    assert cells[0].cell_type == "code"
    assert _assigns_profile_paper(cells[0].source), (
        f"{nb.name}: the parameters cell must set profile = \"paper\" (papermill injects "
        f"profile = \"quick\" in CI); got:\n{cells[0].source}")


def _calls(source: str, name: str) -> bool:
    """Whether Python `source` calls a function or method named `name`."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # cell magics and the like: not Python
        return False
    return any(isinstance(node, ast.Call) and name in (getattr(node.func, "attr", None), getattr(node.func, "id", None))
               for node in ast.walk(tree))


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=IDS)
def test_notebook_uses_the_book_style(nb):
    """One figure style across chapters: colour-blind-safe colours, retina PNGs (ibutils.plots)."""
    doc = nbformat.read(nb, as_version=4)
    assert any(_calls(c.source, "use_style") for c in doc.cells if c.cell_type == "code"), (
        f"{nb.name}: call `plots.use_style()` before the first figure, so its figures match the book's")


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=IDS)
def test_notebook_bars_are_ibutils_bars(nb):
    """A progress bar in a chapter is `ibutils.progress.progress_bar`: under the executor it reports to
    the terminal; tqdm's own notebook bar (tqdm.auto) would be saved into the page, as a widget."""
    doc = nbformat.read(nb, as_version=4)
    bad = [i for i, c in enumerate(doc.cells) if c.cell_type == "code" and re.search(r"^\s*(from|import) tqdm\b",
                                                                                       c.source, re.M)]
    assert not bad, f"{nb.name}: cells {bad} import tqdm; use `from ibutils.progress import progress_bar`"


def test_code_cells_fit_the_column():
    """The code a reader copies from a chapter fits the site's column: ruff-formatted at the width
    in book/ruff.toml (`ruff format book` fixes it), and no line longer than that, strings and
    comments included (ruff leaves those to us)."""
    config = ROOT / "book" / "ruff.toml"
    width = tomllib.loads(config.read_text(encoding="utf-8"))["line-length"]
    ruff = [sys.executable, "-m", "ruff", "format", "--check", "--config", str(config)]
    done = subprocess.run([*ruff, *map(str, NOTEBOOKS)], capture_output=True, text=True)
    assert done.returncode == 0, f"run `ruff format book`:\n{done.stdout}{done.stderr}"
    too_long = [f"{nb.name}, cell {i}: {len(line)} characters: {line.strip()[:60]}"
                for nb in NOTEBOOKS
                for i, cell in enumerate(nbformat.read(nb, as_version=4).cells) if cell.cell_type == "code"
                for line in cell.source.splitlines() if len(line) > width]
    assert not too_long, f"code lines wider than the column ({width} characters):\n" + "\n".join(too_long)


# Calls that open an ipywidgets Output widget in the kernel (`widgets.live` wraps `interactive`).
LIVE_CALLS = ("live", "interactive", "interact", "interact_manual", "Output")


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=IDS)
def test_live_cells_are_skipped_in_builds(nb):
    """A cell with a live control needs a kernel, so the static site cannot use it; and under
    papermill (nbclient 0.11) an Output widget now and then stalls its cell for the whole cell
    timeout (measured: 3 of 30 runs of a `widgets.live` cell sat 30 s at a 30 s timeout;
    jupyter/nbclient#312), so such cells carry the tag `skip-execution` (and `remove-output`)."""
    doc = nbformat.read(nb, as_version=4)
    bad = [i for i, c in enumerate(doc.cells) if c.cell_type == "code"
           and any(_calls(c.source, name) for name in LIVE_CALLS)
           and not {"skip-execution", "remove-output"} <= set(c.metadata.get("tags", []))]
    assert not bad, (f"{nb.name}: cells {bad} open live widgets; tag them `skip-execution` and "
                     "`remove-output` (readers run them in Jupyter)")


@pytest.fixture(scope="session")
def terminal(pytestconfig):
    """The terminal past pytest's output capture, as a stream: each chapter's progress shows there
    while it runs (a line every few seconds, as `python -m ibutils run` prints into a log)."""
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    reporter = pytestconfig.pluginmanager.getplugin("terminalreporter")

    class Terminal:
        def write(self, text: str) -> None:
            with capture.global_and_fixture_disabled():
                reporter.ensure_newline()
                reporter.write(text, flush=True)

        def flush(self) -> None:
            pass

        def isatty(self) -> bool:
            return False

    return Terminal()


@pytest.fixture(scope="session")
def staged():
    """Lay out the mirror once; chapters executed earlier stay until re-run."""
    return execute.stage(fresh=False)


REQUIRED_CLAIM_KEYS = {"id", "statement", "value", "threshold", "holds"}


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=IDS)
def test_notebook_runs(nb, staged, terminal):
    out = execute.run_one(nb, profile="quick", timeout=QUICK_TIMEOUT, status=terminal)

    executed = nbformat.read(out, as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and all("remove-cell" in c.metadata.tags for c in injected)

    path = execute.results_path(nb)
    assert path.exists(), (f"{nb.name} wrote no {path.relative_to(ROOT)} (the chapter id is the "
                           "notebook name without its NN_ prefix; write it to $IBUTILS_RESULTS_DIR)")
    record = json.loads(path.read_text(encoding="utf-8"))
    for key in ("chapter", "profile", "settings", "claims", "series"):
        assert key in record, f"{path.name}: no {key!r}"
    assert record["chapter"] == execute.chapter_id(nb)
    assert record["profile"] == "quick"
    assert isinstance(record["settings"], dict)
    assert isinstance(record["series"], (dict, list))
    assert isinstance(record["claims"], list) and record["claims"], f"{path.name}: no claims"
    for claim in record["claims"]:
        assert isinstance(claim, dict)
        missing = REQUIRED_CLAIM_KEYS - claim.keys()
        assert not missing, f"{path.name}: claim {claim.get('id')!r} lacks {sorted(missing)}"
        assert isinstance(claim["holds"], bool), f"{path.name}: claim {claim['id']!r}: holds not a bool"
