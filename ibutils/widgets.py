"""The book's interactive figures: pre-rendered sliders for the static site, live controls in a kernel.

The website has no kernel, so an `ipywidgets.interact` slider there moves but redraws nothing.
`slider` therefore renders one PNG per parameter value (or per pair of values, for two
parameters) and returns an object that displays as plain HTML: one `<input type=range>` per
parameter, the frames as base64 `<img>` elements, and a one-line inline `oninput` handler that
shows the matching frame. No widget JavaScript, no CDN: it works on the static site and in live
Jupyter alike. `live` is the kernel-only counterpart for cheap models: any value, redrawn on demand.

Both take the same `make_figure(**values) -> matplotlib Figure`, so one plotting function serves both.

Markup contract (the page tests rely on it): the slider is a `<div class="ibutils-slider">`; its
frames are `<img class="ibutils-slider-frame">` children, exactly one shown (the others
`display:none`); each parameter has a range input followed by an `<output
class="ibutils-slider-readout">` holding the current value's label.

The inputs carry `data-lm-suppress-shortcuts`: in JupyterLab (and Notebook 7) the notebook's
keyboard shortcuts would otherwise take the arrow keys (ArrowUp/Down move between cells,
ArrowLeft/Right between headings), so the focused slider would not move; Lumino, Lab's widget
toolkit, passes keys on such elements to the browser.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
from dataclasses import dataclass, field
from numbers import Real
from typing import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image, PngImagePlugin

from ibutils import plots
from ibutils.progress import phase

# Runs in the browser on every slider move: the frame index is the C-order index of the inputs'
# positions; the readout next to each input shows its value's label.
_ONINPUT = (
    "var r=this.closest('.ibutils-slider'),k=0;"
    "r.querySelectorAll('input.ibutils-slider-input').forEach(function(s){"
    "k=k*(+s.max+1)+(+s.value);s.nextElementSibling.textContent=JSON.parse(s.dataset.labels)[+s.value];});"
    "r.querySelectorAll('img.ibutils-slider-frame').forEach(function(m,j){"
    "m.style.display=j===k?'block':'none';});"
)


def render_png(fig, dpi: int = 100) -> bytes:
    """Render a matplotlib figure to a 256-colour palette PNG at `dpi`, and close the figure.

    The palette (median cut) keeps line-art colours to within a few levels of 255 and makes frames
    about 2.5x smaller than matplotlib's RGBA PNG (the toy chapter's 7 x 2.8 inch frames at dpi 100:
    ~10 KB instead of ~26 KB; base64 in the page adds a third). Deterministic: the same figure
    gives the same bytes. Stamped like `plots.figure_png`: its dpi and its smallest font size,
    which `plots.png_info` reads back.
    """
    try:
        if isinstance(dpi, bool) or not isinstance(dpi, (int, np.integer)) or dpi < 1:
            raise ValueError(f"dpi must be a positive integer, got {dpi!r}")
        png = plots.figure_png(fig, dpi)
    finally:
        plt.close(fig)
    with Image.open(io.BytesIO(png)) as rgba:
        stamp = PngImagePlugin.PngInfo()
        for key, value in rgba.text.items():
            stamp.add_text(key, value)
        image = rgba.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True, dpi=(dpi, dpi), pnginfo=stamp)
    return out.getvalue()


def _label(value, fmt: str | None) -> str:
    if fmt is not None:
        return fmt.format(value)
    if isinstance(value, Real) and not isinstance(value, bool):
        return f"{value:g}"
    return str(value)


@dataclass(frozen=True)
class Slider:
    """Pre-rendered frames over a grid of parameter values; displays as an HTML/JS slider.

    `names`: the parameters, in order. `labels[i]`: the value labels of parameter i.
    `frames`: PNG bytes, one per grid point, in C order over the parameters
    (the last parameter varies fastest), so there are prod(len(l) for l in labels) frames.
    """

    names: tuple[str, ...]
    labels: tuple[tuple[str, ...], ...]
    frames: tuple[bytes, ...] = field(repr=False)

    @property
    def frame_bytes(self) -> np.ndarray:
        """Size of each frame's PNG in bytes, shape (n_frames,)."""
        return np.array([len(f) for f in self.frames])

    @property
    def html(self) -> str:
        """The self-contained HTML fragment (first value of every parameter shown)."""
        controls = "".join(
            f'<label class="ibutils-slider-control" style="margin-right:1.5em">{html.escape(name)} '
            f'<input class="ibutils-slider-input" type="range" min="0" max="{len(labels) - 1}" step="1" '
            f'value="0" autocomplete="off" aria-label="{html.escape(name)}" data-lm-suppress-shortcuts="true" '
            f'data-labels="{html.escape(json.dumps(labels))}" '
            f'oninput="{_ONINPUT}"><output class="ibutils-slider-readout">{html.escape(labels[0])}</output></label>'
            for name, labels in zip(self.names, self.labels)
        )
        alts = [", ".join(f"{n} = {v}" for n, v in zip(self.names, combo))
                for combo in itertools.product(*self.labels)]
        images = "".join(
            f'<img class="ibutils-slider-frame" alt="{html.escape(alt)}" '
            f'style="display:{"block" if i == 0 else "none"};max-width:100%" '
            f'src="data:image/png;base64,{base64.b64encode(png).decode()}">'
            for i, (alt, png) in enumerate(zip(alts, self.frames))
        )
        return f'<div class="ibutils-slider"><div class="ibutils-slider-controls">{controls}</div>{images}</div>'

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        shape = " x ".join(f"{n}: {len(l)}" for n, l in zip(self.names, self.labels))
        return f"Slider({shape}; {len(self.frames)} frames, {self.frame_bytes.sum() / 1024:.0f} KiB of PNG)"


@phase("plotting")
def slider(make_figure: Callable, *, dpi: int = 100, fmt: dict[str, str] | None = None,
           max_frames: int = 64, **params: Sequence) -> Slider:
    """Pre-render `make_figure(**values)` for every combination of the `params` values.

    `params`: one or two (or more) keyword arguments, each a non-empty sequence of values, e.g.
    `slider(frame, w=[0.5, 1, 2])` or `slider(frame, bins=[10, 30], activation=["tanh", "relu"])`.
    `make_figure` returns a matplotlib Figure; each is rendered at `dpi` and closed.
    `fmt`: optional format strings per parameter for the readout, e.g. `{"w": "{:.2f}"}`
    (default: `{:g}` for numbers, `str` otherwise). `max_frames` guards the page weight.
    Returns a `Slider`; display it (or make it a cell's last expression) to show it.
    """
    if not params:
        raise ValueError("params: give at least one parameter, e.g. slider(make_figure, w=[0.5, 1.0])")
    values = {name: list(v) for name, v in params.items()}
    for name, v in values.items():
        if not v:
            raise ValueError(f"{name}: the list of values is empty")
    fmt = fmt or {}
    unknown = set(fmt) - set(values)
    if unknown:
        raise ValueError(f"fmt names unknown parameters {sorted(unknown)}")
    n_frames = int(np.prod([len(v) for v in values.values()]))
    if n_frames > max_frames:
        raise ValueError(f"max_frames: {n_frames} frames requested, more than max_frames={max_frames}")
    names = tuple(values)
    frames = tuple(render_png(make_figure(**dict(zip(names, combo))), dpi)
                   for combo in itertools.product(*values.values()))
    labels = tuple(tuple(_label(v, fmt.get(name)) for v in vals) for name, vals in values.items())
    return Slider(names, labels, frames)


def live(make_figure: Callable, **controls):
    """A truly live control for a running kernel: `ipywidgets.interactive` around `make_figure`.

    `controls` use ipywidgets' abbreviations: `(min, max, step)` tuples become sliders, lists become
    drop-downs, fixed values via `ipywidgets.fixed`. Each move calls `make_figure(**values)`, shows
    the figure and closes it. On the static website there is no kernel: the control would move but
    redraw nothing, so chapters hide this cell's output there (tag `remove-output`).
    Returns the `ipywidgets.interactive` widget (display it, or make it the cell's last expression).
    """
    import ipywidgets
    from IPython.display import display

    if not controls:
        raise ValueError("controls: give at least one control, e.g. live(make_figure, w=(0.0, 10.0, 0.1))")

    def show(**values):
        fig = make_figure(**values)
        try:
            display(fig)
        finally:
            plt.close(fig)

    return ipywidgets.interactive(show, **controls)
