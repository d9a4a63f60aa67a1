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


@pytest.fixture
def env(tmp_path, monkeypatch):
    """For AppTest: KMNIST_DATA_DIR on the subset, a fresh runs dir; Streamlit's process-wide caches released after."""
    import streamlit as st

    runs = tmp_path / "runs"
    monkeypatch.setenv("KMNIST_DATA_DIR", str(SUBSET))
    monkeypatch.setenv("KMNIST_RUNS_DIR", str(runs))
    yield runs
    st.cache_resource.clear()  # closes this test's job queue (on_release)
