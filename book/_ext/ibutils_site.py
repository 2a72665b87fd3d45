"""The book's Sphinx extension, loaded through `local_extensions` in _config.yml.

- `ibutils-scoreboard` directive: the replication scoreboard (`ibutils.scoreboard`), built from
  the results JSON published with the site, so it is never typed in. Its argument is that
  folder, relative to the page (default `_static/results`); the chapters are the page's
  sibling notebooks `NN_<chapter-id>.ipynb`, and each row links to its chapter's Findings.
- Data behind the figures: on a chapter page whose results JSON is published, every cell
  output with a figure (an image, an `ibutils-slider` or an `ibutils-chart`) gets a line
  under it linking that JSON and the CSV tables (`ibutils.sitedata`, written by
  `ibutils.execute.stage_results`), and the page gets a closing section "Data behind the figures" listing the files.
- Figures open at full size: a click (or tap) on a figure of a cell output, a slider's frames
  and a chart's fallback figure included, follows a link to its PNG file, where a phone can
  zoom into it. Slider frames and fallback figures are written out of the page (their base64
  `data:` URIs, which browsers do not open from a link) into `_images/` under a name from
  their content.
- Pages must log no console errors (tests/site checks this):
  * sphinx-thebe's configuration script ends up twice in every page under Jupyter Book 1,
    and the second copy throws "Identifier 'THEBE_JS_URL' has already been declared";
    identical scripts are therefore kept once per page;
  * pydata-sphinx-theme logs "Got invalid theme mode" when no default mode is set, so
    `html_context: {default_mode: light}` is set in _config.yml (readers can still switch).
- API reference (book/api.md, Sphinx autodoc): the package's docstrings are plain text with
  `code` in backticks (`default_role: code` in _config.yml), not reStructuredText. Two habits of
  plain text mean something else there, so each docstring is adjusted after napoleon has read
  its Args/Returns sections: `|x|` (an absolute value, not a substitution) is escaped, a line
  ending in ":" followed by an indented block (a formula) introduces a literal block, and a
  bullet list gets the blank lines around it that reStructuredText needs.
- API reference summaries: the module table at the top of book/api.md (autosummary) shows
  the first paragraph of each docstring, not autosummary's "first sentence", which ends at the
  first ". " and so cut "Saxe et al. (2018), Fig. 2 ..." after "Fig.". A docstring's first
  paragraph ends where its author ended it.
- Charts (`ibutils.charts`): a page holding one loads BokehJS from the site's `_static/`
  (`charts.BOKEHJS_STATIC`, put there by `ibutils.execute.vendor_js`); other pages do not.
- `ibutils.css` (book/_static): scoreboard, data lines, figures that shrink to phone width and
  show a zoom cursor, charts and their fallback figures, chapter 6's verdict table.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import html
import inspect
import posixpath
import re
from pathlib import Path

from docutils import nodes
from sphinx.ext.autosummary import Autosummary, import_by_name
from sphinx.util.docutils import SphinxDirective
from sphinx.util.osutil import relative_uri

from ibutils import charts, scoreboard

DATA_SECTION_ID = "data-behind-the-figures"


def _dedupe_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for js in scripts:
        attrs = getattr(js, "attributes", {}) or {}
        # the same inline script comes once with filename None and once with ""
        key = (str(getattr(js, "filename", js) or ""), tuple(sorted((k, str(v)) for k, v in attrs.items())))
        if key not in seen:
            seen.add(key)
            kept.append(js)
    scripts[:] = kept


def _load_bokehjs(app, pagename, templatename, context, doctree):
    """BokehJS for the pages that show a chart (the charts' outputs leave it to the page)."""
    if 'class="ibutils-chart"' in context.get("body", ""):
        app.add_js_file(charts.BOKEHJS_STATIC)


class Scoreboard(SphinxDirective):
    """```{ibutils-scoreboard} [results folder relative to this page]```"""

    optional_arguments = 1

    def run(self):
        here = Path(self.env.doc2path(self.env.docname)).parent
        results = (here / (self.arguments[0] if self.arguments else "_static/results")).resolve()
        notebooks = sorted(nb for nb in here.glob("*.ipynb") if scoreboard.split_name(nb.stem))
        for nb in notebooks:
            self.env.note_dependency(str(nb))
        for f in results.glob("*.json"):
            self.env.note_dependency(str(f))
        doc_dir = posixpath.dirname(self.env.docname)
        builder = self.env.app.builder

        def href(chapter: scoreboard.Chapter) -> str:
            target = posixpath.join(doc_dir, chapter.page)
            return builder.get_relative_uri(self.env.docname, target) + "#findings"

        try:
            board = scoreboard.rows(notebooks, results)
        except ValueError as exc:
            raise self.error(f"ibutils-scoreboard: {exc}") from exc
        return [nodes.raw("", scoreboard.html(board, href), format="html")]


def _published(app, chapter_id: str) -> tuple[Path, str] | None:
    """The chapter's published JSON in the source tree and its URL path under the site root."""
    for static in app.config.html_static_path:
        path = Path(app.srcdir, static, "results", f"{chapter_id}.json")
        if path.exists():
            return path, f"_static/results/{chapter_id}.json"
    return None


def _shows_figure(output: nodes.Element) -> bool:
    for mime in output.findall(nodes.container):
        kind = mime.get("mime_type", "")
        if kind.startswith("image/"):
            return True
        if kind == "text/html" and any(f'class="{name}"' in mime.astext()
                                       for name in ("ibutils-slider", "ibutils-chart")):
            return True
    return False


def _cell_outputs(doctree):
    return [n for n in doctree.findall(nodes.container) if n.get("nb_element") == "cell_code_output"]


def _link(text: str, uri: str) -> nodes.reference:
    return nodes.reference(text, text, refuri=uri)


def _link_figure_data(app, doctree):
    """Data lines under a chapter's figures and a closing "Data behind the figures" section."""
    docname = app.env.docname
    parts = scoreboard.split_name(posixpath.basename(docname))
    if not parts:
        return
    published = _published(app, parts[1])
    if published is None:
        return
    json_path, json_url = published
    up = "../" * docname.count("/")
    tables = sorted(json_path.with_suffix("").glob("*.csv"))
    for output in _cell_outputs(doctree):
        if not _shows_figure(output):
            continue
        line = nodes.paragraph(classes=["ibutils-figure-data"])
        line += nodes.Text("Data behind this figure: ")
        line += _link(json_path.name, up + json_url)
        if tables:
            line += nodes.Text(" · ")
            line += _link(f"CSV ({len(tables)} table{'s' if len(tables) > 1 else ''})", f"#{DATA_SECTION_ID}")
        output.parent.insert(output.parent.index(output) + 1, line)
    top = next(iter(doctree.findall(nodes.section)), None)
    if top is None:
        return
    section = nodes.section(ids=[DATA_SECTION_ID], names=["data behind the figures"],
                            classes=["ibutils-data-section"])
    section += nodes.title("", "Data behind the figures")
    intro = nodes.paragraph()
    intro += nodes.Text("The run's record, ")
    intro += _link(json_path.name, up + json_url)
    intro += nodes.Text(", holds the settings, the checked claims, the series behind the figures "
                        "and the provenance of this page. ")
    if tables:
        intro += nodes.Text("The series are also here as CSV tables, one per group of series of "
                            "the same length, named by their place in the record:")
    section += intro
    if tables:
        items = nodes.bullet_list()
        for table in tables:
            with table.open(encoding="utf-8", newline="") as f:
                reader = csv.reader(f)
                header = next(reader, [])
                n_rows = sum(1 for _ in reader)
            shown = ", ".join(header[:6]) + (f", … ({len(header)} columns)" if len(header) > 6 else "")
            para = nodes.paragraph()
            para += _link(table.name, f"{up}_static/results/{json_path.stem}/{table.name}")
            para += nodes.Text(f": {n_rows} rows; {shown}")
            items += nodes.list_item("", para)
        section += items
    doctree.note_implicit_target(section, section)
    top += section


FIGURE_LINK_CLASS = "ibutils-figure-link"
# the PNGs a raw HTML output carries inline: slider frames, and the fallback figures of charts
_INLINE_PNG = re.compile(r'<img class="(ibutils-slider-frame|ibutils-chart-fallback)"([^>]*?) '
                         r'src="data:image/png;base64,([A-Za-z0-9+/=]+)">')


def _write_frame(app, png_base64: str) -> str:
    """A slider frame's (or a chart's fallback) PNG, written once into the site's `_images/`;
    returns its file name."""
    png = base64.b64decode(png_base64)
    name = f"ibutils-frame-{hashlib.sha256(png).hexdigest()[:20]}.png"
    path = Path(app.outdir, app.builder.imagedir, name)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
    return name


def _link_figures(app, doctree, docname):
    """Each figure of a cell output, and each slider frame, inside a link to its full-size PNG."""
    if app.builder.format != "html":
        return
    images = relative_uri(app.builder.get_target_uri(docname), app.builder.imagedir)
    for output in _cell_outputs(doctree):
        for image in list(output.findall(nodes.image)):
            if isinstance(image.parent, nodes.reference):
                continue
            source = image.get("candidates", {}).get("image/png", image["uri"])
            if source not in app.env.images:  # not a file of this site (a remote image)
                continue
            link = nodes.reference("", "", internal=True, classes=[FIGURE_LINK_CLASS],
                                   refuri=posixpath.join(images, app.env.images[source][1]))
            image.replace_self(link)
            link += image
        for raw in list(output.findall(nodes.raw)):
            text = raw.astext()
            if not _INLINE_PNG.search(text):
                continue

            def frame(match):
                href = html.escape(posixpath.join(images, _write_frame(app, match.group(3))))
                return (f'<a class="{FIGURE_LINK_CLASS}" href="{href}">'
                        f'<img class="{match.group(1)}"{match.group(2)} src="{href}"></a>')

            raw.replace_self(nodes.raw("", _INLINE_PNG.sub(frame, text), format=raw.get("format", "html"),
                                       classes=raw.get("classes", [])))


_INLINE_CODE = re.compile(r"(``.*?``|`[^`]*`)")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _escape_bars(lines: list[str]) -> None:
    for i, line in enumerate(lines):
        parts = _INLINE_CODE.split(line)
        lines[i] = "".join(p if k % 2 else p.replace("|", r"\|") for k, p in enumerate(parts))


def _literal_blocks(lines: list[str]) -> None:
    """"text:" followed by a more indented block: "text::", the block set off by blank lines."""
    i = 0
    while i < len(lines) - 1:
        line, following = lines[i].rstrip(), lines[i + 1]
        if (line.endswith(":") and not line.endswith("::") and not line.lstrip().startswith((":", ".."))
                and following.strip() and _indent(following) > _indent(line)):
            lines[i] = line + ":"
            lines.insert(i + 1, "")
            end = i + 2
            while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > _indent(line)):
                end += 1
            if end < len(lines) and lines[end - 1].strip():  # the block ends without a blank line
                lines.insert(end, "")
        i += 1


def _list_blank_lines(lines: list[str]) -> None:
    """A blank line before a bullet list that follows a paragraph, and after one that a
    paragraph follows; literal blocks (after a line ending in "::") are left alone."""
    i, list_indent, literal_indent = 0, None, None
    while i < len(lines):
        line = lines[i]
        text, indent = line.strip(), _indent(line)
        if literal_indent is not None and (not text or indent > literal_indent):
            i += 1
            continue
        literal_indent = None
        bullet = text.startswith(("- ", "* "))
        if not text:
            list_indent = None
        elif bullet and indent != list_indent:  # a list starts
            if i and lines[i - 1].strip():
                lines.insert(i, "")
                i += 1
            list_indent = indent
        elif list_indent is not None and not bullet and indent <= list_indent:  # a paragraph right after it
            lines.insert(i, "")
            i += 1
            list_indent = None
        if text.endswith("::"):
            literal_indent = indent
        i += 1


def _plain_text_docstring(app, what, name, obj, options, lines):
    """Escape `|` outside code; turn "text:" + an indented block into a literal block; set bullet
    lists off by blank lines (in place)."""
    _escape_bars(lines)
    _literal_blocks(lines)
    _list_blank_lines(lines)


def summary_paragraph(obj) -> str:
    """The first paragraph of `obj`'s docstring on one line ("" without a docstring), with `|`
    escaped as in `_plain_text_docstring`: the summary of `obj` in an autosummary table."""
    lines: list[str] = []
    for line in (inspect.getdoc(obj) or "").splitlines():
        if line.strip():
            lines.append(line.strip())
        elif lines:
            break
    _escape_bars(lines)
    return re.sub(r"::$", ".", " ".join(lines))


class ParagraphAutosummary(Autosummary):
    """`autosummary` whose summaries are whole first paragraphs (`summary_paragraph`)."""

    def get_items(self, names: list[str]) -> list[tuple[str, str, str, str]]:
        # an empty summary: autosummary could not import the object (it has warned)
        return [(name, signature, summary and summary_paragraph(import_by_name(real_name)[1]), real_name)
                for name, signature, summary, real_name in super().get_items(names)]


def setup(app):
    app.connect("html-page-context", _load_bokehjs)
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    app.setup_extension("sphinx.ext.autosummary")  # registered first, so that ours replaces it
    app.add_directive("autosummary", ParagraphAutosummary, override=True)
    app.add_directive("ibutils-scoreboard", Scoreboard)
    # before the toc collector (priority 500), so the added section shows in the page's contents
    app.connect("doctree-read", _link_figure_data, priority=400)
    app.connect("doctree-resolved", _link_figures)
    app.connect("autodoc-process-docstring", _plain_text_docstring, priority=600)  # after napoleon (500)
    app.add_css_file("ibutils.css")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
