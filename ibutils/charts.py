"""Explorable charts of the information plane for the site and JupyterLab (Bokeh), with the
matplotlib figure as their fallback.

A chart is drawn from the series a chapter writes to its results JSON (`results.write(...,
series=...)`), the same arrays, so the chart and the published data cannot disagree. A plane
series is a dict with `epochs` (or `steps`) `[K]`, `layers` `[L]` and the seed means `i_xt`,
`i_ty` `[L][K]` in bits, optionally their spreads over seeds `i_xt_sd`, `i_ty_sd` `[L][K]`
(`experiments.TishbyNetResult.series`, `EstimatorStudyResult.series`, `probe.History.series`).

- `information_planes`: panels side by side (one per network or estimator), on shared axes;
- `information_plane_grid`: rows of such panels (e.g. activation x optimiser);
- `verdict_table`: chapter 6's compression verdicts as an HTML table whose cells open the
  information plane of that network under that estimator.

Each returns a `Chart`, which displays as HTML: the Bokeh chart (hover or tap a point for its
layer, epoch and both informations with their seed spread; click a layer in the legend to hide
it; the epoch colour bar under each panel) and the matplotlib figure as a PNG, shown only where
the chart does not render (JavaScript off, BokehJS missing) and in print (book/_static/ibutils.css).
No drawing code of our own: Bokeh draws; a few lines of JavaScript switch the verdict table's
plane. BokehJS comes from the installed bokeh package, never from a CDN: inline in each chart's
output in a kernel (JupyterLab, no network), or, on the site (`IBUTILS_CHARTS_JS=site`, set by
the book's runner `ibutils.execute`), from the site's `_static/` (`BOKEHJS_STATIC`), which the
book's Sphinx extension adds to the pages holding a chart.

Markup contract (the page tests rely on it): a chart is a `<div class="ibutils-chart">` that
gets the class `ibutils-chart-ready` once Bokeh has drawn it; its Bokeh roots are in
`div.ibutils-chart-live`, its fallback is `img.ibutils-chart-fallback`. A verdict table is a
`table.ibutils-verdict` whose cells with a plane are `td[data-row][data-column]`; the cell shown
is marked `aria-current="true"`.
"""

from __future__ import annotations

import base64
import html
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import bokeh
import numpy as np

from ibutils import infoplane, plots, widgets
from ibutils.progress import phase

BOKEHJS_STATIC = f"bokeh/bokeh-{bokeh.__version__}.min.js"  # under the site's _static/
CHARTS_JS_ENV = "IBUTILS_CHARTS_JS"  # "site": BokehJS comes from the page, not from the output

FONT = {"title": "14px", "axis_label": "13px", "tick": "12px", "legend": "12px"}  # all >= 11 px
PANEL_HEIGHT = 440  # px: the toolbar, the frame, the legend (two rows) and the colour bar below it
MARKERS = ("circle", "square", "triangle", "diamond", "inverted_triangle", "star", "hex", "plus")
PALETTE_SIZE = 256
FALLBACK_DPI = 200  # twice `plots.STYLE["figure.dpi"]`: a retina PNG


def bokehjs_file() -> Path:
    """The minified BokehJS of the installed bokeh package (all the charts need)."""
    from bokeh.util.paths import bokehjs_path

    return bokehjs_path() / "js" / "bokeh.min.js"


# ------------------------------------------------------------------------------ the series
@dataclass(frozen=True)
class Plane:
    """One information plane read from its series: `times` `[K]` (epochs or steps, named by
    `time_label`), `layers` `[L]`, `i_xt`, `i_ty` `[L, K]` bits, `i_xt_sd`, `i_ty_sd` `[L, K]`
    or None. The arrays are the series' own values, as floats."""

    time_label: str
    times: np.ndarray
    layers: tuple[str, ...]
    i_xt: np.ndarray
    i_ty: np.ndarray
    i_xt_sd: np.ndarray | None
    i_ty_sd: np.ndarray | None

    def source_data(self, layer: int) -> dict[str, list]:
        """The columns of layer `layer`'s data source: `layer`, the time, `i_xt`, `i_ty` and the
        spreads when the series has them."""
        data = {"layer": [self.layers[layer]] * len(self.times), self.time_label: self.times.tolist(),
                "i_xt": self.i_xt[layer].tolist(), "i_ty": self.i_ty[layer].tolist()}
        if self.i_xt_sd is not None:
            data |= {"i_xt_sd": self.i_xt_sd[layer].tolist(), "i_ty_sd": self.i_ty_sd[layer].tolist()}
        return data


def _array(series: Mapping, key: str, shape: tuple[int, ...], where: str) -> np.ndarray:
    try:
        values = np.asarray(series[key], dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}[{key!r}]: expected numbers, got {type(series[key]).__name__} ({exc})") from None
    if values.shape != shape:
        raise ValueError(f"{where}[{key!r}]: expected shape {shape} ([layers][snapshots]), got {values.shape}")
    return values


def read_plane(series: Mapping, where: str = "series") -> Plane:
    """The `Plane` of a plane series (see the module docstring); `where` names it in errors.

    Raises ValueError naming the argument and key for a missing key, a wrong shape or a
    non-numeric value; a series with one spread must have both."""
    if not isinstance(series, Mapping):
        raise ValueError(f"{where}: expected a plane series (a dict with epochs, layers, i_xt, i_ty), "
                         f"got {type(series).__name__}")
    time_label = "epoch" if "epochs" in series else "step" if "steps" in series else None
    missing = [k for k in ("layers", "i_xt", "i_ty") if k not in series] + ([] if time_label else ["epochs"])
    if missing:
        raise ValueError(f"{where}: missing {', '.join(repr(k) for k in missing)} (a plane series has epochs or "
                         f"steps, layers, i_xt, i_ty)")
    times = np.asarray(series["epochs" if time_label == "epoch" else "steps"])
    if times.ndim != 1 or not np.issubdtype(times.dtype, np.number):
        raise ValueError(f"{where}: the {time_label}s must be a list of numbers, got {times.dtype} of shape {times.shape}")
    layers = tuple(str(name) for name in series["layers"])
    shape = (len(layers), len(times))
    sds = [k for k in ("i_xt_sd", "i_ty_sd") if k in series]
    if len(sds) == 1:
        raise ValueError(f"{where}: has {sds[0]!r} but not the other spread; give both i_xt_sd and i_ty_sd or neither")
    return Plane(time_label, times, layers, _array(series, "i_xt", shape, where), _array(series, "i_ty", shape, where),
                 *((_array(series, k, shape, where) for k in ("i_xt_sd", "i_ty_sd")) if sds else (None, None)))


# ---------------------------------------------------------------------------------- Bokeh
def _epoch_mapper(planes: list[Plane]):
    from bokeh.models import LogColorMapper
    from bokeh.palettes import Viridis256

    times = np.concatenate([p.times for p in planes])
    positive = times[times > 0]
    low = float(positive.min()) if positive.size else 1.0
    return LogColorMapper(palette=Viridis256, low=low, high=max(float(times.max()), 2 * low), low_color=Viridis256[0])


def _axis_range(values: list[np.ndarray], ceiling: float | None, pad: float):
    """(start, end) covering 0, the data and the ceiling, with `pad` (a fraction) above."""
    finite = np.concatenate([v[np.isfinite(v)].ravel() for v in values])
    top = max([ceiling or 0.0, float(finite.max()) if finite.size else 1.0]) or 1.0
    bottom = min(0.0, float(finite.min()) if finite.size else 0.0)
    return bottom, top + pad * (top - bottom)


def _tooltips(plane: Plane) -> list[tuple[str, str]]:
    spread = plane.i_xt_sd is not None
    value = "@{%s}{0.000}" + (" ± @{%s_sd}{0.000}" if spread else "") + " bits"
    return [("layer", "@layer"), (plane.time_label, "@{%s}" % plane.time_label),
            ("I(X;T)", value.replace("%s", "i_xt")), ("I(T;Y)", value.replace("%s", "i_ty"))]


def _panel(title: str, plane: Plane, mapper, x_range, y_range, h_x: float | None, h_y: float | None,
           n_layers: int | None = None):
    """One Bokeh figure: each layer a line in its Okabe-Ito colour and points coloured by epoch
    (`mapper`), with a hover tool on the points, a legend below (click hides a layer) and the
    epoch colour bar. `n_layers` > len(plane.layers) adds empty layers (the verdict table's
    planes switch data). Returns the figure and its data sources, one per layer."""
    from bokeh.models import ColorBar, ColumnDataSource, HoverTool, Legend, LegendItem, Span
    from bokeh.plotting import figure

    fig = figure(title=title, x_range=x_range, y_range=y_range, height=PANEL_HEIGHT, sizing_mode="stretch_width",
                 min_width=280, tools="pan,box_zoom,wheel_zoom,reset,save", active_drag=None, active_scroll=None,
                 toolbar_location="above", x_axis_label="I(X;T) (bits)", y_axis_label="I(T;Y) (bits)")
    fig.title.text_font_size = FONT["title"]
    for axis in (fig.xaxis, fig.yaxis):
        axis.axis_label_text_font_size = FONT["axis_label"]
        axis.major_label_text_font_size = FONT["tick"]
    for value, dimension in ((h_x, "height"), (h_y, "width")):
        if value is not None:
            fig.add_layout(Span(location=value, dimension=dimension, line_color="#4d4d4d", line_dash="dotted",
                                line_width=1))
    sources, items, points = [], [], []
    for l in range(n_layers or len(plane.layers)):
        colour = plots.OKABE_ITO[l % len(plots.OKABE_ITO)]
        data = plane.source_data(l) if l < len(plane.layers) else {key: [] for key in plane.source_data(0)}
        source = ColumnDataSource(data)
        line = fig.line("i_xt", "i_ty", source=source, line_color=colour, line_width=1.5, line_alpha=0.8)
        dots = fig.scatter("i_xt", "i_ty", source=source, marker=MARKERS[l % len(MARKERS)], size=9,
                           fill_color={"field": plane.time_label, "transform": mapper}, line_color=colour,
                           line_width=1.2)
        label = plane.layers[l] if l < len(plane.layers) else ""
        items.append(LegendItem(label=label, renderers=[line, dots]))
        sources.append(source)
        points.append(dots)
    fig.add_tools(HoverTool(renderers=points, tooltips=_tooltips(plane)))
    legend = Legend(items=items, click_policy="hide", orientation="horizontal", ncols=3,
                    label_text_font_size=FONT["legend"], location="center", border_line_color=None,
                    margin=0, padding=4)
    fig.add_layout(legend, "below")
    fig.add_layout(ColorBar(color_mapper=mapper, orientation="horizontal", title=plane.time_label, height=10,
                            title_text_font_size=FONT["legend"], major_label_text_font_size=FONT["tick"],
                            title_text_font_style="normal", location="center", padding=2, margin=0), "below")
    return fig, sources


def _shared_ranges(planes: list[Plane], h_x, h_y, xlim, ylim):
    from bokeh.models import Range1d

    x = xlim or _axis_range([p.i_xt for p in planes], h_x, 0.04)
    y = ylim or _axis_range([p.i_ty for p in planes], h_y, 0.06)
    return Range1d(*x), Range1d(*y)


# --------------------------------------------------------------------------------- output
_READY_JS = """(function(){
var chart=document.getElementById(%(chart)s);
function draw(){
  var docs=JSON.parse(document.getElementById(%(docs)s).textContent);
  Bokeh.embed.embed_items(docs,%(items)s).then(function(){chart.classList.add('ibutils-chart-ready');%(after)s});
}
if(window.Bokeh&&window.Bokeh.embed){draw();}
else{var tries=0,timer=setInterval(function(){
  if(window.Bokeh&&window.Bokeh.embed){clearInterval(timer);draw();}
  else if(++tries>500){clearInterval(timer);}},20);}
})();"""


def _script_json(value) -> str:
    """JSON for inside a `<script>` element: `</` cannot end the element early."""
    from bokeh.core.json_encoder import serialize_json

    return serialize_json(value, pretty=False).replace("</", "<\\/")


def _inline_bokehjs() -> str:
    return bokehjs_file().read_text(encoding="utf-8").replace("</script", "<\\/script")


@dataclass(frozen=True)
class Chart:
    """An explorable chart and its matplotlib fallback; displays as HTML (see the module docstring).

    `roots` are the Bokeh models (one per panel), `sources[panel][layer]` their data sources,
    `fallback_png` the matplotlib figure as a PNG (`FALLBACK_DPI`), `fallback_size` its width and
    height in CSS px, `alt` the fallback's text, `title` a heading above the panels, `before`
    HTML above the chart (the verdict table), `after_render` JavaScript run once Bokeh has drawn
    it (with `chart`, the chart's element)."""

    roots: tuple
    sources: tuple[tuple, ...]
    fallback_png: bytes = field(repr=False)
    fallback_size: tuple[int, int]
    alt: str
    title: str = ""
    before: str = ""
    after_render: str = ""

    def html(self, bokehjs: str | None = None) -> str:
        """The HTML fragment. `bokehjs`: "inline" puts BokehJS in it, "site" expects the page to
        load it; default from `$IBUTILS_CHARTS_JS` ("site"), else "inline"."""
        from bokeh.embed.util import OutputDocumentFor, standalone_docs_json_and_render_items

        mode = bokehjs or ("site" if os.environ.get(CHARTS_JS_ENV) == "site" else "inline")
        if mode not in ("site", "inline"):
            raise ValueError(f"bokehjs must be 'site' or 'inline', got {bokehjs!r}")
        with OutputDocumentFor(self.roots):
            docs_json, [item] = standalone_docs_json_and_render_items(list(self.roots))
        uid = uuid.uuid4().hex[:12]
        panels = "".join(f'<div class="ibutils-chart-panel"><div id="{html.escape(root.elementid)}" '
                         f'data-root-id="{html.escape(root.id)}" style="display:contents"></div></div>'
                         for root in item.roots)
        width, height = self.fallback_size
        image = (f'<img class="ibutils-chart-fallback" alt="{html.escape(self.alt)}" width="{width}" '
                 f'height="{height}" src="data:image/png;base64,{base64.b64encode(self.fallback_png).decode()}">')
        script = _READY_JS % {"chart": json.dumps(f"ibutils-chart-{uid}"), "docs": json.dumps(f"ibutils-docs-{uid}"),
                              "items": _script_json([item.to_json()]), "after": self.after_render}
        library = f"<script>{_inline_bokehjs()}</script>" if mode == "inline" else ""
        heading = f'<p class="ibutils-chart-title">{html.escape(self.title)}</p>' if self.title else ""
        return (f'<div class="ibutils-chart" id="ibutils-chart-{uid}">{self.before}'
                f'<div class="ibutils-chart-live">{heading}<div class="ibutils-chart-panels">{panels}</div></div>{image}'
                f'<script type="application/json" id="ibutils-docs-{uid}">{_script_json(docs_json)}</script>'
                f'{library}<script>{script}</script></div>')

    def _repr_html_(self) -> str:
        return self.html()

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/html": self.html(), "text/plain": repr(self)}

    def __repr__(self) -> str:
        return f"Chart({len(self.roots)} panel(s); fallback {self.fallback_size[0]} x {self.fallback_size[1]} px)"


def _fallback(fig) -> tuple[bytes, tuple[int, int]]:
    """The matplotlib figure `fig` as a retina PNG and its size in CSS px; closes the figure."""
    width, height = fig.get_size_inches() * fig.dpi
    return widgets.render_png(fig, FALLBACK_DPI), (int(round(width)), int(round(height)))


def _check_panels(panels, name: str) -> dict:
    if not isinstance(panels, Mapping) or not panels:
        raise ValueError(f"{name}: expected a non-empty dict of panel title -> plane series, got {panels!r:.80}")
    return dict(panels)


def _check_options(fallback, title: str = ""):
    if fallback is not None and not hasattr(fallback, "savefig"):
        raise ValueError(f"fallback: expected a matplotlib Figure or None, got {type(fallback).__name__}")
    if not isinstance(title, str):
        raise ValueError(f"title: expected a string, got {type(title).__name__}")


@phase("plotting")
def information_planes(panels: Mapping[str, Mapping], *, h_x: float | None = None, h_y: float | None = None,
                       xlim: tuple[float, float] | None = None, ylim: tuple[float, float] | None = None,
                       title: str = "", fallback=None) -> Chart:
    """Information planes side by side on shared axes, one panel per plane series.

    `panels` maps a panel title to a plane series (module docstring), e.g.
    `{"tanh": series["tanh"], "ReLU": series["relu"]}`. `h_x`, `h_y` (bits) draw H(X) and H(Y)
    as dotted lines; the axes cover them, 0 and the data unless `xlim`/`ylim` are given.
    `title` heads the chart (and the fallback figure). `fallback`: the matplotlib figure to show
    without JavaScript and in print; by default `plots.information_planes` of the same series.
    Returns a `Chart`.
    """
    panels = _check_panels(panels, "panels")
    _check_options(fallback, title)
    planes = {title: read_plane(series, f"panels[{title!r}]") for title, series in panels.items()}
    if fallback is None:
        fallback = plots.information_planes(
            {t: (p.times, p.i_xt.T, p.i_ty.T) for t, p in planes.items()}, colorbar_label=next(iter(planes.values())).time_label,
            h_x=h_x, h_y=h_y, **({"xlim": xlim} if xlim else {}), **({"ylim": ylim} if ylim else {}))
    return _chart(planes, h_x, h_y, xlim, ylim, fallback, title)


def _chart(planes: dict[str, Plane], h_x, h_y, xlim, ylim, fallback, title: str) -> Chart:
    mapper = _epoch_mapper(list(planes.values()))
    x_range, y_range = _shared_ranges(list(planes.values()), h_x, h_y, xlim, ylim)
    figures = [_panel(title, plane, mapper, x_range, y_range, h_x, h_y) for title, plane in planes.items()]
    if title:
        fallback.suptitle(title)
    png, size = _fallback(fallback)
    alt = f"{title + ': ' if title else ''}information planes of " + "; ".join(planes)
    return Chart(tuple(f for f, _ in figures), tuple(tuple(s) for _, s in figures), png, size, alt, title)


@phase("plotting")
def information_plane_grid(rows: Mapping[str, Mapping[str, Mapping]], *, h_x: float | None = None,
                           h_y: float | None = None, title: str = "", fallback=None) -> Chart:
    """A grid of information planes on shared axes: `rows` maps a row title to a dict of column
    title -> plane series, every row with the same columns; panels are titled "row, column".
    `title` heads the chart. The fallback is `plots.information_plane_grid` of the same series unless `fallback` is
    given. Returns a `Chart` (its panels wrap to the page's width)."""
    if not isinstance(rows, Mapping) or not rows:
        raise ValueError(f"rows: expected a non-empty dict of row title -> {{column title: plane series}}, got {rows!r:.80}")
    columns = None
    planes = {}
    for row, cols in rows.items():
        cols = _check_panels(cols, f"rows[{row!r}]")
        if columns is None:
            columns = list(cols)
        elif list(cols) != columns:
            raise ValueError(f"rows[{row!r}]: expected the columns {columns}, got {list(cols)}")
        planes |= {f"{row}, {col}": read_plane(series, f"rows[{row!r}][{col!r}]") for col, series in cols.items()}
    _check_options(fallback, title)
    if fallback is None:
        first = next(iter(planes.values()))
        fallback = plots.information_plane_grid(
            {row: {col: (planes[f"{row}, {col}"].times, planes[f"{row}, {col}"].i_xt.T, planes[f"{row}, {col}"].i_ty.T)
                   for col in columns} for row in rows}, colorbar_label=first.time_label, h_x=h_x, h_y=h_y)
    return _chart(planes, h_x, h_y, None, None, fallback, title)


# --------------------------------------------------------------------------- verdict table
# Switches the explorer's plane: `planes[key]` holds each layer's columns and the axis ranges.
_SWITCH_JS = """
const plane = planes[cb_data.key];
for (let l = 0; l < sources.length; l++) {
  sources[l].data = l < plane.layers.length ? plane.layers[l] : empty;
  items[l].label = {value: l < plane.names.length ? plane.names[l] : ""};
}
x_range.start = plane.x[0]; x_range.end = plane.x[1];
y_range.start = plane.y[0]; y_range.end = plane.y[1];
title.text = plane.title;
"""

# Runs once the explorer is drawn: a click (or Enter, Space) on a cell shows its plane.
_TABLE_JS = """
var table=chart.querySelector('table.ibutils-verdict');
var doc=Bokeh.documents.find(function(d){return d.get_model_by_name(%(switch)s);});
var sw=doc.get_model_by_name(%(switch)s);
function show(cell){
  table.querySelectorAll('td[aria-current]').forEach(function(c){c.removeAttribute('aria-current');});
  cell.setAttribute('aria-current','true');
  sw.execute(null,{key:cell.dataset.row+'|'+cell.dataset.column});
}
table.addEventListener('click',function(e){var c=e.target.closest('td[data-column]');if(c){show(c);}});
table.addEventListener('keydown',function(e){var c=e.target.closest('td[data-column]');
  if(c&&(e.key==='Enter'||e.key===' ')){e.preventDefault();show(c);}});
"""

VERDICT_TEXT = {"compresses": f"compresses (≥ {infoplane.COMPRESSES:g} bits)", "slight": "slight",
                "none": f"none (≤ {infoplane.NO_COMPRESSION:g} bits)", "n/a": "not measured"}


def _cell_part(matrix: Mapping, part: str, i: int, j: int) -> str:
    value, sd, verdict = matrix[part][i][j], matrix[f"{part}_sd"][i][j], matrix[f"{part}_verdict"][i][j]
    colour = plots.VERDICT_COLOURS.get(verdict, "#FFFFFF")
    if value is None or np.isnan(value):
        text = "–"
    else:
        text = (f'<data value="{float(value)!r}">{value:.2f}</data> ± <data value="{float(sd)!r}">{sd:.2f}</data>'
                f'<span class="ibutils-sr"> bits, {html.escape(verdict)}</span>')
    return (f'<span class="ibutils-verdict-{part}" data-verdict="{html.escape(verdict)}" '
            f'style="background:{colour}"><span class="ibutils-sr">{part}: </span>{text}</span>')


def _matrix(series: Mapping) -> dict:
    if not isinstance(series, Mapping) or "verdict_matrix" not in series:
        raise ValueError("series: expected a chapter's series dict holding 'verdict_matrix' "
                         "(experiments.verdict_matrix) and a plane series per network and estimator")
    matrix = series["verdict_matrix"]
    missing = [k for k in ("rows", "columns", "hidden", "hidden_sd", "output", "output_sd", "hidden_verdict",
                           "output_verdict") if k not in matrix]
    if missing:
        raise ValueError(f"series['verdict_matrix']: missing {missing} (see experiments.verdict_matrix)")
    shape = (len(matrix["rows"]), len(matrix["columns"]))
    for key in ("hidden", "hidden_sd", "output", "output_sd", "hidden_verdict", "output_verdict"):
        if np.shape(matrix[key]) != shape:
            raise ValueError(f"series['verdict_matrix'][{key!r}]: expected [rows][columns] of shape {shape}, "
                             f"got {np.shape(matrix[key])}")
    return {k: (np.asarray(v, dtype=float) if k in ("hidden", "hidden_sd", "output", "output_sd") else v)
            for k, v in matrix.items()}


@phase("plotting")
def verdict_table(series: Mapping, *, column_labels: Mapping[str, str] | None = None,
                  row_labels: Mapping[str, str] | None = None, h_x: float | None = None,
                  h_y: float | None = None, fallback=None) -> Chart:
    """Compression by network (rows) and estimator (columns) as an HTML table, and below it the
    information plane of the cell last clicked (first: the first cell with a plane).

    `series` is the chapter's series dict: `series["verdict_matrix"]` as
    `experiments.verdict_matrix` returns it, and `series[row][column]` the plane series of
    that network under that estimator (`EstimatorStudyResult.series`). Each cell shows the
    compression (bits, seed mean ± sd over seeds) of the most compressing hidden layer above
    that of the output layer, each on the colour of its verdict (`plots.VERDICT_COLOURS`,
    thresholds `infoplane.COMPRESSES`, `infoplane.NO_COMPRESSION`). The values are those of the
    series, in full in each `<data value>`. `fallback`: the figure for print and no JavaScript,
    by default `plots.verdict_matrix`. Returns a `Chart`.
    """
    from bokeh.models import CustomJS

    matrix = _matrix(series)
    rows, columns = list(matrix["rows"]), list(matrix["columns"])
    column_labels, row_labels = dict(column_labels or {}), dict(row_labels or {})
    planes = {}
    for i, row in enumerate(rows):
        for j, column in enumerate(columns):
            if matrix["hidden_verdict"][i][j] == "n/a":
                continue
            if not isinstance(series.get(row), Mapping) or column not in series[row]:
                raise ValueError(f"series[{row!r}][{column!r}]: the verdict matrix has this cell but the series "
                                 "has no plane for it")
            planes[row, column] = read_plane(series[row][column], f"series[{row!r}][{column!r}]")
    if not planes:
        raise ValueError("series['verdict_matrix']: no cell has a plane (every verdict is 'n/a')")
    _check_options(fallback)
    if fallback is None:
        fallback = plots.verdict_matrix(series["verdict_matrix"], row_labels=row_labels, column_labels=column_labels)

    def title(key):
        return f"{row_labels.get(key[0], key[0])}: {column_labels.get(key[1], key[1])}"

    mapper = _epoch_mapper(list(planes.values()))
    first_key, first = next(iter(planes.items()))
    x_range, y_range = _shared_ranges([first], h_x, h_y, None, None)
    n_layers = max(len(p.layers) for p in planes.values())
    fig, sources = _panel(title(first_key), first, mapper, x_range, y_range, h_x, h_y, n_layers=n_layers)
    switch_data = {
        f"{r}|{c}": {"layers": [p.source_data(l) for l in range(len(p.layers))], "names": list(p.layers),
                     "x": list(_axis_range([p.i_xt], h_x, 0.04)), "y": list(_axis_range([p.i_ty], h_y, 0.06)),
                     "title": title((r, c))}
        for (r, c), p in planes.items()}
    uid = uuid.uuid4().hex[:12]
    switch = CustomJS(name=f"ibutils-verdict-switch-{uid}", code=_SWITCH_JS, args=dict(
        planes=switch_data, sources=sources, items=fig.legend[0].items, x_range=x_range, y_range=y_range,
        title=fig.title, empty={key: [] for key in first.source_data(0)}))
    fig.tags = [switch]  # in the document, for the table's script to find by name
    png, size = _fallback(fallback)
    table = _table_html(matrix, rows, columns, row_labels, column_labels, planes, first_key)
    return Chart((fig,), (tuple(sources),), png, size, "Compression by network and estimator (matplotlib figure)",
                 before=table, after_render=_TABLE_JS % {"switch": json.dumps(switch.name)})


def _table_html(matrix, rows, columns, row_labels, column_labels, planes, shown) -> str:
    head = "".join(f'<th scope="col">{html.escape(column_labels.get(c, c))}</th>' for c in columns)
    body = []
    for i, row in enumerate(rows):
        cells = []
        for j, column in enumerate(columns):
            inner = _cell_part(matrix, "hidden", i, j) + _cell_part(matrix, "output", i, j)
            if (row, column) in planes:
                label = f"{row_labels.get(row, row)}, {column_labels.get(column, column)}"
                current = ' aria-current="true"' if (row, column) == shown else ""
                cells.append(f'<td data-row="{html.escape(row)}" data-column="{html.escape(column)}" tabindex="0" '
                             f'title="Show the information plane of {html.escape(label)}"{current}>{inner}</td>')
            else:
                cells.append(f"<td>{inner}</td>")
        body.append(f'<tr><th scope="row">{html.escape(row_labels.get(row, row))}</th>{"".join(cells)}</tr>')
    caption = "Compression (bits) by network and estimator"
    guide = ("In each cell the most compressing hidden layer above the output layer, seed mean ± standard "
             "deviation over seeds; the colour is the verdict. Click a cell (or focus it and press Enter) to "
             "show its information plane below the table.")
    legend = "".join(f'<li><span class="ibutils-verdict-swatch" style="background:{plots.VERDICT_COLOURS[v]}">'
                     f"</span>{html.escape(text)}</li>" for v, text in VERDICT_TEXT.items())
    return (f'<p class="ibutils-verdict-guide">{html.escape(guide)}</p><div class="ibutils-verdict-wrap"><table class="ibutils-verdict"><caption>{html.escape(caption)}</caption>'
            f'<thead><tr><th scope="col">network</th>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'
            f'<ul class="ibutils-verdict-legend" aria-label="verdict colours">{legend}</ul>')
