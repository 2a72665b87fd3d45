"""The pre-rendered slider (ibutils.widgets.slider): markup, frames, determinism, and in a browser."""

import base64
import io
import os
import re
import shutil

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
from PIL import Image

from ibutils import widgets

CHROMIUM = os.environ.get("IBUTILS_CHROMIUM", "/usr/bin/chromium")


def _frame(a, b="x"):
    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [0, a])
    ax.set_title(f"{a} {b}")
    return fig


def _frames_in(html):
    return re.findall(r'<img class="ibutils-slider-frame"[^>]*>', html)


def test_one_parameter_markup():
    before = set(plt.get_fignums())
    s = widgets.slider(_frame, dpi=40, a=[0.5, 1.0, 2.0, 4.0])
    assert set(plt.get_fignums()) == before  # every frame closed
    html = s._repr_html_()
    assert html.startswith('<div class="ibutils-slider">')
    frames = _frames_in(html)
    assert len(frames) == 4
    assert sum("display:block" in f for f in frames) == 1 and "display:block" in frames[0]
    assert sum("display:none" in f for f in frames) == 3
    assert [re.search(r'alt="([^"]*)"', f).group(1) for f in frames] == ["a = 0.5", "a = 1", "a = 2", "a = 4"]
    assert len(re.findall(r'<input class="ibutils-slider-input" type="range" min="0" max="3"', html)) == 1
    assert '<output class="ibutils-slider-readout">0.5</output>' in html
    assert "<script" not in html and "http" not in html  # no external or widget JavaScript
    for f in frames:  # each frame is a PNG of the figure's size at the dpi
        png = base64.b64decode(re.search(r"base64,([^\"]+)", f).group(1))
        assert Image.open(io.BytesIO(png)).size == (80, 40)
    assert s.frame_bytes.shape == (4,) and "4 frames" in repr(s)


def test_two_parameters_in_c_order_with_formats():
    s = widgets.slider(_frame, dpi=30, fmt={"a": "{:.1f}"}, a=[1, 2], b=["x", "y", "z"])
    assert s.names == ("a", "b") and s.labels == (("1.0", "2.0"), ("x", "y", "z"))
    frames = _frames_in(s.html)
    assert len(frames) == 6 and sum("display:block" in f for f in frames) == 1
    assert 'alt="a = 2.0, b = x"' in frames[3]  # the last parameter varies fastest
    assert s.html.count('class="ibutils-slider-readout"') == 2


def test_frames_are_deterministic_and_distinct():
    first = widgets.slider(_frame, dpi=40, a=[1.0, 2.0])
    again = widgets.slider(_frame, dpi=40, a=[1.0, 2.0])
    assert first.frames == again.frames
    assert first.frames[0] != first.frames[1]


def test_render_png_closes_the_figure_even_on_error():
    fig = _frame(1.0)
    with pytest.raises(ValueError, match="dpi"):
        widgets.render_png(fig, dpi=0)
    assert not plt.fignum_exists(fig.number)


@pytest.mark.parametrize("kwargs, match", [
    ({}, "params"),
    ({"a": []}, "a"),
    ({"a": [1, 2], "fmt": {"b": "{}"}}, "fmt"),
    ({"a": list(range(5)), "max_frames": 4}, "max_frames"),
])
def test_bad_input_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        widgets.slider(_frame, **kwargs)


def test_live_runs_the_figure_function_and_closes_it():
    ipywidgets = pytest.importorskip("ipywidgets")
    calls = []

    def make(a, b):
        calls.append((a, b))
        return _frame(a, b)

    before = set(plt.get_fignums())
    w = widgets.live(make, a=(0.0, 2.0, 0.5), b=["x", "y"])
    assert isinstance(w, ipywidgets.interactive)
    assert calls == [(1.0, "x")]  # drawn once with the initial values
    w.children[0].value = 2.0
    assert calls[-1] == (2.0, "x")
    assert set(plt.get_fignums()) == before
    with pytest.raises(ValueError, match="controls"):
        widgets.live(make)


@pytest.mark.skipif(not shutil.which(CHROMIUM), reason="needs Chromium (apt-get install chromium)")
def test_slider_switches_frames_in_a_browser(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    s = widgets.slider(_frame, dpi=30, a=[1, 2, 3], b=["x", "y"])
    page_file = tmp_path / "slider.html"
    page_file.write_text(f"<!doctype html><html><body>{s.html}</body></html>")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_file.as_uri())

            def shown():
                visible = page.eval_on_selector_all(
                    "img.ibutils-slider-frame", "ms => ms.map(m => getComputedStyle(m).display !== 'none')")
                readouts = page.eval_on_selector_all("output.ibutils-slider-readout", "os => os.map(o => o.textContent)")
                return [i for i, v in enumerate(visible) if v], readouts

            assert shown() == ([0], ["1", "x"])
            inputs = page.locator("input.ibutils-slider-input")
            inputs.nth(0).focus()
            page.keyboard.press("ArrowRight")
            assert shown() == ([2], ["2", "x"])
            inputs.nth(1).focus()
            page.keyboard.press("ArrowRight")
            assert shown() == ([3], ["2", "y"])
            inputs.nth(0).fill("2")
            assert shown() == ([5], ["3", "y"])
            assert errors == []
        finally:
            browser.close()
