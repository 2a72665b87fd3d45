"""The module table of the API page (book/api.md): every summary is a whole first paragraph.

Sphinx's autosummary takes a docstring's "first sentence", up to the first ". ", and so showed
"The three-neuron toy model of Saxe et al. (2018), Fig." The book's extension
(book/_ext/ibutils_site.py) shows the first paragraph instead. These tests build the module table
of book/api.md, plus a module written to be cut, with that extension and Sphinx's dummy builder.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXT = ROOT / "book" / "_ext"
CUT_BY_SPHINX = ("The three-neuron toy model of Saxe et al. (2018), Fig. 2 and Fig. 13: exact binned "
                 "information, e.g. |f(w x)| in bits.")


def _api_modules() -> list[str]:
    """The modules listed in book/api.md's autosummary directive."""
    text = (ROOT / "book" / "api.md").read_text(encoding="utf-8")
    block = re.search(r"\.\. autosummary::\n\n((?:   \S+\n)+)", text)
    assert block, "book/api.md has no autosummary list"
    return block.group(1).split()


def _first_paragraph(module: str) -> str:
    doc = inspect.getdoc(importlib.import_module(module)) or ""
    return " ".join(doc.split("\n\n")[0].split()).replace("`", "")


@pytest.fixture(scope="module")
def summaries(tmp_path_factory) -> dict[str, str]:
    """{module: the summary cell of its row} from a dummy Sphinx build of the API page's table."""
    from sphinx.application import Sphinx
    from sphinx.ext.autosummary import autosummary_table

    src = tmp_path_factory.mktemp("api")
    (src / "cut_by_sphinx.py").write_text(f'"""{CUT_BY_SPHINX}\n\nA second paragraph."""\n', encoding="utf-8")
    (src / "conf.py").write_text(
        f"import sys\nsys.path[:0] = [{str(EXT)!r}, {str(src)!r}]\n"
        'extensions = ["sphinx.ext.autodoc", "sphinx.ext.autosummary", "ibutils_site"]\n'
        'default_role = "code"\n',
        encoding="utf-8",
    )
    names = [*_api_modules(), "cut_by_sphinx"]
    (src / "index.rst").write_text("API\n===\n\n.. autosummary::\n\n" + "".join(f"   {n}\n" for n in names),
                                   encoding="utf-8")
    saved_path = list(sys.path)
    try:
        app = Sphinx(str(src), str(src), str(src / "_out"), str(src / "_doctrees"), "dummy",
                     status=None, warning=None, warningiserror=True, freshenv=True)
        app.build()
        doctree = app.env.get_doctree("index")
    finally:
        sys.path[:] = saved_path
    rows = {}
    for table in doctree.findall(autosummary_table):
        for row in table.findall(lambda node: node.tagname == "row"):
            name, summary = (entry.astext().strip() for entry in row.children)
            rows[name] = summary
    assert sorted(rows) == sorted(names)
    return rows


def test_a_summary_is_the_whole_first_paragraph_where_sphinx_would_cut_it(summaries):
    assert summaries["cut_by_sphinx"] == CUT_BY_SPHINX


@pytest.mark.parametrize("module", _api_modules())
def test_every_module_summary_on_the_api_page_is_a_whole_sentence(summaries, module):
    summary = summaries[module]
    assert summary == _first_paragraph(module), f"{module}: summary cut to {summary!r}"
    assert summary.endswith("."), f"{module}: the docstring's first paragraph should be a sentence: {summary!r}"
    assert summary.count("(") == summary.count(")"), f"{module}: unbalanced parentheses in {summary!r}"
