"""Datasets and anomaly-detection splits of SPEC §4: Fashion-MNIST, CIFAR-10, ECG5000.

Public API
----------
``load(name, ...)``
    ``(x_train, y_train), (x_test, y_test)`` as float32 images (NHWC) or ECG rows, with
    integer labels; optionally ``tf.data`` pipelines and a :class:`DatasetInfo`.
``ecg5000_anomaly_split(...)``, ``cifar10_anomaly_split(...)``
    The seeded semi-supervised anomaly protocols, as :class:`AnomalySplit`.
``to_dataset(x, y, ...)``
    A batched ``tf.data`` pipeline streamed from numpy arrays (no copy of the arrays).

Where the files are looked for, in this order
--------------------------------------------
1. the ``data_dir`` argument (a folder; for CIFAR-10 and ECG5000 also a single file),
2. the folders in the environment variable ``DELVM_DATA_DIR`` (``os.pathsep``-separated),
3. :data:`SYSTEM_DATA_DIRS`: ``/usr/share/datasets`` (Debian ``dataset-fashion-mnist``
   installs ``/usr/share/datasets/fashion-mnist``) and the Keras cache
   (``$KERAS_HOME/datasets`` or ``~/.keras/datasets``),
4. the canonical download through ``keras.utils.get_file`` into the Keras cache
   (unless ``download=False``).

Inside each folder the dataset's usual sub-folders are tried too (``fashion-mnist/``,
``cifar-10-batches-py/``, ``ecg5000/`` ...). If nothing is found a
:class:`DataNotFoundError` lists every folder tried, the file names expected and where to
put them.

Preprocessing
-------------
A named option, recorded in the metadata; its statistics come from the train split only
and are applied unchanged to the other splits (so test values may leave [0, 1] or have
non-zero mean). Images are first scaled by 1/255.

* ``"none"``: images /255, ECG values as stored.
* ``"zscore"``: subtract the train mean, divide by the train std (scalars).
* ``"per_channel_standardize"``: the same with one mean/std per colour channel (images).
* ``"minmax"``: ``(x - min) / (max - min)`` with the scalar train min and max.

Defaults (SPEC §4): Fashion-MNIST ``zscore``, CIFAR-10 ``per_channel_standardize``,
ECG5000 ``minmax``.

Checksums
---------
Files with a known SHA-256 (:data:`KNOWN_SHA256`) are verified; a mismatch raises a
:class:`ChecksumMismatchWarning` and is recorded (``checksum_verified=False`` plus a note).
Debian's Fashion-MNIST files are recompressed, so their gzip checksums differ from
upstream's; no reference checksum of the decompressed content is known, so they load with
``checksum_verified=False`` and a note, without a warning. Hashes are computed once per
file per process.

Cache
-----
Decoding the 60,000 JPEGs of an image ``.tar`` takes seconds, so the decoded uint8 arrays
are cached as ``cifar10-images-<sha256 prefix>-v1.npz`` in ``$DELVM_CACHE_DIR``, else
``$XDG_CACHE_HOME/delvm_tf``, else ``~/.cache/delvm_tf`` (about 185 MB for CIFAR-10). The
key is the tar's SHA-256, so a changed tar is decoded again. Delete the folder to clear it.
Image *folders* are not cached.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import logging
import os
import pickle
import struct
import tarfile
import warnings
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Optional, Sequence

import numpy as np

__all__ = [
    "AnomalySplit",
    "CIFAR10_CLASSES",
    "ChecksumMismatchWarning",
    "DATASETS",
    "DEFAULT_PREPROCESSING",
    "DataNotFoundError",
    "DatasetInfo",
    "KNOWN_SHA256",
    "PREPROCESSING",
    "SYSTEM_DATA_DIRS",
    "cifar10_anomaly_split",
    "ecg5000_anomaly_split",
    "load",
    "to_dataset",
]

_log = logging.getLogger(__name__)

DATASETS = ("fashion_mnist", "cifar10", "ecg5000")
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
DATA_DIR_ENV = "DELVM_DATA_DIR"
CACHE_DIR_ENV = "DELVM_CACHE_DIR"


def _keras_datasets_dir() -> Path:
    """The folder where ``keras.utils.get_file`` keeps datasets by default."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "datasets"


#: System folders searched after ``data_dir`` and ``$DELVM_DATA_DIR`` (tests replace it).
SYSTEM_DATA_DIRS: list[Path] = [Path("/usr/share/datasets"), _keras_datasets_dir()]

#: Known SHA-256 of files, by file name. The first three are the shared copies
#: (``../shared/data/SHA256SUMS``); the Fashion-MNIST ones are upstream's gzip files (as in
#: tensorflow-datasets); the CIFAR-10 archive one is the one Keras checks.
KNOWN_SHA256 = {
    "ecg5000.csv":
        "b4645e21e2adb3cef0477510f95cdd1f4dc2ab5d76f47d041178187f44495cd5",
    "ECG5000_TRAIN.txt":
        "0d96aff193311a6dc6111bf0dbd2f7d2313987fbf7a1da4a383d92563876057b",
    "cifar10-jpeg75.tar":
        "839edf26db454edb390deb2877774f3fa7d48f515e4a854e684aa60f148efbb8",
    "cifar-10-python.tar.gz":
        "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    "train-images-idx3-ubyte.gz":
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train-labels-idx1-ubyte.gz":
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "t10k-images-idx3-ubyte.gz":
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "t10k-labels-idx1-ubyte.gz":
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
}
# gzip files that redistributors recompress: a different hash is expected, not alarming.
_RECOMPRESSIBLE = {n for n in KNOWN_SHA256 if n.endswith("-ubyte.gz")}

DEFAULT_PREPROCESSING = {
    "fashion_mnist": "zscore",
    "cifar10": "per_channel_standardize",
    "ecg5000": "minmax",
}
#: Valid preprocessing names per dataset.
PREPROCESSING = {
    "fashion_mnist": ("none", "zscore", "per_channel_standardize", "minmax"),
    "cifar10": ("none", "zscore", "per_channel_standardize", "minmax"),
    "ecg5000": ("none", "zscore", "minmax"),
}


class DataNotFoundError(FileNotFoundError):
    """No usable copy of a dataset was found locally and it could not be downloaded."""


class ChecksumMismatchWarning(UserWarning):
    """A data file's SHA-256 differs from the known one."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Where a dataset came from and how it was preprocessed.

    ``sha256`` is the file's hash for single-file sources, else None; ``file_sha256`` maps
    every hashed file name to its hash. ``lossy`` is True for re-encoded (JPEG) copies,
    whose results must be labelled as such.
    """

    name: str
    source: str
    path: str
    lossy: bool
    preprocessing: str
    stats: dict
    sha256: Optional[str]
    checksum_verified: bool
    file_sha256: dict = dataclasses.field(default_factory=dict)
    notes: tuple = ()

    def to_dict(self) -> dict:
        """A JSON-friendly copy."""
        d = dataclasses.asdict(self)
        d["notes"] = list(self.notes)
        return d


@dataclasses.dataclass(frozen=True)
class AnomalySplit:
    """A semi-supervised anomaly-detection split; labels: normal 0, abnormal 1.

    ``x_train`` holds normal data only. ``x_val``/``y_val`` is the labelled threshold
    validation set (None when the protocol has none). ``indices`` holds the row indices of
    every part in the source (see ``info["index_convention"]``); ``info`` is JSON-friendly.
    """

    x_train: np.ndarray = dataclasses.field(repr=False)
    x_test: np.ndarray = dataclasses.field(repr=False)
    y_test: np.ndarray = dataclasses.field(repr=False)
    x_val: Optional[np.ndarray] = dataclasses.field(default=None, repr=False)
    y_val: Optional[np.ndarray] = dataclasses.field(default=None, repr=False)
    info: dict = dataclasses.field(default_factory=dict)
    indices: dict = dataclasses.field(default_factory=dict, repr=False)


# --------------------------------------------------------------------------------------
# Layouts: which files make up a usable copy, and how to read them
# --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Layout:
    kind: str              # reader key
    files: tuple           # relative paths; a trailing "/" means a folder
    description: str       # for error messages

    def __str__(self):
        if any(f.endswith("/") for f in self.files):
            return self.description
        return f"{' + '.join(self.files)}  ({self.description})"


_FMNIST_FILES = (
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
)
_CIFAR_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm")
_LOSSY_SUFFIXES = (".jpg", ".jpeg")

_LAYOUTS = {
    "fashion_mnist": (
        _Layout("idx", tuple(f + ".gz" for f in _FMNIST_FILES), "gzipped IDX files"),
        _Layout("idx", _FMNIST_FILES, "uncompressed IDX files"),
    ),
    "cifar10": (
        _Layout("cifar_batches", _CIFAR_BATCHES, "CIFAR-10 python batches"),
        _Layout("cifar_batches_tar", ("cifar-10-python.tar.gz",), "the CIFAR-10 python archive"),
        _Layout("image_tar", ("cifar10-jpeg75.tar",),
                "a tar of train/<class>/NNNN.jpg and test/<class>/NNNN.jpg"),
        _Layout("image_folder",
                tuple(f"{s}/{c}/" for s in ("train", "test") for c in CIFAR10_CLASSES),
                "folders train/<class>/ and test/<class>/ of images, for all 10 classes "
                f"({', '.join(CIFAR10_CLASSES)})"),
    ),
    "ecg5000": (
        _Layout("ecg_csv", ("ecg5000.csv",), "no header; 140 values, then 1 normal/0 abnormal"),
        _Layout("ecg_csv", ("ecg.csv",), "TensorFlow's ecg.csv, same layout"),
        _Layout("ucr", ("ECG5000_TRAIN.txt", "ECG5000_TEST.txt"),
                "UCR archive: class 1-5, then 140 values; both files"),
        _Layout("ucr", ("ECG5000_TRAIN.tsv", "ECG5000_TEST.tsv"), "UCR 2018 archive"),
    ),
}
_SUBDIRS = {
    "fashion_mnist": (".", "fashion-mnist", "fashion_mnist"),
    "cifar10": (".", "cifar10", "cifar-10", "cifar-10-batches-py",
                "cifar-10-batches-py-target/cifar-10-batches-py"),
    "ecg5000": (".", "ecg5000", "ECG5000"),
}
# (cache sub-folder of the Keras home, [(file name, URL, sha256 or None)])
_DOWNLOADS = {
    "fashion_mnist": ("datasets/fashion-mnist", [
        (f + ".gz", "https://storage.googleapis.com/tensorflow/tf-keras-datasets/" + f + ".gz",
         None)
        for f in _FMNIST_FILES
    ]),
    "cifar10": ("datasets", [
        ("cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
         KNOWN_SHA256["cifar-10-python.tar.gz"]),
    ]),
    "ecg5000": ("datasets", [
        ("ecg.csv", "http://storage.googleapis.com/download.tensorflow.org/data/ecg.csv", None),
    ]),
}


@dataclasses.dataclass(frozen=True)
class _Found:
    layout: _Layout
    paths: tuple           # resolved paths of layout.files
    location: Path         # the folder (or the single file) to report


def _matches(folder: Path, layout: _Layout) -> Optional[_Found]:
    paths = tuple(folder / f.rstrip("/") for f in layout.files)
    ok = all(p.is_dir() if f.endswith("/") else p.is_file()
             for f, p in zip(layout.files, paths))
    if not ok:
        return None
    location = paths[0] if len(paths) == 1 else folder
    return _Found(layout, paths, location)


def _layout_for_file(name: str, path: Path) -> _Found:
    """Interpret a single file given as ``data_dir``."""
    low = path.name.lower()
    if name == "cifar10" and low.endswith((".tar", ".tar.gz", ".tgz")):
        with tarfile.open(path) as tar:
            has_batches = any(PurePosixPath(n).name == "data_batch_1" for n in tar.getnames())
        kind = "cifar_batches_tar" if has_batches else "image_tar"
        return _Found(_Layout(kind, (path.name,), "a single archive"), (path,), path)
    if name == "ecg5000" and low.endswith(".csv"):
        return _Found(_Layout("ecg_csv", (path.name,), "a csv file"), (path,), path)
    raise ValueError(f"data_dir={str(path)!r} is a file; for {name} pass the folder that "
                     "holds one of: " + "; ".join(str(l) for l in _LAYOUTS[name]))


def _search_bases(data_dir) -> list[tuple[Optional[Path], str]]:
    """(folder, origin) in lookup order; ``None`` marks an unset environment variable."""
    bases = []
    if data_dir is not None:
        bases.append((Path(data_dir).expanduser(), "data_dir argument"))
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        bases += [(Path(p).expanduser(), f"${DATA_DIR_ENV}") for p in env.split(os.pathsep) if p]
    else:
        bases.append((None, f"${DATA_DIR_ENV}"))
    bases += [(Path(p), "system location") for p in SYSTEM_DATA_DIRS]
    return bases


def _find(name: str, data_dir, download: bool) -> _Found:
    """Locate ``name`` by the documented lookup order, downloading as a last resort."""
    tried = []
    for base, origin in _search_bases(data_dir):
        if base is None:
            tried.append(f"{origin}  (not set)")
            continue
        if base.is_file():
            return _layout_for_file(name, base)
        for sub in _SUBDIRS[name]:
            folder = base if sub == "." else base / sub
            if not folder.is_dir():
                if sub == ".":
                    tried.append(f"{folder}  ({origin}; does not exist)")
                continue
            tried.append(f"{folder}  ({origin})")
            for layout in _LAYOUTS[name]:
                found = _matches(folder, layout)
                if found is None:
                    continue
                if data_dir is not None and origin != "data_dir argument":
                    warnings.warn(f"{name}: nothing usable in data_dir={str(data_dir)!r}; "
                                  f"using {found.location} instead", stacklevel=4)
                return found
    if not download:
        tried.append("download  (disabled: download=False)")
        raise DataNotFoundError(_not_found_message(name, tried))
    subdir, files = _DOWNLOADS[name]
    paths = []
    for fname, url, sha in files:
        try:
            paths.append(Path(_fetch(url, fname, subdir, sha)))
        except Exception as err:  # keras raises a bare Exception on network failures
            tried.append(f"download of {url}  (failed: {type(err).__name__}: {err})")
            raise DataNotFoundError(_not_found_message(name, tried)) from err
    for layout in _LAYOUTS[name]:
        found = _matches(paths[0].parent, layout)
        if found is not None:
            return found
    raise DataNotFoundError(f"downloaded {[str(p) for p in paths]} but could not read them "
                            f"as {name}")


def _fetch(url: str, fname: str, cache_subdir: str, sha256: Optional[str]) -> str:
    """Download ``url`` into the Keras cache (``keras.utils.get_file``); return its path."""
    from keras.utils import get_file  # imported lazily: loading local data needs no keras

    return get_file(fname, origin=url, cache_subdir=cache_subdir, file_hash=sha256)


def _not_found_message(name: str, tried: Sequence[str]) -> str:
    lines = [f"Could not find the {name} data.", "Places tried, in order:"]
    lines += [f"  - {t}" for t in tried]
    lines.append("Expected, inside one of those folders (or a sub-folder "
                 + ", ".join(repr(s) for s in _SUBDIRS[name] if s != ".") + "):")
    lines += [f"  - {layout}" for layout in _LAYOUTS[name]]
    lines.append(f"To fix: put the files in a folder and pass data_dir=..., or set "
                 f"${DATA_DIR_ENV} to that folder, or copy them to {_keras_datasets_dir()} "
                 "(where download=True saves them when the network is reachable).")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Checksums
# --------------------------------------------------------------------------------------

_HASH_CACHE: dict = {}


def _sha256(path: Path) -> str:
    """SHA-256 of a file, computed once per process per (path, size, mtime)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASH_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _HASH_CACHE[key] = h.hexdigest()
    return _HASH_CACHE[key]


def _verify(paths: Sequence[Path]) -> tuple[dict, bool, list]:
    """Hash ``paths``; return (name -> sha256, all verified, notes). Warn on mismatches."""
    hashes, notes, verified = {}, [], True
    known = set(KNOWN_SHA256.values())
    for p in paths:
        if p.is_dir():
            notes.append(f"{p.name}/: a folder of files, not hashed")
            verified = False
            continue
        h = hashes[p.name] = _sha256(p)
        expected = KNOWN_SHA256.get(p.name)
        if h == expected or (expected is None and h in known):
            continue
        verified = False
        if expected is None:
            notes.append(f"{p.name}: no known checksum")
        elif p.name in _RECOMPRESSIBLE:
            notes.append(f"{p.name}: gzip file differs from upstream's (e.g. Debian "
                         "recompressed it); content not verified")
        else:
            msg = (f"checksum mismatch for {p}: sha256 {h}, expected {expected}. "
                   "The file may be corrupt or a different version; results are recorded "
                   "with checksum_verified=False.")
            warnings.warn(msg, ChecksumMismatchWarning, stacklevel=4)
            notes.append(msg)
    return hashes, verified, notes


# --------------------------------------------------------------------------------------
# Readers: each returns raw arrays (uint8 NHWC images with int64 labels, or ECG rows)
# --------------------------------------------------------------------------------------

_IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file, gzipped or not."""
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
        data = f.read()
    if len(data) < 4 or data[0] or data[1] or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, np.dtype(_IDX_DTYPES[data[2]]), offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape}, found {arr.size} values")
    return arr.reshape(shape)


def _read_fashion_mnist(paths):
    xtr, ytr, xte, yte = (_read_idx(p) for p in paths)
    for x, y, p in ((xtr, ytr, paths[0]), (xte, yte, paths[2])):
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(f"{p}: unexpected IDX shapes {x.shape} / {y.shape}")
    return xtr[..., None], ytr.astype(np.int64), xte[..., None], yte.astype(np.int64)


def _unpickle_batch(f) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch. That canonical format is a pickle: load trusted files only."""
    d = pickle.load(f, encoding="bytes")
    x = np.asarray(d[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return x, np.asarray(d[b"labels"], np.int64)


def _join_batches(batches) -> tuple:
    train = [batches[n] for n in _CIFAR_BATCHES[:5]]
    xte, yte = batches["test_batch"]
    return (np.concatenate([b[0] for b in train]), np.concatenate([b[1] for b in train]),
            np.ascontiguousarray(xte), yte)


def _read_cifar_batches(paths):
    batches = {}
    for p in paths:
        with open(p, "rb") as f:
            batches[p.name] = _unpickle_batch(f)
    return _join_batches(batches)


def _read_cifar_batches_tar(paths):
    batches = {}
    with tarfile.open(paths[0]) as tar:
        for m in tar:
            base = PurePosixPath(m.name).name
            if m.isfile() and base in _CIFAR_BATCHES:
                batches[base] = _unpickle_batch(tar.extractfile(m))
    missing = set(_CIFAR_BATCHES) - set(batches)
    if missing:
        raise ValueError(f"{paths[0]} lacks {sorted(missing)}")
    return _join_batches(batches)


def _image_key(relpath: str):
    """(split, label, name) for '<...>/train|test/<class>/<file>.<img>', else None."""
    parts = PurePosixPath(relpath).parts
    if len(parts) < 3 or not parts[-1].lower().endswith(_IMAGE_SUFFIXES):
        return None
    split, cls = parts[-3], parts[-2]
    if split not in ("train", "test") or cls not in CIFAR10_CLASSES:
        return None
    return split, CIFAR10_CLASSES.index(cls), parts[-1]


def _decode_image(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _decode_all(entries, read: Callable[[Any], bytes], where) -> tuple:
    """Decode images given as [(key, handle)] into sorted train/test uint8 arrays.

    Handles are read in the given order (sequential for tars); each image goes straight
    into its sorted slot of a preallocated array. Returns the four arrays and whether any
    image is a (lossy) JPEG.
    """
    if not entries:
        raise ValueError(f"{where}: no train/<class>/<image> or test/<class>/<image> entries")
    order = sorted(range(len(entries)), key=lambda i: entries[i][0])
    slot = np.empty(len(entries), np.int64)
    slot[order] = np.arange(len(entries))
    keys = [entries[i][0] for i in order]
    first = _decode_image(read(entries[order[0]][1]))
    images = np.empty((len(entries),) + first.shape, np.uint8)
    for i, (_, handle) in enumerate(entries):
        img = first if i == order[0] else _decode_image(read(handle))
        if img.shape != first.shape:
            raise ValueError(f"{where}: image {entries[i][0]} has shape {img.shape}, "
                             f"expected {first.shape}")
        images[slot[i]] = img
    labels = np.array([k[1] for k in keys], np.int64)
    is_train = np.array([k[0] == "train" for k in keys])
    n_test = len(keys) - int(is_train.sum())  # "test" < "train": test images sort first
    lossy = any(k[2].lower().endswith(_LOSSY_SUFFIXES) for k in keys)
    return images[n_test:], labels[n_test:], images[:n_test], labels[:n_test], lossy


def _cache_dir() -> Path:
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "delvm_tf"


_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test", "lossy")


def _read_image_tar(paths):
    path = paths[0]
    cache = _cache_dir() / f"cifar10-images-{_sha256(path)[:20]}-v1.npz"
    if cache.is_file():
        try:
            with np.load(cache) as z:
                *arrays, lossy = (z[k] for k in _NPZ_KEYS)
                return (*arrays, bool(lossy))
        except (OSError, ValueError, KeyError) as err:
            _log.warning("ignoring unreadable cache %s (%s)", cache, err)
    with tarfile.open(path) as tar:
        entries = [(k, m) for m in tar.getmembers()
                   if m.isfile() and (k := _image_key(m.name)) is not None]
        arrays = _decode_all(entries, lambda m: tar.extractfile(m).read(), path)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + f".{os.getpid()}.tmp.npz")
        np.savez(tmp, **dict(zip(_NPZ_KEYS, arrays)))
        os.replace(tmp, cache)
    except OSError as err:
        _log.warning("could not write the decode cache %s (%s)", cache, err)
    return arrays


def _read_image_folder(paths):
    root = paths[0].parent.parent  # paths[0] is <root>/train/airplane
    entries = [(k, p) for p in sorted(root.glob("t*/*/*"))
               if p.is_file() and (k := _image_key(p.relative_to(root).as_posix()))]
    return _decode_all(entries, lambda p: p.read_bytes(), root)


def _read_ecg_csv(paths):
    """TensorFlow ecg.csv layout: 140 values then label (1 normal, 0 abnormal)."""
    rows = np.loadtxt(paths[0], delimiter=",", dtype=np.float64, ndmin=2)
    labels = rows[:, -1]
    if rows.shape[1] != 141 or not np.isin(labels, (0, 1)).all():
        raise ValueError(f"{paths[0]}: expected 140 values and a 0/1 label per row, "
                         f"got {rows.shape[1]} columns")
    return rows[:, :-1], (labels == 0).astype(np.int64)


def _read_ucr_file(path) -> tuple[np.ndarray, np.ndarray]:
    """One UCR file: (values (N, 140), class 1-5)."""
    rows = np.loadtxt(path, dtype=np.float64, ndmin=2)
    if rows.shape[1] != 141:
        raise ValueError(f"{path}: expected a class and 140 values per row")
    return rows[:, 1:], rows[:, 0].astype(np.int64)


def _read_ucr(paths):
    """UCR TRAIN + TEST, pooled in that order; class 1 is normal."""
    parts = [_read_ucr_file(p) for p in paths]
    x = np.concatenate([p[0] for p in parts])
    cls = np.concatenate([p[1] for p in parts])
    return x, (cls != 1).astype(np.int64)


_READERS = {
    "idx": _read_fashion_mnist,
    "cifar_batches": _read_cifar_batches,
    "cifar_batches_tar": _read_cifar_batches_tar,
    "image_tar": _read_image_tar,
    "image_folder": _read_image_folder,
    "ecg_csv": _read_ecg_csv,
    "ucr": _read_ucr,
}


def _describe(found: _Found, lossy: bool) -> str:
    """A human-readable source for a found copy."""
    kind = found.layout.kind
    if kind in ("image_tar", "image_folder"):
        if found.paths[0].name == "cifar10-jpeg75.tar":
            return "CIFAR-10 JPEG-q75 copy (lossy, not canonical CIFAR-10)"
        fmt = "JPEG, lossy" if lossy else "lossless images"
        return f"CIFAR-10 image {kind[6:]} ({fmt}; not canonical CIFAR-10)"
    return {
        "idx": "Fashion-MNIST IDX files",
        "cifar_batches": "CIFAR-10 canonical python batches",
        "cifar_batches_tar": "CIFAR-10 canonical python archive",
        "ecg_csv": "ECG5000 (TensorFlow ecg.csv layout)",
        "ucr": "ECG5000 (UCR TRAIN+TEST files, pooled)",
    }[kind]


def _load_raw(name: str, data_dir, download: bool):
    """Find and read ``name``: (raw arrays, partial info dict)."""
    found = _find(name, data_dir, download)
    _log.info("%s: reading %s", name, found.location)
    file_hashes, verified, notes = _verify(found.paths)
    raw, lossy = _READERS[found.layout.kind](found.paths), False
    if found.layout.kind in ("image_tar", "image_folder"):
        from PIL import __version__ as pil_version

        *raw, lossy = raw
        lossy = lossy or found.paths[0].name == "cifar10-jpeg75.tar"
        notes.append(f"images decoded with Pillow {pil_version}")
    meta = dict(
        name=name, source=_describe(found, lossy), path=str(found.location), lossy=lossy,
        sha256=file_hashes.get(found.paths[0].name) if len(found.paths) == 1 else None,
        checksum_verified=verified, file_sha256=file_hashes, notes=tuple(notes),
    )
    return raw, meta


# --------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------

def _check_preprocessing(name: str, preprocessing: Optional[str]) -> str:
    method = DEFAULT_PREPROCESSING[name] if preprocessing is None else preprocessing
    if method not in PREPROCESSING[name]:
        raise ValueError(f"unknown preprocessing {method!r} for {name}; valid: "
                         + ", ".join(repr(m) for m in PREPROCESSING[name]))
    return method


_IMAGE_SCALE = 1 / 255
_CHUNK = 1024  # rows per chunk in the passes below: bounds the temporary memory


def _uint8_histogram(raw: np.ndarray, per_channel: bool) -> np.ndarray:
    """Counts of each value 0..255, shape (channels or 1, 256)."""
    flat = raw.reshape(-1, raw.shape[-1] if per_channel else 1)
    hist = np.zeros((flat.shape[1], 256), np.int64)
    for i in range(0, len(flat), _CHUNK * 1024):
        chunk = flat[i:i + _CHUNK * 1024]
        for c in range(flat.shape[1]):
            hist[c] += np.bincount(chunk[:, c], minlength=256)
    return hist


def _fit(method: str, raw: np.ndarray, scale: float) -> dict:
    """Statistics of ``scale * raw`` (the train split) for ``method``.

    uint8 images are summarised exactly through their value histogram (no float copy).
    """
    if method == "none":
        return {}
    per_channel = method == "per_channel_standardize"
    if raw.dtype == np.uint8:
        hist = _uint8_histogram(raw, per_channel)
        values = np.arange(256) * scale
        n = hist.sum(axis=1)
        mean = hist @ values / n
        std = np.sqrt(np.maximum(hist @ values ** 2 / n - mean ** 2, 0.0))
        present = np.flatnonzero(hist.sum(axis=0))
        lo, hi = values[present[0]], values[present[-1]]
    else:
        x = raw.reshape(-1, raw.shape[-1] if per_channel else 1).astype(np.float64) * scale
        mean, std, lo, hi = x.mean(axis=0), x.std(axis=0), x.min(), x.max()
    if method == "minmax":
        return {"min": float(lo), "max": float(hi)}
    return ({"mean": mean.tolist(), "std": std.tolist()} if per_channel
            else {"mean": float(mean[0]), "std": float(std[0])})


def _transform(method: str, raw: np.ndarray, stats: dict, scale: float) -> np.ndarray:
    """``method`` applied to ``scale * raw`` with fitted ``stats``, as a new float32 array.

    Computed over row chunks, so no full-size temporary is made: in float32 for uint8
    images (fast), in float64 for float data (exact 0 and 1 at the train min/max).
    """
    if method == "none":
        shift, div = 0.0, 1.0
    elif method == "minmax":
        shift, div = stats["min"], stats["max"] - stats["min"]
    else:
        shift, div = np.asarray(stats["mean"]), np.asarray(stats["std"])
    work = np.float32 if raw.dtype == np.uint8 else np.float64
    div = np.where(np.asarray(div) > 0, div, 1.0).astype(work)
    shift, scale = np.asarray(shift, work), work(scale)
    out = np.empty(raw.shape, np.float32)
    for i in range(0, len(raw), _CHUNK):
        if work is np.float32:  # in place: no per-chunk temporaries
            chunk = out[i:i + _CHUNK]
            np.multiply(raw[i:i + _CHUNK], scale, out=chunk)
            chunk -= shift
            chunk /= div
        else:
            out[i:i + _CHUNK] = (raw[i:i + _CHUNK] * scale - shift) / div
    return out


def _preprocess(method: str, image: bool, train: np.ndarray, *others: np.ndarray) -> tuple:
    """Fit on the raw ``train`` split; return (stats, float32 train, float32 others...)."""
    scale = _IMAGE_SCALE if image else 1.0
    stats = _fit(method, train, scale)
    arrays = tuple(_transform(method, x, stats, scale) for x in (train,) + others)
    if image:
        stats = {"input_scale": scale, **stats}
    return (stats,) + arrays


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------

def _canonical_name(name: str) -> str:
    key = str(name).lower().replace("-", "_")
    key = {"cifar_10": "cifar10", "fmnist": "fashion_mnist", "ecg": "ecg5000"}.get(key, key)
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    return key


def load(name: str, data_dir=None, preprocessing: Optional[str] = None, *,
         as_dataset: bool = False, batch_size: int = 128, shuffle: bool = False,
         seed: int = 0, download: bool = True, return_info: bool = False):
    """Load a dataset as ``(x_train, y_train), (x_test, y_test)``.

    Images are float32 NHWC (Fashion-MNIST (N, 28, 28, 1), CIFAR-10 (N, 32, 32, 3)),
    labels int64 of shape (N,). ``preprocessing=None`` uses the dataset's default
    (:data:`DEFAULT_PREPROCESSING`); statistics come from the train split only.

    ``"ecg5000"`` returns the anomaly protocol of :func:`ecg5000_anomaly_split` with
    ``seed``: train = 1639 normal beats (labels all 0), test = 1000 beats (abnormal 1).

    With ``as_dataset=True`` the two parts are ``tf.data`` pipelines of ``(x, y)`` batches
    (see :func:`to_dataset`; ``shuffle``/``seed`` apply to the train pipeline). With
    ``return_info=True`` the result is ``(train, test), info`` with a :class:`DatasetInfo`.
    """
    name = _canonical_name(name)
    method = _check_preprocessing(name, preprocessing)
    if name == "ecg5000":
        split = ecg5000_anomaly_split(seed, data_dir, method, download=download)
        x_train, x_test, y_test = split.x_train, split.x_test, split.y_test
        y_train = np.zeros(len(x_train), np.int64)
        i = split.info
        info = DatasetInfo(
            name=name, source=i["source"], path=i["path"], lossy=i["lossy"],
            preprocessing=method, stats=i["stats"], sha256=i["sha256"],
            checksum_verified=i["checksum_verified"], file_sha256=i["file_sha256"],
            notes=tuple(i["notes"]) + (f"anomaly split of ecg5000_anomaly_split(seed={seed})",))
    else:
        (xtr, y_train, xte, y_test), meta = _load_raw(name, data_dir, download)
        stats, x_train, x_test = _preprocess(method, True, xtr, xte)
        del xtr, xte
        info = DatasetInfo(preprocessing=method, stats=stats, **meta)
    if as_dataset:
        result = (to_dataset(x_train, y_train, batch_size, shuffle=shuffle, seed=seed),
                  to_dataset(x_test, y_test, batch_size))
    else:
        result = ((x_train, y_train), (x_test, y_test))
    return (result, info) if return_info else result


def to_dataset(x: np.ndarray, y: Optional[np.ndarray] = None, batch_size: int = 128, *,
               shuffle: bool = False, seed: Optional[int] = None):
    """A batched ``tf.data.Dataset`` streamed from ``x`` (and ``y``) without copying them.

    Yields ``x`` batches, or ``(x, y)`` batches when ``y`` is given. With ``shuffle`` the
    order is reshuffled every epoch from a generator seeded with ``seed``.
    """
    import tensorflow as tf

    n = len(x)
    rng = np.random.default_rng(seed)

    def batches():
        order = rng.permutation(n) if shuffle else None
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size] if shuffle else slice(start, start + batch_size)
            yield x[idx] if y is None else (x[idx], y[idx])

    x_spec = tf.TensorSpec((None,) + x.shape[1:], tf.as_dtype(x.dtype))
    spec = x_spec if y is None else (x_spec, tf.TensorSpec((None,) + y.shape[1:],
                                                           tf.as_dtype(y.dtype)))
    ds = tf.data.Dataset.from_generator(batches, output_signature=spec)
    ds = ds.apply(tf.data.experimental.assert_cardinality(-(-n // batch_size)))
    return ds.prefetch(tf.data.AUTOTUNE)


def _split_info(meta: dict, method: str, stats: dict, seed: int, counts: dict, **extra) -> dict:
    return dict(dataset=meta["name"], seed=seed, source=meta["source"], path=meta["path"],
                lossy=meta["lossy"], sha256=meta["sha256"],
                checksum_verified=meta["checksum_verified"], file_sha256=meta["file_sha256"],
                notes=list(meta["notes"]), preprocessing=method, stats=stats, counts=counts,
                labels="normal 0, abnormal 1", **extra)


def ecg5000_anomaly_split(seed: int = 0, data_dir=None, preprocessing: str = "minmax", *,
                          n_test: int = 1000, n_train: int = 1639,
                          download: bool = True) -> AnomalySplit:
    """ECG5000 anomaly protocol (SPEC §4).

    From all rows of the source (5000): test = ``n_test`` rows drawn at random with
    ``seed``; train = ``n_train`` normal rows drawn from the normal rows not in test.
    Labels: abnormal 1, normal 0. Rows keep file order within each part. The draw depends
    on the row order of the source, which differs between ``ecg.csv`` and UCR files; the
    source is recorded in ``info``. No validation set (``x_val``/``y_val`` are None).
    """
    method = _check_preprocessing("ecg5000", preprocessing)
    (x_all, y_all), meta = _load_raw("ecg5000", data_dir, download)
    rng = np.random.default_rng(seed)
    if n_test > len(x_all):
        raise ValueError(f"n_test={n_test} exceeds the {len(x_all)} rows")
    test_idx = np.sort(rng.choice(len(x_all), n_test, replace=False))
    candidates = np.setdiff1d(np.flatnonzero(y_all == 0), test_idx)
    if n_train > len(candidates):
        raise ValueError(f"n_train={n_train} exceeds the {len(candidates)} normal rows "
                         "left after drawing the test set")
    train_idx = np.sort(rng.choice(candidates, n_train, replace=False))
    stats, x_train, x_test = _preprocess(method, False, x_all[train_idx], x_all[test_idx])
    y_test = y_all[test_idx]
    counts = dict(total=len(x_all), train=n_train, test=n_test,
                  test_abnormal=int(y_test.sum()), test_normal=int(n_test - y_test.sum()))
    info = _split_info(meta, method, stats, seed, counts,
                       protocol="test: seeded draw from all rows; train: seeded draw of "
                                "normal rows not in test",
                       index_convention="row numbers in the source (UCR: TRAIN rows, "
                                        "then TEST rows)")
    return AnomalySplit(x_train, x_test, y_test, info=info,
                        indices={"train": train_idx, "test": test_idx})


def _class_index(normal_class) -> int:
    if isinstance(normal_class, str) and normal_class in CIFAR10_CLASSES:
        return CIFAR10_CLASSES.index(normal_class)
    if isinstance(normal_class, (int, np.integer)) and not isinstance(normal_class, bool) \
            and 0 <= normal_class < len(CIFAR10_CLASSES):
        return int(normal_class)
    raise ValueError(f"normal_class must be 0-9 or one of {CIFAR10_CLASSES}, "
                     f"got {normal_class!r}")


def _take_pooled(x_train: np.ndarray, x_test: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """uint8 images at indices of the pooled train+test arrays, without pooling the full arrays."""
    out = np.empty((len(idx),) + x_train.shape[1:], np.uint8)
    in_train = idx < len(x_train)
    out[in_train] = x_train[idx[in_train]]
    out[~in_train] = x_test[idx[~in_train] - len(x_train)]
    return out


def cifar10_anomaly_split(seed: int = 0, normal_class=0, data_dir=None,
                          preprocessing: str = "per_channel_standardize", *,
                          n_normal_train: int = 4223, abnormal_fraction: float = 0.3,
                          n_abnormal_test: int = 4883, n_abnormal_val: int = 4883,
                          download: bool = True) -> AnomalySplit:
    """CIFAR-10 anomaly protocol (SPEC §4); the defaults are the paper's counts.

    Train and test images are pooled (pooled index: train 0-49999, then test 50000-59999).
    Normal = all images of ``normal_class`` (6000), split seeded into ``n_normal_train``
    train and the rest test (1777). Abnormal pool = a seeded ``abnormal_fraction`` of the
    other classes' images (16,200); ``n_abnormal_test`` of it go to test and a disjoint
    ``n_abnormal_val`` to validation; the rest of the pool is unused.

    ``x_test``/``y_test``: normal test images then abnormal test images (labels 0 / 1).
    ``x_val``/``y_val``: the labelled threshold-validation set of SPEC §3, i.e. the normal
    training images (a copy of ``x_train``) then the abnormal validation images.
    Standardisation statistics come from ``x_train`` only.
    """
    c = _class_index(normal_class)
    method = _check_preprocessing("cifar10", preprocessing)
    (xtr, ytr, xte, yte), meta = _load_raw("cifar10", data_dir, download)
    y_all = np.concatenate([ytr, yte])
    rng = np.random.default_rng(seed)
    normal = rng.permutation(np.flatnonzero(y_all == c))
    if not 0 < n_normal_train < len(normal):
        raise ValueError(f"n_normal_train={n_normal_train} must be in 1..{len(normal) - 1}")
    train_idx, normal_test = normal[:n_normal_train], normal[n_normal_train:]
    others = np.flatnonzero(y_all != c)
    n_pool = int(round(abnormal_fraction * len(others)))
    if n_abnormal_test + n_abnormal_val > n_pool:
        raise ValueError(f"n_abnormal_test + n_abnormal_val = "
                         f"{n_abnormal_test + n_abnormal_val} exceeds the abnormal pool "
                         f"({n_pool} = {abnormal_fraction} x {len(others)})")
    pool = rng.choice(others, n_pool, replace=False)
    abnormal_test = pool[:n_abnormal_test]
    abnormal_val = pool[n_abnormal_test:n_abnormal_test + n_abnormal_val]

    test_idx = np.concatenate([normal_test, abnormal_test])
    val_idx = np.concatenate([train_idx, abnormal_val])
    raw_train, raw_test, raw_val = (_take_pooled(xtr, xte, idx) for idx in (train_idx, test_idx, val_idx))
    del xtr, xte
    stats, x_train, x_test, x_val = _preprocess(method, True, raw_train, raw_test, raw_val)
    del raw_train, raw_test, raw_val
    y_test = np.repeat(np.array([0, 1], np.int64), [len(normal_test), n_abnormal_test])
    y_val = np.repeat(np.array([0, 1], np.int64), [n_normal_train, n_abnormal_val])
    counts = dict(normal_total=len(normal), normal_train=n_normal_train,
                  normal_test=len(normal_test), abnormal_pool=n_pool,
                  abnormal_test=n_abnormal_test, abnormal_val=n_abnormal_val,
                  abnormal_unused=n_pool - n_abnormal_test - n_abnormal_val,
                  test=len(test_idx), val=n_normal_train + n_abnormal_val)
    info = _split_info(meta, method, stats, seed, counts,
                       normal_class=c, normal_class_name=CIFAR10_CLASSES[c],
                       abnormal_fraction=abnormal_fraction,
                       val_composition="normal train images, then abnormal validation images",
                       index_convention="pooled: train images 0..49999, then test images")
    return AnomalySplit(x_train, x_test, y_test, x_val, y_val, info=info,
                        indices={"train": train_idx, "test": test_idx,
                                 "val": val_idx,
                                 "test_classes": y_all[test_idx]})
