"""The reproduction scripts (reproduce/*.py) at --scale=smoke, resume, and the sweep specification."""

import csv
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, shared_data_file
from delvm_tf import reproduction

SCRIPTS = sorted(p for p in (REPO / "reproduce").glob("*.py") if p.stem != "all")
FIGURES = {f.name: f for f in reproduction.load_figure_scripts(REPO / "reproduce")}


def _data_available(dataset: str) -> bool:
    if dataset == "fashion_mnist":
        folders = [os.environ.get("DELVM_DATA_DIR"), str(REPO.parent / "shared" / "data"), "/usr/share/datasets"]
        return any(folder and (pathlib.Path(folder) / sub / "train-images-idx3-ubyte.gz").is_file()
                   for folder in folders for sub in (".", "fashion-mnist"))
    if dataset == "ecg5000":
        return shared_data_file("ecg5000.csv") is not None
    return shared_data_file("cifar10-jpeg75.tar") is not None


def _require(figure):
    if not _data_available(figure.dataset):
        pytest.skip(f"{figure.dataset} data not found ($DELVM_DATA_DIR, ../shared/data, /usr/share/datasets)")


def _rows(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def _run(figure, tmp_path, **kwargs):
    return reproduction.run(figure, scale="smoke", output_dir=tmp_path, log=lambda line: None, **kwargs)


def test_every_figure_has_a_script_in_order():
    names = list(FIGURES)
    paper = [n for n in names if not n.startswith("ablation")]
    assert [n.split("_")[0] for n in paper] == list(reproduction.ORDER[:-1])  # figures 1-9, then Table 1
    assert names[len(paper):] == sorted(n for n in names if n.startswith("ablation"))  # ablations last
    assert len(SCRIPTS) == len(names) == 15 and (REPO / "reproduce" / "all.py").is_file()


@pytest.mark.parametrize("name", list(FIGURES))
def test_script_runs_at_smoke_scale(name, tmp_path):
    figure = FIGURES[name]
    _require(figure)
    summary = _run(figure, tmp_path)
    columns, rows = _rows(tmp_path / f"{name}.csv")
    metrics = ["accuracy"] if figure.task == "probe" else ["precision", "recall", "f1", "auroc", "auprc", "trivial_f1"]
    assert columns[:13] == list(reproduction.BASE_COLUMNS)
    assert columns[13:13 + len(metrics)] == metrics
    assert summary["trained"] == len(rows) > 0
    models = {r["model"] for r in rows}
    assert models <= set(reproduction.MODEL_NAMES)
    assert set(figure.models) <= models
    assert ("random-init" in models) == (figure.task == "probe")
    for r in rows:
        assert r["figure"] == name and r["dataset"] == figure.dataset and r["scale"] == "smoke"
        for m in metrics:
            value = float(r[m])
            assert 0.0 <= value <= 1.0, (m, value)
    png = tmp_path / f"{name}.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = json.loads((tmp_path / f"{name}.json").read_text())
    run = meta["runs"][-1]
    assert run["git"]["commit"] and run["versions"]["tensorflow"] and run["hardware"]["cpu_count"]
    assert run["wall_seconds"] > 0 and run["flags"]["scale"] == "smoke"
    scale = meta["scales"]["smoke"]
    assert scale["settings"]["batch_size"] == 100
    assert scale["settings"]["sigma"] == ([0.5] if figure.sweep == "sigma" else 1.0)
    assert scale["protocol"]["notes"] and "lossy" in scale and scale["data"]["preprocessing"]
    assert len(meta["points"]) == len(rows)
    if figure.task == "anomaly":
        refs = meta["references"]["smoke"]
        assert 0 < refs["trivial"]["f1"] <= 1 and 0 <= refs["mean-template"]["f1"] <= 1
    if figure.dataset.startswith("cifar10"):
        assert "JPEG" in rows[0]["data_source"] and scale["lossy"] is True


def test_resume_continues_an_interrupted_sweep(tmp_path):
    figure = FIGURES["fig7_ecg_hidden_units"]
    _require(figure)
    first = _run(figure, tmp_path)
    csv_path = tmp_path / f"{figure.name}.csv"
    columns, rows = _rows(csv_path)
    assert first["trained"] == len(rows) == 3
    # Simulate a run killed before its last point: drop the last row.
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows[:-1])
    second = _run(figure, tmp_path, resume=True)
    assert (second["trained"], second["skipped"]) == (1, 2)
    _, resumed = _rows(csv_path)
    assert [r["model"] for r in resumed] == [r["model"] for r in rows]
    assert resumed[:2] == rows[:2]  # finished points are kept as they were
    third = _run(figure, tmp_path, resume=True)
    assert (third["trained"], third["skipped"]) == (0, 3)
    assert len(json.loads((tmp_path / f"{figure.name}.json").read_text())["runs"]) == 3
    fresh = _run(figure, tmp_path, models=["AE"])  # without --resume the sweep starts afresh
    assert fresh["trained"] == 1 and [r["model"] for r in _rows(csv_path)[1]] == ["AE"]


def test_models_subset_and_unknown_model(tmp_path):
    figure = FIGURES["fig7_ecg_hidden_units"]
    with pytest.raises(ValueError, match="CEBM"):
        reproduction.run(figure, scale="smoke", output_dir=tmp_path, models=["CEBM"])
    points = reproduction.sweep_points(figure, reproduction.SCALES["paper"]["ecg5000"], ["AE"])
    assert {p.model for p in points} == {"AE"} and len(points) == 8


def test_command_line(tmp_path):
    figure = FIGURES["fig7_ecg_hidden_units"]
    _require(figure)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, str(REPO / "reproduce" / "fig7_ecg_hidden_units.py"), "--scale=smoke",
                             "--models=AE", f"--output_dir={tmp_path}", "--seed=1"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ETA" in result.stdout
    _, rows = _rows(tmp_path / "fig7_ecg_hidden_units.csv")
    assert [r["model"] for r in rows] == ["AE"] and rows[0]["seed"] == "1"


def test_sweep_specification():
    quick = reproduction.SCALES["quick"]["fashion_mnist"]
    fig1 = reproduction.sweep_points(FIGURES["fig1_filters_sm_cd"], quick)
    grid = len(quick.filters) * len(quick.kernel_sizes)
    assert len(fig1) == 3 * grid  # SM, CD and one random-init control per grid point
    assert all(p.layers == 1 for p in fig1)
    paper = reproduction.SCALES["paper"]["fashion_mnist"]
    fig3 = reproduction.sweep_points(FIGURES["fig3_hidden_layers"], paper)
    sm = [p for p in fig3 if p.model == "SM-DELVM"]
    assert [(p.size, p.kernel_size, p.layers) for p in sm] == [(70, 5, n) for n in (1, 2, 3, 4)]
    assert {(p.size, p.kernel_size) for p in fig3 if p.model == "random-init"} == {(70, 5), (80, 9), (20, 5)}
    assert len(paper.filters) == 8 and paper.kernel_sizes == (3, 5, 7, 9) and paper.epochs["cd"] == 100
    table = reproduction.sweep_points(FIGURES["table1_cifar_anomaly"], reproduction.SCALES["paper"]["cifar10_anomaly"])
    assert [(p.model, p.size, p.kernel_size, p.layers) for p in table] == [
        ("SM-DELVM", 70, 7, 1), ("CD-DELVM", 70, 3, 1), ("CAE", 50, 5, 1)]
    for bad, message in ((dict(sweep="depth"), "sweep"), (dict(dataset="mnist"), "dataset"),
                         (dict(visible_bias="median"), "visible_bias")):
        with pytest.raises(ValueError, match=f"Unknown {message}"):
            reproduction.Figure(**{**dict(name="x", title="x", dataset="ecg5000", sweep="units", models=("AE",)),
                                   **bad})


def test_model_factory_records_the_paper_settings():
    protocol = reproduction.SCALES["paper"]["fashion_mnist"]
    model, spec = reproduction.build_model("SM-DELVM", "image", 8, 3, 1, 0, protocol)
    assert (model.objective, model.estimator, spec["epochs"]) == ("sm", "exact", 10)
    model, spec = reproduction.build_model("SM-DELVM", "image", 8, 3, 3, 0, protocol)
    assert model.estimator == "sliced" and spec["learning_rates"] == [1e-3, 1e-4, 1e-5]
    model, spec = reproduction.build_model("CD-DELVM", "image", 8, 3, 1, 0, protocol)
    assert model.objective == "cd" and type(model.sampler).__name__ == "PaperSampler" and spec["epochs"] == 100
    model, spec = reproduction.build_model("CD-DEM", "image", 8, 3, 1, 0, protocol)
    assert type(model.sampler).__name__ == "LangevinSampler" and spec["hidden_units"] == reproduction.DEM_HIDDEN_UNITS
    ecg = reproduction.SCALES["paper"]["ecg5000"]
    model, spec = reproduction.build_model("CEBM", "ecg", 2048, None, 2, 0, ecg)
    assert spec["epochs"] == 50 and model.sampler.steps == 60
    _, spec = reproduction.build_model("AE", "ecg", 256, None, 1, 0, ecg)
    assert spec["epochs"] == 100 and spec["learning_rates"] == [1e-3]


def test_sigma_ablation_sweeps_sigma_at_the_best_setting(tmp_path):
    figure = FIGURES["ablation_sigma_fmnist"]
    quick = reproduction.SCALES["quick"]["fashion_mnist"]
    points = reproduction.sweep_points(figure, quick)
    assert [(p.model, p.size, p.kernel_size, p.sigma) for p in points] == [
        *(("SM-DELVM", 70, 5, s) for s in quick.sigmas), ("random-init", 70, 5, None)]
    assert 1.0 in quick.sigmas
    model, spec = reproduction.build_model("SM-DELVM", "image", 8, 3, 1, 0, quick, sigma=0.25)
    assert model.sigma == 0.25 and spec["sigma"] == 0.25
    assert reproduction.csv_columns("probe", "sigma")[-1] == "sigma"
    assert "sigma" not in reproduction.csv_columns("probe", "filters")
    # The sigma column identifies a point only where the figure has one.
    assert reproduction.row_key({"model": "AE", "sigma": ""}) == reproduction.row_key({"model": "AE"})
    assert reproduction.row_key({"model": "AE", "sigma": "0.5"}) != reproduction.row_key({"model": "AE"})
    _require(figure)
    _run(figure, tmp_path)
    meta = json.loads((tmp_path / f"{figure.name}.json").read_text())
    spectrum = meta["references"]["smoke"]["patch_covariance"]["5"]
    assert spectrum["dimension"] == 25 and spectrum["eigenvalues"] == sorted(spectrum["eigenvalues"], reverse=True)
    ranks = [p["details"]["first_layer_filter_effective_rank"] for p in meta["points"].values()]
    assert all(1.0 <= r <= 8.0 for r in ranks)  # 8 filters (smoke cap)


@pytest.mark.parametrize("name", ["ablation_sigma_ecg", "ablation_sigma_ecg_mean_bias"])
def test_ecg_sigma_ablation_records_the_data_spectrum_and_ranks(name, tmp_path):
    figure = FIGURES[name]
    quick = reproduction.SCALES["quick"]["ecg5000"]
    assert [(p.model, p.size, p.kernel_size, p.sigma) for p in reproduction.sweep_points(figure, quick)] == [
        ("SM-DELVM", 2048, None, s) for s in reproduction.ECG_SIGMAS]
    assert 1.0 in reproduction.ECG_SIGMAS
    _require(figure)
    _run(figure, tmp_path)
    meta = json.loads((tmp_path / f"{figure.name}.json").read_text())
    references = meta["references"]["smoke"]
    assert references["data_covariance"]["dimension"] == 140 and "mean-template" in references
    assert meta["scales"]["smoke"]["settings"]["visible_bias_init"] == figure.visible_bias
    _, rows = _rows(tmp_path / f"{figure.name}.csv")
    assert [float(r["sigma"]) for r in rows] == [0.5] and float(rows[0]["f1"]) >= 0
    (details,) = [p["details"] for p in meta["points"].values()]
    assert 1.0 <= details["first_layer_filter_effective_rank"] <= 140
    # b from the training mean stays near it after one short epoch; from 0 it stays far from it.
    distance = details["norm_b_minus_train_mean_over_norm_train_mean"]
    assert distance < 0.1 if figure.visible_bias == "data_mean" else distance > 0.5


def test_smaller_sweeps_take_random_prefixes_of_the_subsets():
    # The same sets as a plain seeded subset ...
    subset, order = reproduction._subset_in_order(1000, 200, np.random.default_rng(0))
    np.testing.assert_array_equal(subset, np.sort(np.random.default_rng(0).permutation(1000)[:200]))
    np.testing.assert_array_equal(np.sort(order), np.arange(200))
    # ... but a smaller sweep's first n are random members, not the lowest indices: in a file sorted
    # by class (the CIFAR-10 tar) the lowest indices hold one or two classes.
    labels = np.repeat(np.arange(10), 100)
    data = reproduction.Data(x_train=labels[subset], info={}, source="", lossy=False, orders={"train": order})
    assert len(np.unique(data.x_train[data.first("train", 40)])) >= 8
    assert len(np.unique(data.x_train[:40])) <= 2
    assert data.first("train", None) == slice(0, 200) and data.first("train", 500) == slice(0, 200)
    unordered = reproduction.Data(x_train=labels, info={}, source="", lossy=False)
    assert unordered.first("train", 30) == slice(0, 30)  # no order: file order, said in the metadata


def test_data_covariance_eigenvalues_match_numpy(rng):
    x = rng.normal(size=(50, 4, 3)) * np.arange(1, 13).reshape(4, 3)
    result = reproduction.data_covariance_eigenvalues(x, top=5)
    expected = np.linalg.eigvalsh(np.cov(x.reshape(50, -1), rowvar=False))[::-1][:5]
    np.testing.assert_allclose(result["eigenvalues"], expected, rtol=1e-12)
    assert (result["dimension"], result["n_samples"]) == (12, 50)


def test_patch_covariance_eigenvalues_match_numpy(rng):
    x = rng.normal(size=(130, 6, 7, 2))
    result = reproduction.patch_covariance_eigenvalues(x, 3, top=100)
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = np.array([padded[n, i:i + 3, j:j + 3, :].ravel() for n in range(130) for i in range(6) for j in range(7)])
    expected = np.linalg.eigvalsh(np.cov(patches, rowvar=False))[::-1]
    np.testing.assert_allclose(result["eigenvalues"], expected, atol=1e-10)
    assert result["dimension"] == 18


def test_filter_effective_rank():
    from delvm_tf import DELVM, networks

    model = DELVM(networks.dense([3]), seed=0)
    model.build((None, 5))
    kernel = model.encoder.layers[-1].kernel
    kernel.assign(np.outer(np.arange(1.0, 6.0), [1.0, 2.0, -1.0]).astype("float32"))  # rank 1
    assert abs(reproduction.filter_effective_rank(model) - 1.0) < 1e-6
    kernel.assign(np.eye(5, 3, dtype="float32"))  # three orthonormal filters
    assert abs(reproduction.filter_effective_rank(model) - 3.0) < 1e-6


def test_uncommitted_paths_keep_their_first_character_and_skip_results():
    porcelain = " M delvm_tf/models.py\n?? notes.txt\n M results/fig3/fig3.csv\nR  a.py -> b.py"
    assert reproduction.uncommitted_outside_results(porcelain) == ["delvm_tf/models.py", "notes.txt", "a.py -> b.py"]
    assert reproduction.uncommitted_outside_results("") == []


def test_eta_fits_overhead_plus_cost():
    # Points cost a + b·cost seconds: the fit recovers them exactly from two distinct costs.
    a, b = 2.0, 0.5
    finished = [(c, a + b * c) for c in (1.0, 10.0, 3.0)]
    assert reproduction.eta_seconds(finished, [4.0, 100.0]) == pytest.approx(2 * a + b * 104.0)
    # One finished point (or equal costs): the smaller of the per-point and per-cost predictions,
    # so cheap first points with a large overhead do not predict hours for a sweep of minutes.
    assert reproduction.eta_seconds([(1.0, 2.0)], [1000.0, 1000.0]) == pytest.approx(4.0)
    assert reproduction.eta_seconds([(10.0, 2.0)], [1.0]) == pytest.approx(0.2)
    # Slopes are kept non-negative; nothing left or nothing finished gives 0.
    assert reproduction.eta_seconds([(1.0, 5.0), (2.0, 4.0)], [3.0]) == pytest.approx(4.5)
    assert reproduction.eta_seconds([(1.0, 1.0)], []) == 0.0
    assert reproduction.eta_seconds([], [1.0]) == 0.0
