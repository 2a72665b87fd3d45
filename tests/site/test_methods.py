"""The Methods and settings page of the built site, and the links the chapters make to it.

- No page of the site, and no source file it offers for download, mentions the team's internal
  specification ("SPEC"): readers cannot open it.
- The Methods page is in the site, between the chapters and the API reference, and has an
  anchor for every label that book/methods.md defines.
- Every link from a chapter (or any other page) to the Methods page lands on an anchor that
  exists there, checked in Chromium on the pages as served.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urldefrag, urljoin, urlparse

import pytest

from ibutils import execute

ROOT = execute.ROOT
HTML = execute.HTML
METHODS = "book/methods"
SPEC = re.compile(r"\bSPEC\b")
LABELS = re.findall(r"^\((methods-[a-z0-9-]+)\)=$", (ROOT / f"{METHODS}.md").read_text(encoding="utf-8"),
                    re.MULTILINE)
TOC_PAGES = [p.relative_to(HTML).with_suffix("").as_posix() for p in sorted((HTML / "book").glob("*.html"))]

_LINKS_JS = "() => Array.from(document.querySelectorAll('article a[href]')).map(a => a.href)"
_IDS_JS = "() => Array.from(document.querySelectorAll('[id]')).map(e => e.id)"


class _Text(HTMLParser):
    """The text a reader sees (and the attributes a screen reader reads), without scripts and styles."""

    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        self.parts.extend(v for k, v in attrs if k in ("alt", "title", "aria-label") and v)

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def _visible_text(path) -> str:
    parser = _Text()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return " ".join(parser.parts)


def test_no_page_of_the_site_mentions_the_internal_spec():
    if not (HTML / "index.html").exists():
        pytest.fail(f"no site at {HTML}: build it first (make test && make site, or make book)")
    pages = [p for p in HTML.rglob("*.html") if "_static" not in p.parts]
    sources = [p for p in (HTML / "_sources").rglob("*") if p.is_file()]
    assert len(pages) >= 10 and f"{METHODS}.html" in {p.relative_to(HTML).as_posix() for p in pages}
    hits = {p.relative_to(HTML).as_posix(): SPEC.findall(_visible_text(p)) for p in pages}
    hits |= {p.relative_to(HTML).as_posix(): SPEC.findall(p.read_text(encoding="utf-8", errors="replace"))
             for p in sources}
    assert not {k: v for k, v in hits.items() if v}, f"pages mentioning SPEC: {[k for k, v in hits.items() if v]}"


def test_methods_page_is_listed_and_has_every_anchor(browser, site_url, tally):
    assert len(LABELS) >= 15, LABELS
    context = browser.new_context()
    try:
        page = context.new_page()
        response = page.goto(f"{site_url}/{METHODS}.html", wait_until="load")
        assert response is not None and response.ok
        tally["pages"] += 1
        assert page.title().startswith("Methods and settings")
        ids = set(page.evaluate(_IDS_JS))
        assert set(LABELS) <= ids, f"labels without an anchor: {sorted(set(LABELS) - ids)}"
        # in the navigation between the last chapter and the API reference
        nav = [urlparse(urljoin(page.url, href)).path.rsplit("/", 1)[-1] for href in
               page.evaluate("() => Array.from(document.querySelectorAll('nav.bd-links a')).map(a => a.href)")]
        assert "methods.html" in nav and "api.html" in nav, nav
        assert nav.index("methods.html") + 1 == nav.index("api.html"), nav
        assert nav.index("methods.html") - 1 == nav.index("07_your_own_network.html"), nav
    finally:
        context.close()


def test_every_link_to_the_methods_page_lands_on_an_anchor(browser, site_url, tally):
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{site_url}/{METHODS}.html", wait_until="load")
        anchors = set(page.evaluate(_IDS_JS))
        linked: dict[str, list[str]] = {}
        for page_path in TOC_PAGES:
            if page_path == METHODS:
                continue
            page.goto(f"{site_url}/{page_path}.html", wait_until="load")
            for href in page.evaluate(_LINKS_JS):
                url, fragment = urldefrag(href)
                if urlparse(url).path.endswith(f"/{METHODS}.html"):
                    linked.setdefault(page_path, []).append(fragment)
                    tally["methods_links"] += 1
        chapters = {nb.relative_to(ROOT).with_suffix("").as_posix() for nb in execute.notebooks()}
        # every chapter but the tutorial (chapter 7) cites the methods it uses
        assert chapters - set(linked) <= {"book/07_your_own_network"}, sorted(chapters - set(linked))
        broken = {p: [f for f in fragments if f not in anchors] for p, fragments in linked.items()}
        assert not any(broken.values()), f"links to missing Methods anchors: {broken}"
        assert all(all(fragments) for fragments in linked.values()), "a link to the Methods page without a section"
    finally:
        context.close()
