"""The benchmark scripts run, in their tiny smoke mode, and their fast and baseline results agree.

The scripts exit non-zero on disagreement; nothing here looks at timings.
"""

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
RUNS = {
    "linear": ["bench_linear.py", "--smoke"],
    "estimators": ["bench_estimators.py", "--smoke"],
    "probe": ["bench_probe.py", "--smoke"],
    "table": ["run.py", "--smoke"],
    "profile": ["run.py", "--smoke", "--profile"],
    "chapter-two-workers": ["run.py", "--smoke", "--chapter", "--workers", "2"],
}


@pytest.mark.parametrize("args", RUNS.values(), ids=RUNS.keys())
def test_benchmark_smoke(args):
    done = subprocess.run([sys.executable, *args], cwd=BENCHMARKS, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stdout.strip(), "the benchmark printed nothing"
