"""The paper's experiments as cached functions of their settings.

Each function trains, estimates, and returns plain arrays; the result is cached on disk by
its settings (`ibutils.results.cached`), so re-running a chapter to change a figure costs
seconds. Long trainings checkpoint into the run cache, so a call interrupted by Ctrl-C or a
kill resumes where it stopped, with the same results. Chapters call these and keep only
narrative, parameters and figures.
"""

from __future__ import annotations

import inspect
import sys
import time
from dataclasses import asdict, dataclass, replace
from typing import Hashable, Mapping, Sequence

import numpy as np
import torch

from ibutils import (cluster, data, estimators, gaussian, gradients, infoplane, linear, mi, pairwise, results, train,
                     vecmath)
from ibutils.progress import phase

# The modules whose code a cached value depends on (`results.cached`), by what they do: editing
# one recomputes the values that depend on it.
_TRAINING = (data, train, vecmath)
_ESTIMATING = (infoplane, estimators, mi, gaussian, pairwise, vecmath)


def _checkpoint_args(entry, part, every: float | None) -> dict:
    """The checkpoint arguments of a unit of work (`part` of the value cached at `entry`)."""
    return {} if every is None else {"checkpoint": results.checkpoint_name(entry, part), "checkpoint_every": every}


def _checkpointing(checkpoint: str | None, every: float) -> dict:
    """`train.train`'s checkpoint arguments for a unit given a checkpoint file name in the run cache."""
    return {} if checkpoint is None else {"checkpoint": results.cache_dir() / checkpoint, "checkpoint_every": every}


def _remove_checkpoints(runner: cluster.Runner, entry) -> None:
    """Remove the checkpoints of the value cached at `entry` (once it is saved) from this machine's
    run cache and from each worker's of an existing cluster."""
    results.remove_checkpoints(entry)
    runner.on_workers(_remove_local_checkpoints, entry.name)


def _remove_local_checkpoints(entry_name: str) -> None:
    """On a worker: remove the checkpoints of the entry `entry_name` from its own run cache."""
    results.remove_checkpoints(results.cache_dir() / entry_name)


@dataclass
class TishbyNetResult:
    """One activation's ensemble on the 12-bit task: the run's metrics and its binned plane.

    `run.params` keeps every snapshot's parameters (about 13 MB for 50 seeds at 218 snapshots),
    so other estimators can measure the same networks later (`estimator_study`); `seconds` times
    the training (with the gradient statistics) and the binning, in the call that finished them
    (after a resume from a checkpoint, the part trained in that call). `gradient_stats` holds every
    layer's gradient statistics when asked for (`tishby_net(..., gradient_stats=...)`), else None.
    """

    run: train.Run
    plane: infoplane.InformationPlane
    seconds: dict
    gradient_stats: gradients.Trajectory | None = None

    def series(self) -> dict:
        """The results-JSON layout: seed means per layer (`i_xt[l][k]`, bits) and per snapshot.

        `i_xt_sd`, `i_ty_sd` are the spreads across seeds; `compression` is per layer, in bits.
        With gradient statistics, also the keys of `gradients.Trajectory.series` (on their own
        epochs, `grad_epochs`).
        """
        i_xt, i_ty = self.plane.mean()
        grads = self.gradient_stats.series() if self.gradient_stats is not None else {}
        return {
            "epochs": self.plane.epochs,
            "layers": self.plane.layers,
            "i_xt": i_xt.T,
            "i_ty": i_ty.T,
            "i_xt_sd": self.plane.i_xt.std(0).T,
            "i_ty_sd": self.plane.i_ty.std(0).T,
            "compression": infoplane.compression(i_xt),
            "train_acc": self.run.train_acc.mean(0),
            "test_acc": self.run.test_acc.mean(0),
            "train_loss": self.run.train_loss.mean(0),
            "test_loss": self.run.test_loss.mean(0),
            **grads,
        }

    @classmethod
    def compute(cls, config: train.TrainConfig, seeds: Sequence[int], train_fraction: float,
                binning: infoplane.Binning, gradient_stats: str | None, dataset: tuple[np.ndarray, np.ndarray],
                progress: bool, checkpoint: str | None = None,
                checkpoint_every: float = train.CHECKPOINT_EVERY_S) -> "TishbyNetResult":
        """`tishby_net` for one group of seeds, in this process and without the cache: a unit of
        `tishby_nets` (`cluster.Runner`), a pure function of its arguments.

        `dataset` is the 12-bit task `(x, y)` of `data.tishby`. `checkpoint` names a file in this
        machine's run cache (`results.cache_dir()`) that the training saves its state in every
        `checkpoint_every` seconds and resumes from (`train.train`); the result does not depend
        on whether it did.
        """
        x, y = dataset
        train_idx, test_idx = data.train_test_split(len(x), seeds, train_fraction)
        recorder = gradients.Recorder(gradient_stats) if gradient_stats is not None else None
        hooks = {"on_batch": [recorder.on_batch], "on_snapshot": [recorder.on_snapshot]} if recorder else {}
        started = time.time()
        run = train.train(x, y, train_idx, test_idx, config, seeds, progress=progress, **hooks,
                          **_checkpointing(checkpoint, checkpoint_every))
        trained = time.time()
        plane = infoplane.binned_plane(run, x, y, hidden=binning, progress=progress)
        seconds = {"training": round(trained - started, 2), "binning": round(time.time() - trained, 2)}
        stats = recorder.trajectory() if recorder else None
        return cls(run, plane, seconds, stats)

    # the per-seed arrays (seeds first) of the plane and of the gradient statistics
    _PER_SEED = {"plane": ("i_xt", "i_ty", "value_range"), "gradient_stats": ("mean", "std", "snr", "weight_norm")}

    @classmethod
    def join(cls, parts: Sequence["TishbyNetResult"]) -> "TishbyNetResult":
        """The results of disjoint seed groups of one configuration as one, seeds in the order of
        `parts`. The histograms (of the first seed) come from the first part; `seconds` are
        those of the slowest part."""
        first = parts[0]

        def joined(name: str):
            value = getattr(first, name)
            return None if value is None else replace(value, **{
                f: np.concatenate([getattr(getattr(p, name), f) for p in parts], 0) for f in cls._PER_SEED[name]})

        seconds = {key: max(p.seconds[key] for p in parts) for key in first.seconds}
        return cls(train.Run.join([p.run for p in parts]), joined("plane"), seconds, joined("gradient_stats"))

    def select(self, index: Sequence[int]) -> "TishbyNetResult":
        """The result of the seeds at positions `index` (e.g. the first 20 of 50): the same
        networks and numbers, fewer seeds. The histograms (of the first seed) are kept when
        `index` starts with position 0, else dropped."""
        index = [int(i) for i in index]
        if not index or min(index) < 0 or max(index) >= len(self.run.seeds):
            raise ValueError(f"index must list positions in [0, {len(self.run.seeds)}), got {index}")

        def picked(name: str):
            value = getattr(self, name)
            return None if value is None else replace(value, **{f: getattr(value, f)[index]
                                                                 for f in self._PER_SEED[name]})

        plane = picked("plane")
        if index[0] != 0:
            plane = replace(plane, hist=None, hist_edges=None)
        return replace(self, run=self.run.select(index), plane=plane, gradient_stats=picked("gradient_stats"))


def tishby_net(config: train.TrainConfig, seeds: Sequence[int], *, train_fraction: float = 0.8,
               binning: infoplane.Binning | None = None, gradient_stats: str | None = None,
               data_path=None, progress: bool = True, workers: int | None = 1, scheduler: str | None = None,
               checkpoint_every: float | None = train.CHECKPOINT_EVERY_S) -> TishbyNetResult:
    """Train `config` for every seed on its random `train_fraction` split of the 12-bit task
    and bin every layer at every snapshot on all 4096 patterns (Saxe et al. Fig. 1A/B, 5, 7).

    `binning` bins the hidden layers (default: the paper's rule for the activation).
    `gradient_stats`, "minibatch" or "sample", also records every layer's gradient statistics
    at the snapshot epochs (`gradients.Recorder`; Saxe et al. App. I, Fig. 20) into the result's
    `gradient_stats`. `workers` > 1 splits the seeds into that many groups, each trained and
    binned in its own process; `scheduler` runs them on a Dask cluster (see `tishby_nets`).
    `checkpoint_every` is the seconds of training between checkpoints (see `tishby_nets`).
    """
    return tishby_nets({"": config}, seeds, train_fraction=train_fraction, binning=binning,
                       gradient_stats=gradient_stats, data_path=data_path, progress=progress, workers=workers,
                       scheduler=scheduler, checkpoint_every=checkpoint_every)[""]


def tishby_nets(configs: Mapping[str, train.TrainConfig], seeds: Sequence[int], *, train_fraction: float = 0.8,
                binning: infoplane.Binning | None = None, gradient_stats: str | None = None,
                data_path=None, progress: bool = True, workers: int | None = 1, scheduler: str | None = None,
                checkpoint_every: float | None = train.CHECKPOINT_EVERY_S) -> dict[str, TishbyNetResult]:
    """`tishby_net` for every configuration of `configs` (e.g. {"tanh": ..., "relu": ...}), each
    cached on its own as `tishby_net` caches it; returns the results under the same names.

    `workers` > 1 shares the configurations that are not cached among that many worker processes
    of a local Dask cluster, each on one CPU thread: whole configurations when there are at least
    as many as workers (one ensemble per process is the fastest way to use the cores), else each
    configuration's seeds split into groups. The results are the same as one worker's, bit for
    bit, however the seeds are grouped and whichever worker trains a group; the progress bars are
    then shown only by the book's executor (`Runner.shows_bars`). None means one worker per CPU
    core this process may run on, or 1 when a GPU is present. `binning` None is the paper's rule
    for each configuration's activation.

    `scheduler` (or `$IBUTILS_SCHEDULER`), a Dask scheduler address such as 'tcp://host:8786',
    sends the groups to that cluster instead (`ibutils.cluster`); `workers` None then means one
    group per worker thread of the cluster. The data travel with the groups; the results come back
    here, and only this process writes the run cache.

    Interrupted runs resume: each group of seeds saves its training state every `checkpoint_every`
    seconds (None: never) beside its cache entry (`results.checkpoint_name`), and a call after
    Ctrl-C or a kill continues each group from its last checkpoint, with the same results bit for
    bit; the checkpoints are removed once the entry is saved. A group resumes only when the seeds
    are grouped as before (the same `workers`) and on the machine that trained it (a worker keeps
    its checkpoints in its own run cache); otherwise it starts over, with the same results.
    """
    with cluster.Runner(workers, scheduler) as runner:
        return _tishby_nets(runner, configs, seeds, train_fraction, binning, gradient_stats, data_path, progress,
                            checkpoint_every)


def _tishby_nets(runner: cluster.Runner, configs: Mapping[str, train.TrainConfig], seeds: Sequence[int],
                 train_fraction: float, binning: infoplane.Binning | None, gradient_stats: str | None, data_path,
                 progress: bool, checkpoint_every: float | None) -> dict[str, TishbyNetResult]:
    """`tishby_nets`, its units run by `runner`."""
    seeds = [int(s) for s in seeds]
    if gradient_stats is not None and gradient_stats not in gradients.MODES:
        raise ValueError(f"gradient_stats must be None or one of {gradients.MODES}, got {gradient_stats!r}")
    settings = {name: (config, binning or infoplane.paper_binning(config.activation)) for name, config in configs.items()}
    modules = _TRAINING + _ESTIMATING + ((gradients,) if gradient_stats is not None else ())

    def key(name: str) -> dict:
        config, bins = settings[name]
        entry = {"config": asdict(config), "seeds": seeds, "train_fraction": train_fraction, "binning": asdict(bins)}
        if gradient_stats is not None:  # only then in the key, so runs without statistics keep their cache
            entry["gradient_stats"] = gradient_stats
        return entry

    paths = {name: results.cache_path("tishby_net", key(name), modules) for name in configs}
    done = {name: results.load_cached(path) for name, path in paths.items()}
    todo = [name for name, value in done.items() if value is None]
    if not todo:
        return done
    groups = max(1, runner.workers // len(todo))
    parts = [(name, group.tolist()) for name in todo for group in np.array_split(seeds, min(groups, len(seeds)))]
    bars = progress and runner.shows_bars(len(parts))
    pieces = runner.map(TishbyNetResult.compute, [
        ((settings[name][0], group, train_fraction, settings[name][1], gradient_stats),
         {"progress": bars, **_checkpoint_args(paths[name], group, checkpoint_every)})
        for name, group in parts], shared={"dataset": data.tishby(data_path)}, label="tishby_nets")
    for name in todo:
        joined = TishbyNetResult.join([piece for (owner, _), piece in zip(parts, pieces) if owner == name])
        done[name] = results.save_cached(paths[name], joined)
        _remove_checkpoints(runner, paths[name])
    return done


# --- every estimator on the same networks (Saxe et al. App. B, Fig. 8, 12, 14, 15, and two later papers) ----

@dataclass(frozen=True)
class EstimatorSettings:
    """What `estimator_study` measures, beyond the paper's binning that `tishby_nets` does.

    `snapshots`: about this many log-spaced snapshots are measured (`infoplane.snapshot_subset`).
    KDE bounds at each of `noise_vars` (none if empty); Kraskov entropy with `kraskov_k`, `kraskov_eps`;
    `net_input_bins` bins on `net_input_range` of the net inputs; machine precision;
    `equal_mass_bins` adaptive bins; and for each count in `bin_sweep`, that many equal bins on
    each seed's [min, max] over all hidden layers and snapshots (the softmax on [0, 1]).
    A quantised network (`TrainConfig.quantise_bits`) gets its exact information instead.
    """

    snapshots: int = 30
    noise_vars: tuple[float, ...] = (0.1, 1e-3)
    kraskov_k: int = 2
    kraskov_eps: float = 1e-16
    net_input_bins: int = 30
    net_input_range: tuple[float, float] = (-50.0, 50.0)
    equal_mass_bins: int = 30
    bin_sweep: tuple[int, ...] = (30, 100, 256)

    def estimators(self, run: train.Run, x) -> list:
        """The `infoplane` estimators for `run` (its activation, its seeds' activity ranges)."""
        bits = run.config.quantise_bits
        if bits is not None:
            return [infoplane.QuantisedCodes(bits)]
        low = {"tanh": -1.0, "softsign": -1.0, "relu": 0.0, "softplus": 0.0, "sigmoid": 0.0}.get(run.config.activation)
        ranges = infoplane.activity_range(run, x) if self.bin_sweep else None
        return [
            *([infoplane.KDE(tuple(self.noise_vars))] if self.noise_vars else []),
            infoplane.Kraskov(self.kraskov_k, self.kraskov_eps),
            infoplane.UniformBins("net_input", self.net_input_bins, self.net_input_range, self.net_input_range,
                                  net_input=True),
            infoplane.PrecisionBins(),
            infoplane.EqualMassBins(self.equal_mass_bins, low),
            *(infoplane.UniformBins(f"bins_{n}", n, ranges) for n in self.bin_sweep),
        ]


def plane_label(name: str) -> str:
    """A reader's label for a plane name of `estimator_study` ("kde_upper_0.1" -> "KDE upper, σ² = 0.1")."""
    fixed = {"paper": "bins (paper)", "kraskov": "Kraskov k-NN", "net_input": "net-input bins",
             "precision": "machine precision", "equal_mass": "equal-mass bins", "quantised": "exact (8-bit)"}
    if name in fixed:
        return fixed[name]
    if name.startswith("kde_"):
        _, bound, variance = name.split("_")
        return f"KDE {bound}, σ² = {variance}"
    if name.startswith("bins_"):
        return f"{name[5:]} bins"
    return name


@dataclass
class EstimatorStudyResult:
    """One trained ensemble measured by many estimators on the same snapshots.

    `net` is its `tishby_nets` result (training and the paper's binning at every snapshot);
    `planes` maps each estimator's plane name to an `infoplane.InformationPlane` on the measured
    snapshots `snapshots` (indices into `net.run.epochs`), `paper` being the paper's binning
    there; `seconds` times the estimators.
    """

    net: TishbyNetResult
    snapshots: np.ndarray
    planes: dict[str, infoplane.InformationPlane]
    seconds: dict

    def trajectory(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`(epochs, i_xt, i_ty)` of plane `name`, seed means `[snapshots, layers]` in bits, as
        `plots.information_plane` takes them."""
        plane = self.planes[name]
        return (plane.epochs, *plane.mean())

    def series(self) -> dict:
        """Per plane: `epochs`, `layers`, seed means `i_xt`, `i_ty` and spreads `i_xt_sd`, `i_ty_sd`
        (`[layers][snapshots]` bits), `compression` of the seed mean per layer, and the
        `infoplane.compression_summary`; plus the accuracies at the measured snapshots."""
        out = {name: {"epochs": plane.epochs, "layers": plane.layers,
                      "i_xt": plane.i_xt.mean(0).T, "i_ty": plane.i_ty.mean(0).T,
                      "i_xt_sd": plane.i_xt.std(0).T, "i_ty_sd": plane.i_ty.std(0).T,
                      "compression": infoplane.compression(plane.i_xt.mean(0)),
                      "summary": infoplane.compression_summary(plane)}
               for name, plane in self.planes.items()}
        run = self.net.run
        out["accuracy"] = {"epochs": run.epochs[self.snapshots], "train_acc": run.train_acc[:, self.snapshots].mean(0),
                           "test_acc": run.test_acc[:, self.snapshots].mean(0)}
        return out


def _estimate_group(run: train.Run, settings: EstimatorSettings, dataset: tuple[np.ndarray, np.ndarray],
                    progress: bool) -> tuple[dict, float]:
    """The planes of every estimator of `settings` for `run` (one group of seeds) on the 12-bit
    task `dataset` = `(x, y)`, and seconds taken: a unit of `estimator_study`."""
    started = time.time()
    x, y = dataset
    visit = infoplane.snapshot_subset(run.epochs, settings.snapshots)
    planes = infoplane.estimate(run, x, y, settings.estimators(run, x), visit, progress=progress)
    return planes, time.time() - started


def _join_planes(parts: Sequence[dict]) -> dict[str, infoplane.InformationPlane]:
    """Planes of disjoint seed groups (dicts of the same names) as one, seeds in order."""
    return {name: replace(parts[0][name], i_xt=np.concatenate([p[name].i_xt for p in parts]),
                          i_ty=np.concatenate([p[name].i_ty for p in parts]))
            for name in parts[0]}


def estimator_study(configs: Mapping[str, train.TrainConfig], seeds: Sequence[int], *, train_fraction: float = 0.8,
                    settings: EstimatorSettings = EstimatorSettings(), data_path=None, progress: bool = True,
                    workers: int | None = 1, scheduler: str | None = None,
                    gradient_stats: str | None = None) -> dict[str, EstimatorStudyResult]:
    """Train every configuration on the 12-bit task (`tishby_nets`, so runs chapter 1 already
    cached are reused) and measure the same snapshots with every estimator of `settings`
    (Saxe et al. App. B; Chelombiev et al. 2019; Lorenzen et al. 2022).

    The estimates of each configuration are cached on their own. `workers` and `scheduler` as in
    `tishby_nets`; the estimators' work is split into one group of seeds per worker and configuration.
    `gradient_stats` trains the networks with gradient statistics, as `tishby_nets` does: pass
    what the runs to reuse were trained with (chapter 1: "minibatch"); it changes no estimate.
    """
    seeds = [int(s) for s in seeds]
    with cluster.Runner(workers, scheduler) as runner:
        nets = _tishby_nets(runner, configs, seeds, train_fraction, None, gradient_stats, data_path, progress,
                            train.CHECKPOINT_EVERY_S)
        estimates = _estimates(runner, configs, seeds, nets, train_fraction, settings, data_path, progress)
    studies = {}
    for name, net in nets.items():
        visit = infoplane.snapshot_subset(net.run.epochs, settings.snapshots)
        paper = replace(net.plane, epochs=net.plane.epochs[visit], i_xt=net.plane.i_xt[:, visit],
                        i_ty=net.plane.i_ty[:, visit], hist=None, hist_edges=None)
        studies[name] = EstimatorStudyResult(net, visit, {"paper": paper, **estimates[name]["planes"]},
                                             {"estimating": estimates[name]["seconds"], **net.seconds})
    return studies


def _estimates(runner: cluster.Runner, configs: Mapping[str, train.TrainConfig], seeds: list[int],
               nets: Mapping[str, TishbyNetResult], train_fraction: float, settings: EstimatorSettings, data_path,
               progress: bool) -> dict[str, dict]:
    """`estimator_study`'s cached estimates of each configuration (`{"planes", "seconds"}`), the
    missing ones computed by `runner`."""
    modules = (*_TRAINING, *_ESTIMATING, sys.modules[__name__])
    paths = {name: results.cache_path("estimator_study", {
        "config": asdict(config), "seeds": seeds, "train_fraction": train_fraction, "settings": asdict(settings)},
        modules) for name, config in configs.items()}
    done = {name: results.load_cached(path) for name, path in paths.items()}
    todo = [name for name, value in done.items() if value is None]
    if not todo:
        return done
    parts = [(name, group.tolist()) for name in todo
             for group in np.array_split(np.arange(len(seeds)), min(runner.workers, len(seeds)))]
    bars = progress and runner.shows_bars(len(parts))
    pieces = runner.map(_estimate_group, [
        ((nets[name].run.select(group), settings), {"progress": bars}) for name, group in parts],
        shared={"dataset": data.tishby(data_path)}, label="estimator_study")
    for name in todo:
        mine = [piece for (owner, _), piece in zip(parts, pieces) if owner == name]
        planes = _join_planes([p for p, _ in mine])
        done[name] = results.save_cached(paths[name], {"planes": planes, "seconds": round(max(t for _, t in mine), 2)})
    return done


def verdict_matrix(studies: Mapping[str, EstimatorStudyResult], columns: Sequence[str]) -> dict:
    """Compression by estimator: one row per study (e.g. activation), one column per plane name.

    Returns `rows`, `columns`, and `[rows][columns]` tables of `infoplane.compression_summary`'s
    `hidden`, `hidden_sd`, `output`, `output_sd` (bits; NaN where a study has no such plane),
    `hidden_verdict`, `output_verdict` ('n/a' there).
    """
    keys = ("hidden", "hidden_sd", "output", "output_sd", "hidden_verdict", "output_verdict")
    empty = {key: "n/a" if key.endswith("verdict") else float("nan") for key in keys}
    cells = [[infoplane.compression_summary(s.planes[c]) if c in s.planes else empty for c in columns]
             for s in studies.values()]
    return {"rows": list(studies), "columns": list(columns),
            **{key: [[cell[key] for cell in row] for row in cells] for key in keys}}


# --- MNIST with the KDE estimator (Saxe et al. Fig. 1C-D, 9, 10) ---------------------------------

@dataclass
class KDEPlane:
    """KDE estimates (`mi.kde`) of every layer at every snapshot for one noise variance, in bits.

    Each array is `[snapshots, layers]`: I(X;T) and I(T;Y) from the pairwise-KL kernel
    (`upper_*`) and from the Bhattacharyya kernel (`lower_*`). For I(X;T) they bound the
    information of the noisy layer T + N(0, noise_var I); for I(T;Y) they are estimates.
    """

    noise_var: float
    upper_i_xt: np.ndarray
    upper_i_ty: np.ndarray
    lower_i_xt: np.ndarray
    lower_i_ty: np.ndarray

    def series(self) -> dict:
        """`{"noise_var", "kde_upper": {"i_xt", "i_ty"}, "kde_lower": {...}}`, arrays `[layers][snapshots]`."""
        return {
            "noise_var": self.noise_var,
            "kde_upper": {"i_xt": self.upper_i_xt.T, "i_ty": self.upper_i_ty.T},
            "kde_lower": {"i_xt": self.lower_i_xt.T, "i_ty": self.lower_i_ty.T},
        }


class _SnapshotEstimates:
    """`train`'s on_snapshot hook: KDE (one plane per noise variance) and floor-binned MI of
    every layer, on the pool rows `rows` with labels `y` (model 0 of the ensemble)."""

    def __init__(self, rows: np.ndarray, y: np.ndarray, noise_vars: Sequence[float], bin_width: float):
        self.rows, self.y, self.noise_vars = torch.as_tensor(rows), y, noise_vars
        self.kde_estimator = estimators.KDE(tuple(noise_vars))
        self.binned_estimator = estimators.BinnedFloor(bin_width)
        self.kde: list[list[mi.KDEBounds]] = []  # [snapshots][layers x noise_vars]
        self.binned: list[list[mi.MI]] = []  # [snapshots][layers]

    @phase("estimating")
    def __call__(self, epoch: int, activations) -> None:
        layers = [a[0].index_select(0, self.rows.to(a.device)) for a in activations]
        kde = [self.kde_estimator.estimate(t, self.y) for t in layers]
        self.kde.append([mi.KDEBounds(found[f"kde_upper_{v:g}"], found[f"kde_lower_{v:g}"])
                         for found in kde for v in self.noise_vars])
        self.binned.append([self.binned_estimator.estimate(t, self.y)[self.binned_estimator.name] for t in layers])

    def state_dict(self) -> dict:
        """The estimates so far, as plain data (for `train`'s checkpoints)."""
        return {"kde": np.asarray(self.kde, dtype=np.float64), "binned": np.asarray(self.binned, dtype=np.float64)}

    def load_state_dict(self, state: dict) -> None:
        # one [layers * noise_vars, bound, quantity] and one [layers, quantity] array per snapshot
        self.kde, self.binned = list(state["kde"]), list(state["binned"])

    def planes(self) -> tuple[list[KDEPlane], np.ndarray, np.ndarray]:
        """One `KDEPlane` per noise variance, and binned I(X;T), I(T;Y) `[snapshots, layers]`."""
        kde = np.asarray(self.kde, dtype=np.float64)  # [K, layers * V, bound, quantity]
        kde = kde.reshape(len(self.kde), -1, len(self.noise_vars), 2, 2)
        planes = [KDEPlane(v, kde[:, :, i, 0, 0], kde[:, :, i, 0, 1], kde[:, :, i, 1, 0], kde[:, :, i, 1, 1])
                  for i, v in enumerate(self.noise_vars)]
        binned = np.asarray(self.binned, dtype=np.float64)
        return planes, binned[..., 0], binned[..., 1]


@dataclass
class MnistNetResult:
    """One MNIST network (784-1024-20-20-20-10): its metrics and per-layer information.

    `kde` holds one `KDEPlane` per noise variance, the headline `noise_var` first;
    `binned_i_xt`, `binned_i_ty` are `[snapshots, layers]` bits (floor bins of `bin_width`);
    `gradient_stats` the per-minibatch gradient statistics at the snapshot epochs (`gradients.Recorder`).
    `test_rows` are the indices of the test images the estimates used; `seconds["total"]` times
    the whole call (training, with the estimates made at each snapshot; after a resume from a
    checkpoint, the part done in that call).
    """

    run: train.Run
    layers: list[str]
    kde: list[KDEPlane]
    bin_width: float
    binned_i_xt: np.ndarray
    binned_i_ty: np.ndarray
    gradient_stats: gradients.Trajectory
    n_train: int
    test_rows: np.ndarray
    seconds: dict

    def series(self) -> dict:
        """The results-JSON layout: `epochs`, `layers`, the headline `kde_upper` / `kde_lower`
        (each `{"i_xt", "i_ty"}`, `[layers][snapshots]` bits), `binned` (same layout), the
        losses and accuracies (`[snapshots]`, nats and fractions), the gradient statistics
        (`gradients.Trajectory.series`), and `sensitivity`: one `KDEPlane.series()` per noise variance.
        """
        headline = self.kde[0].series()
        return {
            "epochs": self.run.epochs,
            "layers": self.layers,
            "samples": len(self.test_rows),
            "noise_var": headline["noise_var"],
            "kde_upper": headline["kde_upper"],
            "kde_lower": headline["kde_lower"],
            "binned": {"bin_width": self.bin_width, "i_xt": self.binned_i_xt.T, "i_ty": self.binned_i_ty.T},
            "compression": infoplane.compression(self.kde[0].upper_i_xt),
            "train_loss": self.run.train_loss[0],
            "test_loss": self.run.test_loss[0],
            "train_acc": self.run.train_acc[0],
            "test_acc": self.run.test_acc[0],
            **self.gradient_stats.series(),
            "sensitivity": [plane.series() for plane in sorted(self.kde, key=lambda p: p.noise_var)],
        }


def mnist_net(config: train.TrainConfig, seed: int = 0, *, n_train: int | None = None, samples: int = 10_000,
              noise_var: float = 0.1, sensitivity: Sequence[float] = (), bin_width: float = 0.5,
              data_path=None, progress: bool = True, scheduler: str | None = None,
              checkpoint_every: float | None = train.CHECKPOINT_EVERY_S) -> MnistNetResult:
    """Train one MNIST network and estimate every layer's information at every snapshot
    (Saxe et al. Fig. 1C-D, 9, 10; settings: the book's Methods page, "tanh and ReLU on MNIST").

    `config.hidden` should be (1024, 20, 20, 20) for the paper's network. The network trains on
    `n_train` training images (None: all 60,000; else a seeded random subset) and is measured on
    `samples` test images (10,000: all of them; else a seeded subset): KDE bounds at `noise_var`
    and at each variance in `sensitivity` (from the same activations), floor binning of width
    `bin_width`, and per-minibatch gradient statistics. Uses CUDA when present (on a Dask cluster,
    `scheduler`: where the worker has it). Training saves a checkpoint every `checkpoint_every`
    seconds (None: never) and an interrupted call resumes from it (see `mnist_nets`).
    """
    return mnist_nets({"": config}, seed, n_train=n_train, samples=samples, noise_var=noise_var,
                      sensitivity=sensitivity, bin_width=bin_width, data_path=data_path, progress=progress,
                      scheduler=scheduler, checkpoint_every=checkpoint_every)[""]


def mnist_nets(configs: Mapping[str, train.TrainConfig], seed: int = 0, *, n_train: int | None = None,
               samples: int = 10_000, noise_var: float = 0.1, sensitivity: Sequence[float] = (),
               bin_width: float = 0.5, data_path=None, progress: bool = True,
               workers: int | None = 1, scheduler: str | None = None,
               checkpoint_every: float | None = train.CHECKPOINT_EVERY_S) -> dict[str, MnistNetResult]:
    """`mnist_net` for every configuration of `configs` (e.g. {"tanh": ..., "relu": ...}), each
    cached on its own; returns the results under the same names.

    `workers` > 1 trains the configurations that are not cached side by side, one worker process
    of a local Dask cluster each, on one CPU thread each (progress bars are then shown only by
    the book's executor). None means one worker per CPU core, or 1 when a GPU is present.
    `scheduler` (or `$IBUTILS_SCHEDULER`) trains them on that Dask cluster instead, each on CUDA
    where its worker has it (`ibutils.cluster`); MNIST travels to the workers by value (55 MB,
    uint8). A worker's results equal this process's up to rounding: NumPy's BLAS splits the
    large products differently on one thread.

    Each network saves its training state (with the estimates made so far) every
    `checkpoint_every` seconds (None: never) beside its cache entry; a call after Ctrl-C or a
    kill resumes from there, with the same results bit for bit as an uninterrupted call in the
    same setting (a checkpoint made in a worker process resumes only in one, as their rounding
    differs). The checkpoint is removed once the entry is saved.
    """
    seed = int(seed)
    train_images, test_images = data.MNIST_SHAPES["train-images-idx3-ubyte"][0], data.MNIST_SHAPES["t10k-images-idx3-ubyte"][0]
    n_train = train_images if n_train is None else int(n_train)
    if not 0 < n_train <= train_images:
        raise ValueError(f"n_train must lie in [1, {train_images}] or be None, got {n_train}")
    if not 1 < int(samples) <= test_images:
        raise ValueError(f"samples must lie in [2, {test_images}], got {samples}")
    noise_vars = (float(noise_var), *(float(v) for v in sensitivity if float(v) != float(noise_var)))
    modules = (*_TRAINING, *_ESTIMATING, gradients, sys.modules[__name__])

    def key(config: train.TrainConfig) -> dict:
        return {"config": asdict(config), "seed": seed, "n_train": n_train, "samples": int(samples),
                "noise_vars": noise_vars, "bin_width": bin_width}

    paths = {name: results.cache_path("mnist_net", key(config), modules) for name, config in configs.items()}
    done = {name: results.load_cached(path) for name, path in paths.items()}
    todo = [name for name, value in done.items() if value is None]
    if not todo:
        return done
    with cluster.Runner(workers, scheduler) as runner:
        remote = runner.remote(len(todo))  # then another rounding (see above)
        computed = runner.map(_mnist_net, [
            ((configs[name], seed, n_train, int(samples), noise_vars, bin_width),
             {"progress": progress and runner.shows_bars(len(todo)),
              **_checkpoint_args(paths[name], {"worker process": remote}, checkpoint_every)}) for name in todo],
            shared={"raw": data.mnist_raw(data_path)}, label="mnist_nets")
        for name, value in zip(todo, computed):
            done[name] = results.save_cached(paths[name], value)
            _remove_checkpoints(runner, paths[name])
    return done


def _mnist_net(config: train.TrainConfig, seed: int, n_train: int, samples: int, noise_vars: tuple[float, ...],
               bin_width: float, raw: tuple[np.ndarray, ...], progress: bool, checkpoint: str | None = None,
               checkpoint_every: float = train.CHECKPOINT_EVERY_S) -> MnistNetResult:
    """`mnist_net` in this process, without the cache: a unit of `mnist_nets`, on MNIST as
    `data.mnist_raw` gives it (`checkpoint`, `checkpoint_every` as for `TishbyNetResult.compute`)."""
    started = time.time()
    x_train, y_train, x_test, y_test = data.mnist_from_raw(raw)
    rng = np.random.default_rng([seed, 784])
    train_rows = np.sort(rng.permutation(len(x_train))[:n_train])
    mi_rows = np.sort(rng.permutation(len(x_test))[:samples])
    # one pool: the training images, then the test images; snapshots see all of it
    x = np.concatenate([x_train[train_rows], x_test])
    y = np.concatenate([y_train[train_rows], y_test])
    train_idx = np.arange(n_train)[None]
    test_idx = n_train + np.arange(len(x_test))[None]
    estimates = _SnapshotEstimates(n_train + mi_rows, y_test[mi_rows], noise_vars, bin_width)
    recorder = gradients.Recorder("minibatch")
    run = train.train(x, y, train_idx, test_idx, config, [seed], keep_params=False,
                      on_snapshot=[estimates, recorder.on_snapshot], on_batch=[recorder.on_batch],
                      progress=progress, **_checkpointing(checkpoint, checkpoint_every))
    planes, binned_i_xt, binned_i_ty = estimates.planes()
    seconds = {"total": round(time.time() - started, 2)}
    return MnistNetResult(run, infoplane.layer_names(run.sizes), planes, bin_width, binned_i_xt,
                          binned_i_ty, recorder.trajectory(), n_train, mi_rows, seconds)


# --- deep linear students side by side (Saxe et al. Fig. 3, 4, 6, 18, 21) -----------

_SET_HERE = ("progress", "threads")  # train_students arguments that linear_students sets itself


def linear_students(jobs: Mapping[Hashable, Mapping], *, workers: int | None = 1, scheduler: str | None = None,
                    progress: bool = True) -> dict[Hashable, linear.LinearRun]:
    """`linear.train_students` for every job of `jobs` (its keyword arguments), each cached on its
    own; returns the runs (`linear.LinearRun`) under the same keys, in the same order.

    A job is the keyword arguments of `train_students`, `teacher` and `n_train` included (e.g.
    one of `linear.sweep_jobs`), but not `progress` or `threads`: each job trains on one CPU
    thread. Its cache key is every argument (defaults included) and the source of the modules
    that compute it. `workers` > 1 trains the jobs that are not cached side by side, one per
    worker process of a local Dask cluster, the longest first (`_students_cost`); each seed's run
    depends only on its seed and settings, so the runs are the same, bit for bit, as in this
    process. None means one worker per CPU core. `scheduler`: as in `tishby_nets`.
    """
    if not isinstance(jobs, Mapping):
        raise ValueError(f"jobs must be a mapping of names to train_students keyword arguments, "
                         f"got {type(jobs).__name__}")
    bound = {name: _bind_students(name, job) for name, job in jobs.items()}
    modules = (linear, gaussian, gradients)
    paths = {name: results.cache_path("linear_students", _students_key(args), modules) for name, args in bound.items()}
    done = {name: results.load_cached(path) for name, path in paths.items()}
    todo = sorted((name for name, value in done.items() if value is None), key=lambda n: -_students_cost(bound[n]))
    if not todo:
        return done
    with cluster.Runner(workers, scheduler) as runner:
        bars = progress and runner.shows_bars(len(todo))
        computed = runner.map(linear.train_students, [((), {**bound[name], "progress": bars}) for name in todo],
                              label="linear_students")
    for name, run in zip(todo, computed):
        done[name] = results.save_cached(paths[name], run)
    return done


def _bind_students(name: Hashable, job: Mapping) -> dict:
    """`job` with `train_students`' defaults filled in, checked against its signature."""
    if not isinstance(job, Mapping):
        raise ValueError(f"jobs[{name!r}] must be a mapping of train_students keyword arguments, "
                         f"got {type(job).__name__}")
    if not isinstance(job.get("teacher"), linear.Teacher) or "n_train" not in job:
        raise ValueError(f"jobs[{name!r}] must give a linear.Teacher as 'teacher' and 'n_train', got {sorted(job)}")
    extra = [key for key in job if key in _SET_HERE]
    if extra:
        raise ValueError(f"jobs[{name!r}] must not set {extra}: linear_students sets them (one thread per job)")
    try:
        arguments = inspect.signature(linear.train_students).bind(**job)
    except TypeError as exc:
        raise ValueError(f"jobs[{name!r}]: {exc} (expected train_students keyword arguments)") from None
    arguments.apply_defaults()
    return {key: value for key, value in arguments.arguments.items() if key not in _SET_HERE}


def _students_key(args: dict) -> dict:
    """The cache key of a bound job: JSON-able (sequences as lists, dtype and device as text)."""
    plain = lambda value: list(value) if isinstance(value, (range, tuple)) else value
    return {**{key: plain(value) for key, value in args.items()}, "teacher": asdict(args["teacher"]),
            "dtype": str(args["dtype"]), "device": str(args["device"])}


def _students_cost(args: dict) -> float:
    """A job's rough cost in seconds on one core: a fixed cost per step, one per weight per step
    and seed, and one per snapshot and seed (measured on the book's jobs; only their order is used)."""
    teacher, seeds = args["teacher"], len(args["seeds"])
    sizes = (teacher.n_in, *args["hidden"], teacher.n_out)
    weights = sum(a * b for a, b in zip(sizes, sizes[1:]))
    batch = args["batch_size"]
    steps = args["epochs"] * (1 if batch is None else args["n_train"] // batch)
    return steps * (15e-6 + 0.5e-9 * seeds * weights) + args["n_snapshots"] * seeds * 1.2e-3
