"""Checked claims, the results JSON, and the run cache."""

import json
import math

import numpy as np
import pytest
import torch

from ibutils import results


def test_check_compares_as_stated():
    assert results.check("a", "s", 1.0, 0.5, ">=").holds
    assert not results.check("a", "s", 0.4, 0.5, ">=").holds
    assert results.check("a", "s", 0.05, 0.1, "<=").holds
    assert not results.check("a", "s", 0.5, 0.5, ">").holds
    assert not results.check("a", "s", math.nan, 0.5, "<=").holds


def test_check_refuses_unknown_comparison():
    with pytest.raises(ValueError, match="comparison"):
        results.check("a", "s", 1.0, 0.5, "==")


def test_write_produces_the_documented_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("IBUTILS_RESULTS_DIR", str(tmp_path))
    claims = [results.check("c1", "a statement", np.float64(2.0), 1.0)]
    series = {"tanh": {"epochs": np.arange(3), "i_xt": torch.ones(2, 3), "nan": math.nan}}
    path = results.write("some_chapter", "quick", {"seeds": 2}, claims, series, {"wall_time_s": 1.0})
    assert path == tmp_path / "some_chapter.json"
    record = json.loads(path.read_text())
    assert set(record) == {"chapter", "profile", "settings", "claims", "series", "provenance"}
    assert record["claims"][0] == {"id": "c1", "statement": "a statement", "value": 2.0, "threshold": 1.0,
                                   "comparison": ">=", "holds": True}
    assert record["series"]["tanh"]["i_xt"] == [[1.0] * 3] * 2
    assert record["series"]["tanh"]["nan"] is None
    assert not list(tmp_path.glob(".*.tmp"))


def test_write_refuses_bad_chapter_and_claims(tmp_path, monkeypatch):
    monkeypatch.setenv("IBUTILS_RESULTS_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="chapter"):
        results.write("../escape", "quick", {}, [], {})
    with pytest.raises(ValueError, match="claims"):
        results.write("ok", "quick", {}, [{"id": "typed in"}], {})


def test_findings_table_marks_each_claim():
    html = results.findings_table([results.check("yes", "holds", 1, 0), results.check("no", "<fails>", 0, 1)]).data
    assert html.count("<tr>") == 3 and "✓" in html and "✗" in html and "&lt;fails&gt;" in html


def test_cache_computes_once_per_config(tmp_path, monkeypatch):
    monkeypatch.setenv("IBUTILS_CACHE_DIR", str(tmp_path))
    calls = []

    def compute():
        calls.append(1)
        return {"value": torch.arange(3)}

    first = results.cached("thing", {"a": 1}, compute)
    second = results.cached("thing", {"a": 1}, compute)
    results.cached("thing", {"a": 2}, compute)
    assert len(calls) == 2
    assert torch.equal(first["value"], second["value"])


def test_provenance_names_device_and_versions():
    record = results.provenance(0.0, device="cpu", seeds=[0, 1])
    assert record["device"].startswith("cpu") and record["torch"] and record["seeds"] == [0, 1]


def test_cache_path_load_and_save(tmp_path, monkeypatch):
    monkeypatch.setenv("IBUTILS_CACHE_DIR", str(tmp_path))
    path = results.cache_path("thing", {"a": 1}, modules=(results,))
    assert path != results.cache_path("thing", {"a": 2}, modules=(results,))
    assert results.load_cached(path) is None
    assert results.save_cached(path, {"x": [1, 2]}) == {"x": [1, 2]}
    assert results.load_cached(path) == {"x": [1, 2]}
    # `cached` finds what was saved there and does not compute again
    assert results.cached("thing", {"a": 1}, lambda: pytest.fail("recomputed"), modules=(results,)) == {"x": [1, 2]}
