"""Tests of delvm_tf.datasets: real shared data where present, synthetic files otherwise."""

import gzip
import json
import os
import pickle
import struct
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from delvm_tf import datasets as D


def _shared_data_dir():
    candidates = [os.environ.get("DELVM_DATA_DIR"),
                  Path(__file__).resolve().parents[1].parent / "shared" / "data"]
    for c in candidates:
        if c and (Path(c) / "ecg5000.csv").is_file():
            return Path(c)
    return None


SHARED = _shared_data_dir()  # read before the autouse fixture clears DELVM_DATA_DIR
FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
needs_shared = pytest.mark.skipif(
    SHARED is None, reason="shared data (ecg5000.csv) not found via $DELVM_DATA_DIR or "
                           "../shared/data relative to the repository root")
needs_fmnist = pytest.mark.skipif(
    not (FMNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"Fashion-MNIST not installed in {FMNIST_DIR} "
           "(apt-get install dataset-fashion-mnist)")


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No env var, no system folders, a private cache, and no network."""
    monkeypatch.delenv("DELVM_DATA_DIR", raising=False)
    monkeypatch.setenv("DELVM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(D, "SYSTEM_DATA_DIRS", [])

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("offline (test)")

    monkeypatch.setattr(D, "_fetch", offline)


# ---------------------------------------------------------------- synthetic file writers

def write_idx(path, array, gz=True):
    codes = {np.dtype(np.uint8): 0x08}
    header = bytes([0, 0, codes[array.dtype], array.ndim])
    header += struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.tobytes()
    if gz:
        data = gzip.compress(data)
    Path(path).write_bytes(data)


def make_images(n, seed, shape=(32, 32, 3)):
    return np.random.default_rng(seed).integers(0, 256, (n,) + shape, dtype=np.uint8)


def write_fmnist(folder, n_train=30, n_test=10, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    parts = {}
    for prefix, n, seed in (("train", n_train, 1), ("t10k", n_test, 2)):
        x = make_images(n, seed, (28, 28))
        y = (np.arange(n) % 10).astype(np.uint8)
        sfx = ".gz" if gz else ""
        write_idx(folder / f"{prefix}-images-idx3-ubyte{sfx}", x, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{sfx}", y, gz)
        parts[prefix] = (x, y)
    return parts


def write_cifar_batches(folder, n_per_batch=16, n_test=20):
    """Python batches; labels cycle through the 10 classes."""
    folder.mkdir(parents=True, exist_ok=True)
    x = make_images(5 * n_per_batch + n_test, 3)
    y = np.arange(len(x)) % 10
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    bounds = [i * n_per_batch for i in range(6)] + [len(x)]
    for name, a, b in zip(names, bounds[:-1], bounds[1:]):
        chw = x[a:b].transpose(0, 3, 1, 2).reshape(b - a, -1)
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": chw, b"labels": y[a:b].tolist()}, f)
    n_train = 5 * n_per_batch
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


def write_image_tree(root, n_train=2, n_test=1, ext="png"):
    """train/<class>/NNNN.<ext> and test/<class>/NNNN.<ext>; returns sorted arrays."""
    out = {}
    for split, n, seed in (("train", n_train, 4), ("test", n_test, 5)):
        imgs = make_images(10 * n, seed).reshape(10, n, 32, 32, 3)
        for c, cls in enumerate(D.CIFAR10_CLASSES):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for k in range(n):
                Image.fromarray(imgs[c, k]).save(root / split / cls / f"{k:04d}.{ext}",
                                                 quality=75)
        out[split] = (imgs.reshape(-1, 32, 32, 3), np.repeat(np.arange(10), n))
    return out


def tar_folder(src, dest, mode="w"):
    with tarfile.open(dest, mode) as tar:
        for p in sorted(src.rglob("*"), reverse=True):  # a scrambled member order
            tar.add(p, arcname=p.relative_to(src).as_posix(), recursive=False)
    return dest


def ecg_rows(n=60, seed=6):
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(size=(n, 140)), 6)
    normal = (np.arange(n) % 3 != 0)  # 2/3 normal
    return x, normal


def write_ecg_csv(path, x, normal):
    rows = np.column_stack([x, normal.astype(float)])
    np.savetxt(path, rows, delimiter=",", fmt="%.6f")
    return path


def write_ucr(folder, x, normal, n_train):
    cls = np.where(normal, 1, 2 + np.arange(len(x)) % 4)  # abnormal classes 2-5
    rows = np.column_stack([cls, x])
    folder.mkdir(parents=True, exist_ok=True)
    np.savetxt(folder / "ECG5000_TRAIN.txt", rows[:n_train], fmt="%15.7e")
    np.savetxt(folder / "ECG5000_TEST.txt", rows[n_train:], fmt="%15.7e")


def row_set(x):
    return {r.tobytes() for r in np.ascontiguousarray(x)}


# ---------------------------------------------------------------- real data

@needs_fmnist
def test_fashion_mnist_real():
    ((xtr, ytr), (xte, yte)), info = D.load("fashion_mnist", data_dir=FMNIST_DIR,
                                            download=False, return_info=True)
    assert xtr.shape == (60000, 28, 28, 1) and xte.shape == (10000, 28, 28, 1)
    assert xtr.dtype == np.float32 and ytr.dtype == np.int64
    assert (np.bincount(ytr) == 6000).all() and (np.bincount(yte) == 1000).all()
    assert abs(xtr.mean(dtype=np.float64)) < 1e-5
    assert abs(xtr.std(dtype=np.float64) - 1) < 1e-5
    assert info.preprocessing == "zscore" and info.lossy is False
    assert info.stats["mean"] == pytest.approx(0.2860, abs=1e-3)  # of /255 pixels
    assert info.stats["std"] == pytest.approx(0.3530, abs=1e-3)
    assert set(info.file_sha256) == {f + ".gz" for f in D._FMNIST_FILES}


@needs_shared
def test_ecg_real_split():
    s = D.ecg5000_anomaly_split(seed=0, data_dir=SHARED, download=False)
    assert s.x_train.shape == (1639, 140) and s.x_test.shape == (1000, 140)
    assert s.x_train.dtype == s.x_test.dtype == np.float32
    assert s.x_val is None and s.y_val is None
    assert s.x_train.min() == 0.0 and s.x_train.max() == 1.0
    assert set(np.unique(s.y_test)) == {0, 1}
    assert s.info["counts"]["test_abnormal"] == int(s.y_test.sum())
    assert s.info["checksum_verified"] is True and s.info["lossy"] is False
    # train is all normal, disjoint from test by row index and by row values
    x_all, y_all = D._read_ecg_csv([SHARED / "ecg5000.csv"])
    assert (y_all[s.indices["train"]] == 0).all()
    assert not set(s.indices["train"]) & set(s.indices["test"])
    assert not row_set(s.x_train) & row_set(s.x_test)
    assert (y_all == 1).sum() == 2081  # abnormal = 1 (the paper's convention)
    # seeded: same seed, same split; another seed, another split
    again = D.ecg5000_anomaly_split(seed=0, data_dir=SHARED)
    other = D.ecg5000_anomaly_split(seed=1, data_dir=SHARED)
    assert np.array_equal(again.indices["test"], s.indices["test"])
    assert not np.array_equal(other.indices["test"], s.indices["test"])


@needs_shared
def test_ecg_load_is_the_split():
    ((xtr, ytr), (xte, yte)), info = D.load("ecg5000", data_dir=SHARED, seed=3,
                                            return_info=True)
    s = D.ecg5000_anomaly_split(seed=3, data_dir=SHARED)
    assert np.array_equal(xtr, s.x_train) and np.array_equal(yte, s.y_test)
    assert (ytr == 0).all() and info.preprocessing == "minmax"
    assert info.sha256 == D.KNOWN_SHA256["ecg5000.csv"] and info.checksum_verified


@needs_shared
def test_ucr_train_file_rows_are_in_the_csv():
    x_ucr, cls = D._read_ucr_file(SHARED / "ECG5000_TRAIN.txt")
    x_csv, y_csv = D._read_ecg_csv([SHARED / "ecg5000.csv"])
    d2 = ((x_ucr ** 2).sum(1)[:, None] + (x_csv ** 2).sum(1)[None] - 2 * x_ucr @ x_csv.T)
    nearest = d2.argmin(axis=1)
    assert np.abs(x_ucr - x_csv[nearest]).max() < 1e-6
    assert np.array_equal(y_csv[nearest], (cls != 1).astype(np.int64))


# ---------------------------------------------------------------- formats (synthetic)

@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_idx(tmp_path, gz):
    parts = write_fmnist(tmp_path / "fashion-mnist", gz=gz)
    (xtr, ytr), (xte, yte) = D.load("fashion-mnist", data_dir=tmp_path, preprocessing="none",
                                    download=False)
    assert xtr.shape == (30, 28, 28, 1) and xte.shape == (10, 28, 28, 1)
    np.testing.assert_allclose(xtr[..., 0], parts["train"][0] / 255, rtol=1e-6)
    assert np.array_equal(yte, parts["t10k"][1])
    (ztr, _), (zte, _) = D.load("fashion_mnist", data_dir=tmp_path)
    raw = parts["train"][0] / 255
    assert abs(ztr.mean()) < 1e-5 and abs(ztr.std() - 1) < 1e-4
    np.testing.assert_allclose(zte[..., 0], (parts["t10k"][0] / 255 - raw.mean()) / raw.std(),
                               rtol=1e-4, atol=1e-5)


def test_cifar_python_batches(tmp_path):
    (xtr, ytr), (xte, yte) = write_cifar_batches(tmp_path / "cifar-10-batches-py")
    ((a, b), (c, d)), info = D.load("cifar10", data_dir=tmp_path, preprocessing="none",
                                    return_info=True)
    assert a.shape == (80, 32, 32, 3) and c.shape == (20, 32, 32, 3)
    np.testing.assert_allclose(a, xtr / 255, rtol=1e-6)  # NHWC, not CHW
    np.testing.assert_allclose(c, xte / 255, rtol=1e-6)
    assert np.array_equal(b, ytr) and np.array_equal(d, yte)
    assert info.lossy is False and "canonical" in info.source
    assert info.preprocessing == "none" and info.checksum_verified is False
    assert json.loads(json.dumps(info.to_dict()))["source"] == info.source


def test_cifar_python_archive_as_file(tmp_path):
    (xtr, _), _ = write_cifar_batches(tmp_path / "src" / "cifar-10-batches-py")
    archive = tar_folder(tmp_path / "src", tmp_path / "cifar.tar.gz", "w:gz")
    (a, _), _ = D.load("cifar10", data_dir=archive, preprocessing="none")
    np.testing.assert_allclose(a, xtr / 255, rtol=1e-6)


def test_cifar_image_folder_png(tmp_path):
    tree = write_image_tree(tmp_path / "cifar10")
    ((a, b), (c, d)), info = D.load("cifar10", data_dir=tmp_path, preprocessing="none",
                                    return_info=True)
    np.testing.assert_allclose(a, tree["train"][0] / 255, rtol=1e-6)  # PNG is lossless
    assert np.array_equal(b, tree["train"][1]) and np.array_equal(d, tree["test"][1])
    assert c.shape == (10, 32, 32, 3)
    assert info.lossy is False and "folder" in info.source


def test_cifar_jpeg_tar_lossy_checksum_and_cache(tmp_path, monkeypatch):
    tree = write_image_tree(tmp_path / "src", ext="jpg")
    (tmp_path / "data").mkdir()
    tar_folder(tmp_path / "src", tmp_path / "data" / "cifar10-jpeg75.tar")
    with pytest.warns(D.ChecksumMismatchWarning, match="cifar10-jpeg75.tar"):
        ((a, b), _), info = D.load("cifar10", data_dir=tmp_path / "data",
                                   preprocessing="none", return_info=True)
    assert info.lossy is True and "JPEG" in info.source and "lossy" in info.source
    assert info.checksum_verified is False and any("mismatch" in n for n in info.notes)
    assert np.array_equal(b, tree["train"][1])
    decoded = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in
                        sorted((tmp_path / "src" / "train").glob("*/*.jpg"),
                               key=lambda p: (D.CIFAR10_CLASSES.index(p.parent.name), p.name))])
    np.testing.assert_allclose(a, decoded / 255, rtol=1e-6)  # lossy: not tree["train"][0]
    cached = list((tmp_path / "cache").glob("cifar10-images-*.npz"))
    assert len(cached) == 1

    def no_decoding(data):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(D, "_decode_image", no_decoding)
    with pytest.warns(D.ChecksumMismatchWarning):
        ((a2, b2), _), info2 = D.load("cifar10", data_dir=tmp_path / "data",
                                      preprocessing="none", return_info=True)
    assert np.array_equal(a, a2) and np.array_equal(b, b2) and info2.lossy is True


def test_cifar_png_tar_given_as_file(tmp_path):
    tree = write_image_tree(tmp_path / "src" / "top")  # a top-level folder inside the tar
    archive = tar_folder(tmp_path / "src", tmp_path / "images.tar")
    ((a, _), (_, d)), info = D.load("cifar10", data_dir=archive, preprocessing="none",
                                    return_info=True)
    np.testing.assert_allclose(a, tree["train"][0] / 255, rtol=1e-6)
    assert np.array_equal(d, tree["test"][1])
    assert info.lossy is False and info.sha256 is not None


def test_ecg_csv_and_ucr_layouts_agree(tmp_path):
    x, normal = ecg_rows()
    (tmp_path / "csv").mkdir()
    write_ecg_csv(tmp_path / "csv" / "ecg.csv", x, normal)
    write_ucr(tmp_path / "ucr", x, normal, n_train=25)
    kw = dict(seed=5, n_test=12, n_train=20, preprocessing="none")
    a = D.ecg5000_anomaly_split(data_dir=tmp_path / "csv", **kw)
    with pytest.warns(D.ChecksumMismatchWarning, match="ECG5000_TRAIN.txt"):  # synthetic
        b = D.ecg5000_anomaly_split(data_dir=tmp_path / "ucr", **kw)
    assert a.info["source"] != b.info["source"]
    np.testing.assert_allclose(a.x_test, b.x_test, atol=1e-5)  # same row order here
    assert np.array_equal(a.y_test, b.y_test)
    assert np.array_equal(a.y_test, (~normal[a.indices["test"]]).astype(int))  # abnormal 1
    assert len(a.x_train) == 20 and normal[a.indices["train"]].all()
    assert not set(a.indices["train"]) & set(a.indices["test"])
    m = D.ecg5000_anomaly_split(data_dir=tmp_path / "csv", seed=5, n_test=12, n_train=20)
    assert m.x_train.min() == 0 and m.x_train.max() == 1
    assert m.info["stats"]["min"] == pytest.approx(x[a.indices["train"]].min(), abs=1e-6)
    with pytest.raises(ValueError, match="n_train"):
        D.ecg5000_anomaly_split(data_dir=tmp_path / "csv", n_test=12, n_train=40)


def test_checksum_mismatch_warns_and_is_recorded(tmp_path):
    x, normal = ecg_rows()
    write_ecg_csv(tmp_path / "ecg5000.csv", x, normal)
    with pytest.warns(D.ChecksumMismatchWarning, match="ecg5000.csv"):
        s = D.ecg5000_anomaly_split(data_dir=tmp_path, n_test=10, n_train=10)
    assert s.info["checksum_verified"] is False
    assert any("mismatch" in n for n in s.info["notes"])


# ---------------------------------------------------------------- lookup and errors

@pytest.mark.parametrize("name,expected", [
    ("fashion_mnist", "train-images-idx3-ubyte.gz"),
    ("cifar10", "data_batch_1"),
    ("ecg5000", "ecg5000.csv"),
])
def test_offline_error_lists_places_and_files(tmp_path, monkeypatch, name, expected):
    monkeypatch.setattr(D, "SYSTEM_DATA_DIRS", [tmp_path / "no-such-system-dir"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(D.DataNotFoundError) as err:
        D.load(name, data_dir=tmp_path / "empty")
    msg = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    for part in (str(tmp_path / "empty"), "no-such-system-dir", "DELVM_DATA_DIR", expected,
                 D._DOWNLOADS[name][1][0][1], "URLError", "data_dir="):
        assert part in msg, part
    assert "Traceback" not in msg
    with pytest.raises(D.DataNotFoundError, match="download=False"):
        D.load(name, data_dir=tmp_path / "empty", download=False)


def test_lookup_order_and_download(tmp_path, monkeypatch):
    x, normal = ecg_rows()
    for folder, value in (("arg", 1.0), ("env", 2.0), ("keras", 3.0)):
        (tmp_path / folder).mkdir()
        write_ecg_csv(tmp_path / folder / "ecg.csv", np.full_like(x, value), normal)
    kw = dict(preprocessing="none", n_test=10, n_train=10)
    monkeypatch.setenv("DELVM_DATA_DIR", str(tmp_path / "env"))
    assert D.ecg5000_anomaly_split(data_dir=tmp_path / "arg", **kw).x_test.max() == 1.0
    assert D.ecg5000_anomaly_split(**kw).x_test.max() == 2.0
    (tmp_path / "empty").mkdir()
    with pytest.warns(UserWarning, match="nothing usable in data_dir"):
        assert D.ecg5000_anomaly_split(data_dir=tmp_path / "empty", **kw).x_test.max() == 2.0
    monkeypatch.delenv("DELVM_DATA_DIR")
    monkeypatch.setattr(D, "SYSTEM_DATA_DIRS", [tmp_path / "nothing"])
    calls = []

    def fake_fetch(url, fname, subdir, sha256):
        calls.append(url)
        return str(tmp_path / "keras" / fname)

    monkeypatch.setattr(D, "_fetch", fake_fetch)
    s = D.ecg5000_anomaly_split(**kw)
    assert s.x_test.max() == 3.0 and calls == [D._DOWNLOADS["ecg5000"][1][0][1]]
    assert s.info["path"] == str(tmp_path / "keras" / "ecg.csv")
    json.dumps(s.info)  # metadata is JSON-friendly


def test_bad_names_raise_value_error(tmp_path):
    with pytest.raises(ValueError, match="'none', 'zscore'.*'minmax'"):
        D.load("fashion_mnist", data_dir=tmp_path, preprocessing="standard")
    with pytest.raises(ValueError, match="per_channel_standardize"):
        D.load("ecg5000", data_dir=tmp_path, preprocessing="per_channel_standardize")
    with pytest.raises(ValueError, match="unknown dataset"):
        D.load("mnist")
    with pytest.raises(ValueError, match="valid"):
        D.cifar10_anomaly_split(data_dir=tmp_path, preprocessing="whiten")


# ---------------------------------------------------------------- CIFAR-10 anomaly split

SMALL = dict(n_normal_train=7, abnormal_fraction=0.5, n_abnormal_test=20, n_abnormal_val=15)


def test_cifar_split_counts_and_disjointness(tmp_path):
    (xtr, ytr), (xte, yte) = write_cifar_batches(tmp_path)  # 8 train + 2 test per class
    s = D.cifar10_anomaly_split(seed=2, normal_class=3, data_dir=tmp_path, **SMALL)
    y_all = np.concatenate([ytr, yte])
    assert s.x_train.shape == (7, 32, 32, 3) and s.x_test.shape == (3 + 20, 32, 32, 3)
    assert s.x_val.shape == (7 + 15, 32, 32, 3)
    assert np.array_equal(s.y_test, [0] * 3 + [1] * 20)
    assert np.array_equal(s.y_val, [0] * 7 + [1] * 15)
    tr, te, va = s.indices["train"], s.indices["test"], s.indices["val"]
    assert (y_all[tr] == 3).all() and np.array_equal(y_all[te] != 3, s.y_test == 1)
    assert np.array_equal(va[:7], tr) and (y_all[va[7:]] != 3).all()
    assert len(set(tr) | set(te) | set(va[7:])) == 7 + 23 + 15  # all disjoint
    assert np.array_equal(s.x_val[:7], s.x_train)
    assert np.array_equal(s.indices["test_classes"], y_all[te])
    c = s.info["counts"]
    assert (c["normal_total"], c["normal_test"], c["abnormal_pool"], c["abnormal_unused"]) \
        == (10, 3, 45, 10)
    # per-channel statistics come from x_train only
    flat = s.x_train.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(flat.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(flat.std(0), 1, atol=1e-5)
    raw_train = np.concatenate([xtr, xte])[tr].reshape(-1, 3) / 255
    np.testing.assert_allclose(s.info["stats"]["mean"], raw_train.mean(0), rtol=1e-9)
    # seeded
    same = D.cifar10_anomaly_split(seed=2, normal_class="cat", data_dir=tmp_path, **SMALL)
    assert np.array_equal(same.indices["test"], te)
    other = D.cifar10_anomaly_split(seed=9, normal_class=3, data_dir=tmp_path, **SMALL)
    assert not np.array_equal(other.indices["val"], va)


def test_cifar_split_invalid_arguments(tmp_path):
    write_cifar_batches(tmp_path)
    for bad in (10, -1, "plane", 2.0, True):
        with pytest.raises(ValueError, match="normal_class"):
            D.cifar10_anomaly_split(normal_class=bad, data_dir=tmp_path, **SMALL)
    with pytest.raises(ValueError, match="abnormal pool"):
        D.cifar10_anomaly_split(data_dir=tmp_path, **{**SMALL, "n_abnormal_val": 30})


# ---------------------------------------------------------------- tf.data

def test_as_dataset_streams_batches(tmp_path):
    write_fmnist(tmp_path, n_train=30, n_test=10)
    (x, y), _ = D.load("fashion_mnist", data_dir=tmp_path)
    train, test = D.load("fashion_mnist", data_dir=tmp_path, as_dataset=True, batch_size=8,
                         shuffle=True, seed=1)
    batches = list(train.as_numpy_iterator())
    assert [len(b[0]) for b in batches] == [8, 8, 8, 6]
    assert int(train.cardinality()) == 4
    assert batches[0][0].shape[1:] == (28, 28, 1) and batches[0][0].dtype == np.float32
    got = np.concatenate([b[1] for b in batches])
    assert sorted(got) == sorted(y) and not np.array_equal(got, y)  # shuffled, complete
    first_test = next(iter(test))
    np.testing.assert_array_equal(first_test[0].numpy(), D.load(
        "fashion_mnist", data_dir=tmp_path)[1][0][:8])


# ---------------------------------------------------------------- real CIFAR-10 copy

@pytest.mark.slow
@pytest.mark.skipif(SHARED is None or not (SHARED / "cifar10-jpeg75.tar").is_file(),
                    reason="shared cifar10-jpeg75.tar not found")
def test_cifar_real_jpeg_tar_paper_counts():
    """Decodes 60,000 JPEGs (about 10 s), then uses the decode cache."""
    s = D.cifar10_anomaly_split(seed=0, data_dir=SHARED, download=False)
    assert s.x_train.shape == (4223, 32, 32, 3)
    assert len(s.x_test) == 1777 + 4883 and int(s.y_test.sum()) == 4883
    assert len(s.x_val) == 4223 + 4883 and int(s.y_val.sum()) == 4883
    assert s.info["counts"]["abnormal_pool"] == 16200
    assert s.info["lossy"] is True and "lossy" in s.info["source"]
    assert s.info["checksum_verified"] is True
    ((xtr, ytr), (xte, yte)), info = D.load("cifar10", data_dir=SHARED, return_info=True)
    assert xtr.shape == (50000, 32, 32, 3) and xte.shape == (10000, 32, 32, 3)
    assert (np.bincount(ytr) == 5000).all() and (np.bincount(yte) == 1000).all()
    assert info.lossy and info.preprocessing == "per_channel_standardize"
