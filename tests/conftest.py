"""Shared fixtures: the real KMNIST subset, a temporary run store, a real job queue."""

import os

import pytest
from helpers import SUBSET

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


@pytest.fixture(scope="session")
def data():
    from kmnist_core.data import load_kmnist

    return load_kmnist(SUBSET)


@pytest.fixture
def store(tmp_path):
    from kmnist_core.store import RunStore

    return RunStore(tmp_path / "runs")


@pytest.fixture
def queue(store, data):
    from kmnist_core.jobs import JobQueue

    q = JobQueue(store, data)
    yield q
    q.close()
