"""The explorable charts (ibutils.charts): drawn from the series as given, hover fields, legend,
colour bar, font sizes, the HTML with its fallback, the verdict table, and errors naming the argument.
The charts in a browser are checked on the built site (tests/site/test_charts.py)."""

import base64
import html as html_lib
import io
import json
import math
import re
from html.parser import HTMLParser

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from bokeh.models import ColorBar, ColumnDataSource, CustomJS, HoverTool, Legend, Scatter
from PIL import Image

from ibutils import charts, infoplane, plots


def _plane(seed: int, layers=3, snapshots=7, spread=True, time_key="epochs") -> dict:
    rng = np.random.default_rng(seed)
    series = {time_key: [0, 1, 3, 10, 30, 100, 300][:snapshots],
              "layers": [f"hidden {i} (5)" for i in range(1, layers)] + ["output (2)"],
              "i_xt": rng.uniform(0, 12, (layers, snapshots)).tolist(),
              "i_ty": rng.uniform(0, 1, (layers, snapshots)).tolist()}
    if spread:
        series |= {"i_xt_sd": rng.uniform(0, 0.5, (layers, snapshots)).tolist(),
                   "i_ty_sd": rng.uniform(0, 0.05, (layers, snapshots)).tolist()}
    return series


def _matrix_series() -> dict:
    rows, columns = ["tanh", "relu", "tanh, 8-bit"], ["paper", "kde_upper_0.1", "quantised"]
    series = {row: {c: _plane(10 * i + j) for j, c in enumerate(columns)} for i, row in enumerate(rows)}
    del series["tanh"]["quantised"], series["relu"]["quantised"]
    values = {"hidden": [[0.83, 0.61, math.nan], [0.02, 0.07, math.nan], [0.3, math.nan, 0.12345678901]],
              "output": [[1.5, 0.4, math.nan], [1.2, 0.09, math.nan], [0.7, math.nan, 0.55]]}
    matrix = {"rows": rows, "columns": columns}
    for part, table in values.items():
        matrix[part] = table
        matrix[f"{part}_sd"] = [[0.0 if math.isnan(v) else v / 10 for v in row] for row in table]
        matrix[f"{part}_verdict"] = [[infoplane.verdict(v) for v in row] for row in table]
    matrix["hidden_verdict"][2][1] = matrix["output_verdict"][2][1] = "n/a"  # an estimator not run there
    series["tanh, 8-bit"].pop("kde_upper_0.1")
    series["verdict_matrix"] = matrix
    return series


@pytest.fixture(autouse=True)
def no_figure_left_open():
    before = set(plt.get_fignums())
    yield
    assert set(plt.get_fignums()) == before, "a chart left a matplotlib figure open"


def test_sources_hold_the_series_as_given():
    panels = {"tanh": _plane(1), "ReLU": _plane(2)}
    chart = charts.information_planes(panels, h_x=12, h_y=1)
    assert len(chart.roots) == len(chart.sources) == 2
    for sources, series in zip(chart.sources, panels.values()):
        assert len(sources) == len(series["layers"])
        for l, source in enumerate(sources):
            assert isinstance(source, ColumnDataSource)
            assert source.data["layer"] == [series["layers"][l]] * len(series["epochs"])
            assert source.data["epoch"] == series["epochs"]
            for key in ("i_xt", "i_ty", "i_xt_sd", "i_ty_sd"):
                assert source.data[key] == series[key][l], key  # the same numbers, not recomputed


def test_numpy_series_and_steps():
    series = {k: np.asarray(v) for k, v in _plane(3, spread=False, time_key="steps").items()}
    chart = charts.information_planes({"binned": series})
    source = chart.sources[0][1]
    assert source.data["step"] == series["steps"].tolist()
    assert source.data["i_ty"] == series["i_ty"][1].tolist()
    assert "i_xt_sd" not in source.data
    hover = chart.roots[0].select_one(HoverTool)
    assert dict(hover.tooltips)["step"] == "@{step}"
    assert "±" not in dict(hover.tooltips)["I(X;T)"]
    assert chart.roots[0].select_one(ColorBar).title == "step"


def test_hover_names_layer_epoch_and_both_informations_with_spread():
    chart = charts.information_planes({"tanh": _plane(1)})
    fig = chart.roots[0]
    hover = fig.select_one(HoverTool)
    tips = dict(hover.tooltips)
    assert list(tips) == ["layer", "epoch", "I(X;T)", "I(T;Y)"]
    assert tips["layer"] == "@layer" and tips["epoch"] == "@{epoch}"
    assert tips["I(X;T)"] == "@{i_xt}{0.000} ± @{i_xt_sd}{0.000} bits"
    assert tips["I(T;Y)"] == "@{i_ty}{0.000} ± @{i_ty_sd}{0.000} bits"
    # the tool answers on the points only, one renderer per layer, each on its layer's source
    assert [r.glyph.__class__ for r in hover.renderers] == [Scatter] * 3
    assert [r.data_source for r in hover.renderers] == list(chart.sources[0])
    for column in ("layer", "epoch", "i_xt", "i_xt_sd", "i_ty", "i_ty_sd"):
        assert column in chart.sources[0][0].data


def test_legend_hides_a_layer_and_colour_bar_shows_epochs():
    series = _plane(4)
    chart = charts.information_planes({"tanh": series})
    fig = chart.roots[0]
    legend = fig.select_one(Legend)
    assert legend.click_policy == "hide"
    assert [item.label.value for item in legend.items] == series["layers"]
    for item, source in zip(legend.items, chart.sources[0]):
        assert {r.data_source for r in item.renderers} == {source}  # the line and the points of one layer
    bar = fig.select_one(ColorBar)
    assert bar.title == "epoch"
    assert bar.color_mapper.low == 1 and bar.color_mapper.high == 300  # epoch 0 takes the lowest colour


def _font_sizes(model) -> list[float]:
    sizes = []
    for sub in model.references():
        for name, value in sub.properties_with_values(include_defaults=True).items():
            if name.endswith("font_size"):
                value = value.get("value") if isinstance(value, dict) else value
                sizes.append(float(re.fullmatch(r"([\d.]+)px", str(value)).group(1)))
    return sizes


def test_every_text_is_at_least_11_px():
    chart = charts.information_planes({"tanh": _plane(1)}, h_x=12, h_y=1)
    sizes = _font_sizes(chart.roots[0])
    assert len(sizes) >= 6 and min(sizes) >= 11, sorted(sizes)


def test_shared_axes_cover_data_and_ceilings():
    chart = charts.information_planes({"a": _plane(1), "b": _plane(2)}, h_x=13, h_y=1.2)
    a, b = chart.roots
    assert a.x_range is b.x_range and a.y_range is b.y_range
    assert a.x_range.start == 0 and a.x_range.end > 13 and a.y_range.end > 1.2
    fixed = charts.information_planes({"a": _plane(1)}, xlim=(0, 20), ylim=(0, 2)).roots[0]
    assert (fixed.x_range.start, fixed.x_range.end, fixed.y_range.end) == (0, 20, 2)


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _tags(fragment: str):
    parser = _Tags()
    parser.feed(fragment)
    return parser.tags


def test_html_site_and_inline():
    chart = charts.information_planes({"tanh": _plane(1), "ReLU": _plane(2)}, title="Fig. 1")
    site = chart.html("site")
    inline = chart.html("inline")
    bokehjs = charts.bokehjs_file().read_text(encoding="utf-8")
    assert bokehjs[:2000] not in site and len(site) < 200_000
    assert bokehjs[:2000] in inline  # no network in a kernel: the library travels with the output
    for fragment in (site, inline):
        assert "cdn.bokeh.org" not in fragment and "https://" not in fragment.split("<script>")[0]
    tags = _tags(site)
    assert tags[0] == ("div", {"class": "ibutils-chart", "id": tags[0][1]["id"]})
    panels = [a for t, a in tags if a.get("data-root-id")]
    assert len(panels) == 2
    doc = next(a for t, a in tags if t == "script" and a.get("type") == "application/json")
    docs_json = json.loads(html_lib.unescape(site.split(f'id="{doc["id"]}">', 1)[1].split("</script>", 1)[0]))
    roots = next(iter(docs_json.values()))["roots"]
    assert [r["id"] for r in roots] == [a["data-root-id"] for a in panels]
    img = next(a for t, a in tags if t == "img")
    assert img["class"] == "ibutils-chart-fallback" and "tanh" in img["alt"] and "Fig. 1" in img["alt"]
    png = Image.open(io.BytesIO(base64.b64decode(img["src"].split(",", 1)[1])))
    assert png.size == (2 * int(img["width"]), 2 * int(img["height"]))  # retina
    assert '<p class="ibutils-chart-title">Fig. 1</p>' in site
    bundle = chart._repr_mimebundle_()
    assert set(bundle) == {"text/html", "text/plain"}


def test_html_mode_follows_the_environment(monkeypatch):
    chart = charts.information_planes({"tanh": _plane(1)})
    monkeypatch.setenv(charts.CHARTS_JS_ENV, "site")
    assert len(chart._repr_html_()) < 200_000
    monkeypatch.delenv(charts.CHARTS_JS_ENV)
    assert len(chart._repr_html_()) > len(charts.bokehjs_file().read_bytes())
    with pytest.raises(ValueError, match="bokehjs must be 'site' or 'inline'"):
        chart.html("cdn")


def test_grid_titles_and_sources():
    rows = {"tanh": {"SGD": _plane(1), "BGD": _plane(2)}, "ReLU": {"SGD": _plane(3), "BGD": _plane(4)}}
    chart = charts.information_plane_grid(rows, h_x=12)
    assert [f.title.text for f in chart.roots] == ["tanh, SGD", "tanh, BGD", "ReLU, SGD", "ReLU, BGD"]
    assert chart.sources[3][2].data["i_ty"] == rows["ReLU"]["BGD"]["i_ty"][2]


def test_fallback_given_is_used_and_closed():
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.set_title("mine")
    chart = charts.information_planes({"tanh": _plane(1)}, fallback=fig)
    assert chart.fallback_size == (300, 200)


@pytest.mark.parametrize("call, message", [
    (lambda: charts.information_planes({}), r"panels: expected a non-empty dict"),
    (lambda: charts.information_planes([_plane(1)]), r"panels: expected a non-empty dict"),
    (lambda: charts.information_planes({"tanh": {"epochs": [0], "layers": ["a"]}}),
     r"panels\['tanh'\]: missing 'i_xt', 'i_ty'"),
    (lambda: charts.information_planes({"tanh": {**_plane(1), "i_xt": [[1.0, 2.0]]}}),
     r"panels\['tanh'\]\['i_xt'\]: expected shape \(3, 7\)"),
    (lambda: charts.information_planes({"tanh": {**_plane(1), "i_ty": [["a"] * 7] * 3}}),
     r"panels\['tanh'\]\['i_ty'\]: expected numbers"),
    (lambda: charts.information_planes({"tanh": {k: v for k, v in _plane(1).items() if k != "i_ty_sd"}}),
     r"panels\['tanh'\]: has 'i_xt_sd' but not the other spread"),
    (lambda: charts.information_planes({"tanh": 3}), r"panels\['tanh'\]: expected a plane series"),
    (lambda: charts.information_planes({"tanh": _plane(1)}, fallback="figure.png"), r"fallback: expected a matplotlib"),
    (lambda: charts.information_planes({"tanh": _plane(1)}, title=3), r"title: expected a string"),
    (lambda: charts.information_plane_grid({"tanh": {"SGD": _plane(1)}, "ReLU": {"BGD": _plane(2)}}),
     r"rows\['ReLU'\]: expected the columns \['SGD'\]"),
    (lambda: charts.information_plane_grid({}), r"rows: expected a non-empty dict"),
    (lambda: charts.verdict_table({"tanh": {}}), r"series: expected a chapter's series dict holding 'verdict_matrix'"),
    (lambda: charts.verdict_table({**_matrix_series(), "relu": {}}), r"series\['relu'\]\['paper'\]: the verdict matrix"),
])
def test_bad_input_names_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def _cells(fragment: str):
    """(row, column, [data values]) of every td of the verdict table, and its headers."""
    tds = re.findall(r"<td([^>]*)>(.*?)</td>", fragment)
    out = []
    for attrs, inner in tds:
        row = re.search(r'data-row="([^"]*)"', attrs)
        column = re.search(r'data-column="([^"]*)"', attrs)
        values = [float(v) for v in re.findall(r'<data value="([^"]+)">', inner)]
        out.append((row and html_lib.unescape(row.group(1)), column and column.group(1), values, attrs, inner))
    return out


def test_verdict_table_values_headers_and_planes():
    series = _matrix_series()
    matrix = series["verdict_matrix"]
    labels = {"paper": "bins (paper)", "kde_upper_0.1": "KDE upper, σ² = 0.1", "quantised": "exact (8-bit)"}
    chart = charts.verdict_table(series, column_labels=labels, h_x=12, h_y=1)
    fragment = chart.html("site")
    assert "<caption>" in fragment
    assert re.findall(r'<th scope="col">([^<]*)</th>', fragment) == ["network", *(html_lib.escape(v) for v in labels.values())]
    assert re.findall(r'<th scope="row">([^<]*)</th>', fragment) == matrix["rows"]
    cells = _cells(fragment)
    assert len(cells) == 9
    for k, (row, column, values, attrs, inner) in enumerate(cells):
        i, j = divmod(k, 3)
        expected = [matrix[key][i][j] for key in ("hidden", "hidden_sd", "output", "output_sd")]
        if matrix["hidden_verdict"][i][j] == "n/a":
            assert row is None and values == [] and "–" in inner  # no plane, nothing to open
            continue
        if math.isnan(expected[0]):
            continue
        assert (row, column) == (matrix["rows"][i], matrix["columns"][j])
        assert values == expected  # every digit of the series
        assert f"{expected[0]:.2f} ± {expected[1]:.2f}" in re.sub(r"<[^>]+>", "", inner)
        assert f'background:{plots.VERDICT_COLOURS[matrix["hidden_verdict"][i][j]]}' in inner
    assert 'aria-current="true"' in cells[0][3] and sum('aria-current' in c[3] for c in cells) == 1
    for verdict in ("compresses", "slight", "none"):
        assert plots.VERDICT_COLOURS[verdict] in fragment.split('class="ibutils-verdict-legend"')[1]
    switch = chart.roots[0].select_one(CustomJS)
    planes = switch.args["planes"]
    shown = {(r, c) for r, c, v, a, _ in cells if r}
    assert set(planes) == {f"{r}|{c}" for r, c in shown}
    plane = planes["relu|kde_upper_0.1"]
    assert plane["names"] == series["relu"]["kde_upper_0.1"]["layers"]
    assert plane["layers"][1]["i_xt"] == series["relu"]["kde_upper_0.1"]["i_xt"][1]
    assert plane["layers"][1]["i_ty_sd"] == series["relu"]["kde_upper_0.1"]["i_ty_sd"][1]
    # the first cell's plane is drawn before any click
    assert chart.sources[0][0].data["i_xt"] == series["tanh"]["paper"]["i_xt"][0]


def test_verdict_table_needs_a_plane():
    series = _matrix_series()
    matrix = series["verdict_matrix"]
    for part in ("hidden_verdict", "output_verdict"):
        matrix[part] = [["n/a"] * 3 for _ in range(3)]
    with pytest.raises(ValueError, match=r"no cell has a plane"):
        charts.verdict_table(series)
    bad = _matrix_series()
    bad["verdict_matrix"]["hidden"] = [[1.0]]
    with pytest.raises(ValueError, match=r"series\['verdict_matrix'\]\['hidden'\]: expected \[rows\]\[columns\]"):
        charts.verdict_table(bad)
