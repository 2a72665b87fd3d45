"""The data behind the figures as CSV tables: one table per group of series of one length."""

import csv
import io

import pytest

from ibutils import sitedata


# as a chapter's results JSON stores its series: lists, NaN as null
SERIES = {
    "tanh": {
        "epochs": [0, 1, 10],
        "layers": ["h1", "h2"],
        "i_xt": [[1.5, 2.0, 1.0], [0.5, None, 0.25]],  # [L][K]
        "train_acc": [0.5, 0.75, 1.0],
        "compression": [1.0, 0.25],  # [L]
        "overtraining": 0.1,  # a scalar: JSON only
        "grad_epochs": [1, 2, 3, 4],
        "grad_snr": [[9.0, 8.0, 7.0, 6.0], [5.0, 4.0, 3.0, 2.0]],  # [L][K']
        "cube": [[[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]],  # 3-D: JSON only
    },
    "w": [0.0, 0.25, 0.5, 0.75, 1.0], "curve": [1.0, 1.25, 1.5, 1.75, 2.0],
    "sweep": [{"n": 1, "y": [1.0, 2.0]}, {"n": 2, "y": [3.0, 4.0]}],
}


def test_tables_group_series_by_length_with_layer_labels():
    by_name = {t.name: t for t in sitedata.tables(SERIES, name="chapter")}
    assert set(by_name) == {"chapter", "tanh", "tanh__layers", "tanh__grad_epochs", "sweep_0", "sweep_1"}
    main = by_name["tanh"]
    assert main.columns == ("epochs", "i_xt[h1]", "i_xt[h2]", "train_acc")
    assert main.rows == ((0, 1.5, 0.5, 0.5), (1, 2.0, None, 0.75), (10, 1.0, 0.25, 1.0))
    assert by_name["tanh__layers"].columns == ("layers", "compression")
    assert by_name["tanh__layers"].rows == (("h1", 1.0), ("h2", 0.25))
    assert by_name["tanh__grad_epochs"].columns == ("grad_epochs", "grad_snr[h1]", "grad_snr[h2]")
    assert by_name["chapter"].columns == ("w", "curve") and len(by_name["chapter"].rows) == 5
    assert by_name["sweep_1"].rows == ((3.0,), (4.0,))


def test_csv_round_trips_the_numbers_exactly():
    value = 0.1 + 0.2  # not representable in few digits
    table = sitedata.tables({"x": [value, None, 3], "k": [1, 2, 3]}, name="t")[0]
    rows = list(csv.reader(io.StringIO(table.csv())))
    assert rows[0] == ["x", "k"]
    assert float(rows[1][0]) == value and rows[2][0] == "" and rows[3] == ["3.0", "3"]


def test_unlabelled_matrices_get_index_columns_and_names_are_file_safe():
    tables = sitedata.tables({"a b/c": {"m": [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]}}, name="x")
    assert [t.name for t in tables] == ["a-b-c"]
    assert tables[0].columns == ("m[0]", "m[1]", "m[2]") and tables[0].rows == ((1.0, 3.0, 5.0), (2.0, 4.0, 6.0))


def test_a_list_of_runs_is_read_as_one_series_group():
    assert [t.name for t in sitedata.tables([{"y": [1.0, 2.0]}], name="x")] == ["series_0"]


def test_tables_refuse_what_is_not_a_series_tree():
    with pytest.raises(ValueError, match="series"):
        sitedata.tables([1, 2, 3])


def test_write_tables_writes_one_csv_per_table(tmp_path):
    paths = sitedata.write_tables({"chapter": "c", "series": SERIES}, tmp_path / "c")
    assert sorted(p.name for p in paths) == sorted(f"{t.name}.csv" for t in sitedata.tables(SERIES, "c"))
    assert all(p.read_text().count("\n") >= 3 for p in paths)
    with pytest.raises(ValueError, match="record"):
        sitedata.write_tables({"series": {}}, tmp_path)
