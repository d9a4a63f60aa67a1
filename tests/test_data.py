"""Loader tests on the real official files and the real subset, plus every bad-file case."""

import gzip
import os
import shutil
import time

import numpy as np
import pytest
from helpers import OFFICIAL, SUBSET

from kmnist_core.data import ATTRIBUTION, CLASSES, load_kmnist, read_array, split_validation
from kmnist_core.errors import DataError

NPZ = ("kmnist-train-imgs.npz", "kmnist-train-labels.npz", "kmnist-test-imgs.npz", "kmnist-test-labels.npz")


@pytest.fixture
def subset_copy(tmp_path):
    """A writable copy of the subset folder, to damage one file at a time."""
    folder = tmp_path / "kmnist"
    shutil.copytree(SUBSET, folder)
    for p in folder.iterdir():
        os.chmod(p, 0o644)
    return folder


def test_subset_loads_as_uint8_splits(data):
    assert data.x_train.shape == (8000, 28, 28) and data.x_train.dtype == np.uint8
    assert data.y_train.shape == (8000,) and data.y_train.dtype == np.uint8
    assert data.x_test.shape == (2000, 28, 28) and data.y_test.shape == (2000,)
    assert np.bincount(data.y_train).tolist() == [800] * 10
    assert len(data.fingerprint) == 16


def test_env_var_names_the_folder(monkeypatch):
    monkeypatch.setenv("KMNIST_DATA_DIR", str(SUBSET))
    assert load_kmnist().source == str(SUBSET)


def test_class_table():
    assert [c.hiragana for c in CLASSES] == list("おきすつなはまやれを")
    assert [c.romaji for c in CLASSES] == ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]
    assert CLASSES[9].codepoint == "U+3092"
    # the official class map agrees with our table
    rows = (OFFICIAL / "kmnist_classmap.csv").read_text(encoding="utf-8").splitlines()[1:]
    assert [tuple(r.split(",")) for r in rows] == [(str(c.index), c.codepoint, c.hiragana) for c in CLASSES]
    assert "CC BY-SA 4.0" in ATTRIBUTION


def test_official_files_both_formats_agree_and_pass_md5():
    npz = read_array(OFFICIAL / "kmnist-test-imgs.npz")
    idx = read_array(OFFICIAL / "t10k-images-idx3-ubyte.gz")
    assert npz.shape == (10000, 28, 28) and np.array_equal(npz, idx)
    assert np.array_equal(read_array(OFFICIAL / "train-labels-idx1-ubyte.gz"),
                          read_array(OFFICIAL / "kmnist-train-labels.npz"))


def test_idx_folder_loads(tmp_path):
    # Official idx test files, also placed under the train names (sizes differ from the official
    # train files, so only the structural checks apply to those two).
    for src, dst in [("t10k-images-idx3-ubyte.gz", "train-images-idx3-ubyte.gz"),
                     ("t10k-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                     ("t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"),
                     ("t10k-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz")]:
        (tmp_path / dst).symlink_to(OFFICIAL / src)
    d = load_kmnist(tmp_path)
    assert d.x_train.shape == (10000, 28, 28)
    assert np.array_equal(d.y_test, read_array(OFFICIAL / "kmnist-test-labels.npz"))


def test_official_folder_without_train_images_is_an_error():
    with pytest.raises(DataError, match="missing kmnist-train-imgs.npz.*KMNIST_DATA_DIR"):
        load_kmnist(OFFICIAL)


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match=r"nope does not exist.*KMNIST_DATA_DIR"):
        load_kmnist(tmp_path / "nope")


def test_missing_file(subset_copy):
    (subset_copy / "kmnist-test-labels.npz").unlink()
    with pytest.raises(DataError, match="missing kmnist-test-labels.npz"):
        load_kmnist(subset_copy)


def test_truncated_npz(subset_copy):
    p = subset_copy / "kmnist-train-imgs.npz"
    p.write_bytes(p.read_bytes()[:5000])
    with pytest.raises(DataError, match="kmnist-train-imgs.npz: not a readable npz"):
        load_kmnist(subset_copy)


def test_foreign_file(subset_copy):
    (subset_copy / "kmnist-test-imgs.npz").write_text("<html>404 not found</html>")
    with pytest.raises(DataError, match="kmnist-test-imgs.npz: not a readable npz"):
        load_kmnist(subset_copy)


def test_npz_without_arr_0(subset_copy):
    np.savez(subset_copy / "kmnist-test-labels.npz", labels=np.zeros(2000, np.uint8))
    with pytest.raises(DataError, match="kmnist-test-labels.npz: no array 'arr_0'.*labels"):
        load_kmnist(subset_copy)


@pytest.mark.parametrize("name, array, message", [
    ("kmnist-test-imgs.npz", np.zeros((2000, 28, 27), np.uint8), r"shape \(N, 28, 28\)"),
    ("kmnist-test-imgs.npz", np.zeros((2000, 28, 28), np.float32), "must be uint8, found float32"),
    ("kmnist-test-labels.npz", np.full(2000, 10, np.uint8), "labels must be 0 to 9, found 10"),
    ("kmnist-test-labels.npz", np.zeros(1999, np.uint8), "2,000 images but kmnist-test-labels.npz holds 1,999"),
    ("kmnist-test-labels.npz", np.zeros((2000, 1), np.uint8), r"labels must have shape \(N,\)"),
])
def test_bad_arrays(subset_copy, name, array, message):
    np.savez(subset_copy / name, array)
    with pytest.raises(DataError, match=message) as e:
        load_kmnist(subset_copy)
    assert "kmnist-test-" in str(e.value)


def test_md5_mismatch_on_official_name_and_size(tmp_path):
    good = (OFFICIAL / "kmnist-test-labels.npz").read_bytes()
    bad = bytearray(good)
    bad[-30] ^= 0xFF  # same size, different content
    p = tmp_path / "kmnist-test-labels.npz"
    p.write_bytes(bytes(bad))
    with pytest.raises(DataError, match="kmnist-test-labels.npz: md5 .* is not the official"):
        read_array(p)


def test_truncated_idx(tmp_path):
    raw = gzip.decompress((OFFICIAL / "t10k-labels-idx1-ubyte.gz").read_bytes())
    p = tmp_path / "t10k-labels-idx1-ubyte.gz"
    p.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: idx header says"):
        read_array(p)
    p.write_bytes((OFFICIAL / "t10k-labels-idx1-ubyte.gz").read_bytes()[:1000])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: not a readable idx"):
        read_array(p)


def test_tfds_fallback_offline_fails_fast_with_instructions(monkeypatch, tmp_path):
    monkeypatch.delenv("KMNIST_DATA_DIR", raising=False)
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))  # an empty tfds cache
    start = time.monotonic()
    with pytest.raises(DataError) as e:
        load_kmnist(tfds_timeout=5)
    assert time.monotonic() - start < 30
    assert "KMNIST_DATA_DIR" in str(e.value) and "kmnist-train-imgs.npz" in str(e.value)


def test_split_validation_is_stratified_disjoint_and_seeded(data):
    tr, va = split_validation(data.y_train, 0.1, seed=3)
    assert len(va) == 800 and len(tr) == 7200
    assert not set(tr) & set(va)
    assert np.bincount(data.y_train[va]).tolist() == [80] * 10
    assert np.array_equal(va, split_validation(data.y_train, 0.1, seed=3)[1])
    assert not np.array_equal(va, split_validation(data.y_train, 0.1, seed=4)[1])
