"""The run store: runs/<id>/ folders with atomic writes, statuses, listing, cache lookup, delete."""

from __future__ import annotations

import dataclasses
import errno
import io
import json
import logging
import os
import re
import secrets
import shutil
import socket
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import psutil

from .config import TrainConfig
from .errors import ConfigError, RunNotFoundError, StoreError
from .records import ACTIVE, EpochRecord, Status, epoch_record

if TYPE_CHECKING:
    from .records import TrainResult

log = logging.getLogger(__name__)

ENV_RUNS_DIR = "KMNIST_RUNS_DIR"
RUN_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")
# Files a completed run must have, each whole, before it may read as completed. weights.npz is
# not among them: runs stored before the worker exported weights lack it and are exported on use.
COMPLETED_FILES = ("config.json", "status.json", "history.json", "metrics.json", "predictions.npz", "model.keras")
LABEL_FILE = "label.json"  # the name, note and tags a user gave a run; never part of its result
MAX_NAME, MAX_NOTE = 80, 2000
STOP_FILE = "stop-requested"  # written by `cancel` in another process; the queue training the run stops it
WEIGHTS_FILE = "weights.npz"  # the network as plain arrays, for the TensorFlow-free forward pass
RESULT_FILES = ("predictions.npz", "model.keras", WEIGHTS_FILE)  # what a failed save removes again
NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@dataclass
class RunInfo:
    """What listing shows of one run; `status` is "broken" when `reason` says what is wrong."""

    run_id: str
    path: Path
    status: str
    config: TrainConfig | None = None
    key: str | None = None
    created: float = 0.0
    history: list[EpochRecord] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    reason: str = ""  # why a run is broken, failed or interrupted
    data_source: str = ""
    label: dict[str, Any] = field(default_factory=dict)  # label.json: name, note, tags the user gave it

    @property
    def name(self) -> str:
        """The name the user gave the run, else one made from its config ('128-64 relu adam wd5e-4')."""
        return self.label.get("name") or (default_name(self.config) if self.config else self.run_id)

    @property
    def note(self) -> str:
        return self.label.get("note", "")

    @property
    def tags(self) -> list[str]:
        return list(self.label.get("tags", []))

    @property
    def completed(self) -> bool:
        return self.status == Status.COMPLETED


def default_name(config: TrainConfig) -> str:
    """A readable name for a run of this config: '128-64 relu adam wd5e-4' (no wd part when it is 0)."""
    parts = ["-".join(str(u) for u in config.hidden_layers), config.activation, config.optimizer]
    if config.weight_decay:
        parts.append("wd" + f"{config.weight_decay:.0e}".replace("e-0", "e-").replace("e+0", "e"))
    return " ".join(parts)


def default_root() -> Path:
    """$KMNIST_RUNS_DIR, else ./runs."""
    return Path(os.environ.get(ENV_RUNS_DIR) or "runs")


def check_run_id(run_id: str) -> str:
    """Return run_id if it is well-formed; ids never name a path outside the store.

    Raises:
        RunNotFoundError: for '../x', absolute paths and anything not like 20261127-093000-ab12cd.
    """
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise RunNotFoundError(f"run id {run_id!r} is not valid: expected the form 20261127-093000-ab12cd")
    return run_id


def _owner() -> str:
    """This process, as host:pid:start-time, so a recycled pid is not mistaken for us."""
    return f"{socket.gethostname()}:{os.getpid()}:{psutil.Process().create_time():.2f}"


def _owner_alive(owner: str) -> bool:
    """Whether the process named by _owner() still runs (a zombie has exited; another host's we cannot tell)."""
    try:
        host, pid, start = owner.rsplit(":", 2)
        pid, start = int(pid), float(start)
    except (AttributeError, ValueError):
        return False
    if host != socket.gethostname():
        return True  # another machine's run: we cannot tell, so we do not claim it died
    try:
        process = psutil.Process(pid)
        return abs(process.create_time() - start) < 0.05 and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:  # no such process, or not ours to look at
        return False


def write_atomic(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder, fsync, then rename: readers see old or new, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=1).encode())


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as e:
        raise StoreError(f"{path.name} is unreadable ({e.__class__.__name__}: {str(e)[:80]})") from e


class RunStore:
    """One folder per run under `root`. Safe to share between threads and processes."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_root()
        self._cache: dict[str, tuple[tuple, RunInfo]] = {}  # run id -> (its files' name/size/mtime, get()'s read)
        self._cache_lock = threading.Lock()
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"runs directory {self.root} is a file, not a folder; set {ENV_RUNS_DIR} to a folder")

    # --- writing ---

    def _not_writable(self, e: OSError) -> StoreError:
        return StoreError(
            f"runs directory {self.root} is not writable ({e.strerror or e}); "
            f"fix its permissions or set {ENV_RUNS_DIR} to a writable folder"
        )

    def create(self, config: TrainConfig, key: str, data_source: str = "") -> str:
        """Make a new run folder with config.json and status "queued"; returns the run id.

        Raises:
            StoreError: if the store cannot be written.
        """
        for _ in range(10):
            run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
            path = self.root / run_id
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                path.mkdir()
                break
            except FileExistsError:
                continue
            except OSError as e:
                raise self._write_error(e) from e
        else:  # pragma: no cover - 10 collisions of 24 random bits in one second
            raise StoreError(f"could not create a run folder in {self.root}")
        try:
            _write_json(path / "config.json", {"config": config.to_dict(), "key": key,
                                               "data_source": data_source, "created": time.time()})
            self.set_status(run_id, Status.QUEUED)
        except OSError as e:
            shutil.rmtree(path, ignore_errors=True)
            raise self._write_error(e) from e
        return run_id

    def reconfigure(self, run_id: str, config: TrainConfig, key: str) -> None:
        """Give a queued run another configuration (live mode replaces a queued job in place).

        Raises:
            StoreError: config.json cannot be written.
        """
        path = self.folder(run_id) / "config.json"
        meta = _read_json(path)
        try:
            _write_json(path, {**meta, "config": config.to_dict(), "key": key})
        except OSError as e:
            raise self._write_error(e) from e

    def set_status(self, run_id: str, status: Status | str, reason: str = "", only_from: Status | None = None) -> None:
        """Record a status, owned by this process; completed is written only after every file (save_result, save_files).

        Args:
            only_from: write only while the run still reads this status (a late "running" never hides an end).
        """
        status = Status(status)  # ValueError for an unknown word
        if only_from is not None and _read_json(self.folder(run_id) / "status.json").get("status") != only_from:
            return
        _write_json(self.folder(run_id) / "status.json",
                    {"status": str(status), "owner": _owner(), "reason": reason, "time": time.time()})

    def save_history(self, run_id: str, history: list[EpochRecord]) -> None:
        """Write history.json: the finished epochs' records, whatever way the run ended."""
        _write_json(self.folder(run_id) / "history.json", list(history))

    def save_result(self, run_id: str, result: TrainResult, weights: dict[str, np.ndarray] | None = None) -> None:
        """Write every file of a finished run, then its status last, so a crash never looks completed.

        Args:
            run_id: the run.
            result: what training produced; a completed one brings its Keras model (worker side).
            weights: the network as plain arrays (kmnist_core.model.export_weights), saved as weights.npz.

        Raises:
            StoreError: one line naming the runs folder when the disk is full or not writable; the
                run's partial result files are removed again and the run is left failed.
        """
        path = self.folder(run_id)
        try:
            self.save_history(run_id, result.history)
            if result.status == Status.COMPLETED:
                buf = io.BytesIO()
                np.savez_compressed(buf, pred=result.test_pred, proba=result.test_proba)
                write_atomic(path / "predictions.npz", buf.getvalue())
                if weights is not None:
                    self.save_weights(run_id, weights)
                tmp = path / f".model-{secrets.token_hex(3)}.keras"
                try:
                    result.model.save(tmp)
                    with open(tmp, "rb") as f:
                        os.fsync(f.fileno())
                    os.replace(tmp, path / "model.keras")
                finally:
                    tmp.unlink(missing_ok=True)
            _write_json(path / "metrics.json", result.metrics())
            self.set_status(run_id, result.status)
        except OSError as e:
            error = self._write_error(e)
            for name in RESULT_FILES:  # never leave a half-saved result that could be mistaken for one
                (path / name).unlink(missing_ok=True)
            try:
                self.set_status(run_id, Status.FAILED, str(error))
            except OSError:
                log.warning("could not record the failure of %s: %s", run_id, error)
            raise error from e

    def save_files(self, run_id: str, files: dict[str, bytes], status: Status | str, reason: str = "") -> None:
        """Write the files a run made elsewhere (a remote worker's), each atomically, then its status last.

        Args:
            files: {path relative to the run folder: bytes}; config.json and status.json are the store's own.

        Raises:
            StoreError: a path leaves the run folder, or the disk is full or not writable; the files
                already written are removed again and the run is left failed.
        """
        path = self.folder(run_id)
        written = []
        try:
            for name, data in files.items():
                target = (path / name).resolve()
                if path.resolve() not in target.parents or name in ("config.json", "status.json"):
                    raise StoreError(f"run {run_id}: a worker sent a file named {name!r}, outside its own files")
                target.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(target, data)
                written.append(target)
            self.set_status(run_id, status, reason)
        except (OSError, StoreError) as e:
            error = e if isinstance(e, StoreError) else self._write_error(e)
            for target in written:
                target.unlink(missing_ok=True)
            try:
                self.set_status(run_id, Status.FAILED, str(error))
            except OSError:
                log.warning("could not record the failure of %s: %s", run_id, error)
            raise error from e

    def save_weights(self, run_id: str, weights: dict[str, np.ndarray]) -> None:
        """Write weights.npz (plain arrays, no pickle) atomically."""
        buf = io.BytesIO()
        np.savez_compressed(buf, **weights)
        write_atomic(self.folder(run_id) / WEIGHTS_FILE, buf.getvalue())

    def weights_path(self, run_id: str) -> Path:
        """Path of a completed run's weights.npz.

        Raises:
            RunNotFoundError: no such run, or it has no exported weights (stored before they existed).
        """
        path = self.folder(run_id) / WEIGHTS_FILE
        if not path.is_file():
            if not self.folder(run_id).is_dir():
                raise RunNotFoundError(f"run {run_id} no longer exists")
            raise RunNotFoundError(f"run {run_id} has no exported weights (it was stored before they existed)")
        return path

    def _write_error(self, e: OSError) -> StoreError:
        """The one-line StoreError of a failed write: a full disk, or a folder that cannot be written."""
        if e.errno in NO_SPACE:
            return StoreError(f"no space left on the device of runs folder {self.root}: "
                              f"free some space or set {ENV_RUNS_DIR} to a folder with room")
        return self._not_writable(e)

    def request_stop(self, run_id: str) -> None:
        """Ask whatever process trains this run to stop it: the `cancel` command, from outside the server.

        Raises:
            RunNotFoundError: if there is no such run.
            StoreError: if the request cannot be written.
        """
        path = self.folder(run_id)
        if not path.is_dir():
            raise RunNotFoundError(f"run {run_id} no longer exists")
        try:
            write_atomic(path / STOP_FILE, b"")
        except OSError as e:
            raise self._write_error(e) from e

    def stop_requested(self, run_id: str) -> bool:
        """Whether request_stop was called for this run."""
        return (self.folder(run_id) / STOP_FILE).exists()

    def relabel(self, run_id: str, name: str | None = None, note: str | None = None,
                tags: list[str] | None = None) -> RunInfo:
        """Give a run a name, a note or tags (None leaves that part as it is); returns the run as it now reads.

        Raises:
            RunNotFoundError: no such run.
            ConfigError: a name over MAX_NAME characters or with a line break, a note over MAX_NOTE.
            StoreError: label.json cannot be written.
        """
        info = self.get(run_id)
        label = dict(info.label)
        if name is not None:
            name = name.strip()
            if len(name) > MAX_NAME or "\n" in name:
                raise ConfigError(f"a run name must be one line of at most {MAX_NAME} characters; got {len(name)}")
            label["name"] = name
        if note is not None:
            if len(note) > MAX_NOTE:
                raise ConfigError(f"a run note must be at most {MAX_NOTE} characters; got {len(note)}")
            label["note"] = note
        if tags is not None:
            label["tags"] = sorted({t.strip() for t in tags if t.strip()})
        try:
            _write_json(self.folder(run_id) / LABEL_FILE, {k: v for k, v in label.items() if v})
        except OSError as e:
            raise self._write_error(e) from e
        return self.get(run_id)

    def delete(self, run_id: str) -> None:
        """Remove a run folder.

        Raises:
            RunNotFoundError: if the id is malformed or there is no such run.
        """
        path = self.folder(run_id)
        if not path.is_dir():
            raise RunNotFoundError(f"run {run_id} no longer exists")
        # Rename first so a concurrent reader never sees a half-deleted run as a run.
        trash = self.root / f".deleted-{run_id}-{secrets.token_hex(2)}"
        os.replace(path, trash)
        shutil.rmtree(trash, ignore_errors=True)

    # --- reading ---

    def folder(self, run_id: str) -> Path:
        """The folder of a run (whether or not it exists).

        Raises:
            RunNotFoundError: the id is malformed (it never names a path outside the store).
        """
        return self.root / check_run_id(run_id)

    def get(self, run_id: str) -> RunInfo:
        """Read one run; a damaged one comes back with status "broken" and a reason.

        A run none of whose files changed since it was last read (the same names, sizes and mtimes)
        and that is not active comes from memory, so that listing a store of a thousand runs does
        not parse a thousand sets of JSON files on every page rerun.

        Raises:
            RunNotFoundError: if the id is malformed or names no run.
        """
        path = self.folder(run_id)
        try:
            with os.scandir(path) as entries:  # every file's name, size and mtime: a changed file is a new read
                mtime = tuple(sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in entries))
        except (FileNotFoundError, NotADirectoryError):
            raise RunNotFoundError(f"run {run_id} no longer exists") from None
        with self._cache_lock:
            cached = self._cache.get(run_id)
        if cached is not None and cached[0] == mtime:
            return dataclasses.replace(cached[1])  # a copy: callers may change theirs
        info = self._read(run_id, path)
        if info.status not in ACTIVE:  # an active run's owner may die without the folder changing
            with self._cache_lock:
                self._cache[run_id] = (mtime, info)
        return dataclasses.replace(info)

    def _read(self, run_id: str, path: Path) -> RunInfo:
        if not path.is_dir():
            raise RunNotFoundError(f"run {run_id} no longer exists")
        info = RunInfo(run_id, path, Status.BROKEN)
        try:
            meta = _read_json(path / "config.json")
            info.config = TrainConfig.from_dict(meta["config"])
            info.key, info.created = meta.get("key"), float(meta.get("created", 0))
            info.data_source = meta.get("data_source", "")
            if (path / LABEL_FILE).exists():
                info.label = _read_json(path / LABEL_FILE)
            state = _read_json(path / "status.json")
            status, info.reason = Status(state["status"]), state.get("reason", "")
            if status in ACTIVE and not _owner_alive(state.get("owner", "")):
                status, info.reason = Status.INTERRUPTED, "the process training it stopped before it finished"
            if (path / "history.json").exists():
                info.history = [epoch_record(r) for r in _read_json(path / "history.json")]
            if (path / "metrics.json").exists():
                info.metrics = _read_json(path / "metrics.json")
            if status == Status.COMPLETED:
                self._check_whole(path)
            info.status = status
        except FileNotFoundError as e:
            info.reason = f"{Path(e.filename).name} is missing"
        except (StoreError, ConfigError) as e:
            info.reason = str(e)
        except (KeyError, TypeError, ValueError) as e:
            info.reason = f"run files are malformed ({e.__class__.__name__}: {e})"
        return info

    @staticmethod
    def _check_whole(path: Path) -> None:
        for name in COMPLETED_FILES:
            if not (path / name).is_file():
                raise FileNotFoundError(2, "missing", str(path / name))
        for name in ("model.keras", "predictions.npz"):
            if not zipfile.is_zipfile(path / name):
                raise StoreError(f"{name} is damaged (not a whole zip archive)")

    def list_runs(self, limit: int | None = None) -> list[RunInfo]:
        """Every run folder (or the `limit` newest), newest first; damaged ones as "broken"; foreign entries skipped."""
        runs = []
        for name in self._run_names()[:limit]:
            try:
                runs.append(self.get(name))
            except RunNotFoundError:
                continue  # deleted while we listed
        return runs

    def _run_names(self) -> list[str]:
        """The run ids in the store, newest first."""
        if not self.root.is_dir():
            return []
        try:
            names = [p.name for p in self.root.iterdir() if RUN_ID.fullmatch(p.name) and p.is_dir()]
        except OSError as e:
            raise StoreError(f"cannot list runs directory {self.root} ({e.strerror or e})") from e
        return sorted(names, reverse=True)

    def find_completed(self, key: str) -> str | None:
        """The newest whole completed run with this config key, if any: the cache lookup.

        Only the runs whose key matches are read again (to be sure they are still whole); the
        others' keys come from memory, so the lookup costs little however many runs there are.
        """
        for name in self._run_names():
            with self._cache_lock:
                cached = self._cache.get(name)
            if cached is not None and cached[1].key != key:
                continue  # a run's key never changes
            try:
                info = self.get(name)
            except RunNotFoundError:
                continue
            if info.key == key and info.completed:
                return info.run_id
        return None

    def mark_interrupted(self) -> list[str]:
        """Persist "interrupted" for queued/running runs whose process is gone; returns their ids."""
        done = []
        for info in self.list_runs():
            if info.status == Status.INTERRUPTED:
                state = _read_json(info.path / "status.json")
                if state.get("status") != Status.INTERRUPTED:
                    self.set_status(info.run_id, Status.INTERRUPTED, info.reason)
                    done.append(info.run_id)
        return done

    def load_predictions(self, run_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(pred (N,) uint8, proba (N, 10) float32) of a completed run."""
        path = self.folder(run_id) / "predictions.npz"
        try:
            with np.load(path, allow_pickle=False) as npz:
                return npz["pred"], npz["proba"]
        except FileNotFoundError as e:
            raise RunNotFoundError(f"run {run_id} has no predictions (it did not complete)") from e
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            raise StoreError(f"run {run_id}: predictions.npz is damaged ({e})") from e

    def model_path(self, run_id: str) -> Path:
        """Path of a run's model.keras; load it with kmnist_core.model.load_model."""
        path = self.folder(run_id) / "model.keras"
        if not path.is_file():
            raise RunNotFoundError(f"run {run_id} has no stored model (it did not complete)")
        return path
