"""What every section gets: the sizes of this run (full or quick), the data, where results go, one shared Chromium."""

from __future__ import annotations

import contextlib
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .harness import VIEWPORT, StreamlitServer, launch_chromium

if TYPE_CHECKING:
    from kmnist_core.data import Dataset

BENCH_PORTS = range(8800, 8900)  # the benchmark's servers, apart from the browser tests' 8700-8799


@dataclass(frozen=True)
class Sizes:
    """How much each section measures: the full figures, or the smoke test's smallest run."""

    n_train: int  # synthetic training samples (after the 10 % validation hold-out)
    epochs: int  # per run of our loop: the product's default run length (the first epoch traces/compiles)
    fit_epochs: int  # per run of each tuned model.fit variant (its first epoch compiles)
    fit_variants: tuple[tuple[int, bool], ...]  # (steps_per_execution, jit_compile) of the tuned model.fit runs
    plain_epochs: int  # per run of plain fit
    repeats: int  # runs of each training setup, alternating which goes first
    short_runs: int  # 5-epoch runs on the data folder
    predict_calls: int  # per background kind (opaque black, transparent)
    baseline_predict_calls: int
    cache_repeats: int  # repeated requests in a fresh JobQueue
    worker_jobs: int  # jobs per batch in the workers x threads comparison
    worker_epochs: int  # epochs of each of those jobs
    worker_repeats: int  # batches per setup, alternating workers=1 and workers=2
    worker_warmup: bool  # one tiny job per worker before the timed batches
    cold_repeats: int  # pairs: ours, then a minimal Streamlit page
    ui_cache_repeats: int  # cache hits through the UI
    live_repeats: int  # click Train -> first live point, on a warm worker
    watch_repeats: int  # watched/unwatched pairs, per tab count
    watch_epochs: int  # epochs of each watched or unwatched run in the dashboard
    paint_tabs: int  # new tabs opened one after another while six tabs watch
    sweep_trials: int  # trials of each sweep of the pruning comparison (TPE + median pruner, random + none)
    sweep_epochs: int  # the epoch budget every trial of that comparison has
    sweep_pg_trials: int  # trials per batch in the PostgreSQL throughput comparison
    sweep_pg_epochs: int  # epochs of each of those (identical) trials
    sweep_pg_repeats: int  # batches per setup, alternating 1 worker x 2 threads and 2 workers x 1 thread
    overhead_trials: int  # short trials whose Optuna duration is compared with their training time
    overhead_epochs: int
    store_runs: int  # runs in the filled store of store_1000 (1,000 for the figures)
    page_repeats: int  # timed paints of each page or view in the browser sections (medians of this many)
    evidence_calls: int  # in-process calls of insight.evidence
    live_mode_repeats: int  # widget change -> the new configuration's first live point, Live on
    live_burst: int  # widget changes in one burst (within 2 s), Live on: it must start one job
    estimate_configs: int  # varied short runs trained for the estimate's error (beside the run's other runs)


FULL = Sizes(
    n_train=60_000, epochs=10, fit_epochs=4, fit_variants=((16, True), (16, False), (64, True), (64, False)),
    plain_epochs=3, repeats=3, short_runs=3, predict_calls=200, baseline_predict_calls=60, cache_repeats=9,
    worker_jobs=4, worker_epochs=5, worker_repeats=3, worker_warmup=True,
    cold_repeats=5, ui_cache_repeats=5, live_repeats=5, watch_repeats=3, watch_epochs=60, paint_tabs=3,
    sweep_trials=16, sweep_epochs=10, sweep_pg_trials=8, sweep_pg_epochs=3, sweep_pg_repeats=2,
    overhead_trials=8, overhead_epochs=2, store_runs=1000, page_repeats=3, evidence_calls=200,
    live_mode_repeats=3, live_burst=10, estimate_configs=6,
)
QUICK = Sizes(
    n_train=2_000, epochs=2, fit_epochs=2, fit_variants=((16, True), (64, False)),
    plain_epochs=2, repeats=1, short_runs=1, predict_calls=100, baseline_predict_calls=5, cache_repeats=3,
    worker_jobs=2, worker_epochs=2, worker_repeats=1, worker_warmup=False,
    cold_repeats=1, ui_cache_repeats=1, live_repeats=1, watch_repeats=1, watch_epochs=20, paint_tabs=1,
    sweep_trials=3, sweep_epochs=2, sweep_pg_trials=2, sweep_pg_epochs=1, sweep_pg_repeats=1,
    overhead_trials=2, overhead_epochs=1, store_runs=50, page_repeats=1, evidence_calls=20,
    live_mode_repeats=1, live_burst=10, estimate_configs=3,
)

# The counts --repeats sets: how many times something is measured, not how big each measurement is.
REPEAT_FIELDS = ("repeats", "short_runs", "cache_repeats", "worker_repeats", "cold_repeats", "ui_cache_repeats",
                 "live_repeats", "watch_repeats", "paint_tabs", "sweep_pg_repeats", "page_repeats",
                 "live_mode_repeats")


class Context:
    """One benchmark run: its sizes, data, figures, notes and the Chromium its browser sections share.

    Args:
        sizes: FULL or QUICK, or a custom Sizes.
        data_dir: the KMNIST folder for the sections on real data and the dashboard, or None.
        out: where the log lines go.
        log_dir: where server logs are kept after the run.
    """

    def __init__(self, sizes: Sizes, data_dir: Path | None, out: TextIO, log_dir: Path):
        self.sizes, self.data_dir, self.log_dir = sizes, data_dir, log_dir
        self.results: dict[str, Any] = {}
        self.notes: dict[str, str] = {}
        self.data: dict[str, str] = {}  # figure -> what it was measured on (synthetic, the data folder, ...)
        self._out, self._lock = out, threading.Lock()
        self._synthetic: dict[int, Dataset] = {}
        self._folder: Dataset | None = None
        self._playwright: Any = None
        self._browser: Any = None
        self._servers = 0
        self._tmp = tempfile.TemporaryDirectory(prefix="kmnist-bench-runs-")
        self._folders = 0
        self.estimate_stores: list[Path] = []  # run stores whose runs the estimate's error is measured over
        self._reference: tuple[Path, str] | None = None

    def log(self, line: str) -> None:
        """One line of progress, flushed at once (a full run takes a while)."""
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()

    def record(self, figures: dict[str, Any], data: str, notes: dict[str, str] | None = None) -> None:
        """Keep figures, what they were measured on, and a note per figure."""
        self.results.update(figures)
        self.data.update(dict.fromkeys(figures, data))
        self.notes.update(notes or {})

    # --- data ---

    def synthetic(self, n_train: int) -> Dataset:
        """KMNIST-shaped synthetic data leaving n_train training samples (made once per size)."""
        from .training import synthetic_dataset

        if n_train not in self._synthetic:
            self._synthetic[n_train] = synthetic_dataset(n_train)
        return self._synthetic[n_train]

    def folder(self) -> Dataset:
        """The data folder's dataset, loaded once.

        Raises:
            RuntimeError: no data folder was given.
        """
        from kmnist_core.data import load_kmnist

        if self.data_dir is None:
            raise RuntimeError("no data folder: pass --data-dir or set KMNIST_DATA_DIR")
        if self._folder is None:
            self._folder = load_kmnist(self.data_dir)
        return self._folder

    def describe_folder(self) -> str:
        """'kmnist-subset (7,200 train samples after the hold-out)': the data label of figures on the folder."""
        from kmnist_core.data import split_validation

        n = len(split_validation(self.folder().y_train, 0.1, 0)[0])
        return f"{self.data_dir.name} ({n:,} train samples)"

    # --- run stores ---

    def runs_folder(self, label: str, estimate: bool = True) -> Path:
        """A new, empty run-store folder for this run, removed at close().

        Args:
            label: part of its name.
            estimate: its runs were trained as a user's are (one worker, all cores), so the
                estimate's error (live_mode) is measured over them too.
        """
        self._folders += 1
        path = Path(self._tmp.name) / "stores" / f"{self._folders:02d}-{label}"
        path.mkdir(parents=True)
        if estimate:
            self.estimate_stores.append(path)
        return path

    def reference_run(self) -> tuple[Path, str]:
        """A completed run of the Train page's default preset on the data folder, trained once per benchmark run.

        Returns:
            (its run folder, its run id): copy the folder into a store, never write into it.
        """
        if self._reference is None:
            from .stores import train_reference

            self._reference = train_reference(self)
        return self._reference

    # --- the dashboard ---

    def server(self, label: str, script: str | Path = "dashboard.py", options: tuple[str, ...] = (),
               estimate: bool = True) -> StreamlitServer:
        """A StreamlitServer (not started; use it as a context manager) with an empty run store of its own.

        Args:
            estimate: its runs count for the estimate's error (False for a store of copied runs).
        """
        self._servers += 1
        name = f"{self._servers:02d}-{label}"
        runs = Path(self._tmp.name) / name
        if estimate:
            self.estimate_stores.append(runs)
        return StreamlitServer(runs, self.log_dir / f"{name}.log", data=self.data_dir, script=script,
                               options=options, ports=BENCH_PORTS)

    def browser(self) -> Any:
        """Debian's Chromium, launched on first use and shared by every browser section of the run."""
        if self._browser is None:
            from playwright.sync_api import sync_playwright

            self._playwright = sync_playwright().start()
            self._browser = launch_chromium(self._playwright)
        return self._browser

    @contextlib.contextmanager
    def tabs(self, count: int) -> Iterator[list[Any]]:
        """`count` pages, each in a browser context of its own (a Streamlit session each); closed after."""
        contexts = [self.browser().new_context(viewport=VIEWPORT) for _ in range(count)]
        try:
            yield [c.new_page() for c in contexts]
        finally:
            for c in contexts:
                with contextlib.suppress(Exception):
                    c.close()

    def close(self) -> None:
        """Close Chromium and remove the servers' run stores (their logs stay in log_dir)."""
        if self._browser is not None:
            with contextlib.suppress(Exception):
                self._browser.close()
            self._playwright.stop()
            self._browser = self._playwright = None
        self._tmp.cleanup()


Section = Callable[[Context], None]
