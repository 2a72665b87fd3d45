"""Browser checks of the built site, page by page, as a reader would load it.

Every page in the toc, at desktop width: it loads, logs no console error, every <img> decodes
with a non-zero width, no traceback, error output or progress bar is shown, and no request leaves
127.0.0.1 (everything the pages need is served by the site itself). At phone width: nothing
sticks out sideways, and every figure fits the screen with its aspect ratio. Screenshots of
both go to _build/screenshots/.

Every chapter page shows its figures, each with a line under it linking the data behind it
(the results JSON and CSV tables, which must download), and ends with the run's
reproducibility box. Every slider is moved through all of its frames, each move showing
exactly the frame its readouts name. The intro's scoreboard lists every claim of every
chapter's results JSON, with the same verdict and number, and links each chapter's Findings.
The references page holds every cited work; the API reference has an entry for every public
function and class of the modules it covers; previous/next links follow the toc; search works.

A chapter that was not executed for this build (its page is a placeholder) is a warning
locally and a failure in CI (CI set).
"""

from __future__ import annotations

import csv
import importlib
import inspect
import io
import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin, urlparse

import pytest
import yaml

from ibutils import execute

ROOT = execute.ROOT
HTML = execute.HTML
DESKTOP, PHONE = (1280, 900), (390, 844)


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
INTRO = PAGES[0]
CHAPTERS = [nb.relative_to(ROOT).with_suffix("").as_posix() for nb in execute.notebooks()]
REFERENCES = next((p for p in PAGES if p.endswith("/references") or p == "references"), None)
API = next((p for p in PAGES if p.endswith("/api") or p == "api"), None)


def _not_executed(message: str) -> None:
    """A chapter missing from this build: fail in CI, warn and skip the check locally."""
    if os.environ.get("CI"):
        pytest.fail(message)
    warnings.warn(message)
    pytest.skip(message)


@dataclass
class Visit:
    console_errors: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def _open(browser, url: str, viewport=DESKTOP, tally=None):
    """A new page with listeners recording errors, blocked external and failed requests."""
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    page = context.new_page()
    visit = Visit()

    def route(r):
        host = urlparse(r.request.url).hostname
        if r.request.url.startswith(("http:", "https:", "ws:", "wss:")) and host != "127.0.0.1":
            visit.external.append(r.request.url)
            if tally is not None:
                tally["external_blocked"] += 1
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


def _shot_name(page_path: str, suffix: str = "") -> str:
    return f"{page_path.replace('/', '__')}{suffix}.png"


def _record(context, site_url: str, chapter: str) -> dict | None:
    """The chapter's results JSON as the site serves it, or None when it is not published."""
    resp = context.request.get(f"{site_url}/_static/results/{execute.chapter_id(chapter)}.json")
    return json.loads(resp.text()) if resp.ok else None


_IMAGES_JS = """
async () => {
  const imgs = Array.from(document.images);
  for (const img of imgs) { img.loading = 'eager'; }
  await Promise.all(imgs.map(img => img.decode().catch(() => null)));
  return imgs.map(img => ({src: (img.currentSrc || img.src).slice(0, 100),
                           complete: img.complete, width: img.naturalWidth}));
}
"""

# Cell outputs showing a figure (an image outside a slider, or a slider), and what follows them.
_FIGURES_JS = """
() => Array.from(document.querySelectorAll('div.cell_output'))
  .filter(o => o.querySelector('.ibutils-slider') ||
               Array.from(o.querySelectorAll('img')).some(i => !i.closest('.ibutils-slider')))
  .map(o => { const n = o.nextElementSibling;
              const data = !!(n && n.matches('p.ibutils-figure-data'));
              const stills = Array.from(o.querySelectorAll('img')).filter(i => !i.closest('.ibutils-slider'));
              return {slider: !!o.querySelector('.ibutils-slider'), data,
                      density: stills.map(i => i.naturalWidth / Math.max(1, i.getBoundingClientRect().width)),
                      links: data ? Array.from(n.querySelectorAll('a')).map(a => a.href) : []}; })
"""

_PHONE_JS = """
() => {
  const vw = document.documentElement.clientWidth;
  const shown = Array.from(document.querySelectorAll('div.cell_output img, figure img'))
    .filter(i => getComputedStyle(i).display !== 'none');
  return {vw, overflow: document.documentElement.scrollWidth - vw,
          images: shown.map(i => { const r = i.getBoundingClientRect();
            return {src: (i.currentSrc || i.src).slice(-60), left: r.left, right: r.right,
                    w: r.width, h: r.height, nw: i.naturalWidth, nh: i.naturalHeight}; })};
}
"""

_SLIDER_STATE_JS = """
(slider) => ({
  shown: Array.from(slider.querySelectorAll('img.ibutils-slider-frame'))
           .map((img, i) => [i, getComputedStyle(img).display !== 'none']).filter(p => p[1]).map(p => p[0]),
  readouts: Array.from(slider.querySelectorAll('output.ibutils-slider-readout')).map(o => o.textContent),
})
"""


# tqdm's text bar (" 45%|####      | 450/1000 [00:03<00:04, 130.2it/s]") and the widgets of its notebook bar
_PROGRESS_TEXT = re.compile(r"\d+%\|.*\|\s*\d+/\d+|\d+/\d+ \[\d\d:\d\d<")
_PROGRESS_WIDGETS = "progress, .widget-progress, .progress-bar, .jupyter-widgets.widget-hprogress"


@pytest.mark.parametrize("page_path", PAGES)
def test_page(page_path, browser, site_url, screenshots, tally):
    url = f"{site_url}/{page_path}.html"
    context, page, visit, response = _open(browser, url, tally=tally)
    try:
        assert response is not None and response.ok, f"{url}: HTTP {response and response.status}"
        images = page.evaluate(_IMAGES_JS)
        page.screenshot(path=str(screenshots / _shot_name(page_path)), full_page=True)
        tally["pages"] += 1
        tally["screenshots"] += 1

        broken = [img for img in images if not img["complete"] or img["width"] == 0]
        assert not broken, f"{page_path}: images that did not decode: {broken}"
        tally["images"] += len(images)
        assert not visit.external, f"{page_path}: requests leaving 127.0.0.1: {visit.external}"
        assert not visit.failed, f"{page_path}: failed requests: {visit.failed}"
        assert not visit.console_errors, f"{page_path}: console errors: {visit.console_errors}"

        errors = page.locator(".output.traceback, .output.error, .system-message, .problematic")
        assert errors.count() == 0, f"{page_path}: error output on the page:\n" + "\n".join(
            errors.all_inner_texts())[:3000]
        text = page.locator("main, article, body").first.inner_text()
        for needle in ("Traceback (most recent call last)", "An Exception was encountered"):
            assert needle not in text, f"{page_path}: the page shows {needle!r}"
        bars = page.locator(_PROGRESS_WIDGETS).count()
        shown = _PROGRESS_TEXT.search(text)
        assert not bars and not shown, (f"{page_path}: the page shows progress bars of its run "
                                        f"({bars} widgets, text {shown and shown.group(0)!r})")
    finally:
        context.close()


@pytest.mark.parametrize("page_path", PAGES)
def test_page_at_phone_width(page_path, browser, site_url, screenshots, tally):
    """Nothing wider than a phone screen; figures shrink to fit and keep their aspect ratio."""
    context, page, visit, _ = _open(browser, f"{site_url}/{page_path}.html", viewport=PHONE, tally=tally)
    try:
        page.evaluate(_IMAGES_JS)
        layout = page.evaluate(_PHONE_JS)
        page.screenshot(path=str(screenshots / _shot_name(page_path, "__phone")), full_page=True)
        tally["phone_pages"] += 1
        tally["screenshots"] += 1
        assert layout["overflow"] <= 1, (
            f"{page_path}: the page is {layout['overflow']} px wider than a {layout['vw']} px screen")
        for img in layout["images"]:
            assert img["left"] >= -1 and img["right"] <= layout["vw"] + 1, (
                f"{page_path}: a figure sticks out of the screen at phone width: {img}")
            if img["nw"] and img["nh"] and img["h"]:
                shown, natural = img["w"] / img["h"], img["nw"] / img["nh"]
                assert abs(shown / natural - 1) < 0.03, (
                    f"{page_path}: a figure is distorted at phone width (aspect {shown:.3f}, "
                    f"natural {natural:.3f}): {img}")
        tally["phone_figures"] += len(layout["images"])
        assert not visit.console_errors, f"{page_path}: console errors: {visit.console_errors}"
    finally:
        context.close()


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_shows_figures_data_and_provenance(chapter, browser, site_url, tally):
    """Figures, retina, each with a data line under it; every data file linked downloads and
    parses; the "Data behind the figures" section; the reproducibility box after the Findings."""
    context, page, visit, _ = _open(browser, f"{site_url}/{chapter}.html", tally=tally)
    try:
        if page.locator(f".{execute.PLACEHOLDER_TAG}").count():
            _not_executed(f"{chapter}: the chapter was not executed for this build")
        record = _record(context, site_url, chapter)
        assert record is not None, f"{chapter}: executed, but its results JSON is not published"

        figures = page.evaluate(_FIGURES_JS)
        assert figures, f"{chapter}: the page shows no figure"
        tally["figures"] += len(figures)
        coarse = [(i, round(d, 2)) for i, f in enumerate(figures) for d in f["density"] if d < 1.5]
        assert not coarse, (f"{chapter}: figures drawn at under 1.5 image pixels per screen pixel (figure, "
                            f"ratio): {coarse}; `plots.use_style()` makes retina PNGs")
        bare = [i for i, f in enumerate(figures) if not f["data"]]
        assert not bare, f"{chapter}: figures {bare} (of {len(figures)}) have no data line under them"
        tally["figure_data_lines"] += len(figures)
        json_url = f"{site_url}/_static/results/{record['chapter']}.json"
        for f in figures:
            assert json_url in f["links"], f"{chapter}: a data line does not link {json_url}: {f['links']}"
        assert page.locator("section#data-behind-the-figures").count() == 1, (
            f"{chapter}: no 'Data behind the figures' section")

        hrefs = page.evaluate(
            "() => Array.from(document.querySelectorAll('p.ibutils-figure-data a, section#data-behind-the-figures a'))"
            ".map(a => a.href).filter(h => /\\.(json|csv)$/.test(h))")
        for href in sorted(set(hrefs)):
            assert urlparse(href).hostname == "127.0.0.1", f"{chapter}: data link leaves the site: {href}"
            resp = context.request.get(href)
            assert resp.ok, f"{chapter}: {href}: HTTP {resp.status}"
            if href.endswith(".json"):
                assert json.loads(resp.text())["chapter"] == record["chapter"]
            else:
                rows = list(csv.reader(io.StringIO(resp.text())))
                assert len(rows) >= 2 and rows[0], f"{href}: no header or no rows"
                assert all(len(r) == len(rows[0]) for r in rows), f"{href}: ragged rows"
            tally["data_files"] += 1

        box = page.locator(".ibutils-repro")
        assert box.count() == 1, (
            f"{chapter}: {box.count()} reproducibility boxes; the chapter should end with "
            "`results.reproducibility(path)`, path being what `results.write` returned")
        assert box.get_attribute("data-chapter") == record["chapter"]
        assert box.get_attribute("data-profile") == record["profile"]
        split = box.locator("tr", has=page.locator("th", has_text="Time split")).inner_text()
        for name in ("training", "estimating", "plotting", "other"):
            assert name in split, f"{chapter}: the reproducibility box's time split lacks {name}: {split!r}"
        after_findings = page.evaluate(
            "() => { const f = document.querySelector('section#findings'), b = document.querySelector('.ibutils-repro');"
            " return !!f && !!(f.compareDocumentPosition(b) & Node.DOCUMENT_POSITION_FOLLOWING); }")
        assert after_findings, f"{chapter}: the reproducibility box should come after the Findings section"
        tally["repro_boxes"] += 1
    finally:
        context.close()


def _snake(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Every point of a grid, in an order where consecutive points differ by one step of one axis."""
    if len(shape) == 1:
        return [(i,) for i in range(shape[0])]
    rest = _snake(shape[1:])
    return [(i, *r) for i in range(shape[0]) for r in (rest if i % 2 == 0 else rest[::-1])]


def test_snake_visits_every_point_by_single_steps():
    order = _snake((2, 3, 2))
    assert sorted(order) == sorted({(a, b, c) for a in range(2) for b in range(3) for c in range(2)})
    assert all(sum(abs(x - y) for x, y in zip(p, q)) == 1 for p, q in zip(order, order[1:]))


@pytest.mark.parametrize("page_path", PAGES)
def test_sliders_show_every_frame(page_path, browser, site_url, screenshots, tally):
    """Each slider's inputs are stepped (keyboard) through every combination of values; each
    step shows exactly the frame for that combination, and the readouts name its values."""
    context, page, visit, _ = _open(browser, f"{site_url}/{page_path}.html", tally=tally)
    try:
        ranges = page.locator("input[type=range]")
        outside = page.evaluate("() => Array.from(document.querySelectorAll('input[type=range]'))"
                                ".filter(r => !r.closest('.ibutils-slider')).length")
        assert outside == 0, f"{page_path}: {outside} range input(s) outside an .ibutils-slider"
        sliders = page.locator(".ibutils-slider")
        for k in range(sliders.count()):
            slider = sliders.nth(k)
            inputs = slider.locator("input.ibutils-slider-input")
            labels = [json.loads(inputs.nth(i).get_attribute("data-labels")) for i in range(inputs.count())]
            shape = tuple(len(l) for l in labels)
            n_frames = math.prod(shape)
            assert slider.locator("img.ibutils-slider-frame").count() == n_frames, (
                f"{page_path}: slider #{k} has {slider.locator('img.ibutils-slider-frame').count()} frames "
                f"for a {shape} grid of values")
            slider.scroll_into_view_if_needed()
            seen = set()
            point = (0,) * len(shape)
            for step, target in enumerate(_snake(shape)):
                if step:
                    axis = next(a for a in range(len(shape)) if target[a] != point[a])
                    inputs.nth(axis).focus()
                    page.keyboard.press("ArrowRight" if target[axis] > point[axis] else "ArrowLeft")
                point = target
                state = slider.evaluate(_SLIDER_STATE_JS)
                index = 0
                for a, n in enumerate(shape):
                    index = index * n + point[a]
                assert state["shown"] == [index], (
                    f"{page_path}: slider #{k} at {point} shows frames {state['shown']}, expected [{index}]")
                assert state["readouts"] == [labels[a][point[a]] for a in range(len(shape))], (
                    f"{page_path}: slider #{k} at {point}: readouts {state['readouts']}")
                seen.add(index)
            assert len(seen) == n_frames
            slider.screenshot(path=str(screenshots / _shot_name(page_path, f"__slider{k}")))
            tally["sliders"] += 1
            tally["slider_frames"] += n_frames
            tally["screenshots"] += 1
        assert ranges.count() >= sliders.count()
        assert not visit.console_errors, f"{page_path}: console errors: {visit.console_errors}"
    finally:
        context.close()


def test_scoreboard_lists_every_claim(browser, site_url, tally):
    """The intro's scoreboard has exactly the claims of every chapter's published results JSON,
    in order, with their verdict and number; chapters without one are listed as not run."""
    context, page, visit, _ = _open(browser, f"{site_url}/{INTRO}.html", tally=tally)
    try:
        rows = page.evaluate("""() => Array.from(document.querySelectorAll(
            'table.ibutils-scoreboard tbody tr[data-chapter]')).map(r => ({
              chapter: r.dataset.chapter, claim: r.dataset.claim, holds: r.dataset.holds,
              profile: r.dataset.profile,
              mark: (r.querySelector('.ibutils-mark') || {textContent: ''}).textContent.trim(),
              ours: (r.querySelector('td.ibutils-num') || {textContent: ''}).textContent.trim()}))""")
        ids = [execute.chapter_id(c) for c in CHAPTERS]
        assert {r["chapter"] for r in rows} <= set(ids), f"scoreboard rows for unknown chapters: {rows}"
        total = holding = 0
        for chapter, cid in zip(CHAPTERS, ids):
            mine = [r for r in rows if r["chapter"] == cid]
            record = _record(context, site_url, chapter)
            if record is None:
                assert [r["claim"] for r in mine] == [""], f"{cid}: not published, but the scoreboard shows {mine}"
                if os.environ.get("CI"):
                    pytest.fail(f"{cid}: no results JSON on the site: the chapter was not run for this build")
                warnings.warn(f"{cid}: not run for this build; the scoreboard says so")
                continue
            claims = record["claims"]
            assert [r["claim"] for r in mine] == [c["id"] for c in claims], (
                f"{cid}: scoreboard claims {[r['claim'] for r in mine]} != results JSON {[c['id'] for c in claims]}")
            for r, c in zip(mine, claims):
                assert r["holds"] == ("true" if c["holds"] else "false"), f"{cid}/{c['id']}: verdict differs"
                assert r["mark"] == ("✓" if c["holds"] else "✗"), f"{cid}/{c['id']}: mark {r['mark']!r}"
                assert r["profile"] == record["profile"], f"{cid}/{c['id']}: profile {r['profile']!r}"
                if c["value"] is None:
                    assert r["ours"] == "n/a"
                else:
                    assert math.isclose(float(r["ours"]), c["value"], rel_tol=1e-3, abs_tol=1e-12), (
                        f"{cid}/{c['id']}: scoreboard shows {r['ours']}, the run measured {c['value']}")
            total += len(claims)
            holding += sum(c["holds"] for c in claims)
            tally["scoreboard_claims"] += len(claims)
        if total:
            summary = page.locator(".ibutils-scoreboard-summary").inner_text()
            assert f"{holding} of {total} claims hold" in summary, summary

        links = page.evaluate("() => Array.from(document.querySelectorAll("
                              "'table.ibutils-scoreboard tr[data-chapter-heading] a')).map(a => a.href)")
        assert len(links) == len(CHAPTERS), f"scoreboard links {links} for chapters {CHAPTERS}"
        for href, chapter in zip(links, CHAPTERS):
            assert href.split("#")[0] == f"{site_url}/{chapter}.html" and href.endswith("#findings"), href
            target = context.new_page()
            try:
                target.goto(href)
                assert target.locator("section#findings").count() == 1, f"{href}: no Findings section"
            finally:
                target.close()
            tally["scoreboard_links"] += 1
        assert not visit.console_errors, f"scoreboard: console errors: {visit.console_errors}"
    finally:
        context.close()


class _Links(HTMLParser):
    """Anchors (href, class) and element ids of a built page."""

    def __init__(self):
        super().__init__()
        self.anchors: list[tuple[str, str]] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href"):
            self.anchors.append((attrs["href"], attrs.get("class") or ""))


def _parse(page_path: str) -> _Links:
    parser = _Links()
    parser.feed((HTML / f"{page_path}.html").read_text(encoding="utf-8"))
    return parser


def test_prev_next_follow_the_toc(tally):
    for i, page_path in enumerate(PAGES):
        links = _parse(page_path).anchors
        base = f"http://site/{page_path}.html"
        for cls, j in (("left-prev", i - 1), ("right-next", i + 1)):
            found = [urljoin(base, href) for href, c in links if cls in c.split()]
            expected = [f"http://site/{PAGES[j]}.html"] if 0 <= j < len(PAGES) else []
            assert found == expected, f"{page_path}: {cls} links {found}, expected {expected}"
            tally["prev_next_links"] += len(found)


def test_references_page_resolves_every_citation(tally):
    assert REFERENCES is not None, "_toc.yml has no references page"
    refs = _parse(REFERENCES)
    text = (HTML / f"{REFERENCES}.html").read_text(encoding="utf-8").lower()
    for title in ("On the Information Bottleneck Theory of Deep Learning",  # the style lower-cases titles
                  "Opening the Black Box of Deep Neural Networks via Information"):
        assert title.lower() in text, f"the references page does not list {title!r}"
    target = f"http://site/{REFERENCES}.html"
    for page_path in PAGES:
        base = f"http://site/{page_path}.html"
        for href, _ in _parse(page_path).anchors:
            url = urljoin(base, href)
            if url.split("#")[0] == target and "#" in url:
                anchor = url.split("#", 1)[1]
                assert anchor in refs.ids, f"{page_path}: citation link {href} has no target on {REFERENCES}"
                tally["citation_links"] += 1
    assert tally["citation_links"] > 0, "no page cites a reference"


def _public_names(module) -> list[str]:
    """The functions and classes a module defines (or lists in __all__) whose names do not start with _."""
    listed = getattr(module, "__all__", None)
    names = listed if listed is not None else [
        n for n, obj in vars(module).items()
        if not n.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj))
        and obj.__module__ == module.__name__]
    return sorted(names)


def test_api_page_documents_every_public_name(tally):
    """Every module the API page renders (`automodule` in its source) has an entry for each of its
    public functions and classes; the intro links the page."""
    assert API is not None, "_toc.yml has no api page"
    source = (ROOT / f"{API}.md").read_text(encoding="utf-8")
    modules = re.findall(r"^\.\. automodule:: (ibutils\.\w+)", source, flags=re.M)
    assert "ibutils.probe" in modules and "ibutils.mi" in modules, modules
    ids = _parse(API).ids
    for name in modules:
        module = importlib.import_module(name)
        assert f"module-{name}" in ids, f"{API}: no section for {name}"
        missing = [n for n in _public_names(module) if f"{name}.{n}" not in ids]
        assert not missing, f"{API}: {name} lacks entries for {missing}"
        tally["api_entries"] += len(_public_names(module))
    intro_links = [urljoin(f"http://site/{INTRO}.html", href) for href, _ in _parse(INTRO).anchors]
    assert f"http://site/{API}.html" in intro_links, "the intro does not link the API reference"


def test_search_finds_pages(browser, site_url, tally):
    """The site's search (Sphinx's client-side index) returns hits for a word of the intro."""
    context, page, visit, _ = _open(browser, f"{site_url}/search.html?q=compression", tally=tally)
    try:
        hits = page.locator("#search-results ul.search li")
        hits.first.wait_for(timeout=15000)
        assert hits.count() > 0
        tally["search_hits"] += hits.count()
        assert not visit.external, f"search: requests leaving 127.0.0.1: {visit.external}"
    finally:
        context.close()
