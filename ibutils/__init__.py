"""ibutils: information-plane tools for replicating Saxe et al. (2018).

Modules, one concept each:

- `ibutils.data`: data sets and train/test splits.
- `ibutils.mi`: information estimators (binning, KDE), pure functions of arrays, in bits.
- `ibutils.train`: a vectorised ensemble trainer for small MLPs with snapshots.
- `ibutils.infoplane`: information-plane trajectories of a trained ensemble.
- `ibutils.results`: checked claims and the results JSON of a chapter.
- `ibutils.plots`: the figure style and the figure functions.
"""

import torch

__version__ = "0.1.0"


def default_device() -> torch.device:
    """`cuda` when a CUDA device is present, else `cpu`."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
