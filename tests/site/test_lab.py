"""The live widgets where readers use them: a chapter run in a real JupyterLab, in Chromium.

Starts JupyterLab (the `lab` extra) on 127.0.0.1 in a folder of its own, opens a copy of
chapter 2 set to the quick profile (book/ is never modified), runs all its cells, and moves
with the mouse and with the arrow keys both a live slider (ipywidgets 8, redrawn by the kernel)
and a pre-rendered one (`ibutils.widgets.slider`), checking each time that the figure shown
changes. The server, and the kernel it started, are stopped at the end, also when a check fails.
Screenshots go to _build/screenshots/lab-*.png.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import nbformat
import pytest

from ibutils import execute

CHAPTER = execute.BOOK / "02_three_neuron_toy.ipynb"
RUN_TIMEOUT_MS = 600_000  # the whole quick chapter in the kernel (about 15 s on a quiet machine)
REDRAW_TIMEOUT_MS = 60_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _quick_copy(folder: Path) -> Path:
    """The chapter with its parameters cell set to the quick profile, in `folder`."""
    doc = nbformat.read(CHAPTER, as_version=4)
    [params] = [c for c in doc.cells if "parameters" in c.metadata.get("tags", [])]
    params.source = 'profile = "quick"'
    path = folder / CHAPTER.name
    nbformat.write(doc, path)
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab serving a quick copy of chapter 2 on 127.0.0.1: yields (base URL, token, notebook name)."""
    if importlib.util.find_spec("jupyterlab") is None:
        pytest.fail("JupyterLab is not installed: `make pagetest` installs the lab extra "
                    "(`pip install -e '.[dev,lab]'`)")
    home = tmp_path_factory.mktemp("lab")
    work = home / "work"
    work.mkdir()
    notebook = _quick_copy(work)
    port, token = _free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("IBUTILS_PROGRESS", "TQDM_", "MPLBACKEND", "JUPYTER"))}
    env.update(JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_DATA_DIR=str(home / "data"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(home / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
               IBUTILS_RESULTS_DIR=str(home / "results"), IBUTILS_CACHE_DIR=str(home / "cache"))
    log = open(home / "jupyterlab.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={work}", "--LabApp.news_url=", "--LabApp.expose_app_in_browser=True",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.extension_manager=readonly",
         *(["--allow-root"] if os.geteuid() == 0 else [])],  # CI runs as root
        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not start; its log:\n{(home / 'jupyterlab.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield base, token, notebook.name
    finally:
        _stop(proc)
        log.close()


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server's process group: SIGTERM (it shuts its kernels down), SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _shown_frame(slider) -> tuple[int, str]:
    """(index, alt text) of the pre-rendered slider's frame on display."""
    return slider.evaluate(
        "s => { const f = Array.from(s.querySelectorAll('img.ibutils-slider-frame'));"
        " const i = f.findIndex(m => m.style.display !== 'none'); return [i, f[i].alt]; }")


def _live_figure(widget) -> str:
    """The src of the figure the live control's output shows ('' while it redraws)."""
    return widget.evaluate("w => { const m = w.querySelector('.widget-output img, .jp-OutputArea-output img');"
                           " return m ? m.src : ''; }")


def _wait_change(page, read, before, what: str):
    """The new value of `read()` once it differs from `before` (and is not empty)."""
    deadline = time.monotonic() + REDRAW_TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        now = read()
        if now and now != before:
            return now
        page.wait_for_timeout(200)
    pytest.fail(f"{what}: the figure did not change")


def _to_middle(page, locator) -> dict:
    """Scroll the notebook with the mouse wheel, as a reader does, until `locator` sits in the middle
    of the window (Lab renders the cells of a long notebook as they come into view); its box."""
    for _ in range(60):
        box = locator.bounding_box()
        if box and 200 < box["y"] < 700:
            return box
        page.mouse.move(800, 500)
        page.mouse.wheel(0, box["y"] - 450 if box else 400)
        page.wait_for_timeout(300)
    pytest.fail("could not scroll the slider into view")


_KERNEL_IDLE = """() => { const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const kernel = panel && panel.sessionContext && panel.sessionContext.session && panel.sessionContext.session.kernel;
  return !!kernel && kernel.status === 'idle'; }"""


def test_sliders_in_jupyterlab(lab, browser):
    base, token, name = lab
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    outside = []

    def guard(route):
        if urllib.parse.urlparse(route.request.url).hostname not in ("127.0.0.1", None):
            outside.append(route.request.url)
            return route.abort()
        return route.continue_()

    context.route("**/*", guard)
    page = context.new_page()
    shots = execute.BUILD / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    try:
        page.goto(f"{base}/lab/tree/{name}?token={token}")
        page.wait_for_function(_KERNEL_IDLE, timeout=120_000)
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        page.wait_for_selector(".ibutils-repro", state="attached", timeout=RUN_TIMEOUT_MS)
        page.wait_for_function(_KERNEL_IDLE, timeout=RUN_TIMEOUT_MS)
        failed = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        tracebacks = [t for t in failed.all_inner_texts() if "Traceback" in t or "Error" in t]
        assert not tracebacks, f"the chapter failed in JupyterLab: {tracebacks[0][-2000:]}"

        # a pre-rendered slider: the weight slider (activation x w); its second input is w
        slider = page.locator(".ibutils-slider").first
        w_input = slider.locator("input.ibutils-slider-input").nth(1)
        box = _to_middle(page, w_input)
        frame = _shown_frame(slider)
        page.mouse.click(box["x"] + 0.8 * box["width"], box["y"] + box["height"] / 2)
        moved = _wait_change(page, lambda: _shown_frame(slider), frame, "pre-rendered slider, mouse")
        assert moved[1] != frame[1] and int(w_input.input_value()) > 0
        for key, step in (("ArrowLeft", -1), ("ArrowRight", +1), ("ArrowDown", -1), ("ArrowUp", +1)):
            w_input.focus()
            before, value = _shown_frame(slider), int(w_input.input_value())
            page.keyboard.press(key)
            after = _wait_change(page, lambda: _shown_frame(slider), before, f"pre-rendered slider, {key}")
            assert int(w_input.input_value()) == value + step and after[0] == before[0] + step, (key, before, after)
        page.screenshot(path=str(shots / "lab-prerendered-slider.png"))

        # a live slider: w of the live weight-frame control, redrawn by the kernel
        live = page.locator(".widget-interact").first
        handle = live.locator(".widget-slider .noUi-handle").first
        hb = _to_middle(page, handle)
        page.wait_for_function("w => !!w.querySelector('.widget-output img, .jp-OutputArea-output img')",
                               arg=live.element_handle(), timeout=REDRAW_TIMEOUT_MS)
        figure, readout = _live_figure(live), live.locator(".widget-readout").first
        value = readout.inner_text()
        page.mouse.move(hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2)
        page.mouse.down()
        page.mouse.move(hb["x"] + hb["width"] / 2 + 80, hb["y"] + hb["height"] / 2, steps=8)
        page.mouse.up()
        figure = _wait_change(page, lambda: _live_figure(live), figure, "live slider, mouse")
        assert readout.inner_text() != value
        for key in ("ArrowRight", "ArrowLeft"):
            handle.focus()
            value = readout.inner_text()
            page.keyboard.press(key)
            figure = _wait_change(page, lambda: _live_figure(live), figure, f"live slider, {key}")
            assert readout.inner_text() != value, key
        page.screenshot(path=str(shots / "lab-live-slider.png"))
        assert not outside, f"JupyterLab asked for resources outside 127.0.0.1: {outside[:5]}"
    except Exception:
        page.screenshot(path=str(shots / "lab-failure.png"))
        raise
    finally:
        context.close()
