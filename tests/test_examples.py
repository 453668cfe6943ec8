"""The README's main job runs end to end (on a tiny model)."""

import os
import subprocess
import sys

import pytest

from conftest import REPO, shared_data_file


def test_ecg_example_runs():
    path = shared_data_file("ecg5000.csv")
    if path is None:
        pytest.skip("ecg5000.csv not found in $DELVM_DATA_DIR or ../shared/data")
    env = {**os.environ, "DELVM_DATA_DIR": str(path.parent)}
    result = subprocess.run([sys.executable, str(REPO / "examples" / "ecg_anomaly.py"), "--units", "16",
                             "--epochs", "1"], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "auroc" in result.stdout and "mean-beat template" in result.stdout
