"""The paper's experiments as cached functions of their settings.

Each function trains, estimates, and returns plain arrays; the result is cached on disk by
its settings (`ibutils.results.cached`), so re-running a chapter to change a figure costs
seconds. Chapters call these and keep only narrative, parameters and figures.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Sequence

from ibutils import data, gradients, infoplane, mi, results, train


@dataclass
class TishbyNetResult:
    """One activation's ensemble on the 12-bit task: the run's metrics and its binned plane.

    `run.params` is dropped (the plane holds what was computed from it); `seconds` times the
    training (with the gradient statistics) and the binning. `gradient_stats` holds every
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
            "train_acc": self.run.train_acc.mean(1),
            "test_acc": self.run.test_acc.mean(1),
            "train_loss": self.run.train_loss.mean(1),
            "test_loss": self.run.test_loss.mean(1),
            **grads,
        }


def tishby_net(config: train.TrainConfig, seeds: Sequence[int], *, train_fraction: float = 0.8,
               binning: infoplane.Binning | None = None, gradient_stats: str | None = None,
               data_path=None, progress: bool = True) -> TishbyNetResult:
    """Train `config` for every seed on its random `train_fraction` split of the 12-bit task
    and bin every layer at every snapshot on all 4096 patterns (Saxe et al. Fig. 1A/B, 5, 7).

    `binning` bins the hidden layers (default: the paper's rule for the activation).
    `gradient_stats`, "minibatch" or "sample", also records every layer's gradient statistics
    at the snapshot epochs (`gradients.Recorder`, SPEC 2.6; Fig. 20) into the result's
    `gradient_stats`.
    """
    seeds = [int(s) for s in seeds]
    binning = binning or infoplane.paper_binning(config.activation)
    key = {"config": asdict(config), "seeds": seeds, "train_fraction": train_fraction, "binning": asdict(binning)}
    modules = (data, train, infoplane, mi)
    if gradient_stats is not None:  # only then in the key, so runs without statistics keep their cache
        if gradient_stats not in gradients.MODES:
            raise ValueError(f"gradient_stats must be None or one of {gradients.MODES}, got {gradient_stats!r}")
        key["gradient_stats"] = gradient_stats
        modules += (gradients,)

    def compute() -> TishbyNetResult:
        x, y = data.tishby(data_path)
        train_idx, test_idx = data.train_test_split(len(x), seeds, train_fraction)
        recorder = gradients.Recorder(gradient_stats) if gradient_stats is not None else None
        hooks = {"on_batch": [recorder.on_batch], "on_snapshot": [recorder.on_snapshot]} if recorder else {}
        started = time.time()
        run = train.train(x, y, train_idx, test_idx, config, seeds, progress=progress, **hooks)
        trained = time.time()
        plane = infoplane.binned_plane(run, x, y, hidden=binning, progress=progress)
        seconds = {"training": round(trained - started, 2), "binning": round(time.time() - trained, 2)}
        stats = recorder.trajectory() if recorder else None
        return TishbyNetResult(replace(run, params=None), plane, seconds, stats)

    return results.cached("tishby_net", key, compute, modules=modules)
