"""Code a reader copies fits the column: at a 1280-px window no code block of any page (chapter
cells, code in the text, the API reference) scrolls sideways. Printed output is not code and may
scroll (wide tables); tests/test_notebooks.py keeps the cells' source to the width measured here."""

from __future__ import annotations

import pytest

from test_pages import DESKTOP, PAGES, _open

CODE_BLOCKS = """() => [...document.querySelectorAll('article pre')]
    .filter(pre => !pre.closest('.cell_output'))
    .map(pre => ({text: pre.innerText.split('\\n')[0].slice(0, 60),
                  overflow: pre.scrollWidth - pre.clientWidth,
                  chars: Math.max(...pre.innerText.split('\\n').map(l => l.length))}))"""


@pytest.mark.parametrize("page_path", PAGES)
def test_no_code_block_scrolls_sideways(page_path, browser, site_url, tally):
    context, page, _, _ = _open(browser, f"{site_url}/{page_path}.html", DESKTOP)
    try:
        blocks = page.evaluate(CODE_BLOCKS)
    finally:
        context.close()
    tally["code_blocks"] += len(blocks)
    wide = [b for b in blocks if b["overflow"] > 1]
    assert not wide, (f"{page_path}: {len(wide)} of {len(blocks)} code blocks scroll sideways at "
                      f"{DESKTOP[0]} px: " + "; ".join(f"{b['chars']} characters, "
                                                       f"{b['overflow']} px too wide: {b['text']!r}"
                                                       for b in wide[:5]))
