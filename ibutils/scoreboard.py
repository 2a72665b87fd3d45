"""The replication scoreboard: every chapter's checked claims in one table.

Built when the site is built, from the results JSON the chapters wrote (never typed in), so
it is exactly as fresh as the runs. `rows` reads the records; `summary` counts them; `html`
renders the table that the intro page shows (through the `ibutils-scoreboard` directive of
book/_ext/ibutils_site.py).

A chapter without a results JSON (not run in this build) still gets one row that says so,
so the table never silently drops a chapter.
"""

from __future__ import annotations

import html as _html
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

# The paper's figures each chapter replicates (Saxe et al. 2018), shown for claims that do not
# name their own figure (`results.check(..., figure="Fig. 4A-B")`).
CHAPTER_FIGURES = {
    "tanh_vs_relu": "Fig. 1A-B",
    "three_neuron_toy": "Fig. 2",
    "linear_student_teacher": "Fig. 3, 4, 18, 21",
    "sgd_vs_gd": "Fig. 5",
    "irrelevant_inputs": "Fig. 6",
}


@dataclass(frozen=True)
class Chapter:
    """A chapter notebook: `number` "01", `id` "tanh_vs_relu", `page` its notebook stem, `title`."""

    number: str
    id: str
    page: str
    title: str


@dataclass(frozen=True)
class Row:
    """One scoreboard line: a checked claim of a chapter, or (claim None) a chapter not run."""

    chapter: Chapter
    figure: str
    claim: str | None = None
    statement: str = ""
    value: float | None = None
    threshold: float | None = None
    comparison: str = ""
    holds: bool = False
    profile: str | None = None


_CHAPTER_STEM = re.compile(r"(\d+[a-z]?)_(.+)")


def split_name(stem: str) -> tuple[str, str] | None:
    """A chapter notebook's stem as (number, id): `01_tanh_vs_relu` -> ("01", "tanh_vs_relu"),
    a sibling chapter `01b_mnist_kde` -> ("01b", "mnist_kde"); None for any other name."""
    match = _CHAPTER_STEM.fullmatch(stem)
    return (match[1], match[2]) if match else None


def chapter(notebook: Path | str) -> Chapter:
    """Describe the chapter notebook `book/NN_<id>.ipynb` (or `NNx_<id>`); its title is its first `# ` heading."""
    notebook = Path(notebook)
    parts = split_name(notebook.stem)
    if parts is None:
        raise ValueError(f"notebook: chapter notebooks are named NN_<chapter-id>.ipynb, got {notebook.name!r}")
    number, cid = parts
    title = cid.replace("_", " ")
    try:
        cells = json.loads(notebook.read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError) as exc:
        raise ValueError(f"notebook: cannot read {notebook}: {exc}") from exc
    for cell in cells:
        if cell.get("cell_type") != "markdown":
            continue
        source = "".join(cell.get("source", ""))
        heading = next((line[2:].strip() for line in source.splitlines() if line.startswith("# ")), None)
        if heading:
            title = heading
            break
    return Chapter(number, cid, notebook.stem, title)


def _number(x) -> float | None:
    """A JSON number as float; None (NaN was stored as null) stays None."""
    return None if x is None else float(x)


def rows(notebooks: Sequence[Path | str], results_dir: Path | str) -> list[Row]:
    """The scoreboard of `notebooks` (in their order) from `<results_dir>/<chapter-id>.json`.

    Every claim of every chapter gives a row, in the chapter's order. A chapter without a
    results file gives one row with `claim=None`. A file whose `chapter` field disagrees with
    its name, or without a claims list, raises ValueError.
    """
    out: list[Row] = []
    for nb in notebooks:
        ch = chapter(nb)
        default_figure = CHAPTER_FIGURES.get(ch.id, "")
        path = Path(results_dir) / f"{ch.id}.json"
        if not path.exists():
            out.append(Row(ch, default_figure))
            continue
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("chapter") != ch.id:
            raise ValueError(f"results_dir: {path.name} is the record of {record.get('chapter')!r}, not {ch.id!r}")
        claims = record.get("claims")
        if not isinstance(claims, list):
            raise ValueError(f"results_dir: {path.name} has no claims list")
        for c in claims:
            out.append(Row(ch, c.get("figure") or default_figure, c["id"], c["statement"], _number(c["value"]),
                           _number(c["threshold"]), c.get("comparison", ""), bool(c["holds"]),
                           record.get("profile")))
    return out


@dataclass(frozen=True)
class Summary:
    """Counts over a scoreboard: claims, claims that hold, chapters run and not run, profiles."""

    claims: int
    holding: int
    chapters_run: tuple[str, ...]
    chapters_not_run: tuple[str, ...]
    profiles: tuple[str, ...]


def summary(board: Sequence[Row]) -> Summary:
    """Count the claims of `board` and those that hold; list the chapters run, not run, and the profiles."""
    claimed = [r for r in board if r.claim is not None]
    run = tuple(dict.fromkeys(r.chapter.id for r in claimed))
    not_run = tuple(dict.fromkeys(r.chapter.id for r in board if r.claim is None))
    profiles = tuple(sorted({r.profile for r in claimed if r.profile}))
    return Summary(len(claimed), sum(r.holds for r in claimed), run, not_run, profiles)


def _fmt(x: float | None) -> str:
    if x is None or math.isnan(x):
        return "n/a"
    return f"{x:.4g}"


def html(board: Sequence[Row], href: Callable[[Chapter], str]) -> str:
    """The scoreboard as an HTML fragment: a summary line and one table.

    Each chapter opens with a heading row: its number and title linked with `href(chapter)`
    (e.g. its Findings section), the profile its numbers came from, and how many of its claims
    hold. Then one row per claim: paper figure, claim (with its id), our number, what it needs
    (comparison and threshold), ✓/✗. Claim rows carry `data-chapter`, `data-claim` (empty for
    a chapter not run), `data-holds` and `data-profile`; heading rows `data-chapter-heading`.
    """
    esc = _html.escape
    counts = summary(board)
    parts = []
    if counts.claims:
        n_run = len(counts.chapters_run)
        parts.append(
            f'<p class="ibutils-scoreboard-summary"><strong>{counts.holding} of {counts.claims} claims hold</strong> '
            f"in {n_run} chapter{'s' if n_run != 1 else ''} (profile: {esc(' and '.join(counts.profiles) or 'unknown')}).</p>")
    if counts.chapters_not_run:
        names = ", ".join(esc(r.chapter.number.lstrip("0") or "0") for r in board if r.claim is None)
        plural = "s" if len(counts.chapters_not_run) > 1 else ""
        parts.append(f'<p class="ibutils-scoreboard-missing">Not run in this build: chapter{plural} {names}.</p>')
    body = []
    for ch in dict.fromkeys(r.chapter for r in board):
        mine = [r for r in board if r.chapter == ch]
        claimed = [r for r in mine if r.claim is not None]
        if claimed:
            profile = " and ".join(sorted({r.profile or "unknown" for r in claimed}))
            status = f"{sum(r.holds for r in claimed)} of {len(claimed)} hold · profile {esc(profile)}"
        else:
            status = "not run in this build"
        body.append(
            f'<tr class="ibutils-chapter-row" data-chapter-heading="{esc(ch.id, quote=True)}"><th colspan="5">'
            f'<a href="{esc(href(ch), quote=True)}">{esc(ch.number.lstrip("0") or "0")}. {esc(ch.title)}</a> '
            f'<span class="ibutils-chapter-status">{status}</span></th></tr>')
        for r in mine:
            attrs = (f'data-chapter="{esc(ch.id, quote=True)}" data-claim="{esc(r.claim or "", quote=True)}" '
                     f'data-holds="{"true" if r.holds else "false"}" data-profile="{esc(r.profile or "", quote=True)}"')
            if r.claim is None:
                body.append(f'<tr class="ibutils-not-run" {attrs}><td>{esc(r.figure)}</td>'
                            f'<td colspan="4">no results file: run the chapter, then rebuild</td></tr>')
                continue
            mark = ('<span class="ibutils-holds" title="holds">✓</span>' if r.holds
                    else '<span class="ibutils-fails" title="does not hold">✗</span>')
            body.append(
                f"<tr {attrs}><td>{esc(r.figure)}</td>"
                f'<td>{esc(r.statement)} <code class="ibutils-claim-id">{esc(r.claim)}</code></td>'
                f'<td class="ibutils-num">{_fmt(r.value)}</td>'
                f'<td class="ibutils-num">{esc(r.comparison)} {_fmt(r.threshold)}</td>'
                f'<td class="ibutils-mark">{mark}</td></tr>')
    head = "<tr><th>Paper</th><th>Claim</th><th>Ours</th><th>Needed</th><th>Holds</th></tr>"
    parts.append('<div class="ibutils-scoreboard-wrap"><table class="ibutils-scoreboard table">'
                 f"<thead>{head}</thead><tbody>{''.join(body)}</tbody></table></div>")
    return "\n".join(parts)
