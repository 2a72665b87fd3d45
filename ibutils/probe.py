"""Information planes of your own PyTorch model, measured inside your own training loop.

`Probe` hooks the layers you choose (by qualified name or by module type) of any
`torch.nn.Module`. Each `Probe.measure(step)` passes a fixed reference set `(x_ref, y_ref)`
through the model in batches, on the model's device, in eval mode and without gradients, and
hands each hooked layer's output (flattened per sample, so a conv layer's `[C, H, W]` becomes
C*H*W units) to the estimators. The model's modes, gradients and random number streams are left
as they were. `Probe.history` holds one row per (step, layer, estimator output): I(X;T) and
I(T;Y) in bits, with X uniform over the rows of `x_ref`, as everywhere in `ibutils.mi`.

Estimators: the family of `ibutils.estimators`, whose names this module also exports (`Binned`,
`BinnedFloor`, `EqualMassBinned`, `KDE`, `Kraskov`, `Function`, `PrecisionBinned`, `Quantised`,
and the bases `StreamingBinning` and `WholeLayer` for your own), each giving the numbers of the
`ibutils.mi` function it names. A bare callable `fn(t, y) -> (i_xt, i_ty)` in bits is wrapped in
`Function`; `t` is then the layer's rows `[N, units]` on the model's device and `y` the labels
`[N]` (int64, same device).

A streaming estimator (`StreamingBinning`) turns each batch into integer bin codes at once and
keeps only those, packed several to an int64; the others (`WholeLayer`) need all N rows of a layer
at once (the KDE is O(N^2)), so the probe keeps that layer's activity until the end of the pass.
A new estimator is one small subclass of either (see their docstrings).

Hooks are registered by `with probe:` and removed on leaving the block, also after an exception;
`measure` called outside such a block registers them for that call only.
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
import os
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from ibutils import mi, plots
from ibutils.estimators import (KDE, Binned, BinnedFloor, EqualMassBinned, Estimator, Function, Kraskov,  # noqa: F401
                                PrecisionBinned, Quantised, StreamingBinning, WholeLayer, _whole_number)
from ibutils.progress import phase

_KEY_BITS = 62  # packed keys stay below 2**62, leaving mi.discrete room for the label bits
_CHUNK_VALUES = 2**20  # values coded at a time: each int64 temporary is 8 MiB
_NAMES_SHOWN = 60  # module names listed in an unknown-layer error


# --- estimators ---------------------------------------------------------------------------------


def _estimators(estimators) -> list[Estimator]:
    """Checked estimators, bare callables wrapped in `Function`, output names unique."""
    if isinstance(estimators, (Estimator, str)) or not isinstance(estimators, Sequence) or not estimators:
        raise ValueError(f"estimators must be a non-empty list of estimators or callables, got {estimators!r}")
    out = []
    for e in estimators:
        if isinstance(e, (StreamingBinning, WholeLayer)):
            out.append(e)
        elif callable(e) and not isinstance(e, (type, Estimator)):
            out.append(Function(e))
        else:
            raise ValueError(f"estimators: {e!r} is neither a probe estimator (Binned, KDE, ..., a StreamingBinning "
                             "or WholeLayer subclass) nor a callable fn(t, y) -> (i_xt, i_ty)")
    names = [n for e in out for n in e.outputs()]
    if len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"estimators: output names must be distinct non-empty strings, got {names} "
                         "(give same-kind estimators a name=...)")
    return out


# --- what one measurement keeps -------------------------------------------------------------------


def _digits_per_key(base: int) -> int:
    """How many codes in [0, base) fit in one key below 2**62, as digits of base `base`."""
    k = 1
    while base ** (k + 1) <= 2**_KEY_BITS:
        k += 1
    return k


def _pack(codes: torch.Tensor, base: int) -> torch.Tensor:
    """Rows of `codes` `[b, d]`, all in [0, base), as int64 keys `[b, ceil(d / k)]`: key g holds
    columns g k, ..., g k + k - 1 as base-`base` digits, the first most significant (missing
    columns of the last key count as 0). Keys are equal exactly where the rows are, and compare as
    the rows do (lexicographically), so `mi.discrete` of the keys sorts the rows into the same
    order as of the codes, and gives the same bits to the last digit."""
    if base > 2**_KEY_BITS:
        return codes
    if base == 1:
        return codes.new_zeros((codes.shape[0], 1))
    k = min(_digits_per_key(base), codes.shape[1])
    keys = codes.new_zeros((codes.shape[0], -(-codes.shape[1] // k)))
    for digit in range(k):  # digit j of every key at once: columns j, j + k, j + 2k, ...
        column = codes[:, digit::k]
        keys.mul_(base)
        keys[:, :column.shape[1]] += column
    return keys


def _smallest_int(lo: int, hi: int) -> torch.dtype:
    return next(d for d in (torch.int8, torch.int16, torch.int32, torch.int64)
                if torch.iinfo(d).min <= lo and hi <= torch.iinfo(d).max)


class _Codes:
    """One layer's codes for one streaming estimator, batch by batch: packed keys in one
    `[n_rows, keys]` buffer when the codes are bounded (`base`), else each batch in the smallest
    integer dtype that holds it, packed at the end."""

    def __init__(self, base: int | None, n_rows: int):
        self.base, self.n_rows, self.filled = base, n_rows, 0
        self.packed: torch.Tensor | None = None
        self.parts, self.lo, self.hi = [], None, None

    def add(self, codes: torch.Tensor) -> None:
        if self.base is not None:
            keys = _pack(codes, self.base)
            if self.packed is None:  # one long-lived block, so the pass does not fragment the heap
                self.packed = keys.new_empty((self.n_rows, keys.shape[1]))
            self.packed[self.filled:self.filled + len(keys)] = keys
        else:
            lo, hi = (v.item() for v in torch.aminmax(codes))
            self.lo = lo if self.lo is None else min(lo, self.lo)
            self.hi = hi if self.hi is None else max(hi, self.hi)
            self.parts.append(codes.to(_smallest_int(lo, hi)))
        self.filled += len(codes)

    def keys(self) -> torch.Tensor:
        """The keys of all rows (and the store lets go of them)."""
        if self.base is not None:
            keys, self.packed = self.packed, None
            return keys
        base, parts, self.parts = self.hi - self.lo + 1, self.parts, []
        return torch.cat([_pack(p.to(torch.int64) - self.lo, base) for p in parts])


class _LayerPass:
    """What one measurement keeps of one layer while the reference set streams through."""

    def __init__(self, name: str, n_rows: int, estimators: list[Estimator]):
        self.name, self.n_rows, self.filled, self.width = name, n_rows, 0, None
        self.streaming = [(e, _Codes(e.base, n_rows)) for e in estimators if isinstance(e, StreamingBinning)]
        self.whole = [e for e in estimators if isinstance(e, WholeLayer)]
        self.rows: torch.Tensor | None = None

    def add(self, t: torch.Tensor) -> None:
        """A batch `t` `[b, width]` of this layer's activity (the next b reference rows)."""
        if self.width is None:
            self.width = t.shape[1]
            if self.whole:
                self.rows = t.new_empty((self.n_rows, self.width))
        elif t.shape[1] != self.width:
            raise ValueError(f"layer {self.name!r} gave {t.shape[1]} values per sample on one batch "
                             f"and {self.width} on an earlier one")
        if self.rows is not None:
            self.rows[self.filled:self.filled + len(t)] = t
        step = max(1, _CHUNK_VALUES // max(1, self.width))  # bounds the coding temporaries
        for start in range(0, len(t), step):
            chunk = t[start:start + step]
            for estimator, store in self.streaming:
                store.add(estimator.codes(chunk))
        self.filled += len(t)

    def estimates(self, y: torch.Tensor) -> dict[str, mi.MI]:
        """Every estimator's outputs for this layer; frees what the pass kept as it goes."""
        out = {}
        for estimator, store in self.streaming:
            keys = store.keys()
            out[estimator.name] = mi.discrete(keys, y.to(keys.device))
        if self.whole:
            labels = y.to(self.rows.device)
            for estimator in self.whole:
                found = estimator.estimate(self.rows, labels)
                if not isinstance(found, dict) or set(found) != set(estimator.outputs()):
                    raise ValueError(f"estimator {estimator.name!r} must return a dict with the keys "
                                     f"{list(estimator.outputs())}, got {found!r}")
                out.update({k: mi.MI(float(v[0]), float(v[1])) for k, v in found.items()})
            self.rows = None
        return out


# --- the history ----------------------------------------------------------------------------------


class Row(NamedTuple):
    """One measurement of one layer by one estimator output: I(X;T) and I(T;Y) in bits."""

    step: int | float
    layer: str
    estimator: str
    i_xt: float
    i_ty: float


def _check_step(step, previous) -> int | float:
    if isinstance(step, bool) or not isinstance(step, numbers.Real) or not math.isfinite(step):
        raise ValueError(f"step must be a finite number (an epoch or iteration count), got {step!r}")
    step = int(step) if _whole_number(step) else float(step)
    if previous is not None and not step > previous:
        raise ValueError(f"step must increase from one measurement to the next: got {step} after {previous}")
    return step


class History:
    """The rows of a probe's measurements, in the order they were measured.

    `steps`, `layers` and `estimators` list the distinct values in order of appearance;
    `plane(estimator)` gives one estimator's information plane as arrays; `save(path)` writes
    CSV or JSON (by the suffix) and `History.load(path)` reads either back, unchanged.
    """

    COLUMNS = Row._fields

    def __init__(self, rows: Sequence[Row] = ()):
        self.rows: list[Row] = [Row(*r) for r in rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __eq__(self, other) -> bool:
        return isinstance(other, History) and self.rows == other.rows

    def __repr__(self) -> str:
        return (f"History({len(self.rows)} rows: {len(self.steps)} steps x {len(self.layers)} layers x "
                f"{len(self.estimators)} estimators)")

    def _distinct(self, field: str) -> list:
        return list(dict.fromkeys(getattr(r, field) for r in self.rows))

    @property
    def steps(self) -> list:
        return self._distinct("step")

    @property
    def layers(self) -> list[str]:
        return self._distinct("layer")

    @property
    def estimators(self) -> list[str]:
        return self._distinct("estimator")

    def plane(self, estimator: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(steps `[K]`, I(X;T) `[K, layers]`, I(T;Y) `[K, layers]`) in bits for one estimator
        output, layers in the order of `layers`; every layer must be measured at every step."""
        if estimator not in self.estimators:
            raise ValueError(f"estimator must be one of {self.estimators}, got {estimator!r}")
        steps, layers = self.steps, self.layers
        cells = {(r.step, r.layer): (r.i_xt, r.i_ty) for r in self.rows if r.estimator == estimator}
        missing = [(s, l) for s in steps for l in layers if (s, l) not in cells]
        if missing:
            raise ValueError(f"estimator {estimator!r} has no value at (step, layer) {missing[:5]}")
        bits = np.array([[cells[s, l] for l in layers] for s in steps], dtype=np.float64)
        return np.asarray(steps), bits[..., 0], bits[..., 1]

    def series(self) -> dict:
        """`{estimator: {"steps": [K], "layers": [L], "i_xt": [L][K], "i_ty": [L][K]}}`, the layout
        of a chapter's results JSON series (bits)."""
        out = {}
        for estimator in self.estimators:
            steps, i_xt, i_ty = self.plane(estimator)
            out[estimator] = {"steps": steps.tolist(), "layers": self.layers,
                              "i_xt": i_xt.T.tolist(), "i_ty": i_ty.T.tolist()}
        return out

    def plot(self, estimators: Sequence[str] | None = None, *, h_x: float | None = None,
             h_y: float | None = None, **kwargs):
        """Information planes, two side by side, one per estimator output (default: all), each layer a
        trajectory coloured by step (`ibutils.plots.information_planes`) and labelled with its
        name at its first point. `h_x`, `h_y` draw the ceilings H(X) and H(Y) as dotted lines;
        axes fit them and the data unless `xlim`/`ylim` are given. Returns the figure."""
        estimators = self.estimators if estimators is None else list(estimators)
        planes = {e: self.plane(e) for e in estimators}
        top_x = max([h_x or 0.0] + [float(p[1].max()) for p in planes.values()])
        top_y = max([h_y or 0.0] + [float(p[2].max()) for p in planes.values()])
        kwargs.setdefault("xlim", (0, 1.05 * top_x or 1.0))
        kwargs.setdefault("ylim", (0, 1.08 * top_y or 1.0))
        fig = plots.information_planes(planes, colorbar_label="step", h_x=h_x, h_y=h_y, **kwargs)
        for ax, (_, i_xt, i_ty) in zip(fig.axes, planes.values()):
            for name, x, y in zip(self.layers, i_xt[0], i_ty[0]):
                ax.annotate(name, (x, y), xytext=(3, 3), textcoords="offset points", fontsize=8, color="0.25")
        return fig

    def save(self, path: str | os.PathLike) -> Path:
        """Write the rows to `path`, `.csv` (a header, then one line per row) or `.json`
        (`{"columns": [...], "rows": [[...], ...]}`), atomically; floats keep every digit."""
        path = Path(path)
        if path.suffix == ".csv":
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(self.COLUMNS)
            writer.writerows([r.step, r.layer, r.estimator, repr(r.i_xt), repr(r.i_ty)] for r in self.rows)
            text = out.getvalue()
        elif path.suffix == ".json":
            text = json.dumps({"columns": list(self.COLUMNS), "rows": [list(r) for r in self.rows]}, allow_nan=False)
        else:
            raise ValueError(f"path must end in .csv or .json, got {str(path)!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "History":
        """Read a history that `save` wrote (`.csv` or `.json`); ValueError if it is not one."""
        path = Path(path)
        if path.suffix not in (".csv", ".json"):
            raise ValueError(f"path must end in .csv or .json, got {str(path)!r}")
        text = path.read_text(encoding="utf-8")
        try:
            if path.suffix == ".json":
                record = json.loads(text)
                columns, rows = record["columns"], record["rows"]
            else:
                columns, *rows = list(csv.reader(io.StringIO(text)))
                rows = [[_csv_step(r[0]), r[1], r[2], float(r[3]), float(r[4])] if len(r) == 5 else r for r in rows]
            if list(columns) != list(cls.COLUMNS):
                raise ValueError(f"columns {columns}, expected {list(cls.COLUMNS)}")
            return cls([_row(r) for r in rows])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"path: {path} is not a probe history: {exc}") from exc


def _csv_step(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def _row(values) -> Row:
    step, layer, estimator, i_xt, i_ty = values
    ok = (isinstance(step, numbers.Real) and not isinstance(step, bool) and isinstance(layer, str)
          and isinstance(estimator, str) and all(isinstance(v, numbers.Real) for v in (i_xt, i_ty)))
    if not ok:
        raise ValueError(f"malformed row {values!r}")
    return Row(step, layer, estimator, float(i_xt), float(i_ty))


# --- the probe ------------------------------------------------------------------------------------


def _model_device(model: nn.Module) -> torch.device:
    tensor = next(model.parameters(), None)
    if tensor is None:
        tensor = next(model.buffers(), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def _choose_layers(model: nn.Module, layers) -> dict[str, nn.Module]:
    """`{name: module}` for the layers asked for (qualified names or module types), in model order."""
    named = dict(model.named_modules())
    named.pop("", None)  # the model itself
    if isinstance(layers, (str, type)) or not isinstance(layers, Sequence) or not layers:
        raise ValueError(f"layers must be a non-empty list of module names and/or module types, got {layers!r}")

    def listing() -> str:
        names = list(named)
        more = f", ... ({len(names) - _NAMES_SHOWN} more)" if len(names) > _NAMES_SHOWN else ""
        return ", ".join(names[:_NAMES_SHOWN]) + more if names else "(none: the model has no submodules)"

    chosen = set()
    for item in layers:
        if isinstance(item, str):
            if item not in named:
                raise ValueError(f"layers: the model has no module named {item!r}; its modules are: {listing()}")
            chosen.add(item)
        elif isinstance(item, type) and issubclass(item, nn.Module):
            hits = {name for name, m in named.items() if isinstance(m, item)}
            if not hits:
                raise ValueError(f"layers: the model has no module of type {item.__name__}; its modules are: {listing()}")
            chosen |= hits
        else:
            raise ValueError(f"layers: {item!r} is neither a module name (str) nor a module type (e.g. nn.Linear)")
    return {name: m for name, m in named.items() if name in chosen}


def _reference(x_ref, y_ref) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(x_ref, torch.Tensor):
        if not isinstance(x_ref, np.ndarray):
            raise ValueError(f"x_ref must be a tensor or NumPy array [N, ...], got {type(x_ref).__name__}")
        x_ref = torch.from_numpy(x_ref)
    if x_ref.ndim < 1 or len(x_ref) == 0:
        raise ValueError(f"x_ref must have at least one row, got shape {tuple(x_ref.shape)}")
    y = torch.as_tensor(np.asarray(y_ref.cpu() if isinstance(y_ref, torch.Tensor) else y_ref))
    if y.ndim != 1 or y.dtype.is_floating_point or y.dtype == torch.bool or y.is_complex():
        raise ValueError(f"y_ref must be integer labels [N], got dtype {y.dtype} and shape {tuple(y.shape)}")
    if len(y) != len(x_ref):
        raise ValueError(f"y_ref must have one label per row of x_ref: {len(y)} labels for {len(x_ref)} rows")
    return x_ref, y.to(torch.int64)


class Probe:
    """Measure the information plane of chosen layers of `model` on a fixed reference set.

    Args:
        model: any `torch.nn.Module`, called as `model(x_batch)`. Its device is that of its
            first parameter (or buffer; else the CPU), unless `device` is given.
        x_ref: the reference inputs, a tensor or NumPy array `[N, ...]`. X is uniform over its
            rows (so H(X) = log2 N when they are distinct). Batches of `batch_size` rows are
            moved to the device as they are used; `x_ref` itself stays where it is.
        y_ref: integer labels `[N]`.
        layers: module names as `model.named_modules()` gives them (`"features.3"`) and/or
            module types (`nn.Linear`: every such module), measured in model order. A layer's
            output must be a floating-point tensor `[b, ...]` with one row per input; it is
            flattened per sample.
        estimators: estimator objects (`Binned`, `BinnedFloor`, `EqualMassBinned`, `KDE`,
            `Kraskov`, `Function`, subclasses of `StreamingBinning` or `WholeLayer`) or callables
            `fn(t, y) -> (i_xt, i_ty)`.
            The default is `[Binned()]`, 30 bins on [-1, 1].
        batch_size: reference rows per forward pass.
        device: where the batches go (default: the model's device).

    Attributes:
        layers: `{name: module}` of the measured layers, in model order.
        estimators: the estimators, callables wrapped in `Function`.
        history: the `History` of all measurements so far.
        device: where the reference batches go.

    Memory, in bytes, with N reference rows, batch size B and a hooked layer of d values per
    sample. During the pass: the model's own forward memory for B rows, plus about 32 MiB of
    coding temporaries (values are coded 2**20 at a time). Kept until the pass ends, per layer:
    8 N ceil(d / k) for each `Binned` estimator (k codes per int64 key: 12 for 30 bins, 6 for
    1,024 bins); N d to 8 N d for `BinnedFloor` (the smallest integer type that holds each
    batch's codes: 1 byte for ibsgd's widths on tanh or softmax layers); and N d times the
    layer's float size (4 for float32) once for all `WholeLayer` estimators. Then, one layer at
    a time, the estimator's working memory (`mi.discrete` on the keys: a few N-long int64
    arrays; `mi.kde`: float64 copies of about 32 N d and its blocks of the distance matrix;
    `mi.equal_mass_edges`: a sorted copy of the N d values). Nothing of a measurement is kept
    after it but its history rows, so peak
    memory does not grow with the number of measurements (`benchmarks/bench_probe.py` measures
    it: flat over 200 measurements of a 1,024-unit layer on 10,000 samples).
    """

    def __init__(self, model: nn.Module, x_ref, y_ref, layers=(nn.Linear,), estimators=None,
                 batch_size: int = 1024, device: torch.device | str | None = None):
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not _whole_number(batch_size) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.model = model
        self.x_ref, self.y_ref = _reference(x_ref, y_ref)
        self.layers = _choose_layers(model, layers)
        self.estimators = _estimators([Binned()] if estimators is None else estimators)
        self.batch_size = int(batch_size)
        self.device = torch.device(device) if device is not None else _model_device(model)
        self.history = History()
        self._handles: list = []
        self._pass: dict[str, _LayerPass] | None = None  # set while `measure` runs
        self._fired: dict[str, int] = {}
        self._batch_rows = 0
        self._step = None

    @property
    def h_x(self) -> float:
        """log2 N, the most I(X;T) any estimator can give (when the reference rows are distinct)."""
        return math.log2(len(self.x_ref))

    @property
    def h_y(self) -> float:
        """H(Y) of the reference labels in bits, the most I(T;Y) can be."""
        return mi.entropy(self.y_ref)

    # hooks
    def __enter__(self) -> "Probe":
        if self._handles:
            raise RuntimeError("this probe's hooks are already registered (nested `with probe:`)")
        self._attach()
        return self

    def __exit__(self, *exc) -> None:
        self._detach()

    def _attach(self) -> None:
        self._handles = [m.register_forward_hook(self._hook(name)) for name, m in self.layers.items()]

    def _detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _hook(self, name: str):
        def hook(module, inputs, output):
            if self._pass is not None:  # only while measuring: the user's own forward passes pass through
                self._take(name, output)
        return hook

    def _take(self, name: str, output) -> None:
        """One batch of layer `name`'s output, checked, flattened per sample."""
        where = f"layer {name!r} at step {self._step}"
        if not isinstance(output, torch.Tensor):
            raise ValueError(f"{where}: its output is a {type(output).__name__}, not a tensor; "
                             "probe a module whose output is one tensor [batch, ...]")
        if not output.is_floating_point():
            raise ValueError(f"{where}: its output has dtype {output.dtype}; the estimators need floats")
        rows = self._batch_rows
        if output.ndim == 0 or output.shape[0] != rows:
            raise ValueError(f"{where}: its output has shape {tuple(output.shape)}, but the batch has {rows} "
                             "inputs; the probe needs one output row per input (batch dimension first)")
        self._fired[name] += 1
        if self._fired[name] > 1:
            raise ValueError(f"{where}: the module ran {self._fired[name]} times in one forward pass; "
                             "a module used at several places cannot be measured by module")
        t = output.detach().reshape(rows, -1)
        if not torch.isfinite(t).all():
            raise ValueError(f"{where}: NaN or inf in its activations")
        self._pass[name].add(t)

    # measuring
    @phase("estimating")
    def measure(self, step) -> list[Row]:
        """Measure every layer with every estimator at `step` (a number that increases from call
        to call: an epoch, an iteration); append the rows to `history` and return them.

        The model runs in eval mode on the reference set without gradients; afterwards each
        module's train/eval flag is what it was, no `.grad` or `requires_grad` has changed, and
        the random number generators of the CPU and the model's CUDA device are where they were.
        Nothing is appended if anything fails.
        """
        step = _check_step(step, self._step_of_last())
        attached_here = not self._handles
        if attached_here:
            self._attach()
        modes = [(m, m.training) for m in self.model.modules()]
        cuda = [self.device] if self.device.type == "cuda" else []
        self._step = step
        try:
            with torch.random.fork_rng(devices=cuda), torch.no_grad():
                self.model.eval()
                self._pass = {name: _LayerPass(name, len(self.x_ref), self.estimators) for name in self.layers}
                for start in range(0, len(self.x_ref), self.batch_size):
                    self._run_batch(self.x_ref[start:start + self.batch_size])
                done, self._pass = self._pass, None  # the hooks stop taking data before estimating
                rows = []
                for name, layer in done.items():
                    found = layer.estimates(self.y_ref)
                    rows += [Row(step, name, out, found[out].i_xt, found[out].i_ty)
                             for e in self.estimators for out in e.outputs()]
        finally:
            self._pass = None
            for module, training in modes:
                module.training = training
            if attached_here:
                self._detach()
        self.history.rows += rows
        return rows

    def _step_of_last(self):
        return self.history.rows[-1].step if self.history.rows else None

    def _run_batch(self, x: torch.Tensor) -> None:
        self._batch_rows = len(x)
        self._fired = dict.fromkeys(self.layers, 0)
        self.model(x.to(self.device, non_blocking=True))
        silent = [name for name, count in self._fired.items() if count == 0]
        if silent:
            raise ValueError(f"layers {silent} at step {self._step} did not run in the model's forward pass")

    def plot(self, estimators: Sequence[str] | None = None, **kwargs):
        """The history's information planes (`History.plot`), with the ceilings log2 N and H(Y)."""
        kwargs.setdefault("h_x", self.h_x)
        kwargs.setdefault("h_y", self.h_y)
        return self.history.plot(estimators, **kwargs)
