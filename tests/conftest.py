"""Fixtures shared by the unit tests: the 12-bit task and a small trained ensemble on it."""

import pytest

from ibutils import data, train


@pytest.fixture(scope="session")
def tishby():
    """The 12-bit task: inputs `[4096, 12]` and labels `[4096]`."""
    return data.tishby()


@pytest.fixture(scope="session", params=["tanh", "relu"])
def run(request, tishby):
    """Two seeds of the chapter-1 network trained briefly, every snapshot's parameters kept."""
    x, y = tishby
    seeds = [0, 1]
    train_idx, test_idx = data.train_test_split(len(x), seeds)
    config = train.TrainConfig(activation=request.param, epochs=30, snapshots=6, lr=4e-3)
    return train.train(x, y, train_idx, test_idx, config, seeds, device="cpu", progress=False)
