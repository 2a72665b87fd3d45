"""Every figure on a chapter page is legible where it stands, and opens at full size.

Legibility: in a 1280-px-wide window, each figure's smallest text must show at 9 CSS px or
more. A figure's PNG says how large its smallest text is (`ibutils.plots.png_info`: the font
size in points that `plots.figure_png` records from the figure's text, and the dpi), so the
text shows at

    points / 72 * dpi * (shown width in CSS px / PNG width in pixels)

CSS px. Every visible figure image of a cell output is measured, a slider's visible frame
included (a figure hidden on the page, e.g. behind an interactive chart, is not on screen and
is not measured). The smallest text per chapter goes to `_build/screenshots/figure-text.json`.

Full size: every figure image (slider frames too) is a link to its own PNG file, and a click at
phone width (390 px) opens that file.
"""

from __future__ import annotations

import base64
import json
from urllib.parse import urljoin

import pytest

from ibutils import execute, plots

from test_pages import CHAPTERS, _not_executed, _open  # tests/site is on sys.path (no package)

WINDOW, PHONE = (1280, 1000), (390, 844)
SMALLEST_TEXT_PX = 9.0
REPORT = execute.BUILD / "screenshots" / "figure-text.json"

# The figure images of the cell outputs: where each is shown and what it links to.
_FIGURE_IMAGES_JS = """
async () => {
  const imgs = Array.from(document.querySelectorAll('div.cell_output img'));
  for (const img of imgs) { img.loading = 'eager'; }
  await Promise.all(imgs.map(img => img.decode().catch(() => null)));
  return imgs.map((img, index) => {
    const r = img.getBoundingClientRect(), link = img.closest('a');
    return {index, src: img.currentSrc || img.src, natural: img.naturalWidth, shown: r.width,
            visible: r.width > 0 && r.height > 0 && img.checkVisibility({visibilityProperty: true}),
            frame: img.classList.contains('ibutils-slider-frame'),
            href: link ? link.href : null};
  });
}
"""


def _png(context, src: str) -> bytes:
    if src.startswith("data:image/png;base64,"):
        return base64.b64decode(src.split(",", 1)[1])
    resp = context.request.get(src)
    assert resp.ok, f"{src}: HTTP {resp.status}"
    return resp.body()


def text_px(info: dict, shown_px: float) -> float:
    """CSS px of a PNG's smallest text when the PNG (`plots.png_info`) is shown `shown_px` wide."""
    return info["smallest_font_pt"] / 72 * info["dpi"] * shown_px / info["width"]


def test_text_px():
    info = {"smallest_font_pt": 8.0, "dpi": 200.0, "width": 1440}
    assert text_px(info, 720) == pytest.approx(11.11, abs=0.01)  # natural size: 100 CSS px per inch
    assert text_px(info, 650) == pytest.approx(10.03, abs=0.01)  # scaled to the column


@pytest.fixture(scope="module")
def report():
    found: dict = {}
    yield found
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(REPORT.read_text(encoding="utf-8")) if REPORT.exists() else {}
    REPORT.write_text(json.dumps({**previous, **found}, indent=1, sort_keys=True) + "\n", encoding="utf-8")


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_figure_text_is_legible_at_1280px(chapter, browser, site_url, report):
    context, page, visit, _ = _open(browser, f"{site_url}/{chapter}.html", viewport=WINDOW)
    try:
        if page.locator(f".{execute.PLACEHOLDER_TAG}").count():
            _not_executed(f"{chapter}: the chapter was not executed for this build")
        images = [img for img in page.evaluate(_FIGURE_IMAGES_JS) if img["visible"]]
        # a chart's text sizes are Bokeh's, checked by test_charts.py; its fallback is hidden
        charts = page.locator(".ibutils-chart-ready").count()
        assert images or charts, f"{chapter}: no figure on screen"
        if not images:
            report[chapter] = {"figures": 0, "charts": charts}
            return
        measured, unstamped = [], []
        for img in images:
            info = plots.png_info(_png(context, img["src"]))
            if info["smallest_font_pt"] is None or info["dpi"] is None:
                unstamped.append(img["src"][-70:])
                continue
            assert info["width"] == img["natural"]
            measured.append({"figure": img["index"], "slider_frame": img["frame"], "png_width": info["width"],
                             "dpi": info["dpi"], "smallest_font_pt": info["smallest_font_pt"],
                             "shown_width": round(img["shown"], 1),
                             "text_px": round(text_px(info, img["shown"]), 2)})
        assert not unstamped, (f"{chapter}: figures without their dpi and smallest font size (draw them "
                               f"after `plots.use_style()`, or with `widgets.slider`): {unstamped}")
        report[chapter] = {"figures": len(measured), "min_text_px": min(m["text_px"] for m in measured),
                           "below": sum(m["text_px"] < SMALLEST_TEXT_PX for m in measured),
                           "each": measured}
        small = [m for m in measured if m["text_px"] < SMALLEST_TEXT_PX]
        assert not small, (f"{chapter}: {len(small)} of {len(measured)} figures show their smallest text "
                           f"below {SMALLEST_TEXT_PX} CSS px at {WINDOW[0]} px: "
                           + "; ".join(f"figure {m['figure']}: {m['smallest_font_pt']:g} pt at {m['dpi']:g} dpi, "
                                       f"{m['png_width']} px shown {m['shown_width']} px wide -> {m['text_px']} px"
                                       for m in small))
    finally:
        context.close()


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_figures_open_at_full_size(chapter, browser, site_url):
    """Each figure image links its own PNG; a click at phone width on the first figure and on
    the first slider's frame opens that PNG, at its full pixel size."""
    context, page, visit, _ = _open(browser, f"{site_url}/{chapter}.html", viewport=PHONE)
    try:
        if page.locator(f".{execute.PLACEHOLDER_TAG}").count():
            _not_executed(f"{chapter}: the chapter was not executed for this build")
        images = page.evaluate(_FIGURE_IMAGES_JS)
        assert images, f"{chapter}: no figure"
        unlinked = [img["index"] for img in images if img["href"] != img["src"]]
        assert not unlinked, f"{chapter}: figure images that do not link their own PNG: {unlinked}"
        first_frame = next((img for img in images if img["frame"] and img["visible"]), None)
        first_still = next((img for img in images if not img["frame"] and img["visible"]), None)
        for img in filter(None, (first_still, first_frame)):
            expected = _png(context, img["src"])
            target = page.locator("div.cell_output img").nth(img["index"])
            target.scroll_into_view_if_needed()
            with page.expect_navigation():
                target.click()
            assert page.url == urljoin(page.url, img["href"]) == img["href"], (page.url, img["href"])
            opened = page.evaluate("() => { const i = document.images[0];"
                                   " return i ? {w: i.naturalWidth, h: i.naturalHeight} : null; }")
            info = plots.png_info(expected)
            assert opened == {"w": info["width"], "h": info["height"]}, (
                f"{chapter}: the click opened {page.url} showing {opened}, not the {info['width']} x "
                f"{info['height']} px figure")
            page.go_back(wait_until="load")
        assert not visit.console_errors, f"{chapter}: console errors: {visit.console_errors}"
    finally:
        context.close()
