"""Browser checks of the explorable charts (ibutils.charts) on the built site.

On chapters 1, 4, 6 and 7: every chart renders from BokehJS served by the site (no request
leaves 127.0.0.1, no console error), its matplotlib fallback is in the page and shows in print
and without JavaScript, it fits a phone screen, and each has its data line. Chapter 1: hovering a
point shows its layer, epoch and both informations (seed mean ± sd) as the results JSON has them,
and a click on a layer in the legend hides that layer. Chapter 6: the verdict table holds exactly
the numbers of `series["verdict_matrix"]`, as a table a screen reader can read, and a click on a
cell (or Enter on it) shows that network's plane under that estimator, with the JSON's numbers.

Points are found on screen from the Bokeh document itself: the panel's frame scales map a
point's I(X;T), I(T;Y) to canvas pixels. Screenshots go to _build/screenshots/ (charts__*.png).
"""

from __future__ import annotations

import math
import re

import pytest
from test_pages import DESKTOP, PHONE, _not_executed, _open, _record, _shot_name

from ibutils import charts, execute

CHART_CHAPTERS = ["book/01_tanh_vs_relu", "book/04_sgd_vs_gd", "book/06_estimators", "book/07_your_own_network"]
READY_TIMEOUT_MS = 30_000

_ALL_READY = ("() => Array.from(document.querySelectorAll('.ibutils-chart'))"
              ".every(c => c.classList.contains('ibutils-chart-ready'))")

# Per chart: its panels, the Bokeh figures drawn in it, the fallback's state, the data line under it.
_CHARTS_JS = """
() => Array.from(document.querySelectorAll('.ibutils-chart')).map(chart => {
  const img = chart.querySelector('img.ibutils-chart-fallback');
  const live = chart.querySelector('.ibutils-chart-live');
  const output = chart.closest('div.cell_output');
  const next = output && output.nextElementSibling;
  const roots = Array.from(chart.querySelectorAll('[data-root-id]')).map(d => d.dataset.rootId);
  const drawn = Array.from(Bokeh.index.all_views()).filter(v => v.model.type === 'Figure' &&
    roots.includes(v.model.id)).length;
  const box = live.getBoundingClientRect();
  return {panels: roots.length, drawn, ready: chart.classList.contains('ibutils-chart-ready'),
          // the site writes the fallback PNG to _images/ and links it, as it does slider frames
          fallback: !!img && img.src.endsWith('.png') && img.closest('a')?.href === img.src,
          natural: img ? img.naturalWidth : 0,
          fallback_shown: !!img && getComputedStyle(img).display !== 'none',
          live_shown: getComputedStyle(live).display !== 'none', left: box.left, right: box.right,
          data_line: !!(next && next.matches('p.ibutils-figure-data'))};
})
"""

_FALLBACK_JS = """
() => Array.from(document.querySelectorAll('.ibutils-chart')).map(chart => {
  const img = chart.querySelector('img.ibutils-chart-fallback');
  return {shown: getComputedStyle(img).display !== 'none', width: img.getBoundingClientRect().width,
          natural: img.naturalWidth,
          live: getComputedStyle(chart.querySelector('.ibutils-chart-live')).display !== 'none'};
})
"""

# Screen positions of points of the panel titled `title`: [[i_xt, i_ty], ...] -> [[x, y], ...] in the viewport.
_POINTS_JS = """
([title, points]) => {
  const v = Array.from(Bokeh.index.all_views()).find(v => v.model.type === 'Figure' && v.model.title.text === title);
  v.el.scrollIntoView({block: 'center'});
  const r = v.canvas_view.el.getBoundingClientRect();
  return points.map(([x, y]) => [r.left + v.frame.x_scale.compute(x), r.top + v.frame.y_scale.compute(y)]);
}
"""

# The rows of the tooltips shown now (in Bokeh's shadow DOM), one list of [label, value] per point.
_TOOLTIP_JS = """
() => {
  const found = [];
  (function walk(node) {
    if (node.shadowRoot) walk(node.shadowRoot);
    for (const c of node.children || []) {
      if (c.classList && c.classList.contains('bk-tooltip-content') && c.getClientRects().length) found.push(c);
      walk(c);
    }
  })(document.body);
  return found.map(content => {
    const labels = Array.from(content.querySelectorAll('.bk-tooltip-row-label')).map(e => e.textContent.trim().replace(/:$/, ''));
    const values = Array.from(content.querySelectorAll('.bk-tooltip-row-value')).map(e => e.textContent.trim());
    return {rows: labels.map((l, i) => [l, values[i]]),
            font: parseFloat(getComputedStyle(content).fontSize)};
  });
}
"""

_TITLES_JS = ("() => Array.from(Bokeh.index.all_views()).filter(v => v.model.type === 'Figure')"
              ".map(v => v.model.title.text)")


def _load(browser, site_url, chapter, tally, viewport=DESKTOP):
    context, page, visit, _ = _open(browser, f"{site_url}/{chapter}.html", viewport=viewport, tally=tally)
    if page.locator(f".{execute.PLACEHOLDER_TAG}").count():
        context.close()
        _not_executed(f"{chapter}: the chapter was not executed for this build")
    page.wait_for_function(_ALL_READY, timeout=READY_TIMEOUT_MS)
    return context, page, visit


def _isolated(positions: list) -> int:
    """The index of the point farthest from its nearest neighbour (its tooltip names it alone)."""
    def gap(i):
        x, y = positions[i]
        return min((math.hypot(x - a, y - b) for j, (a, b) in enumerate(positions) if j != i), default=math.inf)
    return max(range(len(positions)), key=gap)


def _entries(tooltips) -> list[dict]:
    return [dict(t["rows"]) for t in tooltips]


def _number_pair(text: str) -> tuple[float, float | None]:
    """'6.712 ± 0.704 bits' -> (6.712, 0.704); '6.712 bits' -> (6.712, None)."""
    m = re.fullmatch(r"(-?[\d.]+)(?: ± (-?[\d.]+))? bits", text.strip())
    assert m, f"tooltip value {text!r} is not 'mean ± sd bits'"
    return float(m.group(1)), (float(m.group(2)) if m.group(2) else None)


def _hover_matches(page, title: str, plane: dict, time_key: str = "epochs") -> dict:
    """Hover the most isolated point of panel `title`, whose plane series is `plane`; the tooltip
    must name its layer and epoch and show its values (to the 3 decimals shown). Returns the entry."""
    index = [(l, k) for l in range(len(plane["layers"])) for k in range(len(plane[time_key]))]
    points = [[plane["i_xt"][l][k], plane["i_ty"][l][k]] for l, k in index]
    positions = page.evaluate(_POINTS_JS, [title, points])
    l, k = index[_isolated(positions)]
    page.mouse.move(0, 0)
    page.mouse.move(*positions[_isolated(positions)])
    page.wait_for_function("() => true")  # let the tooltip paint
    tooltips = []
    for _ in range(20):
        tooltips = page.evaluate(_TOOLTIP_JS)
        if tooltips:
            break
        page.wait_for_timeout(100)
    assert tooltips, f"{title}: no tooltip on hovering {plane['layers'][l]} at {time_key[:-1]} {plane[time_key][k]}"
    assert min(t["font"] for t in tooltips) >= 11, f"{title}: tooltip font {tooltips}"
    label = "epoch" if time_key == "epochs" else "step"
    mine = [e for e in _entries(tooltips) if e.get("layer") == plane["layers"][l] and e.get(label) == str(plane[time_key][k])]
    assert mine, (f"{title}: hovering {plane['layers'][l]} at {label} {plane[time_key][k]} shows "
                  f"{_entries(tooltips)}")
    entry = mine[0]
    for key, name in (("i_xt", "I(X;T)"), ("i_ty", "I(T;Y)")):
        shown, sd = _number_pair(entry[name])
        assert abs(shown - plane[key][l][k]) <= 0.0005 + 1e-9, f"{title}: {name} shows {shown}, JSON {plane[key][l][k]}"
        if f"{key}_sd" in plane:
            assert sd is not None and abs(sd - plane[f"{key}_sd"][l][k]) <= 0.0005 + 1e-9, (
                f"{title}: {name} spread shows {sd}, JSON {plane[f'{key}_sd'][l][k]}")
    return entry


@pytest.mark.parametrize("chapter", CHART_CHAPTERS)
def test_charts_render_from_the_site_with_their_fallback(chapter, browser, site_url, screenshots, tally):
    context, page, visit = _load(browser, site_url, chapter, tally)
    try:
        found = page.evaluate(_CHARTS_JS)
        assert found, f"{chapter}: no chart on the page"
        for i, c in enumerate(found):
            assert c["ready"] and c["live_shown"] and c["drawn"] == c["panels"] >= 1, f"{chapter}: chart {i}: {c}"
            assert c["fallback"] and c["natural"] > 0 and not c["fallback_shown"], f"{chapter}: chart {i}'s fallback: {c}"
            assert c["data_line"], f"{chapter}: chart {i} has no data line under it"
        scripts = page.evaluate("() => Array.from(document.scripts).map(s => s.src).filter(s => /bokeh/.test(s))")
        assert [s.split("/_static/")[-1].split("?")[0] for s in scripts] == [charts.BOKEHJS_STATIC], scripts
        assert page.evaluate("() => Bokeh.version") == charts.BOKEHJS_STATIC.split("-")[1].removesuffix(".min.js")
        assert not visit.external, f"{chapter}: requests leaving 127.0.0.1: {visit.external}"
        assert not visit.failed, f"{chapter}: failed requests: {visit.failed}"
        assert not visit.console_errors, f"{chapter}: console errors: {visit.console_errors}"
        page.locator(".ibutils-chart").first.screenshot(path=str(screenshots / _shot_name(chapter, "__chart0")))

        page.emulate_media(media="print")
        printed = page.evaluate(_FALLBACK_JS)
        assert all(f["shown"] and f["width"] > 0 and f["natural"] > 0 and not f["live"] for f in printed), (
            f"{chapter}: in print the fallback figures should show instead of the charts: {printed}")
        tally["charts"] += len(found)
        tally["screenshots"] += 1
    finally:
        context.close()


@pytest.mark.parametrize("chapter", CHART_CHAPTERS)
def test_charts_fit_a_phone_and_fall_back_without_javascript(chapter, browser, site_url, screenshots, tally):
    context, page, visit = _load(browser, site_url, chapter, tally, viewport=PHONE)
    try:
        found = page.evaluate(_CHARTS_JS)
        vw = page.evaluate("() => document.documentElement.clientWidth")
        assert page.evaluate("() => document.documentElement.scrollWidth") <= vw + 1, f"{chapter}: wider than a phone"
        for i, c in enumerate(found):
            assert c["left"] >= -1 and c["right"] <= vw + 1, f"{chapter}: chart {i} sticks out at phone width: {c}"
        page.locator(".ibutils-chart").first.screenshot(path=str(screenshots / _shot_name(chapter, "__chart0__phone")))
        tally["screenshots"] += 1
    finally:
        context.close()
    context = browser.new_context(java_script_enabled=False, viewport={"width": DESKTOP[0], "height": DESKTOP[1]})
    try:
        page = context.new_page()
        page.goto(f"{site_url}/{chapter}.html", wait_until="load")
        plain = page.evaluate(_FALLBACK_JS)
        assert plain and all(f["shown"] and f["natural"] > 0 and not f["live"] for f in plain), (
            f"{chapter}: without JavaScript the fallback figures should show: {plain}")
    finally:
        context.close()


def test_chapter1_hover_shows_the_results_json_and_legend_hides_a_layer(browser, site_url, screenshots, tally):
    chapter = "book/01_tanh_vs_relu"
    context, page, visit = _load(browser, site_url, chapter, tally)
    try:
        record = _record(context, site_url, chapter)
        titles = page.evaluate(_TITLES_JS)
        for activation in ("tanh", "relu"):
            title = next(t for t in titles if t.startswith(activation))
            entry = _hover_matches(page, title, record["series"][activation])
            tally["hovers"] += 1
            print(f"{chapter}, {title}: hover shows {entry}")
        page.screenshot(path=str(screenshots / _shot_name(chapter, "__hover")))

        title = next(t for t in titles if t.startswith("tanh"))
        layer = record["series"]["tanh"]["layers"][0]
        visible = ("([title, layer]) => { const v = Array.from(Bokeh.index.all_views()).find(v => v.model.type === 'Figure'"
                   " && v.model.title.text === title); const legend = v.model.below.find(m => m.type === 'Legend');"
                   " return legend.items.map(i => [i.label.value, i.renderers.every(r => r.visible)]); }")
        before = dict(page.evaluate(visible, [title, layer]))
        assert all(before.values()), before
        panel = page.locator(".ibutils-chart-panel").first  # the tanh panel
        item = panel.locator(".bk-Legend .bk-item", has=page.locator(".bk-label", has_text=layer)).first
        assert float(item.locator(".bk-label").evaluate("e => parseFloat(getComputedStyle(e).fontSize)")) >= 11
        item.click()
        after = dict(page.evaluate(visible, [title, layer]))
        assert not after[layer] and all(v for k, v in after.items() if k != layer), f"legend click: {after}"
        item.click()
        assert all(dict(page.evaluate(visible, [title, layer])).values())
        tally["legend_clicks"] += 2
        assert not visit.external and not visit.console_errors, (visit.external, visit.console_errors)
    finally:
        context.close()


_TABLE_JS = """
() => { const t = document.querySelector('table.ibutils-verdict');
  return {caption: t.querySelector('caption') && t.querySelector('caption').textContent,
          cols: Array.from(t.querySelectorAll('thead th')).map(th => [th.getAttribute('scope'), th.textContent]),
          rows: Array.from(t.querySelectorAll('tbody tr')).map(tr => ({
            head: [tr.querySelector('th').getAttribute('scope'), tr.querySelector('th').textContent],
            cells: Array.from(tr.querySelectorAll('td')).map(td => ({
              row: td.dataset.row || null, column: td.dataset.column || null,
              current: td.getAttribute('aria-current'),
              values: Array.from(td.querySelectorAll('data')).map(d => d.value),
              parts: Array.from(td.querySelectorAll(':scope > span')).map(s => ({
                verdict: s.dataset.verdict, text: s.innerText.trim(), background: getComputedStyle(s).backgroundColor}))}))}))};
}
"""


def _rgb(hex_colour: str) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


def test_chapter6_verdict_table_holds_the_results_json_and_opens_every_plane(browser, site_url, screenshots, tally):
    from ibutils import plots

    chapter = "book/06_estimators"
    context, page, visit = _load(browser, site_url, chapter, tally)
    try:
        series = _record(context, site_url, chapter)["series"]
        matrix = series["verdict_matrix"]
        table = page.evaluate(_TABLE_JS)
        assert table["caption"] and "Compression" in table["caption"]
        assert [c[0] for c in table["cols"]] == ["col"] * (len(matrix["columns"]) + 1)
        assert [r["head"] for r in table["rows"]] == [["row", r] for r in matrix["rows"]]
        openable = []
        for i, row in enumerate(table["rows"]):
            assert len(row["cells"]) == len(matrix["columns"])
            for j, cell in enumerate(row["cells"]):
                for part, shown in zip(("hidden", "output"), cell["parts"]):
                    value, sd, verdict = (matrix[part][i][j], matrix[f"{part}_sd"][i][j], matrix[f"{part}_verdict"][i][j])
                    assert shown["verdict"] == verdict
                    assert shown["background"] == _rgb(plots.VERDICT_COLOURS[verdict]), (i, j, part, shown)
                    if value is None:
                        assert "–" in shown["text"], (i, j, part, shown)
                        continue
                    assert f"{value:.2f} ± {sd:.2f}" in shown["text"], (i, j, part, shown)
                    tally["verdict_numbers"] += 2
                full = [float(v) for v in cell["values"]]
                expected = [matrix[k][i][j] for k in ("hidden", "hidden_sd", "output", "output_sd")
                            if matrix[k.removesuffix("_sd")][i][j] is not None]
                assert full == expected, f"cell {matrix['rows'][i]}, {matrix['columns'][j]}: {full} != {expected}"
                if matrix["hidden_verdict"][i][j] != "n/a":
                    assert (cell["row"], cell["column"]) == (matrix["rows"][i], matrix["columns"][j])
                    openable.append((cell["row"], cell["column"]))
                else:
                    assert cell["row"] is None
        assert [c["current"] for r in table["rows"] for c in r["cells"]].count("true") == 1
        page.locator("table.ibutils-verdict").screenshot(path=str(screenshots / _shot_name(chapter, "__verdict_table")))

        chart = page.locator(".ibutils-chart", has=page.locator("table.ibutils-verdict"))
        sources = ("() => { const c = document.querySelector('.ibutils-chart table.ibutils-verdict').closest('.ibutils-chart');"
                   " const id = c.querySelector('[data-root-id]').dataset.rootId;"
                   " const v = Array.from(Bokeh.index.all_views()).find(v => v.model.id === id);"
                   " return {title: v.model.title.text, data: v.model.renderers.filter(r => r.glyph.type === 'Scatter')"
                   ".map(r => ({layer: r.data_source.data.layer, i_xt: Array.from(r.data_source.data.i_xt),"
                   " i_ty: Array.from(r.data_source.data.i_ty)}))}; }")
        for n, (row, column) in enumerate(openable):
            cell = chart.locator(f'td[data-row="{row}"][data-column="{column}"]')
            if n % 2:
                cell.focus()
                page.keyboard.press("Enter")
            else:
                cell.click()
            assert cell.get_attribute("aria-current") == "true"
            plane = series[row][column]
            page.wait_for_function(f"() => ({sources})().data[0].i_xt.length === {len(plane['epochs'])}")
            shown = page.evaluate(sources)
            assert shown["title"].startswith(f"{row}: "), shown["title"]
            for l, layer in enumerate(plane["layers"]):
                assert shown["data"][l]["i_xt"] == plane["i_xt"][l] and shown["data"][l]["i_ty"] == plane["i_ty"][l], (
                    f"{row}, {column}, {layer}: the chart's data differ from the results JSON")
            tally["verdict_planes"] += 1
        # the plane a reader opens is hovered like chapter 1's
        row, column = openable[0]
        chart.locator(f'td[data-row="{row}"][data-column="{column}"]').click()
        title = page.evaluate(sources)["title"]
        entry = _hover_matches(page, title, series[row][column])
        print(f"{chapter}, {title}: hover shows {entry}")
        chart.screenshot(path=str(screenshots / _shot_name(chapter, "__verdict_explorer")))
        tally["hovers"] += 1
        assert not visit.external and not visit.console_errors, (visit.external, visit.console_errors)
    finally:
        context.close()
