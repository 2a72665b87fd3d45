"""What the book's pages and the package cite must be something a reader can open.

The team's internal specification ("SPEC") is not published: the chapters, the book's pages and
ibutils' docstrings cite the paper, the authors' code, or the book's Methods page
(book/methods.md) instead, and every link to a Methods section names a label that page defines.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC = re.compile(r"\bSPEC\b")
METHODS_LABEL = re.compile(r"^\((methods-[a-z0-9-]+)\)=$", re.MULTILINE)
METHODS_REF = re.compile(r"<(methods-[a-z0-9-]+)>`|methods\.md#(methods-[a-z0-9-]+)")

PAGES = sorted((ROOT / "book").glob("*.md"))
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))
MODULES = sorted((ROOT / "ibutils").rglob("*.py"))


def _text(path: Path) -> str:
    """A page's or module's text; for a notebook, the source of all its cells."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".ipynb":
        return "\n".join("".join(cell["source"]) for cell in json.loads(text)["cells"])
    return text


def test_the_files_are_found():
    assert len(NOTEBOOKS) >= 8 and len(MODULES) >= 10 and ROOT / "book" / "methods.md" in PAGES


@pytest.mark.parametrize("path", PAGES + NOTEBOOKS + MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_cites_the_internal_spec(path):
    hits = [line.strip() for line in _text(path).splitlines() if SPEC.search(line)]
    assert not hits, f"{path.relative_to(ROOT)} cites SPEC, which readers cannot open: {hits}"


def test_methods_page_defines_every_label_the_chapters_link():
    labels = METHODS_LABEL.findall(_text(ROOT / "book" / "methods.md"))
    assert len(labels) == len(set(labels)) >= 15, labels
    linked = {a or b for path in PAGES + NOTEBOOKS for a, b in METHODS_REF.findall(_text(path))}
    assert linked, "no chapter links the Methods page"
    assert linked <= set(labels), f"links to Methods sections that do not exist: {sorted(linked - set(labels))}"
