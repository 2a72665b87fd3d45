"""ibutils: information-plane tools for replicating Saxe et al. (2018).

Modules, one concept each:

- `ibutils.data`: data sets and train/test splits.
- `ibutils.vecmath`: float32 exp, log1p and softplus written for compiled, vectorised loops (numba).
- `ibutils.pairwise`: compiled loops over pairs of rows: the KDE's kernel sums, Kraskov's neighbours.
- `ibutils.mi`: information estimators (binning, KDE, Kraskov), pure functions of arrays, in bits.
- `ibutils.estimators`: one family of estimator objects for the book's planes and the probe.
- `ibutils.gaussian`: the exact information of a Gaussian channel (re-exported by `mi` and `linear`).
- `ibutils.train`: a vectorised ensemble trainer for small MLPs with snapshots.
- `ibutils.infoplane`: information-plane trajectories of a trained ensemble.
- `ibutils.gradients`: gradient mean, spread and signal-to-noise ratio over training.
- `ibutils.experiments`: the paper's MLP experiments as cached functions of their settings.
- `ibutils.cluster`: where the experiments' independent units run: this process, a local Dask
  cluster, or an existing one (`$IBUTILS_SCHEDULER`).
- `ibutils.toy`: the exact binned information of the three-neuron model.
- `ibutils.linear`: exact information and generalisation of deep linear student-teacher networks.
- `ibutils.probe`: information planes of your own PyTorch model, measured in your own training loop.
- `ibutils.results`: checked claims, the results JSON of a chapter, the run cache.
- `ibutils.store`: the run cache's files: plain data, checksummed, written atomically, loaded without pickle.
- `ibutils.plots`: the figure style and the figure functions.
- `ibutils.widgets`: pre-rendered sliders for the static site, live controls in a kernel.
- `ibutils.charts`: explorable information planes and chapter 6's verdict table (Bokeh), with
  the matplotlib figures as their fallback, on the site and in JupyterLab.
- `ibutils.progress`: progress bars that reach the terminal of the book's runner, and the time
  split of a run into training, estimating and plotting.
- `ibutils.scoreboard`, `ibutils.sitedata`, `ibutils.execute`: building the book and its site.
"""

import torch

__version__ = "0.1.0"


def default_device() -> torch.device:
    """`cuda` when a CUDA device is present, else `cpu`."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
