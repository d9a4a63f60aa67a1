"""Small test helpers shared by several test files (not fixtures)."""

import base64
import io
import os
import time
from pathlib import Path

# Paths the tests share; here rather than in conftest.py, which tests/e2e has a second one of.
from benchmarks.harness import OFFICIAL, ROOT  # noqa: F401 - the tests import them from here
from benchmarks.harness import SUBSET as SHARED_SUBSET

SUBSET = Path(os.environ.get("KMNIST_DATA_DIR") or SHARED_SUBSET).resolve()  # the data the suite runs on


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


def texts(elements):
    """The values of AppTest elements (titles, errors, captions...)."""
    return [e.value for e in elements]


def canvas_value(rgba):
    """What streamlit-drawable-canvas 0.13 sends for a drawing: the canvas PNG as a data URL."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    return {"drawing": {"raw": {"objects": [{"type": "path"}]}, "data": url}, "backgroundFit": None}
