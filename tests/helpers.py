"""Small test helpers shared by several test files (not fixtures)."""

import os
import time
from pathlib import Path

# Paths the tests share; here rather than in conftest.py, which tests/e2e has a second one of.
ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SUBSET = Path(os.environ.get("KMNIST_DATA_DIR") or SHARED / "kmnist-subset").resolve()
OFFICIAL = SHARED / "kmnist"


def wait_until(predicate, timeout=120.0, interval=0.05):
    """Poll predicate() until it returns a truthy value; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def wait_done(queue, job_id, timeout=180.0):
    """Wait for a job to leave queued/running; returns its final snapshot."""
    return wait_until(lambda: (s := queue.progress(job_id)) and not s.active and s, timeout)
