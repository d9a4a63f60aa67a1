"""KMNIST data: official files or tensorflow-datasets -> validated uint8 arrays and the class table."""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import multiprocessing
import os
import socket
import struct
import zipfile
import zlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .errors import DataError

log = logging.getLogger(__name__)

ATTRIBUTION = (
    '"KMNIST Dataset" (created by CODH), adapted from "Kuzushiji Dataset" '
    "(created by NIJL and others), doi:10.20676/00000341. License: CC BY-SA 4.0."
)
DOWNLOAD_URL = "http://codh.rois.ac.jp/kmnist/index.html.en"
TFDS_HOST = "codh.rois.ac.jp"
ENV_DATA_DIR = "KMNIST_DATA_DIR"
TFDS_SOURCE = "tensorflow-datasets"
TFDS_NPZ_FOLDER = "kmnist-lab-npz"  # inside tfds' data dir: KMNIST from tfds, as the four official npz files


class KmnistClass(NamedTuple):
    index: int
    codepoint: str
    hiragana: str
    romaji: str

    @property
    def label(self) -> str:
        """'お (o)'."""
        return f"{self.hiragana} ({self.romaji})"


CLASSES: tuple[KmnistClass, ...] = tuple(
    KmnistClass(i, f"U+{ord(ch):04X}", ch, romaji)
    for i, (ch, romaji) in enumerate(
        zip("おきすつなはまやれを", ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"), strict=True)
    )
)

# Official distribution files: name -> (byte size, md5). From ../shared/data/kmnist/SOURCES.txt.
OFFICIAL_FILES: dict[str, tuple[int, str]] = {
    "kmnist-train-imgs.npz": (18384171, "a183fbc01ed9a345513b145673d3d0bb"),
    "kmnist-train-labels.npz": (29700, "b0e1d240e8afec72b50437fc3bc5908a"),
    "kmnist-test-imgs.npz": (3079479, "dace6de62ca8b90843cc45366337d02e"),
    "kmnist-test-labels.npz": (5304, "3ae489a79983d0fe386152684e3b5412"),
    "train-images-idx3-ubyte.gz": (18165135, "bdb82020997e1d708af4cf47b453dcf7"),
    "train-labels-idx1-ubyte.gz": (29497, "e144d726b3acfaa3e44228e80efcd344"),
    "t10k-images-idx3-ubyte.gz": (3041136, "5c965bf0a639b31b8f53240b1b52f4d7"),
    "t10k-labels-idx1-ubyte.gz": (5120, "7320c461ea6c1c855c0b718fb2a4b134"),
}

# For each (split, kind), the file names we accept, in order of preference.
_CANDIDATES: dict[tuple[str, str], tuple[str, ...]] = {
    ("train", "imgs"): ("kmnist-train-imgs.npz", "train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"),
    ("train", "labels"): ("kmnist-train-labels.npz", "train-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte"),
    ("test", "imgs"): ("kmnist-test-imgs.npz", "t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte"),
    ("test", "labels"): ("kmnist-test-labels.npz", "t10k-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte"),
}

_HOW_TO_GET = (
    f"download kmnist-train-imgs.npz, kmnist-train-labels.npz, kmnist-test-imgs.npz and "
    f"kmnist-test-labels.npz from {DOWNLOAD_URL} (or github.com/rois-codh/kmnist), put them in one "
    f"folder and set {ENV_DATA_DIR} to it"
)


@dataclass(frozen=True, eq=False)
class Dataset:
    """The loaded splits, held once per process; images (N, 28, 28) uint8, labels (N,) uint8."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str  # human-readable: the folder or "tensorflow-datasets"
    folder: Path | None = None  # the files it was read from: a training worker reads the same ones

    @cached_property
    def fingerprint(self) -> str:
        """sha1 of all arrays: identifies the data a result was trained and tested on."""
        h = hashlib.sha1()
        for a in (self.x_train, self.y_train, self.x_test, self.y_test):
            h.update(str(a.shape).encode())
            h.update(np.ascontiguousarray(a).data)
        return h.hexdigest()[:16]

    def describe(self) -> str:
        """'8,000 train / 2,000 test from <source>'."""
        return f"{len(self.y_train):,} train / {len(self.y_test):,} test from {self.source}"


def split_validation(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded hold-out of the training split.

    Args:
        labels: (N,) training labels.
        fraction: share of each class held out for validation.
        seed: fixes which samples are held out.

    Returns:
        (train_idx, val_idx): sorted index arrays into the training split.
    """
    rng = np.random.default_rng(seed)
    val_parts = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n_val = int(round(len(idx) * fraction))
        val_parts.append(rng.permutation(idx)[:n_val])
    val_idx = np.sort(np.concatenate(val_parts))
    mask = np.ones(len(labels), dtype=bool)
    mask[val_idx] = False
    return np.flatnonzero(mask), val_idx


def load_kmnist(data_dir: str | os.PathLike | None = None, *, tfds_timeout: float = 8.0) -> Dataset:
    """Load KMNIST from a folder of official files, else from tensorflow-datasets.

    Args:
        data_dir: folder of the official files; defaults to $KMNIST_DATA_DIR. A folder given
            here or there must be complete: there is no silent fallback to the download.
        tfds_timeout: seconds allowed to reach the download host before giving up.

    Returns:
        The validated Dataset.

    Raises:
        DataError: one actionable line naming the file or folder and what to do.
    """
    if data_dir is None:
        data_dir = os.environ.get(ENV_DATA_DIR) or None
    if data_dir is not None:
        return load_folder(Path(data_dir))
    return _load_tfds(tfds_timeout)


def load_folder(folder: Path, source: str | None = None) -> Dataset:
    """Load the four official files from one folder, in npz or idx format; `source` names it (default: the path)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise DataError(f"KMNIST data folder {folder} {what}; {_HOW_TO_GET}")
    paths = {slot: found for slot, found in data_files(folder).items() if found is not None}
    missing = [names[0] for slot, names in _CANDIDATES.items() if slot not in paths]
    if missing:
        raise DataError(f"KMNIST data folder {folder} is missing {', '.join(missing)}; {_HOW_TO_GET}")
    arrays = {slot: read_array(path) for slot, path in paths.items()}
    x_train, y_train = arrays[("train", "imgs")], arrays[("train", "labels")]
    x_test, y_test = arrays[("test", "imgs")], arrays[("test", "labels")]
    _check_pair(x_train, y_train, paths[("train", "imgs")], paths[("train", "labels")])
    _check_pair(x_test, y_test, paths[("test", "imgs")], paths[("test", "labels")])
    return Dataset(x_train, y_train, x_test, y_test, source=source or str(folder), folder=folder.resolve())


def data_files(folder: Path) -> dict[tuple[str, str], Path | None]:
    """The file load_folder reads for each (split, kind) slot of a folder.

    Args:
        folder: a folder of official files.

    Returns:
        ("train" | "test", "imgs" | "labels") -> the first of that slot's accepted names present
        (npz, then idx.gz, then idx), or None when none is.
    """
    folder = Path(folder)
    return {slot: next((folder / n for n in names if (folder / n).is_file()), None)
            for slot, names in _CANDIDATES.items()}


def read_array(path: Path) -> np.ndarray:
    """Read one official file (npz with key arr_0, or idx, gzipped or not), md5-checked if official.

    Raises:
        DataError: naming the file and what is wrong with it.
    """
    path = Path(path)
    verify_official_md5(path)
    if path.suffix == ".npz":
        return _read_npz(path)
    return _read_idx(path)


def official_md5_applies(path: Path) -> bool:
    """Whether verify_official_md5 checks this file: it has an official name and the official size."""
    path = Path(path)
    official = OFFICIAL_FILES.get(path.name)
    return official is not None and path.stat().st_size == official[0]


def verify_official_md5(path: Path) -> None:
    """If the file has an official name and the official size, its md5 must be the official one."""
    if not official_md5_applies(path):
        return
    expected = OFFICIAL_FILES[path.name][1]
    digest = hashlib.md5(path.read_bytes()).hexdigest()
    if digest != expected:
        raise DataError(
            f"{path}: md5 {digest} is not the official {expected}; the download is corrupted, "
            "download this file again"
        )


def _read_npz(path: Path) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "arr_0" not in npz.files:
                keys = ", ".join(npz.files) or "none"
                raise DataError(f"{path}: no array 'arr_0' in this npz (keys: {keys}); use the official file")
            return npz["arr_0"]
    except DataError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, zlib.error, KeyError) as e:
        raise DataError(f"{path}: not a readable npz file ({_reason(e)}); download it again") from e


_IDX_DTYPE = {0x08: np.uint8}


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: not a readable idx file ({_reason(e)}); download it again") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPE:
        raise DataError(f"{path}: not an idx file of uint8 (bad magic number); use the official file")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated idx header; download it again")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: idx header says {shape} ({expected:,} bytes) but the file holds "
            f"{len(raw) - header:,}; the file is truncated or damaged, download it again"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _reason(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _check_pair(images: np.ndarray, labels: np.ndarray, img_path: Path, lbl_path: Path) -> None:
    """Shapes, dtypes, label range and equal lengths; each error names the file."""
    if images.dtype != np.uint8:
        raise DataError(f"{img_path}: images must be uint8, found {images.dtype}; use the official file")
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.shape[0] == 0:
        raise DataError(f"{img_path}: images must have shape (N, 28, 28), found {images.shape}")
    if labels.dtype != np.uint8:
        raise DataError(f"{lbl_path}: labels must be uint8, found {labels.dtype}; use the official file")
    if labels.ndim != 1:
        raise DataError(f"{lbl_path}: labels must have shape (N,), found {labels.shape}")
    if labels.size and labels.max() > 9:
        raise DataError(f"{lbl_path}: labels must be 0 to 9, found {int(labels.max())}")
    if len(images) != len(labels):
        raise DataError(
            f"{img_path} holds {len(images):,} images but {lbl_path.name} holds {len(labels):,} labels; "
            "use files from the same download"
        )


def _tfds_folder() -> Path:
    """Where the tfds fallback keeps KMNIST as npz files: in tfds' own data dir ($TFDS_DATA_DIR or its default)."""
    return Path(os.environ.get("TFDS_DATA_DIR") or Path.home() / "tensorflow_datasets") / TFDS_NPZ_FOLDER


def _load_tfds(timeout: float) -> Dataset:
    """tensorflow-datasets fallback, run in a child process, with the offline case bounded to `timeout` seconds.

    tfds imports TensorFlow, which the dashboard's server process must never load (its training
    runs in worker processes). So a spawn'd child asks tfds for KMNIST and writes it once as the
    four official npz files beside tfds' own cache; this process, and every training worker,
    then read that folder like any other.
    """
    folder = _tfds_folder()
    if not all((folder / names[0]).is_file() for names in _CANDIDATES.values()):
        context = multiprocessing.get_context("spawn")  # never fork: TensorFlow and fork do not mix
        receive, send = context.Pipe(duplex=False)
        child = context.Process(target=_tfds_to_npz, args=(str(folder), timeout, send), daemon=True,
                                name="kmnist-tfds")
        child.start()
        send.close()
        try:
            error = receive.recv()
        except EOFError:
            error = f"the tensorflow-datasets process ended with exit code {child.exitcode}; {_HOW_TO_GET}"
        finally:
            receive.close()
            child.join(30)
        if error:
            raise DataError(error)
    return load_folder(folder, source=TFDS_SOURCE)


def _tfds_to_npz(folder: str, timeout: float, reply: multiprocessing.connection.Connection) -> None:
    """Child process: prepare KMNIST with tfds and write the official npz files into folder; reply "" or the error."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        reply.send(_prepare_tfds(Path(folder), timeout))
    except DataError as e:
        reply.send(str(e))
    finally:
        reply.close()


def _prepare_tfds(folder: Path, timeout: float) -> str:
    hint = f"no {ENV_DATA_DIR} was set and tensorflow-datasets could not provide KMNIST"
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:  # importlib_resources missing is the usual cause
        raise DataError(f"{hint} ({_reason(e)}); {_HOW_TO_GET}") from e
    builder = tfds.builder("kmnist")
    if not builder.is_prepared():
        # tfds retries an unreachable host for minutes; one bounded connect decides instead.
        try:
            socket.create_connection((TFDS_HOST, 80), timeout=timeout).close()
        except OSError as e:
            raise DataError(f"{hint}: {TFDS_HOST} is unreachable ({_reason(e)}); {_HOW_TO_GET}") from e
        try:
            builder.download_and_prepare()
        except Exception as e:  # noqa: BLE001 - any download failure becomes the same message
            raise DataError(f"{hint}: the download failed ({_reason(e)}); {_HOW_TO_GET}") from e
    from .store import write_atomic

    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        ds = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
        for kind, array in (("imgs", ds["image"][..., 0]), ("labels", ds["label"])):
            buf = io.BytesIO()
            np.savez_compressed(buf, arr_0=np.asarray(array, dtype=np.uint8))
            write_atomic(folder / _CANDIDATES[(split, kind)][0], buf.getvalue())
    return ""
