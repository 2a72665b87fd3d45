"""The replication scoreboard: rows from the chapters' results JSON, counts, and its HTML."""

import json

import nbformat
import pytest

from ibutils import results, scoreboard


def _notebook(folder, name, title="# A title\n\nSome text."):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(title), nbformat.v4.new_code_cell('profile = "paper"')]
    path = folder / name
    nbformat.write(nb, path)
    return path


def _record(folder, chapter, claims, profile="quick"):
    (folder / f"{chapter}.json").write_text(json.dumps(
        {"chapter": chapter, "profile": profile, "settings": {}, "claims": claims, "series": {}, "provenance": {}}))


def _claim(id, holds, value=1.0, **extra):
    return {"id": id, "statement": f"statement {id}", "value": value, "threshold": 0.5, "comparison": ">=",
            "holds": holds, **extra}


@pytest.fixture
def book(tmp_path):
    nbs = [_notebook(tmp_path, "01_tanh_vs_relu.ipynb", "# Tanh compresses\n\ntext"),
           _notebook(tmp_path, "02_toy.ipynb", "intro without a heading"),
           _notebook(tmp_path, "03_later.ipynb", "# Not run yet")]
    res = tmp_path / "results"
    res.mkdir()
    _record(res, "tanh_vs_relu", [_claim("a", True), _claim("b", False, value=None, figure="Fig. 7")])
    _record(res, "toy", [_claim("c", True, value=0.000123456)], profile="paper")
    return nbs, res


def test_chapter_reads_number_id_and_first_heading(book):
    nbs, _ = book
    assert scoreboard.chapter(nbs[0]) == scoreboard.Chapter("01", "tanh_vs_relu", "01_tanh_vs_relu",
                                                            "Tanh compresses")
    assert scoreboard.chapter(nbs[1]).title == "toy"  # no heading: the id, readable


@pytest.mark.parametrize("stem, parts", [
    ("01_tanh_vs_relu", ("01", "tanh_vs_relu")),
    ("01b_mnist_kde", ("01b", "mnist_kde")),
    ("12_x", ("12", "x")),
    ("intro", None),
    ("b1_x", None),
    ("01_", None),
])
def test_split_name_reads_chapter_and_sibling_chapter_names(stem, parts):
    assert scoreboard.split_name(stem) == parts


def test_execute_names_results_by_the_same_rule():
    from ibutils import execute
    assert execute.chapter_id("book/01b_mnist_kde.ipynb") == "mnist_kde"
    assert execute.chapter_id("book/references") == "references"


def test_chapter_refuses_a_badly_named_notebook(tmp_path):
    with pytest.raises(ValueError, match="notebook"):
        scoreboard.chapter(_notebook(tmp_path, "intro.ipynb"))


def test_rows_follow_the_records_and_mark_chapters_not_run(book):
    nbs, res = book
    board = scoreboard.rows(nbs, res)
    assert [(r.chapter.id, r.claim) for r in board] == [
        ("tanh_vs_relu", "a"), ("tanh_vs_relu", "b"), ("toy", "c"), ("later", None)]
    a, b, c, later = board
    assert (a.holds, a.value, a.threshold, a.comparison, a.profile) == (True, 1.0, 0.5, ">=", "quick")
    assert a.figure == scoreboard.CHAPTER_FIGURES["tanh_vs_relu"]  # the chapter's default
    assert b.figure == "Fig. 7" and b.value is None and not b.holds  # the claim's own figure; NaN stored as null
    assert c.profile == "paper" and c.figure == ""  # a chapter without a known figure
    assert later.claim is None and later.chapter.title == "Not run yet"


def test_rows_refuse_a_record_of_another_chapter(book):
    nbs, res = book
    _record(res, "toy", [], profile="quick")
    (res / "toy.json").write_text(json.dumps({"chapter": "other", "claims": []}))
    with pytest.raises(ValueError, match="other"):
        scoreboard.rows(nbs, res)


def test_summary_counts_claims_and_chapters(book):
    nbs, res = book
    s = scoreboard.summary(scoreboard.rows(nbs, res))
    assert (s.claims, s.holding) == (3, 2)
    assert s.chapters_run == ("tanh_vs_relu", "toy") and s.chapters_not_run == ("later",)
    assert s.profiles == ("paper", "quick")


def test_html_lists_every_claim_with_verdict_number_and_link(book):
    nbs, res = book
    page = scoreboard.html(scoreboard.rows(nbs, res), href=lambda ch: f"{ch.page}.html#findings")
    assert "2 of 3 claims hold" in page and "Not run in this build: chapter 3." in page
    assert page.count('data-claim="') == 4 and page.count("data-chapter-heading=") == 3
    assert page.count("✓</span>") == 2 and page.count("✗</span>") == 1
    assert 'href="01_tanh_vs_relu.html#findings"' in page and 'href="03_later.html#findings"' in page
    assert "0.0001235" in page and "n/a" in page and "&gt;= 0.5" in page
    assert "1 of 2 hold · profile quick" in page and "not run in this build" in page


def test_html_escapes_what_the_chapters_wrote(tmp_path):
    nb = _notebook(tmp_path, "01_x.ipynb", "# <b>bold</b> & title")
    _record(tmp_path, "x", [{**_claim("i<d", True), "statement": "|peak| < 4 & <script>"}])
    page = scoreboard.html(scoreboard.rows([nb], tmp_path), href=lambda ch: 'a"b')
    assert "<script>" not in page and "&lt;script&gt;" in page and "|peak| &lt; 4 &amp;" in page
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; title" in page and 'href="a&quot;b"' in page
    assert 'data-claim="i&lt;d"' in page


def test_check_stores_a_figure_only_when_given(tmp_path, monkeypatch):
    monkeypatch.setenv("IBUTILS_RESULTS_DIR", str(tmp_path))
    claims = [results.check("with", "s", 1.0, 0.5, figure="Fig. 4A-B"), results.check("without", "s", 1.0, 0.5)]
    record = json.loads(results.write("c", "quick", {}, claims, {}).read_text())
    assert record["claims"][0]["figure"] == "Fig. 4A-B"
    assert "figure" not in record["claims"][1]
    with pytest.raises(ValueError, match="figure"):
        results.check("a", "s", 1.0, 0.5, figure="  ")
