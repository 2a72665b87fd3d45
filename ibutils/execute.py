"""Execute the chapter notebooks with papermill and build the site.

The committed `book/*.ipynb` carry no outputs. Executed copies go to a mirror tree,
`_build/src/` (with `_config.yml`, `_toc.yml` and the rest of `book/`), from which
Jupyter Book builds `_build/html/` with its own execution switched off. Each chapter
writes its results JSON to `_build/results/<chapter-id>.json`; the build publishes those
of the chapters executed in the mirror under `_static/results/`, each with its series as
CSV tables (`ibutils.sitedata`), and draws the text pages' figures into `book/_generated/`.
The intro's scoreboard and the data lines under the figures are made from the published
files by the book's Sphinx extension (book/_ext/ibutils_site.py).

Used by `make book`, `make chapter`, `make test` (through tests/test_notebooks.py) and
the CLI `python -m ibutils run|build` (ibutils/__main__.py).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import TextIO

from ibutils import charts, progress, scoreboard

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
BUILD = ROOT / "_build"
SRC = BUILD / "src"  # the mirror that Jupyter Book builds from
HTML = BUILD / "html"
RESULTS = BUILD / "results"  # chapters write <chapter-id>.json here
CACHE = BUILD / "cache"  # npm tarballs fetched at build time

PROFILES = ("quick", "paper")
DEFAULT_TIMEOUT = 4 * 3600  # seconds per cell; the paper profile trains for a while
MPL_INLINE = "module://matplotlib_inline.backend_inline"

# JavaScript that the site serves itself instead of loading it from a CDN.
NPM_WIDGETS = ("@jupyter-widgets/html-manager@1.0.6", "requirejs@2.3.8")
NPM_MATHJAX = "mathjax@3.2.2"

_STAGED_FILES = ("_config.yml", "_toc.yml")


# ----------------------------------------------------------------------------- chapters
class UsageError(ValueError):
    """A mistake in what was asked for (an unknown chapter or profile, a wrong `IBUTILS_DATA`).
    Its message says in one line what is wrong and how to fix it; the CLI prints just that."""


def notebooks() -> list[Path]:
    """All chapter notebooks, in chapter order (their `NN_` prefix)."""
    return sorted(BOOK.glob("*.ipynb"))


def chapter_id(nb: Path | str) -> str:
    """`book/01_tanh_vs_relu.ipynb` -> `tanh_vs_relu` (the name of its results JSON); a sibling
    chapter `01b_mnist_kde` -> `mnist_kde`."""
    parts = scoreboard.split_name(Path(nb).stem)
    return parts[1] if parts else Path(nb).stem


def results_path(nb: Path | str) -> Path:
    return RESULTS / f"{chapter_id(nb)}.json"


def select(names: list[str] | None) -> list[Path]:
    """Chapters matching `names`: `01_tanh_vs_relu`, `tanh_vs_relu`, `01`, or a path."""
    nbs = notebooks()
    if not names:
        return nbs
    chosen: list[Path] = []
    for name in names:
        key = Path(name).stem
        hits = [nb for nb in nbs if key in (nb.stem, chapter_id(nb), nb.stem.split("_", 1)[0])]
        if not hits:
            known = ", ".join(nb.stem for nb in nbs) or "none"
            raise UsageError(f"no chapter matches {name!r}: name one by its number, id or notebook name "
                             f"(chapters: {known})")
        chosen += [nb for nb in hits if nb not in chosen]
    return chosen


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise UsageError(f"unknown profile {profile!r}: use one of {', '.join(PROFILES)}")
    return profile


def data_folder() -> Path | None:
    """The folder the kernels read `var_u.mat` from: `$IBUTILS_DATA`, else `../shared/data` beside
    the repository when it exists (CI); None lets the library find or download the file.

    Raises UsageError when `IBUTILS_DATA` is set but names no folder, or a folder without the file.
    """
    from ibutils.data import TISHBY_FILE, TISHBY_URL

    given = os.environ.get("IBUTILS_DATA")
    if not given:
        shared = ROOT.parent / "shared" / "data"
        return shared.resolve() if shared.is_dir() else None
    folder = Path(given).expanduser().resolve()  # kernels run in book/
    if not folder.is_dir():
        raise UsageError(f"IBUTILS_DATA={given} is not a folder: set it to the folder that holds {TISHBY_FILE}, "
                         "or unset it to let the book download the file")
    if not (folder / TISHBY_FILE).is_file():
        raise UsageError(f"IBUTILS_DATA={given} holds no {TISHBY_FILE}: put the file there (from {TISHBY_URL}), "
                         "or unset IBUTILS_DATA to let the book download it")
    return folder


# ------------------------------------------------------------------------------ staging
PLACEHOLDER_TAG = "ibutils-placeholder"
# A chapter being executed is written here, beside its place in the mirror, and renamed into place
# when complete; Jupyter Book ignores these names (papermill wants .ipynb or .json), and `stage`
# clears those a killed run left.
_PARTIAL = ".{name}.partial.json"


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _read_copy(path: Path):
    """The notebook at `path` in the mirror, or None, reported in one line, when it is not a
    complete notebook (cut short by a killed run of an older version, or damaged)."""
    import nbformat

    try:
        return nbformat.read(path, as_version=4)
    except (OSError, ValueError) as exc:  # NotJSONError, a truncated or undecodable file
        first = (str(exc).strip().splitlines() or [""])[0]
        print(f"{_shown(path)}: not a complete notebook ({type(exc).__name__}: {first[:100]}); "
              "treated as not executed", file=sys.stderr, flush=True)
        return None


def _write_copy(doc, path: Path) -> None:
    """Write notebook `doc` to `path` atomically (a temporary file, then a rename)."""
    import nbformat

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        nbformat.write(doc, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def executed(nb: Path | str) -> bool:
    """Whether the mirror holds an executed copy of chapter `nb` (not the placeholder `stage` puts
    there, nor a file that is not a complete notebook)."""
    copy = SRC / "book" / Path(nb).name
    if not copy.exists():
        return False
    doc = _read_copy(copy)
    return doc is not None and not any(PLACEHOLDER_TAG in c.metadata.get("tags", []) for c in doc.cells)


def _placeholder(nb: Path, dst: Path) -> None:
    """Copy an unexecuted source so the site still builds, with a note saying so."""
    import nbformat

    doc = nbformat.read(nb, as_version=4)
    note = nbformat.v4.new_markdown_cell(
        f":::{{note}}\n:class: {PLACEHOLDER_TAG}\nThis chapter has not been executed in this build. Run\n"
        f"`make chapter NAME={nb.stem}` (or `make book`) to fill in its results.\n:::"
    )
    note.metadata["tags"] = [PLACEHOLDER_TAG]
    # after the title cell, so the page keeps its heading
    at = 1 if doc.cells and doc.cells[0].cell_type == "markdown" else 0
    doc.cells.insert(at, note)
    _write_copy(doc, dst)


def stage(fresh: bool = True) -> Path:
    """Lay out the mirror `_build/src`: config, toc and `book/` without notebooks.

    fresh=True wipes the mirror's `book/` first (a full run). fresh=False refreshes the
    config and text files but keeps chapters already executed there (a single-chapter
    run). Either way, every chapter without an executed copy gets its unexecuted source
    with a note, so that the toc is complete and the site builds, and the partial files of
    killed runs are removed.
    """
    SRC.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in _STAGED_FILES:
        shutil.copy2(ROOT / name, SRC / name)
    if fresh:
        shutil.rmtree(SRC / "book", ignore_errors=True)
    shutil.copytree(
        BOOK,
        SRC / "book",
        ignore=shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints", "__pycache__"),
        dirs_exist_ok=True,
    )
    sources = {nb.name for nb in notebooks()}
    for old in (SRC / "book").glob("*.ipynb"):  # chapters removed from book/
        if old.name not in sources:
            old.unlink()
    for leftover in [*(SRC / "book").glob(_PARTIAL.format(name="*")), *(SRC / "book").glob(".*.ipynb.*.tmp")]:
        leftover.unlink(missing_ok=True)
    for nb in notebooks():
        if not executed(nb):  # (re)write, so that a placeholder follows its edited source
            _placeholder(nb, SRC / "book" / nb.name)
    return SRC


# ---------------------------------------------------------------------------- execution
def kernel_env() -> dict[str, str]:
    """Environment variables the chapter kernels need; also applied to os.environ.

    Raises UsageError for a wrong `IBUTILS_DATA` (see `data_folder`)."""
    env = {
        # An inherited MPLBACKEND=Agg would silently drop every figure from the book.
        "MPLBACKEND": MPL_INLINE,
        "IBUTILS_RESULTS_DIR": str(RESULTS),
        # Runs are cached inside the build tree, so a fresh clone (CI) really trains, and
        # `make clean` forgets them.
        "IBUTILS_CACHE_DIR": os.environ.get("IBUTILS_CACHE_DIR") or str(BUILD / "cache" / "runs"),
        # ibutils' bars report to the executor (ibutils.progress), never to the notebook. This
        # switches off plain tqdm bars of other code, whose text would land in the notebook; tqdm's
        # notebook bar (tqdm.auto in a kernel) ignores it, so chapters use progress.progress_bar.
        "TQDM_DISABLE": "1",
        # the charts (ibutils.charts) leave BokehJS to the page, which loads it from the site's _static/
        charts.CHARTS_JS_ENV: "site",
    }
    data = data_folder()
    if data is not None:
        env["IBUTILS_DATA"] = str(data)
    os.environ.update(env)
    return env


# The kernel's messages travel over local TCP: encrypt them (CurveZMQ keys made by the kernel
# manager), which also keeps ipykernel from warning about plain-text TCP on every start.
_KERNEL_CONFIG = {"KernelManager": {"transport_encryption": "required"}}


@contextlib.contextmanager
def _environ(values: dict[str, str]):
    """`os.environ` with `values` set (kernels inherit it), restored afterwards."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _tag_injected(path: Path) -> None:
    """Hide papermill's injected `# Parameters` cell on the site (tag `remove-cell`)."""
    import nbformat

    doc = nbformat.read(path, as_version=4)
    changed = False
    for cell in doc.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
            changed = True
    if changed:
        nbformat.write(doc, path)


def run_one(nb: Path | str, profile: str = "paper", timeout: int | None = DEFAULT_TIMEOUT,
            status: TextIO | None = None) -> Path:
    """Execute one chapter into the mirror; raises on any cell error.

    The kernel runs with cwd = `book/` and `profile` injected as a papermill parameter. Its
    stale results JSON is removed first, so a chapter that fails to write one is seen, and the
    mirror shows the chapter's placeholder until the run ends: the executed copy is written to
    a partial file and renamed into place once papermill has written all of it (also when a
    cell failed; the copy then shows the error), so a run killed at any point leaves nothing
    half-written to be read back. `status`: a stream (the terminal) on which
    `ibutils.progress.Monitor` shows the kernel's progress bars and phases; None discards them.
    Either way no bar reaches the notebook.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError
    from traitlets.config import Config

    check_profile(profile)
    nb = Path(nb).resolve()
    kernel_env()
    dst = SRC / "book" / nb.name
    partial = dst.with_name(_PARTIAL.format(name=nb.name))
    results_path(nb).unlink(missing_ok=True)
    _placeholder(nb, dst)
    with progress.Monitor(status) as monitor, _environ(monitor.env):
        try:
            pm.execute_notebook(
                str(nb),
                str(partial),
                parameters={"profile": profile},
                kernel_name="python3",
                language="python",
                cwd=str(nb.parent),
                progress_bar=False,
                execution_timeout=timeout,
                config=Config(_KERNEL_CONFIG),
            )
        except PapermillExecutionError:  # complete, with the failing cell's error in it
            _publish(partial, dst)
            raise
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        _publish(partial, dst)
    return dst


def _publish(partial: Path, dst: Path) -> None:
    _tag_injected(partial)
    os.replace(partial, dst)


def failure(exc: BaseException) -> str:
    """What made a chapter fail, in one line: the last line of the kernel's exception and the cell
    it came from, or the executor's own error; for a full disk, also how to go on."""
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        lines = str(exc.evalue).strip().splitlines()
        text = f"{exc.ename}: {lines[-1] if lines else ''} (cell [{exc.exec_count}])"
        full = exc.ename == "OSError" and str(exc.evalue).startswith(f"[Errno {errno.ENOSPC}]")
    else:
        lines = str(exc).strip().splitlines()
        text = f"{type(exc).__name__}: {lines[0] if lines else ''}"
        full = isinstance(exc, OSError) and exc.errno == errno.ENOSPC
    if full and "free some space" not in text:  # ibutils.store's own message already says how
        text += (" - the disk is full: free some space (or set IBUTILS_CACHE_DIR to a folder on another disk) "
                 "and run again")
    return text


def verdict(nb: Path | str) -> str:
    """'9 of 9 claims hold', read from the chapter's results JSON, with the run's time split."""
    try:
        record = json.loads(results_path(nb).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"no readable {results_path(nb).name} written"
    claims = record.get("claims") or []
    text = f"{sum(bool(c.get('holds')) for c in claims)} of {len(claims)} claims hold"
    split = (record.get("provenance") or {}).get("time_split_s")
    if isinstance(split, dict):
        text += " (" + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in split.items() if seconds >= 0.05) + ")"
    return text


def run(names: list[str] | None = None, profile: str = "paper", timeout: int | None = DEFAULT_TIMEOUT,
        out: TextIO | None = None, status: TextIO | None = None) -> int:
    """Execute the chosen chapters (all when `names` is empty); 0 when all succeeded, 1 when one
    failed, 130 when interrupted.

    Prints to `out` (default stdout) each chapter's name and profile as it starts, and its wall
    time and claims verdict (or its error, in one line) as it ends, then a summary table; the
    kernel's progress goes to `status` (default stderr; see `run_one`). A mistake in what was
    asked for raises UsageError before anything runs.
    """
    out = out or sys.stdout
    status = status or sys.stderr
    check_profile(profile)
    chosen = select(names)
    kernel_env()
    stage(fresh=not names)
    rows = []
    total = time.perf_counter()
    for i, nb in enumerate(chosen, 1):
        print(f"[{i}/{len(chosen)}] {nb.stem}: running, profile {profile}", file=out, flush=True)
        t0 = time.perf_counter()
        try:
            run_one(nb, profile=profile, timeout=timeout, status=status)
            outcome, ok = verdict(nb), True
        except KeyboardInterrupt:
            print(f"[{i}/{len(chosen)}] {nb.stem}: interrupted; it reads as not executed until run again",
                  file=out, flush=True)
            return 130
        except Exception as exc:  # noqa: BLE001 - report every chapter in one line, then fail
            outcome, ok = f"FAILED: {failure(exc)}", False
        seconds = time.perf_counter() - t0
        print(f"[{i}/{len(chosen)}] {nb.stem}: {seconds:.1f} s, {outcome}", file=out, flush=True)
        rows.append((nb.stem, seconds, outcome, ok))
    failed = [stem for stem, *_, ok in rows if not ok]
    width = max(len(stem) for stem, *_ in rows)
    print(f"\n{'chapter':{width}s}  {'profile':7s}  {'time':>8s}  result", file=out)
    for stem, seconds, outcome, _ in rows:
        print(f"{stem:{width}s}  {profile:7s}  {seconds:6.1f} s  {outcome}", file=out)
    print(f"{len(chosen)} chapter(s) in {time.perf_counter() - total:.1f} s; "
          f"{len(failed)} failed{': ' + ', '.join(failed) if failed else ''}", file=out, flush=True)
    return 1 if failed else 0


# ------------------------------------------------------------------------------- build
def _npm_unpack(spec: str) -> Path:
    """`npm pack <spec>` into _build/cache/npm (once) and unpack it; returns `package/`."""
    cache = CACHE / "npm"
    cache.mkdir(parents=True, exist_ok=True)
    stem = spec.lstrip("@").replace("/", "-").replace("@", "-")
    target = cache / stem
    if not (target / "package").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError(f"npm is needed to fetch {spec} for the site")
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            out = subprocess.run([npm, "pack", spec, "--silent"], cwd=tmp, check=True,
                                 capture_output=True, text=True).stdout.split()
            tgz = Path(tmp) / out[-1]
            with tarfile.open(tgz) as tar:
                if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4
                    tar.extractall(Path(tmp) / "x", filter="data")
                else:
                    tar.extractall(Path(tmp) / "x")  # noqa: S202 - npm registry tarball
            shutil.rmtree(target, ignore_errors=True)
            shutil.move(str(Path(tmp) / "x"), target)
    return target / "package"


def _has_widget_state() -> bool:
    for nb in (SRC / "book").glob("*.ipynb"):
        doc = _read_copy(nb)
        state = doc.metadata.get("widgets", {}) if doc is not None else {}
        if any(v.get("state") for v in state.values() if isinstance(v, dict)):
            return True
    return False


def vendor_js() -> None:
    """Put the JS the pages need under the mirror's `_static/` (never from a CDN).

    - MathJax 3 (Sphinx's math renderer), trimmed to the CHTML output;
    - the ipywidgets embed manager and require.js, only when a chapter saved widget state;
    - BokehJS from the installed bokeh package, for the charts (`ibutils.charts.BOKEHJS_STATIC`).
    """
    static = SRC / "book" / "_static"
    shutil.rmtree(static / Path(charts.BOKEHJS_STATIC).parent, ignore_errors=True)
    (static / charts.BOKEHJS_STATIC).parent.mkdir(parents=True)
    shutil.copy2(charts.bokehjs_file(), static / charts.BOKEHJS_STATIC)
    shutil.rmtree(static / "widgets", ignore_errors=True)
    mj = static / "mathjax"
    if not (mj / "tex-mml-chtml.js").exists():
        es5 = _npm_unpack(NPM_MATHJAX) / "es5"
        shutil.rmtree(mj, ignore_errors=True)
        shutil.copytree(es5, mj, ignore=shutil.ignore_patterns(
            "sre", "svg", "svg.js", "*-svg*.js", "*-full*.js", "node-main.js"))
    if _has_widget_state():
        widgets = static / "widgets"
        widgets.mkdir(parents=True, exist_ok=True)
        shutil.copy2(_npm_unpack(NPM_WIDGETS[1]) / "require.js", widgets / "require.js")
        dist = _npm_unpack(NPM_WIDGETS[0]) / "dist"
        for f in dist.glob("*.js"):  # embed-amd.js and the chunks it loads beside it
            if f.name not in ("embed.js", "libembed-amd.js"):  # other bundles, unused
                shutil.copy2(f, widgets / f.name)


_WIDGET_FONTS = ("*.woff", "*.woff2", "*.ttf", "*.eot", "*.svg")


def place_widget_fonts() -> None:
    """The embed manager asks for its Font Awesome files relative to the *page*, at
    `<page dir>/@jupyter-widgets/html-manager/dist/` and `<page dir>/@jupyter-widgets/`
    (its bundled modules disagree); put them in both places after the build."""
    if not (SRC / "book" / "_static" / "widgets" / "embed-amd.js").exists():
        return
    dist = _npm_unpack(NPM_WIDGETS[0]) / "dist"
    dirs = {page.parent for page in HTML.rglob("*.html")
            if "widgets/embed-amd.js" in page.read_text(encoding="utf-8", errors="replace")}
    for d in dirs:
        for dst in (d / "@jupyter-widgets", d / "@jupyter-widgets" / "html-manager" / "dist"):
            dst.mkdir(parents=True, exist_ok=True)
            for pattern in _WIDGET_FONTS:
                for f in dist.glob(pattern):
                    shutil.copy2(f, dst / f.name)


def stage_results() -> Path:
    """Publish the chapters' records in the site's `_static/results/`: each `<chapter-id>.json`,
    and beside it `<chapter-id>/<table>.csv`, the data behind its figures as flat tables."""
    from ibutils import sitedata

    dst = SRC / "book" / "_static" / "results"
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    for nb in notebooks():  # only current chapters' records, not leftovers
        f = results_path(nb)
        if not f.exists():
            continue
        if not executed(nb):  # a record from another run than the page: the site would disagree with itself
            print(f"{f.relative_to(ROOT)} not published: {nb.stem} has no executed copy in {SRC.relative_to(ROOT)}",
                  flush=True)
            continue
        shutil.copy2(f, dst / f.name)
        sitedata.write_tables(json.loads(f.read_text(encoding="utf-8")), dst / f.stem)
    return dst


GENERATED = "_generated"  # under the mirror's book/: files made for the site at build time


def site_figures() -> list[Path]:
    """Draw the figures of the book's text pages into the mirror's `book/_generated/` (SVG).

    Now one: `reading_the_plane.svg`, the annotated sketch of `ibutils.plots.reading_guide`
    that the intro's primer shows. Drawn with the book's style, so it matches the chapters.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)  # a build has no kernel; never the inline backend here
    import matplotlib.pyplot as plt

    from ibutils import plots

    out = SRC / "book" / GENERATED
    out.mkdir(parents=True, exist_ok=True)
    path = out / "reading_the_plane.svg"
    with plt.rc_context({**plots.STYLE, "svg.hashsalt": "ibutils", "svg.fonttype": "path"}):
        fig = plots.reading_guide()
        try:
            fig.savefig(path, format="svg", metadata={"Date": None})  # same bytes every build
        finally:
            plt.close(fig)
    return [path]


def build(strict: bool = True) -> int:
    """Build `_build/html` from the mirror with Jupyter Book; returns its exit code."""
    stage(fresh=False)  # picks up edited text pages, config and toc; keeps executed chapters
    vendor_js()
    stage_results()
    site_figures()
    shutil.rmtree(HTML, ignore_errors=True)  # no stale pages of removed chapters
    exe = Path(sys.executable).with_name("jupyter-book")
    # --all: a few seconds more, but pages never go stale when only the toolchain changed
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(SRC), "--path-output", str(ROOT),
           "--all"]
    if strict:
        cmd += ["-W", "--keep-going"]
    t0 = time.perf_counter()
    rc = subprocess.run(cmd, cwd=ROOT).returncode
    if HTML.is_dir():
        place_widget_fonts()
    print(f"site build: {time.perf_counter() - t0:.1f} s, exit {rc} -> {HTML / 'index.html'}", flush=True)
    return rc
