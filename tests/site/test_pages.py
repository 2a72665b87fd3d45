"""Browser checks of the built site, page by page, as a reader would load it.

For every page in the toc: it loads, logs no console error, every <img> decodes with a
non-zero width, no traceback or error output is shown, and no request leaves 127.0.0.1
(everything the pages need is served by the site itself). A full-page screenshot of each
page goes to _build/screenshots/. Every range input must sit in an `.ibutils-slider`
whose pre-rendered <img> frames it switches.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass, field
from urllib.parse import urlparse

import pytest
import yaml

from ibutils import execute

ROOT = execute.ROOT


def _toc_pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    found: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("root", "file") and isinstance(value, str):
                    found.append(re.sub(r"\.(ipynb|md)$", "", value))
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return found


PAGES = _toc_pages()
CHAPTERS = [nb.relative_to(ROOT).with_suffix("").as_posix() for nb in execute.notebooks()]

@dataclass
class Visit:
    console_errors: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def _open(browser, url: str, viewport=(1280, 900)):
    """A new page with listeners recording errors, blocked external and failed requests."""
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    page = context.new_page()
    visit = Visit()

    def route(r):
        host = urlparse(r.request.url).hostname
        if r.request.url.startswith(("http:", "https:", "ws:", "wss:")) and host != "127.0.0.1":
            visit.external.append(r.request.url)
            r.abort()
        else:
            r.continue_()

    page.route("**/*", route)

    def on_console(msg):
        if msg.type == "error":
            loc = msg.location.get("url", "") if msg.location else ""
            visit.console_errors.append(f"{msg.text} ({loc})")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: visit.console_errors.append(f"uncaught: {exc}"))

    def on_response(resp):
        if resp.status >= 400:
            visit.failed.append(f"{resp.status} {resp.url}")

    page.on("response", on_response)
    page.on("requestfailed", lambda req: None if req.url in visit.external
            else visit.failed.append(f"failed {req.url}: {req.failure}"))
    response = page.goto(url, wait_until="load")
    page.wait_for_load_state("networkidle")
    return context, page, visit, response


_IMAGES_JS = """
async () => {
  const imgs = Array.from(document.images);
  for (const img of imgs) { img.loading = 'eager'; }
  await Promise.all(imgs.map(img => img.decode().catch(() => null)));
  return imgs.map(img => ({src: (img.currentSrc || img.src).slice(0, 100),
                           complete: img.complete, width: img.naturalWidth}));
}
"""

_VISIBLE_FRAMES_JS = """
(slider) => Array.from(slider.querySelectorAll('img'))
  .map((img, i) => [i, getComputedStyle(img).display !== 'none'])
  .filter(([i, shown]) => shown).map(([i]) => i)
"""


@pytest.mark.parametrize("page_path", PAGES)
def test_page(page_path, browser, site_url, screenshots):
    url = f"{site_url}/{page_path}.html"
    context, page, visit, response = _open(browser, url)
    try:
        assert response is not None and response.ok, f"{url}: HTTP {response and response.status}"
        images = page.evaluate(_IMAGES_JS)
        page.screenshot(path=str(screenshots / f"{page_path.replace('/', '__')}.png"), full_page=True)

        broken = [img for img in images if not img["complete"] or img["width"] == 0]
        assert not broken, f"{page_path}: images that did not decode: {broken}"
        assert not visit.external, f"{page_path}: requests leaving 127.0.0.1: {visit.external}"
        assert not visit.failed, f"{page_path}: failed requests: {visit.failed}"
        assert not visit.console_errors, f"{page_path}: console errors: {visit.console_errors}"

        errors = page.locator(".output.traceback, .output.error, .system-message, .problematic")
        assert errors.count() == 0, f"{page_path}: error output on the page:\n" + "\n".join(
            errors.all_inner_texts())[:3000]
        text = page.locator("main, article, body").first.inner_text()
        for needle in ("Traceback (most recent call last)", "An Exception was encountered"):
            assert needle not in text, f"{page_path}: the page shows {needle!r}"

        if page_path in CHAPTERS:
            placeholder = page.locator(".tag_ibutils-placeholder").count()
            msg = f"{page_path}: the chapter was not executed for this build"
            if placeholder and os.environ.get("CI"):
                pytest.fail(msg)
            elif placeholder:
                warnings.warn(msg)
    finally:
        context.close()


@pytest.mark.parametrize("page_path", PAGES)
def test_sliders_switch_frames(page_path, browser, site_url, screenshots):
    context, page, visit, _ = _open(browser, f"{site_url}/{page_path}.html")
    try:
        ranges = page.locator("input[type=range]")
        n = ranges.count()
        if n == 0:
            return  # nothing to move on this page
        for k in range(n):
            rng = ranges.nth(k)
            slider = rng.locator("xpath=ancestor::*[contains(concat(' ', normalize-space(@class), ' '), ' ibutils-slider ')][1]")
            assert slider.count() == 1, f"{page_path}: range input #{k} is not inside an .ibutils-slider"
            frames = slider.locator("img")
            assert frames.count() >= 2, f"{page_path}: slider #{k} has {frames.count()} frame(s)"
            rng.scroll_into_view_if_needed()
            before = slider.evaluate(_VISIBLE_FRAMES_JS)
            assert len(before) == 1, f"{page_path}: slider #{k} shows frames {before} before moving"
            # a slider may have several range inputs (one per parameter): move this one
            # to whichever end it is not at
            at_max = rng.evaluate("r => +r.value >= +r.max")
            rng.focus()
            page.keyboard.press("Home" if at_max else "End")
            after = slider.evaluate(_VISIBLE_FRAMES_JS)
            assert len(after) == 1, f"{page_path}: slider #{k} shows frames {after} after moving"
            assert after != before, f"{page_path}: moving slider #{k} did not change the frame"
            assert frames.nth(after[0]).is_visible()
            slider.screenshot(path=str(screenshots / f"{page_path.replace('/', '__')}__slider{k}.png"))
        assert not visit.console_errors, f"{page_path}: console errors: {visit.console_errors}"
    finally:
        context.close()


def test_results_json_served(site_url, browser):
    """Every chapter's results JSON can be downloaded from the site."""
    context = browser.new_context()
    try:
        for chapter in CHAPTERS:
            cid = execute.chapter_id(chapter)
            resp = context.request.get(f"{site_url}/_static/results/{cid}.json")
            assert resp.ok, f"_static/results/{cid}.json: HTTP {resp.status}"
            assert json.loads(resp.text())["chapter"] == cid
    finally:
        context.close()


def test_search_finds_pages(browser, site_url):
    """The site's search (Sphinx's client-side index) returns hits for a word of the intro."""
    context, page, visit, _ = _open(browser, f"{site_url}/search.html?q=compression")
    try:
        hits = page.locator("#search-results ul.search li")
        hits.first.wait_for(timeout=15000)
        assert hits.count() > 0
        assert not visit.external, f"search: requests leaving 127.0.0.1: {visit.external}"
    finally:
        context.close()
