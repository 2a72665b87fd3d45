"""The benchmark scripts run, in their tiny smoke mode, and their fast and baseline results agree.

The scripts exit non-zero on disagreement; nothing here looks at timings.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ibutils import mi

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
RUNS = {
    "linear": ["bench_linear.py", "--smoke"],
    "estimators": ["bench_estimators.py", "--smoke"],
    "estimator-study": ["bench_estimator_study.py", "--smoke"],
    "probe": ["bench_probe.py", "--smoke"],
    "table": ["run.py", "--smoke"],
    "profile": ["run.py", "--smoke", "--profile"],
    "chapter-two-workers": ["run.py", "--smoke", "--chapter", "--workers", "2"],
    "late-steps": ["run.py", "--smoke", "--late"],
    "activations": ["run.py", "--smoke", "--activations"],
}


@pytest.mark.parametrize("args", RUNS.values(), ids=RUNS.keys())
def test_benchmark_smoke(args):
    done = subprocess.run([sys.executable, *args], cwd=BENCHMARKS, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stdout.strip(), "the benchmark printed nothing"


def _baselines():
    spec = importlib.util.spec_from_file_location("baselines", BENCHMARKS / "baselines.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_baseline_binning_uses_float64_edges_of_a_float32_range():
    """A ReLU layer's range is float32 (its min and max); NumPy 2 would build np.linspace's edges
    in float32 from it. A value on a float32-rounded edge that lies below the float64 edge tells
    the two apart: it belongs to the bin below, as in `mi.binned`."""
    lo, hi, bins = np.float32(0.0), np.float32(3.7), 100
    float64_edges = np.linspace(float(lo), float(hi), bins + 1)
    float32_edges = np.linspace(lo, hi, bins + 1)
    k = np.flatnonzero(float32_edges < float64_edges)[0]
    t = np.array([[float32_edges[k]], [float64_edges[k - 1]]], dtype=np.float32)  # both in bin k - 1
    y = np.array([0, 1])
    assert mi.binned(t, y, bins, (lo, hi)).i_xt == 0.0
    assert _baselines().binned(t, y, bins, lo, hi) == (0.0, 0.0)
