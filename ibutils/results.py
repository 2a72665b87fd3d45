"""The record of a chapter's run: checked claims, series, provenance, and a run cache.

Every chapter ends by calling `write(...)`, which stores
`<results dir>/<chapter>.json` =
`{"chapter", "profile", "settings", "claims": [...], "series": {...}, "provenance": {...}}`.
Claims are computed from the run with `check`, never typed in.

The results folder is `$IBUTILS_RESULTS_DIR` if set (the book's executor sets it to
`_build/results`), else `_build/results` under the current folder's repository root
(the nearest parent holding `_toc.yml`), else `./_build/results`.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Sequence

import numpy as np
import torch

import ibutils

_COMPARISONS = {">=": np.greater_equal, "<=": np.less_equal, ">": np.greater, "<": np.less}


@dataclass(frozen=True)
class Claim:
    """One checked statement: `holds` is `value <comparison> threshold`."""

    id: str
    statement: str
    value: float
    threshold: float
    comparison: str
    holds: bool


def check(id: str, statement: str, value: float, threshold: float, comparison: str = ">=") -> Claim:
    """Evaluate a claim from a measured `value` against a `threshold`.

    `comparison` is one of ">=", "<=", ">", "<" and reads "value <comparison> threshold".
    A NaN value never holds.
    """
    if comparison not in _COMPARISONS:
        raise ValueError(f"comparison must be one of {sorted(_COMPARISONS)}, got {comparison!r}")
    value, threshold = float(value), float(threshold)
    holds = bool(_COMPARISONS[comparison](value, threshold)) and not math.isnan(value)
    return Claim(id, statement, value, threshold, comparison, holds)


def _repo_root(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / "_toc.yml").exists():
            return folder
    return None


def results_dir() -> Path:
    """The folder chapters write their results JSON into (see the module docstring)."""
    if os.environ.get("IBUTILS_RESULTS_DIR"):
        return Path(os.environ["IBUTILS_RESULTS_DIR"])
    root = _repo_root(Path.cwd()) or Path.cwd()
    return root / "_build" / "results"


def cache_dir() -> Path:
    """The run cache: `$IBUTILS_CACHE_DIR`, else `$XDG_CACHE_HOME/ibutils/runs` (~/.cache)."""
    if os.environ.get("IBUTILS_CACHE_DIR"):
        return Path(os.environ["IBUTILS_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "ibutils" / "runs"


def _to_jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        return _to_jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return None if math.isnan(obj) else float(obj)
    if isinstance(obj, (np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, Claim):
        return asdict(obj)
    return obj


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _git_commit() -> str | None:
    root = _repo_root(Path(__file__).resolve().parent)
    if root is None:
        return None
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def provenance(started: float, device: torch.device | str | None = None, seeds: Any = None) -> dict:
    """What produced a run: wall time since `started` (a `time.time()` stamp), device, versions, commit."""
    device = torch.device(device) if device is not None else ibutils.default_device()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return {
        "wall_time_s": round(time.time() - started, 2),
        "device": f"{device.type} ({name}, {torch.get_num_threads()} threads)",
        "seeds": seeds,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "ibutils": ibutils.__version__,
        "git_commit": _git_commit(),
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write(chapter: str, profile: str, settings: dict, claims: list[Claim], series: dict,
          provenance: dict | None = None) -> Path:
    """Write `<results dir>/<chapter>.json` atomically and return its path."""
    if not chapter or not chapter.replace("_", "").isalnum():
        raise ValueError(f"chapter must be a non-empty identifier like 'tanh_vs_relu', got {chapter!r}")
    if not all(isinstance(c, Claim) for c in claims):
        raise ValueError("claims must be a list of Claim objects made by ibutils.results.check")
    record = {"chapter": chapter, "profile": profile, "settings": settings, "claims": claims,
              "series": series, "provenance": provenance or {}}
    path = results_dir() / f"{chapter}.json"
    _atomic_write(path, json.dumps(_to_jsonable(record), indent=1).encode())
    return path


def findings_table(claims: list[Claim]):
    """The claims as an HTML table (✓/✗ with the numbers), for a chapter's Findings section."""
    from IPython.display import HTML

    rows = "".join(
        f"<tr><td>{'✓' if c.holds else '✗'}</td><td>{html.escape(c.statement)}</td>"
        f"<td>{c.value:.4g}</td><td>{html.escape(c.comparison)} {c.threshold:.4g}</td>"
        f"<td><code>{html.escape(c.id)}</code></td></tr>"
        for c in claims
    )
    head = "<tr><th></th><th>claim</th><th>measured</th><th>needed</th><th>id</th></tr>"
    return HTML(f'<table class="ibutils-findings"><thead>{head}</thead><tbody>{rows}</tbody></table>')


def _source_hash(modules: Sequence[ModuleType]) -> str:
    digest = hashlib.sha256()
    for module in modules:
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()


def config_key(config: dict, modules: Sequence[ModuleType] = ()) -> str:
    """A hash of a JSON-able config and of the source of `modules`, so editing them invalidates the cache."""
    text = json.dumps(_to_jsonable(config), sort_keys=True)
    return hashlib.sha256((text + _source_hash(modules)).encode()).hexdigest()[:20]


def cached(name: str, config: dict, compute: Callable[[], Any], modules: Sequence[ModuleType] = ()) -> Any:
    """Return `compute()`, cached on disk under `cache_dir()` by `name` and `config_key(config, modules)`.

    `modules` are the ibutils modules whose code the value depends on. The value must be
    picklable by `torch.save` (tensors, arrays, dicts, dataclasses). Writes are atomic, so an
    interrupted run never leaves a half entry.
    """
    path = cache_dir() / f"{name}-{config_key(config, modules)}.pt"
    if path.exists():
        return torch.load(path, weights_only=False)
    value = compute()
    buffer = io.BytesIO()
    torch.save(value, buffer)
    _atomic_write(path, buffer.getvalue())
    return value
