import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]


def shared_data_file(name: str) -> pathlib.Path | None:
    """A file of the shared data folder: $DELVM_DATA_DIR, else ../shared/data beside the repo."""
    for folder in (os.environ.get("DELVM_DATA_DIR"), REPO.parent / "shared" / "data"):
        if folder and (pathlib.Path(folder) / name).is_file():
            return pathlib.Path(folder) / name
    return None


@pytest.fixture
def float64():
    """Build layers in float64 for tight comparisons with brute-force autodiff."""
    previous, previous_policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    yield
    keras.config.set_floatx(previous)
    keras.config.set_dtype_policy(previous_policy)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def ecg_normal_slice():
    """300 normal ECG5000 beats, min-max scaled (a small real slice for training tests)."""
    path = shared_data_file("ecg5000.csv")
    if path is None:
        pytest.skip("ecg5000.csv not found in $DELVM_DATA_DIR or ../shared/data")
    data = np.loadtxt(path, delimiter=",", dtype=np.float32)
    x = data[data[:, -1] == 1, :-1][:300]
    return ((x - x.min()) / (x.max() - x.min())).astype(np.float32)
