"""Fixtures for the browser tests: the built site served on 127.0.0.1, Chromium, a tally.

The page tests need a built site (`make test` then `make site`, or `make book`); test_lab.py
needs JupyterLab (the `lab` extra, which `make pagetest` installs); all need Debian's
Chromium at /usr/bin/chromium (`apt-get install -y chromium`). `pytest tests/` skips this
folder (see norecursedirs in pyproject.toml); run them with `make pagetest`.

The tests count what they checked (pages, images, figures, sliders and frames, scoreboard
claims, data files, links) in `TALLY`; the counts are printed at the end of the run and
written to `_build/screenshots/pagetest-summary.json` beside the screenshots.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from ibutils import execute

HTML = execute.HTML
SCREENSHOTS = execute.BUILD / "screenshots"
CHROMIUM = os.environ.get("IBUTILS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]

# what the page tests exercised, in the order the summary lists it
TALLY_LABELS = {
    "pages": "pages loaded at desktop width (1280 px)",
    "phone_pages": "pages loaded at phone width (390 px)",
    "images": "images decoded (non-zero size), slider frames included",
    "figures": "chapter figures (cell outputs with an image or a slider)",
    "figure_data_lines": "figures with a data line under them",
    "phone_figures": "figures that fit the phone screen with their aspect ratio",
    "sliders": "sliders exercised",
    "slider_frames": "slider frames shown by moving the sliders",
    "charts": "charts drawn by BokehJS, each with its fallback figure for print",
    "hovers": "chart points hovered, tooltip checked against the results JSON",
    "legend_clicks": "legend clicks that hid and showed a layer",
    "verdict_numbers": "verdict-table numbers checked against the results JSON",
    "verdict_planes": "verdict-table cells opened, plane checked against the results JSON",
    "repro_boxes": "reproducibility boxes",
    "scoreboard_claims": "scoreboard claims matched to the chapters' results JSON",
    "scoreboard_links": "scoreboard links to a chapter's Findings section",
    "data_files": "data files fetched (results JSON and CSV)",
    "citation_links": "citation links resolved on the references page",
    "api_entries": "public functions and classes found in the API reference",
    "prev_next_links": "previous/next links checked",
    "search_hits": "search results",
    "screenshots": "screenshots saved",
    "code_blocks": "code blocks that fit the column at 1280 px",
    "external_blocked": "requests that tried to leave 127.0.0.1",
}
TALLY: Counter = Counter()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def site_url():
    """`_build/html` served by `python -m http.server` on a free port of 127.0.0.1."""
    if not (HTML / "index.html").exists():
        pytest.fail(f"no site at {HTML}: build it first (make test && make site, or make book)")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
         "--directory", str(HTML)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the http.server serving the site did not start")
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: `apt-get install -y chromium` "
                    "(or point IBUTILS_CHROMIUM at a Chromium binary)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """`_build/screenshots/`, emptied of the last run's PNGs so that it shows this run's pages only."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink()
    return SCREENSHOTS


@pytest.fixture(scope="session")
def tally() -> Counter:
    return TALLY


def pytest_terminal_summary(terminalreporter):
    if not TALLY:
        return
    terminalreporter.section("page-test counts")
    for key, label in TALLY_LABELS.items():
        terminalreporter.write_line(f"{TALLY.get(key, 0):6d}  {label}")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    summary = {key: TALLY.get(key, 0) for key in TALLY_LABELS}
    (SCREENSHOTS / "pagetest-summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    terminalreporter.write_line(f"screenshots and these counts: {SCREENSHOTS}")
