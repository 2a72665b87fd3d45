"""The record of a chapter's run: checked claims, series, provenance, and a run cache.

Every chapter ends by calling `write(...)`, which stores
`<results dir>/<chapter>.json` =
`{"chapter", "profile", "settings", "claims": [...], "series": {...}, "provenance": {...}}`.
Claims are computed from the run with `check`, never typed in.

The results folder is `$IBUTILS_RESULTS_DIR` if set (the book's executor sets it to
`_build/results`), else `_build/results` under the current folder's repository root
(the nearest parent holding `_toc.yml`), else `./_build/results`.

The run cache (`cached`, `cache_path`, `load_cached`, `save_cached`) keeps computed values as
`ibutils.store` files under `cache_dir()`, keyed by their settings and the source of the code
that computed them, with the training checkpoints of values being computed beside them
(`checkpoint_name`, `remove_checkpoints`).
"""

from __future__ import annotations

import hashlib
import html
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
from ibutils import progress, store

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
    figure: str | None = None  # the paper figure it replicates, e.g. "Fig. 4A-B" (scoreboard)


def check(id: str, statement: str, value: float, threshold: float, comparison: str = ">=",
          figure: str | None = None) -> Claim:
    """Evaluate a claim from a measured `value` against a `threshold`.

    `comparison` is one of ">=", "<=", ">", "<" and reads "value <comparison> threshold".
    A NaN value never holds. `figure` optionally names the paper figure the claim is about
    (e.g. "Fig. 4A-B"); the scoreboard on the intro page shows it.
    """
    if comparison not in _COMPARISONS:
        raise ValueError(f"comparison must be one of {sorted(_COMPARISONS)}, got {comparison!r}")
    value, threshold = float(value), float(threshold)
    holds = bool(_COMPARISONS[comparison](value, threshold)) and not math.isnan(value)
    if figure is not None and (not isinstance(figure, str) or not figure.strip()):
        raise ValueError(f"figure must be a non-empty string like 'Fig. 4A-B' or None, got {figure!r}")
    return Claim(id, statement, value, threshold, comparison, holds, figure)


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
    if isinstance(obj, Claim):  # `figure` only when given, so older records keep their layout
        return {k: v for k, v in asdict(obj).items() if k != "figure" or v is not None}
    return obj


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
    """What produced a run: wall time since `started` (a `time.time()` stamp), device, versions, commit.

    `time_split_s` splits the wall time into training, estimating, plotting and other seconds, as
    `ibutils.progress` counted them in this process (and in the worker processes it started)."""
    device = torch.device(device) if device is not None else ibutils.default_device()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return {
        "wall_time_s": round(time.time() - started, 2),
        "time_split_s": progress.split(started),
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
    store.write_bytes(path, json.dumps(_to_jsonable(record), indent=1).encode())
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
    for module in dict.fromkeys(modules):  # each once, in order
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()


def config_key(config: dict, modules: Sequence[ModuleType] = ()) -> str:
    """A hash of a JSON-able config and of the source of `modules`, so editing them invalidates the cache."""
    text = json.dumps(_to_jsonable(config), sort_keys=True)
    return hashlib.sha256((text + _source_hash(modules)).encode()).hexdigest()[:20]


def cache_path(name: str, config: dict, modules: Sequence[ModuleType] = ()) -> Path:
    """Where `cached(name, config, ..., modules)` keeps its value: `<cache dir>/<name>-<key>.entry`.
    Take it before computing, so the key reflects the code that computed the value even if
    the sources change meanwhile."""
    return cache_dir() / f"{name}-{config_key(config, modules)}.entry"


def load_cached(path: Path) -> Any | None:
    """The value cached at `path` (from `cache_path`), or None if there is none yet.

    An entry that is truncated, altered or otherwise unreadable (`ibutils.store.CorruptFile`)
    is never loaded: one line on stderr names it, and None is returned, so the caller
    recomputes the value and `save_cached` replaces the entry.
    """
    try:
        return store.read(path)
    except FileNotFoundError:
        return None
    except store.CorruptFile as exc:
        store.notice(f"run cache entry {exc}; recomputing it")
        return None


def save_cached(path: Path, value: Any) -> Any:
    """Cache `value` at `path` (from `cache_path`) and return it.

    The entry is an `ibutils.store` file: plain data, arrays, tensors and the ibutils result types
    of `ibutils.store.ALLOWED_TYPES` (anything else is a ValueError here, before anything is
    written), with a SHA-256 checksum, written atomically (temporary file, fsync, rename), so a
    run killed at any moment leaves the old entry or the new one, never part of one.
    """
    store.write(path, value)
    return value


def checkpoint_name(entry: Path, part: Any) -> str:
    """The file name, in the run cache, of the training checkpoint of one `part` (any JSON-able
    description, e.g. a group of seeds) of the value cached at `entry`: `<entry stem>.part-<hash>.ckpt`.

    A name rather than a path: the process that trains resolves it in its own `cache_dir()`.
    """
    text = json.dumps(_to_jsonable(part), sort_keys=True)
    return f"{Path(entry).stem}.part-{hashlib.sha256(text.encode()).hexdigest()[:12]}.ckpt"


def remove_checkpoints(entry: Path) -> None:
    """Remove the checkpoints of every part of the value cached at `entry` (once it is saved), and
    the temporary files of checkpoint writes that were killed."""
    entry = Path(entry)
    names = {path.name for path in entry.parent.glob(f"{entry.stem}.part-*.ckpt")}
    names |= {path.name[1:path.name.index(".ckpt.") + 5] for path in entry.parent.glob(f".{entry.stem}.part-*.ckpt.*.tmp")}
    for name in names:
        store.remove(entry.parent / name)


def cached(name: str, config: dict, compute: Callable[[], Any], modules: Sequence[ModuleType] = ()) -> Any:
    """Return `compute()`, cached on disk under `cache_dir()` by `name` and `config_key(config, modules)`.

    `modules` are the ibutils modules whose code the value depends on. The value must be plain
    data, arrays, tensors or allowlisted ibutils types (see `save_cached`) and not None; loading
    it back never unpickles or runs code. A damaged entry is reported and recomputed (`load_cached`).
    """
    path = cache_path(name, config, modules)
    value = load_cached(path)
    return value if value is not None else save_cached(path, compute())


_PROVENANCE_SHOWN = ("wall_time_s", "time_split_s", "device", "seeds", "python", "torch", "numpy", "ibutils",
                     "git_commit", "finished_utc")


def _seeds_text(seeds: Any) -> str:
    if seeds is None:
        return "none recorded"
    if isinstance(seeds, int):
        return str(seeds)
    seeds = list(seeds)
    if seeds and all(isinstance(s, int) for s in seeds) and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{len(seeds)} ({seeds[0]}–{seeds[-1]})" if len(seeds) > 1 else f"1 ({seeds[0]})"
    shown = ", ".join(str(s) for s in seeds[:10])
    return f"{len(seeds)} ({shown}{', …' if len(seeds) > 10 else ''})"


def _duration_text(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)) or math.isnan(seconds):
        return "not recorded"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {secs} s"


def _split_text(split: Any) -> str:
    if not isinstance(split, dict) or not split:
        return "not recorded"
    return " · ".join(f"{name} {_duration_text(seconds)}" for name, seconds in split.items())


def reproducibility(path: Path | str):
    """The run's record as a box for the end of a chapter: what produced the chapter's numbers.

    `path` is the results JSON that `write` returned; everything shown is read back from it, as the
    run recorded it: profile, seeds (else the settings whose name mentions "seed"), epochs (every
    setting whose name mentions "epoch"), wall time and its split into training, estimating,
    plotting and other time, device, versions of Python, torch, NumPy and
    ibutils, git commit, finishing time (UTC), any further provenance entries (e.g. per-part
    timings), and the command that re-runs the chapter. Returns an IPython HTML object: a `<div class="ibutils-repro">` with
    `data-chapter` and `data-profile`, styled inline so it reads the same in Jupyter and on the site.
    """
    from IPython.display import HTML

    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"path: cannot read a results JSON at {path}: {exc}") from exc
    if not isinstance(record, dict) or "chapter" not in record:
        raise ValueError(f"path: {path} is not a results record (no 'chapter')")
    chapter, profile = str(record["chapter"]), str(record.get("profile", "?"))
    prov = record.get("provenance") or {}
    settings = record.get("settings") or {}
    epochs = ", ".join(f"{k} = {v:,}" if isinstance(v, int) else f"{k} = {v}"
                       for k, v in settings.items() if "epoch" in str(k).lower()) or "not applicable"
    seeds = _seeds_text(prov.get("seeds"))
    if prov.get("seeds") is None:  # e.g. a Monte Carlo seed among the settings
        seeds = ", ".join(f"{k} = {v}" for k, v in settings.items() if "seed" in str(k).lower()) or seeds
    commit = prov.get("git_commit")
    versions = " · ".join(f"{name} {prov[key]}" for key, name in
                          (("python", "Python"), ("torch", "torch"), ("numpy", "NumPy"), ("ibutils", "ibutils"))
                          if prov.get(key))
    rows = [
        ("Profile", html.escape(profile)),
        ("Seeds", html.escape(seeds)),
        ("Epochs", html.escape(epochs)),
        ("Wall time", html.escape(_duration_text(prov.get("wall_time_s")))),
        ("Time split", html.escape(_split_text(prov.get("time_split_s")))),
        ("Device", html.escape(str(prov.get("device", "not recorded")))),
        ("Software", html.escape(versions or "not recorded")),
        ("Git commit", f'<code title="{html.escape(commit)}">{html.escape(commit[:12])}</code>' if commit
         else "not recorded (not run from a git checkout)"),
        ("Finished", html.escape(str(prov.get("finished_utc", "not recorded")).replace("T", " ").replace("Z", " UTC"))),
    ]
    for key, value in prov.items():
        if key not in _PROVENANCE_SHOWN:
            text = json.dumps(value, ensure_ascii=False)
            rows.append((html.escape(str(key)), f"<code>{html.escape(text[:400])}</code>"))
    rows.append(("Re-run", f"<code>make chapter NAME={html.escape(chapter)} PROFILE={html.escape(profile)}</code>"))
    th = 'style="text-align:left;vertical-align:top;padding:0.15em 1.2em 0.15em 0;font-weight:600;border:0"'
    td = 'style="text-align:left;padding:0.15em 0;border:0"'
    body = "".join(f"<tr><th scope=\"row\" {th}>{k}</th><td {td}>{v}</td></tr>" for k, v in rows)
    return HTML(
        f'<div class="ibutils-repro" data-chapter="{html.escape(chapter, quote=True)}" '
        f'data-profile="{html.escape(profile, quote=True)}" style="border:1px solid rgba(128,128,128,0.5);'
        f'border-radius:6px;padding:0.6em 1em;margin:0.5em 0;font-size:0.9em">'
        f'<p style="margin:0 0 0.4em 0"><strong>Reproducibility.</strong> Recorded by this run in '
        f"<code>{html.escape(path.name)}</code>.</p>"
        f'<table style="border-collapse:collapse;margin:0"><tbody>{body}</tbody></table></div>'
    )
