"""The one experiment runner behind ``reproduce/*.py`` (the paper's Figures 1–9 and Table 1).

A figure is *data*: a :class:`Figure` names the dataset, the models and the kind of sweep;
a scale (:data:`SCALES`: ``smoke``, ``quick``, ``paper``) fixes, per dataset, the subsets,
epochs, probe settings and the grid. Everything else lives here, once:

- :func:`sweep_points` turns a figure and a scale into the list of points to train;
- :func:`build_model` builds any named model (``SM-DELVM``, ``CD-DELVM``, ``SM-DEM``,
  ``CD-DEM``, ``CEBM``, ``AE``, ``CAE``, ``random-init``) with the paper's hyper-parameters;
- :func:`run` trains and evaluates every point (linear probe or anomaly detection), appends
  one CSV row per finished point (so ``resume=True`` continues an interrupted sweep and
  loses nothing), keeps the JSON metadata up to date, prints a progress line with an ETA,
  and finally plots the figure in the paper's layout;
- :func:`run_cli` is the absl command line used by every script.

Besides the paper's figures, the ``"sigma"`` sweep is an ablation (not in the paper): one
model at its best single-layer setting for a range of the data scale σ (paper: 1), with
the effective rank of the learned filters and the number of k×k patch-covariance
eigenvalues above σ², which bounds it (SPEC §1.1: DELVM only widens its N(b, σ²I) base).

A reproduce script is a config plus one call::

    FIGURE = reproduction.Figure(name="fig3_hidden_layers", title="Fig. 3 ...",
                                 dataset="fashion_mnist", sweep="layers",
                                 models=("SM-DELVM", "CD-DELVM", "SM-DEM", "CD-DEM", "CEBM"))
    if __name__ == "__main__":
        reproduction.run_cli(FIGURE)

Outputs in ``output_dir`` (default ``results/<figure>/``): ``<figure>.csv`` (one row per
trained point, columns :func:`csv_columns`), ``<figure>.json`` (metadata: every run's flags,
versions, hardware, wall time, git commit, data checksums, preprocessing, σ, learning
rates, batch size, the subsets/thinning of the scale, per-point details and diagnostics)
and ``<figure>.png``.

Choices the paper does not state, made here and recorded in the metadata:

- per-layer learning rates, images: ``1e-3 × 0.1^i`` floored at ``1e-5`` (layer ``i`` from 0);
  ECG: ``1e-3`` for every layer;
- SM estimator: ``exact`` for single-layer DELVM (closed form); ``sliced`` (1 Rademacher
  projection, unbiased for the same objective) for deeper DELVM, whose exact trace costs D
  JVPs per sample, and for every conv DEM (its exact trace needs D Hessian-vector products);
- DEM: ``hidden_units = 128`` top units; CD-DEM uses Langevin CD-k from the data (ε = 0.01);
  CD-DEM and the CIFAR-10 DEMs use the F-MNIST SM-DEM setting (20, 5);
- CEBM: its own architecture (``cebm.default_encoder``, the first L layers), CEBM's SGLD
  (the number of steps depends on the scale), trained for the paper's CD epoch count;
- CD-DELVM: the paper sampler, k = 1.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import gc
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

# ----------------------------------------------------------------------------- constants
MODEL_NAMES = ("SM-DELVM", "CD-DELVM", "SM-DEM", "CD-DEM", "CEBM", "AE", "CAE", "random-init")
BASE_COLUMNS = ("figure", "dataset", "data_source", "model", "objective", "estimator", "filters_or_units",
                "kernel_size", "layers", "epochs", "train_size", "seed", "train_seconds")
PROBE_METRICS = ("accuracy",)
ANOMALY_METRICS = ("precision", "recall", "f1", "auroc", "auprc", "trivial_f1")
#: Columns after the metrics: the scale of the row (rows of several scales may share a CSV
#: with --resume) and, for anomaly rows, the threshold used.
EXTRA_COLUMNS = {"probe": ("scale",), "anomaly": ("scale", "threshold")}
#: The columns that identify a sweep point (resume skips rows whose key is in the CSV).
KEY_COLUMNS = ("model", "filters_or_units", "kernel_size", "layers", "epochs", "train_size", "seed", "scale",
               "sigma")
#: The extra column of the "sigma" ablation sweep (absent from the paper's figures).
SIGMA_COLUMN = "sigma"

BATCH_SIZE = 100            # SPEC §5
SIGMA = 1.0                 # SPEC §1.1 (paper: 1)
DEM_HIDDEN_UNITS = 128      # not stated by the paper
DEM_LANGEVIN_STEP_SIZE = 1e-2
IMAGE_LR_TOP, IMAGE_LR_DECAY, IMAGE_LR_FLOOR = 1e-3, 0.1, 1e-5
ECG_LR = 1e-3
PROBE_POOL = 2
PROBE_BATCH_SIZE = 256
PROBE_LEARNING_RATE = 1e-3
DIAGNOSTIC_SAMPLES = 1000

#: Best single-layer settings (SPEC §5), by dataset key and model: (filters, kernel) or units.
#: Entries marked ``chosen`` are not in the paper.
BEST = {
    "fashion_mnist": {"SM-DELVM": (70, 5), "CD-DELVM": (80, 9), "SM-DEM": (20, 5), "CD-DEM": (20, 5)},
    "cifar10": {"SM-DELVM": (80, 3), "CD-DELVM": (60, 7), "SM-DEM": (20, 5), "CD-DEM": (20, 5)},
    "cifar10_anomaly": {"SM-DELVM": (70, 7), "CD-DELVM": (70, 3), "CAE": (50, 5)},
    "ecg5000": {"SM-DELVM": (2048, None), "CD-DELVM": (512, None), "AE": (256, None)},
}
BEST_CHOSEN = {("fashion_mnist", "CD-DEM"): "paper states SM-DEM (20, 5) only; reused for CD-DEM",
               ("cifar10", "SM-DEM"): "paper states no CIFAR-10 DEM setting; F-MNIST SM-DEM (20, 5) reused",
               ("cifar10", "CD-DEM"): "paper states no CIFAR-10 DEM setting; F-MNIST SM-DEM (20, 5) reused"}

DATASET_KINDS = {"fashion_mnist": "image", "cifar10": "image", "cifar10_anomaly": "image", "ecg5000": "ecg"}
DATASET_LABELS = {"fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "cifar10_anomaly": "CIFAR-10 anomaly",
                  "ecg5000": "ECG5000"}
COLORS = {"SM-DELVM": "tab:blue", "CD-DELVM": "tab:orange", "SM-DEM": "tab:green", "CD-DEM": "tab:olive",
          "CEBM": "tab:purple", "AE": "tab:red", "CAE": "tab:red", "random-init": "0.5"}


def f1_from(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall)


# ----------------------------------------------------------------------------- configs
@dataclasses.dataclass(frozen=True)
class Figure:
    """One figure (or table) of the paper, as data.

    Args:
        name: file stem, e.g. ``"fig3_hidden_layers"`` (outputs ``<name>.csv/.json/.png``).
        title: the plot title (scale and data source are appended).
        dataset: ``"fashion_mnist"``, ``"cifar10"`` (probe figures), ``"ecg5000"`` or
            ``"cifar10_anomaly"`` (anomaly figures).
        sweep: ``"filters"`` (single layer, #filters × kernel size), ``"units"`` (single
            dense layer, #hidden units), ``"layers"`` (1–4 layers at each model's best
            single-layer setting), ``"best"`` (each model's best single layer; Table 1) or
            ``"sigma"`` (ablation: each model's best single layer for every σ of the scale's
            ``sigmas``).
        models: the models compared (names of :data:`MODEL_NAMES`). Probe figures add a
            ``random-init`` control row for every architecture point.
        paper: the paper's stated numbers to overlay, ``{model: {"x": ..., metric: value}}``
            (metrics in percent).
        claims: the paper's claims about this figure, for the report.
        visible_bias: where DELVM/DEM's base centre ``b`` starts: ``"zeros"`` (the paper) or
            ``"data_mean"`` (the training mean, :meth:`EnergyModel.initialize_visible_bias`).
    """

    name: str
    title: str
    dataset: str
    sweep: str
    models: tuple
    paper: dict = dataclasses.field(default_factory=dict)
    claims: tuple = ()
    visible_bias: str = "zeros"

    def __post_init__(self):
        if self.dataset not in DATASET_KINDS:
            raise ValueError(f"Unknown dataset {self.dataset!r}; use one of {sorted(DATASET_KINDS)}.")
        if self.sweep not in ("filters", "units", "layers", "best", "sigma"):
            raise ValueError(f"Unknown sweep {self.sweep!r}.")
        if self.visible_bias not in ("zeros", "data_mean"):
            raise ValueError(f"Unknown visible_bias {self.visible_bias!r}; use 'zeros' or 'data_mean'.")
        bad = [m for m in self.models if m not in MODEL_NAMES or m == "random-init"]
        if bad:
            raise ValueError(f"Unknown models {bad}; use names of {MODEL_NAMES[:-1]}.")

    @property
    def task(self) -> str:
        return "anomaly" if self.dataset in ("ecg5000", "cifar10_anomaly") else "probe"

    @property
    def kind(self) -> str:
        return DATASET_KINDS[self.dataset]


@dataclasses.dataclass(frozen=True)
class Protocol:
    """What a scale means for one dataset (recorded in the metadata as is)."""

    train_size: Optional[int]          # samples the models train on (None: all)
    epochs: dict                        # {"sm", "cd", "ae", "cebm"} -> epochs
    filters: tuple = ()
    kernel_sizes: tuple = ()
    units: tuple = ()
    layers: tuple = (1, 2, 3, 4)
    layers_train_size: Optional[int] = None   # train_size of the "layers" sweep (None: train_size)
    layers_epochs: Optional[dict] = None      # epochs of the "layers" sweep (None: epochs)
    probe_train: Optional[int] = None         # probe classifier's train subset (None: all)
    probe_test: Optional[int] = None          # probe test subset (None: all)
    probe_epochs: int = 10
    layers_probe: Optional[tuple] = None      # (probe_train, probe_test, probe_epochs) of the "layers" sweep
    sgld_steps: int = 60                      # CEBM's SGLD steps
    langevin_steps: int = 20                  # CD-DEM's Langevin steps
    val_fraction: float = 1.0                 # CIFAR anomaly: stratified share of the validation set
    test_fraction: float = 1.0                # CIFAR anomaly: stratified share of the test set
    max_filters: Optional[int] = None         # cap on conv filters (smoke only: keeps CI fast)
    sigmas: tuple = (2.0, 1.0, 0.5, 0.25, 0.125)  # the σ of the "sigma" ablation sweep
    notes: str = ""

    def sweep_train_size(self, sweep):
        return self.layers_train_size if sweep == "layers" and self.layers_train_size else self.train_size

    def sweep_probe(self, sweep) -> tuple:
        """(probe train size or None, probe test size or None, probe epochs) of a sweep."""
        if sweep == "layers" and self.layers_probe:
            return self.layers_probe
        return self.probe_train, self.probe_test, self.probe_epochs

    def sweep_epochs(self, sweep):
        return self.layers_epochs if sweep == "layers" and self.layers_epochs else self.epochs


#: σ of the ECG ablation: min–max scaled ECG5000 varies ≈ 0.0015 per dimension, and its largest
#: covariance eigenvalue is ≈ 0.07, so σ = 1 leaves no direction above σ²; σ = 1/64 leaves 24.
ECG_SIGMAS = (1.0, 0.25, 0.125, 0.0625, 0.03125, 0.015625)
_PAPER_IMAGE = dict(train_size=None, epochs={"sm": 10, "cd": 100, "ae": 100, "cebm": 100},
                    filters=tuple(range(10, 81, 10)), kernel_sizes=(3, 5, 7, 9), layers=(1, 2, 3, 4),
                    probe_epochs=10, sgld_steps=60, langevin_steps=20)
_QUICK_IMAGE = dict(epochs={"sm": 2, "cd": 3, "ae": 3, "cebm": 1},
                    filters=(10, 40, 80), kernel_sizes=(3, 5, 9), layers=(1, 2, 3),
                    layers_train_size=4000, layers_epochs={"sm": 1, "cd": 1, "ae": 1, "cebm": 1},
                    probe_train=10000, probe_test=2000, probe_epochs=3, layers_probe=(3000, 2000, 2),
                    sgld_steps=20, langevin_steps=5)
_SMOKE = dict(epochs={"sm": 1, "cd": 1, "ae": 1, "cebm": 1}, filters=(4,), kernel_sizes=(3,), units=(4,),
              layers=(2,), probe_train=200, probe_test=100, probe_epochs=1, sgld_steps=2, langevin_steps=1,
              max_filters=8, sigmas=(0.5,),
              notes="smoke: a few hundred samples, 1 epoch, one grid point, conv filters capped at 8 (CEBM "
                    "keeps its architecture); checks the pipeline only")

#: ``SCALES[scale][dataset]``: the protocol of every dataset at every scale.
SCALES = {
    "paper": {
        "fashion_mnist": Protocol(**_PAPER_IMAGE, notes="the paper's protocol (SPEC §5): full data"),
        "cifar10": Protocol(**_PAPER_IMAGE, notes="the paper's protocol (SPEC §5): full data"),
        "cifar10_anomaly": Protocol(**{**_PAPER_IMAGE, "probe_epochs": 0},
                                    notes="the paper's protocol: all 4223 normal training images, full "
                                          "validation and test sets"),
        "ecg5000": Protocol(train_size=None, epochs={"sm": 10, "cd": 100, "ae": 100, "cebm": 50},
                            units=tuple(2 ** i for i in range(4, 12)), layers=(1, 2, 3, 4), sgld_steps=60,
                            sigmas=ECG_SIGMAS,
                            notes="the paper's protocol (SPEC §5); units 16..2048 (powers of two)"),
    },
    "quick": {
        "fashion_mnist": Protocol(
            train_size=10000, **_QUICK_IMAGE,
            notes="quick: models train on a seeded 10k-image subset, SM 2 / CD 3 epochs; filters thinned to 10, "
                  "40, 80, kernel sizes to 3, 5, 9; probe on 10k train / 2k test images for 3 epochs. Layers "
                  "sweep: layers 1, 2, 3 (4 dropped: a 4x(80,9) conv stack costs ~1.2 GMAC per image, too slow "
                  "on 2 CPU cores), 4k training images for 1 epoch (40 steps: lightly trained), probe on 3k / "
                  "2k images for 2 epochs. CEBM SGLD 20 steps, CD-DEM Langevin 5 steps"),
        "cifar10": Protocol(
            train_size=5000, **_QUICK_IMAGE,
            notes="quick: models train on a seeded 5k-image subset, SM 2 / CD 3 epochs; filters thinned to 10, "
                  "40, 80, kernel sizes to 3, 5, 9; probe on 10k train / 2k test images for 3 epochs. Layers "
                  "sweep: layers 1, 2, 3 (4 dropped for CPU time), 4k training images for 1 epoch (40 steps: "
                  "lightly trained), probe on 3k / 2k images for 2 epochs. CEBM SGLD 20 steps, CD-DEM Langevin "
                  "5 steps"),
        "cifar10_anomaly": Protocol(
            train_size=None, epochs={"sm": 3, "cd": 5, "ae": 5, "cebm": 1}, layers=(1, 2, 4),
            layers_train_size=2000, layers_epochs={"sm": 1, "cd": 1, "ae": 2, "cebm": 1},
            val_fraction=0.25, test_fraction=0.3, sgld_steps=20, probe_epochs=0,
            notes="quick: single-layer models on all 4223 normal images, SM 3 / CD 5 / CAE 5 epochs; the layers "
                  "sweep on 2000 normal images, 1 epoch (CAE 2), layers 1, 2, 4; a stratified 25% of the "
                  "validation set and 30% of the test set (normal:abnormal ratio kept); CEBM SGLD 20 steps"),
        "ecg5000": Protocol(
            train_size=None, epochs={"sm": 10, "cd": 30, "ae": 30, "cebm": 10},
            units=(16, 64, 256, 512, 2048), layers=(1, 2, 3, 4), sgld_steps=20, sigmas=ECG_SIGMAS,
            notes="quick: the paper's data and SM epochs; CD-DELVM and AE 30 epochs (paper 100), CEBM 10 "
                  "epochs (paper 50) with 20 SGLD steps; units thinned to 16, 64, 256, 512, 2048"),
    },
    "smoke": {
        "fashion_mnist": Protocol(train_size=200, **_SMOKE),
        "cifar10": Protocol(train_size=200, **_SMOKE),
        "cifar10_anomaly": Protocol(train_size=200, val_fraction=0.03, test_fraction=0.05, **_SMOKE),
        "ecg5000": Protocol(train_size=200, **_SMOKE),
    },
}


@dataclasses.dataclass(frozen=True)
class Point:
    """One sweep point: a model at one architecture setting (and σ, in the "sigma" ablation)."""

    model: str
    size: int                      # filters (conv) or units (dense); for CEBM its first layer's
    kernel_size: Optional[int]
    layers: int
    sigma: Optional[float] = None  # None: the paper's σ (SIGMA)

    def label(self) -> str:
        k = f" k={self.kernel_size}" if self.kernel_size else ""
        s = f" σ={self.sigma:g}" if self.sigma is not None else ""
        return f"{self.model} {'f' if self.kernel_size else 'u'}={self.size}{k} L={self.layers}{s}"


def sweep_points(figure: Figure, protocol: Protocol, models: Optional[Sequence[str]] = None) -> list[Point]:
    """The points of ``figure`` at ``protocol``: trained models first (in the figure's
    order, per model by grid), then the ``random-init`` controls of probe figures."""
    chosen = [m for m in figure.models if models is None or m in models]
    want_control = figure.task == "probe" and (models is None or "random-init" in models)
    points = []
    for model in chosen:
        if figure.sweep == "filters":
            points += [Point(model, f, k, 1) for k in protocol.kernel_sizes for f in protocol.filters]
        elif figure.sweep == "units":
            points += [Point(model, u, None, 1) for u in protocol.units]
        else:
            size, kernel = _best_setting(figure.dataset, model)
            if protocol.max_filters and kernel and model != "CEBM":
                size = min(size, protocol.max_filters)
            if figure.sweep == "sigma":
                points += [Point(model, size, kernel, 1, float(s)) for s in protocol.sigmas]
                continue
            layers = protocol.layers if figure.sweep == "layers" else (1,)
            points += [Point(model, size, kernel, n) for n in layers]
    if want_control:
        seen = set()
        for p in list(points):
            if p.model == "CEBM":
                continue  # CEBM's own architecture (strided, SiLU) has no DELVM-style control
            arch = (p.size, p.kernel_size, p.layers)  # features of an untrained model do not depend on σ
            if arch not in seen:
                seen.add(arch)
                points.append(Point("random-init", *arch))
    return points


def _best_setting(dataset: str, model: str):
    if model == "CEBM":
        from delvm_tf import cebm
        return (cebm.IMAGE_FILTERS[0], cebm.IMAGE_KERNEL_SIZES[0]) if DATASET_KINDS[dataset] == "image" \
            else (cebm.ECG_UNITS, None)
    try:
        return BEST[dataset][model]
    except KeyError:
        raise ValueError(f"No best single-layer setting for {model} on {dataset}.") from None


# ----------------------------------------------------------------------------- models
def learning_rates(kind: str, layers: int) -> list[float]:
    """Per-layer Adam learning rates (images: 1e-3 × 0.1^i floored at 1e-5; ECG: 1e-3)."""
    if kind == "ecg":
        return [ECG_LR] * layers
    return [float(f"{max(IMAGE_LR_TOP * IMAGE_LR_DECAY ** i, IMAGE_LR_FLOOR):.3g}") for i in range(layers)]


def build_model(name: str, kind: str, size: int, kernel_size: Optional[int], layers: int, seed: int,
                protocol: Protocol, epochs: Optional[dict] = None, sigma: Optional[float] = None):
    """Build, compile (where trained) and describe one named model.

    ``sigma`` is the data scale σ of DELVM/DEM (default :data:`SIGMA`, the paper's 1).
    Returns ``(model, spec)``; ``spec`` holds ``objective``, ``estimator`` (for CD: the
    sampler), ``epochs``, ``learning_rates`` and any other setting worth recording.
    """
    import delvm_tf
    from delvm_tf import cebm, networks, samplers

    epochs = epochs or protocol.epochs
    sigma = SIGMA if sigma is None else float(sigma)

    def encoder():
        if kind == "image":
            return networks.conv([size] * layers, [kernel_size] * layers, seed=seed)
        return networks.dense([size] * layers, seed=seed)

    spec = {"sigma": sigma, "batch_size": BATCH_SIZE}
    if name == "SM-DELVM":
        estimator = "exact" if layers == 1 else "sliced"
        model = delvm_tf.DELVM(encoder(), objective="sm", estimator=estimator, n_projections=1, sigma=sigma,
                               seed=seed)
        spec.update(objective="sm", estimator=estimator, epochs=epochs["sm"],
                    n_projections=1 if estimator == "sliced" else None)
    elif name == "CD-DELVM":
        model = delvm_tf.DELVM(encoder(), objective="cd", sampler=samplers.PaperSampler(steps=1), sigma=sigma,
                               seed=seed)
        spec.update(objective="cd", estimator="paper k=1", epochs=epochs["cd"])
    elif name in ("SM-DEM", "CD-DEM"):
        if name == "SM-DEM":
            estimator = "exact" if kind == "ecg" and layers == 1 else "sliced"
            model = delvm_tf.DEM(encoder(), hidden_units=DEM_HIDDEN_UNITS, objective="sm", estimator=estimator,
                                 sigma=sigma, seed=seed)
            spec.update(objective="sm", estimator=estimator, epochs=epochs["sm"])
        else:
            sampler = samplers.LangevinSampler(steps=protocol.langevin_steps, step_size=DEM_LANGEVIN_STEP_SIZE)
            model = delvm_tf.DEM(encoder(), hidden_units=DEM_HIDDEN_UNITS, objective="cd", sampler=sampler,
                                 sigma=sigma, seed=seed)
            spec.update(objective="cd", estimator=f"langevin k={protocol.langevin_steps}", epochs=epochs["cd"],
                        langevin_step_size=DEM_LANGEVIN_STEP_SIZE)
        spec["hidden_units"] = DEM_HIDDEN_UNITS
    elif name == "CEBM":
        enc = cebm.default_encoder("image" if kind == "image" else "ecg", n_layers=layers, seed=seed)
        model = delvm_tf.CEBM(enc, sampler=cebm.sgld_sampler(steps=protocol.sgld_steps), seed=seed)
        spec.update(objective="cd", estimator=f"sgld-pcd k={protocol.sgld_steps}", epochs=epochs["cebm"],
                    architecture="cebm.default_encoder (first L layers)", latent_dim=model.latent_dim,
                    energy_regularization=model.energy_regularization, data_noise_std=model.data_noise_std)
    elif name in ("AE", "CAE"):
        model = delvm_tf.AutoEncoder(encoder(), seed=seed)
        spec.update(objective="mse", estimator="", epochs=epochs["ae"], decoder="mirrored")
    elif name == "random-init":
        model = delvm_tf.DELVM(encoder(), objective="sm", sigma=sigma, seed=seed)
        spec.update(objective="", estimator="", epochs=0, note="the untrained DELVM architecture (the trained "
                    "DELVMs' initial weights: same seed)")
        return model, spec
    else:
        raise ValueError(f"Unknown model {name!r}; use one of {MODEL_NAMES}.")
    n_weighted = len(delvm_tf.optimizers.parametric_layers(model.encoder))
    rates = learning_rates(kind, n_weighted)
    model.compile(optimizer=delvm_tf.layerwise_adam(model, rates))
    spec["learning_rates"] = rates
    return model, spec


# ----------------------------------------------------------------------------- data
@dataclasses.dataclass
class Data:
    """The arrays of one figure's run and their provenance."""

    x_train: np.ndarray                  # what the models train on (the largest subset needed)
    info: dict                           # DatasetInfo / split info, JSON-friendly
    source: str
    lossy: bool
    x_probe: Optional[np.ndarray] = None
    y_probe: Optional[np.ndarray] = None
    x_test: Optional[np.ndarray] = None
    y_test: Optional[np.ndarray] = None
    x_val: Optional[np.ndarray] = None
    y_val: Optional[np.ndarray] = None
    subsets: dict = dataclasses.field(default_factory=dict)
    orders: dict = dataclasses.field(default_factory=dict)  # "train"/"probe"/"test" -> positions, seeded order

    def first(self, name: str, n: Optional[int]):
        """An index of the first ``n`` samples of ``x_<name>`` (``"train"``, ``"probe"``,
        ``"test"``) in its seeded random order (sorted positions), or in stored order (a slice)
        where it has none: a random subset, not the lowest indices of a file sorted by class."""
        size = len(getattr(self, f"x_{name}"))
        order = self.orders.get(name)
        if n is None or n >= size or order is None:
            return slice(0, size if n is None else min(n, size))
        return np.sort(order[:n])


def default_data_dir() -> Optional[str]:
    """``$DELVM_DATA_DIR``, else ``../shared/data`` beside the repository if it exists, else None."""
    if os.environ.get("DELVM_DATA_DIR"):
        return None  # delvm_tf.datasets reads the variable itself
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    return str(shared) if shared.is_dir() else None


def _subset(n_total: int, n: Optional[int], rng) -> np.ndarray:
    return _subset_in_order(n_total, n, rng)[0]


def _subset_in_order(n_total: int, n: Optional[int], rng) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """A seeded random subset of ``n`` of ``range(n_total)``, sorted, and the positions of its
    members in their random order (None when the subset is everything)."""
    if n is None or n >= n_total:
        return np.arange(n_total), None
    chosen = rng.permutation(n_total)[:n]
    subset = np.sort(chosen)
    return subset, np.searchsorted(subset, chosen)


def _stratified(y: np.ndarray, fraction: float, rng) -> np.ndarray:
    if fraction >= 1.0:
        return np.arange(len(y))
    keep = []
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        keep.append(np.sort(rng.permutation(idx)[:max(1, int(round(fraction * len(idx))))]))
    return np.concatenate(keep)


def _digest(indices: np.ndarray) -> str:
    import hashlib
    return hashlib.sha256(np.ascontiguousarray(indices, dtype=np.int64).tobytes()).hexdigest()[:16]


def load_data(figure: Figure, protocol: Protocol, data_dir, seed: int) -> Data:
    """Load and subset the figure's data (subsets seeded by ``seed``; digests recorded)."""
    from delvm_tf import datasets

    rng = np.random.default_rng(seed)
    train_n = max(protocol.sweep_train_size(figure.sweep) or 0, protocol.train_size or 0) or None
    if figure.dataset in ("fashion_mnist", "cifar10"):
        (x_train, y_train), (x_test, y_test), info = _load(datasets, figure.dataset, data_dir)
        order = rng.permutation(len(x_train))
        train_idx = np.sort(order[:train_n]) if train_n else np.arange(len(x_train))
        probe_idx = np.sort(order[:protocol.probe_train]) if protocol.probe_train else np.arange(len(x_train))
        test_idx, test_order = _subset_in_order(len(x_test), protocol.probe_test, rng)
        orders = {"train": np.searchsorted(train_idx, order[:len(train_idx)]),
                  "probe": np.searchsorted(probe_idx, order[:len(probe_idx)]), "test": test_order}
        subsets = {"train": _describe_subset(train_idx, len(x_train)), "probe_train": _describe_subset(
            probe_idx, len(x_train)), "probe_test": _describe_subset(test_idx, len(x_test)),
            "rule": "seeded permutation of the train split: models train on its first train_size images "
                    "(the layers sweep on its first layers_train_size), the probe on its first probe_train "
                    "(the layers sweep's probe on the first of those); a seeded random test subset, likewise"}
        return Data(x_train[train_idx], info.to_dict(), info.source, info.lossy, x_probe=x_train[probe_idx],
                    y_probe=y_train[probe_idx], x_test=x_test[test_idx], y_test=y_test[test_idx], subsets=subsets,
                    orders=orders)
    if figure.dataset == "ecg5000":
        split = _cached(("ecg", seed, str(data_dir)), lambda: datasets.ecg5000_anomaly_split(seed=seed,
                                                                                            data_dir=data_dir))
        train_idx = _subset(len(split.x_train), train_n, rng)
        info = dict(split.info)
        subsets = {"train": _describe_subset(train_idx, len(split.x_train)), "test": "all"}
        return Data(split.x_train[train_idx], info, info["source"], bool(info["lossy"]), x_test=split.x_test,
                    y_test=split.y_test, subsets=subsets)
    split = _cached(("cifar_anomaly", seed, str(data_dir)),
                    lambda: datasets.cifar10_anomaly_split(seed=seed, normal_class=0, data_dir=data_dir))
    train_idx = _subset(len(split.x_train), train_n, rng)
    val_idx = _stratified(split.y_val, protocol.val_fraction, rng)
    test_idx = _stratified(split.y_test, protocol.test_fraction, rng)
    info = {k: v for k, v in split.info.items()}
    subsets = {"train": _describe_subset(train_idx, len(split.x_train)),
               "val": _describe_subset(val_idx, len(split.y_val)) | {
                   "normal": int(np.sum(split.y_val[val_idx] == 0)), "abnormal": int(np.sum(split.y_val[val_idx]))},
               "test": _describe_subset(test_idx, len(split.y_test)) | {
                   "normal": int(np.sum(split.y_test[test_idx] == 0)),
                   "abnormal": int(np.sum(split.y_test[test_idx]))},
               "rule": "seeded subset of the normal training images (a layers sweep with fewer images takes "
                       "the first ones in file order, all of the normal class); stratified seeded subsets of "
                       "the validation and test sets (class ratio kept)"}
    return Data(split.x_train[train_idx], info, info["source"], bool(info["lossy"]), x_test=split.x_test[test_idx],
                y_test=split.y_test[test_idx], x_val=split.x_val[val_idx], y_val=split.y_val[val_idx],
                subsets=subsets)


_DATA_CACHE: dict = {}  # (loader, args) -> result: reused by the figures of one process (all.py, tests)


def _cached(key, fn):
    if key not in _DATA_CACHE:
        if len(_DATA_CACHE) >= 2:  # bound the memory: keep at most two datasets
            _DATA_CACHE.pop(next(iter(_DATA_CACHE)))
        _DATA_CACHE[key] = fn()
    return _DATA_CACHE[key]


def _load(datasets, name, data_dir):
    def load():
        (train, test), info = datasets.load(name, data_dir=data_dir, return_info=True)
        return train, test, info
    return _cached(("load", name, str(data_dir)), load)


def _describe_subset(idx: np.ndarray, total: int) -> dict:
    return {"n": int(len(idx)), "of": int(total), "indices_sha256_16": _digest(idx)}


# ----------------------------------------------------------------------------- evaluation
def probe_point(model, data: Data, protocol: Protocol, seed: int, sweep: str) -> tuple[dict, dict]:
    from delvm_tf import probe

    n_train, n_test, epochs = protocol.sweep_probe(sweep)
    train_idx, test_idx = data.first("probe", n_train), data.first("test", n_test)
    train = (data.x_probe[train_idx], data.y_probe[train_idx])
    test = (data.x_test[test_idx], data.y_test[test_idx])
    result = probe.linear_probe(model, train, test, pool=PROBE_POOL,
                                epochs=epochs, batch_size=PROBE_BATCH_SIZE,
                                learning_rate=PROBE_LEARNING_RATE, seed=seed)
    details = {k: v for k, v in result.to_dict().items() if k not in ("control", "control_accuracy")}
    details["first_layer_filter_effective_rank"] = filter_effective_rank(model)
    return {"accuracy": result.accuracy}, details


def filter_effective_rank(model) -> Optional[float]:
    """Effective rank ``(Σ s_i)² / Σ s_i²`` of the first weighted encoder layer's kernel,
    reshaped to (fan-in, filters), from its singular values ``s``: how many distinct
    directions the filters span (1 when they are all parallel)."""
    from delvm_tf import optimizers

    layers = optimizers.parametric_layers(model.encoder)
    if not layers or not hasattr(layers[0], "kernel"):
        return None
    kernel = np.asarray(layers[0].kernel, dtype=np.float64)
    singular_values = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)
    total = float(np.sum(singular_values ** 2))
    return float(np.sum(singular_values) ** 2 / total) if total > 0 else 0.0


def patch_covariance_eigenvalues(x: np.ndarray, kernel_size: int, n_images: int = 2000, top: int = 64) -> dict:
    """Eigenvalues (descending, the largest ``top``) of the covariance of all k×k×C patches
    (zero-padded, as the "same" convolutions see them) of the first ``n_images`` images.

    A single-layer DELVM's precision is ``I/σ² − W_Aᵀ W_A`` on each linear region, so it can
    only fit patch directions whose variance exceeds σ²: the count of eigenvalues above σ²
    bounds the number of useful filter directions (SPEC §1.1)."""
    x = x[:n_images]
    pad, dim = kernel_size // 2, x.shape[-1] * kernel_size ** 2
    total, outer, count = np.zeros(dim), np.zeros((dim, dim)), 0
    for start in range(0, len(x), 100):  # chunks bound the memory of the patch matrix
        chunk = np.pad(np.asarray(x[start:start + 100], np.float64), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        windows = np.lib.stride_tricks.sliding_window_view(chunk, (kernel_size, kernel_size), axis=(1, 2))
        patches = windows[:, :x.shape[1], :x.shape[2]].reshape(-1, dim)
        total += patches.sum(axis=0)
        outer += patches.T @ patches
        count += len(patches)
    mean = total / count
    covariance = (outer - count * np.outer(mean, mean)) / (count - 1)
    eigenvalues = np.linalg.eigvalsh(covariance)[::-1]
    return {"eigenvalues": [float(v) for v in eigenvalues[:top]], "dimension": int(dim),
            "n_images": int(len(x)), "padding": "zeros (same)"}


def data_covariance_eigenvalues(x: np.ndarray, top: int = 64) -> dict:
    """Eigenvalues (descending, the largest ``top``) of the covariance of the flattened
    samples: a dense single-layer DELVM can fit only the directions whose variance exceeds σ²."""
    flat = np.asarray(x, np.float64).reshape(len(x), -1)
    eigenvalues = np.linalg.eigvalsh(np.cov(flat, rowvar=False))[::-1]
    return {"eigenvalues": [float(v) for v in eigenvalues[:top]], "dimension": int(flat.shape[1]),
            "n_samples": int(len(flat))}


def threshold_rule(dataset: str) -> str:
    return "mean_std" if dataset == "ecg5000" else "best_f1"


def _fit_threshold(dataset: str, data: Data, x_train_scores=None, val_scores=None) -> float:
    """The figure's threshold rule applied to given scores (mean + std, or best F1 on validation)."""
    from delvm_tf import anomaly

    if dataset == "ecg5000":
        return float(np.mean(x_train_scores) + np.std(x_train_scores))
    return anomaly.best_f1_threshold(data.y_val, val_scores)


def anomaly_references(dataset: str, data: Data) -> dict:
    """Reference rules needing no training: the trivial rule and the mean template."""
    from delvm_tf import anomaly

    mean = data.x_train.mean(axis=0, dtype=np.float64).astype(np.float32)

    def template(x):
        return np.sum(np.square((x - mean).reshape(len(x), -1), dtype=np.float64), axis=1)

    train_scores = template(data.x_train)
    val_scores = template(data.x_val) if data.x_val is not None else None
    threshold = _fit_threshold(dataset, data, train_scores, val_scores)
    metrics = anomaly.evaluate(data.y_test, template(data.x_test), threshold)
    trivial = float(metrics["trivial_f1"])
    return {"mean-template": {**metrics, "description": "RE = ||x - mean(train)||^2, no training, same "
                                                         f"threshold rule ({threshold_rule(dataset)})"},
            "trivial": {"f1": trivial, "precision": float(np.mean(data.y_test)), "recall": 1.0,
                        "description": "everything abnormal"}}


def anomaly_point(model, name: str, dataset: str, data: Data) -> tuple[dict, dict]:
    from scipy.stats import spearmanr

    from delvm_tf import anomaly

    rule = threshold_rule(dataset)
    detector = anomaly.AnomalyDetector(model, score="auto", threshold=rule)
    if rule == "mean_std":
        detector.fit(data.x_train)
    else:
        detector.fit(None, data.x_val, data.y_val)
    test_scores = detector.score(data.x_test)
    metrics = anomaly.evaluate(data.y_test, test_scores, detector.threshold_)
    mean = data.x_train.mean(axis=0, dtype=np.float64).astype(np.float32)
    template = np.sum(np.square((data.x_test - mean).reshape(len(data.x_test), -1)), axis=1)
    details = {"score": detector.score_name, "threshold_rule": rule, "threshold": float(detector.threshold_),
               "validation_f1": detector.validation_f1_,
               "spearman_with_mean_template_on_test": float(spearmanr(test_scores, template).statistic)}
    details.update(_diagnostics(model, name, data.x_train[:DIAGNOSTIC_SAMPLES], mean))
    return {k: float(metrics[k]) for k in (*ANOMALY_METRICS, "threshold")}, details


def _diagnostics(model, name: str, x: np.ndarray, mean: np.ndarray) -> dict:
    """For DELVM: how far the model is from the "mean template" ``x̂ ≈ b ≈ mean``."""
    if not name.endswith("DELVM"):
        return {}
    feats = model._apply(lambda x_: model.encoder(x_), x, 256, name="diagnostic_features")
    x_hat = model.reconstruct(x)
    b = np.asarray(model.visible_bias)
    flat = lambda a: a.reshape(len(a), -1)  # noqa: E731
    centered = np.linalg.norm(flat(x - b), axis=1)
    correction = np.linalg.norm(flat(x_hat - b), axis=1)
    return {"mean_sq_norm_f_train": float(np.mean(np.sum(np.square(flat(feats)), axis=1))),
            "mean_ratio_norm_xhat_minus_b_over_norm_x_minus_b": float(np.mean(correction / np.maximum(centered,
                                                                                                        1e-12))),
            "norm_b_minus_train_mean_over_norm_train_mean": float(np.linalg.norm(b - mean) /
                                                                  max(np.linalg.norm(mean), 1e-12)),
            "train_per_dim_variance_mean": float(np.mean(np.var(flat(x), axis=0))), "sigma_sq": float(model.sigma) ** 2,
            "first_layer_filter_effective_rank": filter_effective_rank(model)}


# ----------------------------------------------------------------------------- files
def csv_columns(task: str, sweep: Optional[str] = None) -> list[str]:
    metrics = PROBE_METRICS if task == "probe" else ANOMALY_METRICS
    return [*BASE_COLUMNS, *metrics, *EXTRA_COLUMNS[task], *((SIGMA_COLUMN,) if sweep == "sigma" else ())]


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def row_key(row: dict) -> tuple:
    """The identity of a row's point (the σ column only where the figure has one)."""
    return tuple(str(row.get(c, "")) for c in KEY_COLUMNS if c != SIGMA_COLUMN or row.get(c, "") != "")


def append_row(path: Path, row: dict, columns: list[str]) -> None:
    """Append one row (header first if the file is new), flushed and fsynced."""
    new = not path.is_file() or path.stat().st_size == 0
    if not new:
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
        if header != columns:
            raise ValueError(f"{path} has columns {header}, expected {columns}; move it away or run without "
                             "--resume.")
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        if new:
            writer.writeheader()
        writer.writerow({c: _fmt(row.get(c, "")) for c in columns})
        f.flush()
        os.fsync(f.fileno())


def _fmt(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    return value


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, default=_json_default)
    os.replace(tmp, path)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def environment() -> dict:
    """Versions, hardware and the git commit (recorded with every run)."""
    import keras
    import matplotlib
    import sklearn
    import tensorflow as tf

    import delvm_tf

    repo = Path(__file__).resolve().parents[1]

    def git(*args):
        try:
            # rstrip, not strip: `status --porcelain` lines start with a significant space (" M path").
            return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=20).stdout.rstrip()
        except Exception as error:  # no git
            return f"unavailable ({type(error).__name__})"

    try:
        import psutil
        memory_gb = round(psutil.virtual_memory().total / 2 ** 30, 1)
    except Exception:
        memory_gb = None
    return {
        "versions": {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
                     "numpy": np.__version__, "scikit-learn": sklearn.__version__,
                     "matplotlib": matplotlib.__version__, "delvm_tf": delvm_tf.__version__},
        "hardware": {"platform": platform.platform(), "machine": platform.machine(),
                     "processor": platform.processor(), "cpu_count": os.cpu_count(),
                     "sched_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
                     "memory_gb": memory_gb,
                     "gpus": [d.name for d in tf.config.list_physical_devices("GPU")]},
        # Uncommitted changes outside results/ (the run's own outputs are rewritten as it goes).
        "git": {"commit": git("rev-parse", "HEAD"),
                "uncommitted": uncommitted_outside_results(git("status", "--porcelain"))},
    }


def uncommitted_outside_results(porcelain: str) -> list:
    """Paths from `git status --porcelain` ("XY path" lines) that lie outside results/."""
    paths = [line[3:] for line in porcelain.splitlines() if len(line) > 3]
    return [path for path in paths if not path.startswith("results/")]


# ----------------------------------------------------------------------------- the runner
def default_output_dir(figure: Figure) -> Path:
    root = os.environ.get("DELVM_RESULTS_DIR")
    if root:
        return Path(root) / figure.name
    repo = Path(__file__).resolve().parents[1]
    base = repo if (repo / "reproduce").is_dir() else Path.cwd()
    return base / "results" / figure.name


def _fmt_time(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def _cost(point: Point, figure: Figure, protocol: Protocol, sample_shape) -> float:
    """A rough relative cost of a point (multiply-adds × passes), for the ETA (:func:`eta_seconds`)."""
    epochs = protocol.sweep_epochs(figure.sweep)
    n = protocol.sweep_train_size(figure.sweep) or 5000
    pixels = math.prod(sample_shape[:-1]) if len(sample_shape) > 1 else 1
    channels = sample_shape[-1]
    if point.model == "CEBM":
        from delvm_tf import cebm
        sizes = cebm.IMAGE_FILTERS[:point.layers] if point.kernel_size else (point.size,) * point.layers
        k2 = 16 if point.kernel_size else 1
        forward = sum(a * b * k2 for a, b in zip((channels, *sizes), sizes)) * pixels / 4
    else:
        k2 = (point.kernel_size or 1) ** 2
        forward = pixels * k2 * point.size * (channels + (point.layers - 1) * point.size)
    passes = {"SM-DELVM": 3 if point.layers == 1 else 6, "SM-DEM": 6, "CD-DELVM": 4, "AE": 6, "CAE": 6,
              "CD-DEM": 2 + 2 * protocol.langevin_steps, "CEBM": 2 + 2 * protocol.sgld_steps}.get(point.model, 0)
    key = {"SM-DELVM": "sm", "SM-DEM": "sm", "CD-DELVM": "cd", "CD-DEM": "cd", "CEBM": "cebm"}.get(point.model, "ae")
    train = 0 if point.model == "random-init" else n * epochs[key] * passes
    probe_train, probe_test, probe_epochs = protocol.sweep_probe(figure.sweep)
    evaluation = ((probe_train or 60000) * (probe_epochs + 1) + (probe_test or 10000)
                  if figure.task == "probe" else 3 * (n + 2000))
    return forward * (train + evaluation) + 1.0


def eta_seconds(finished: Sequence[tuple], remaining_costs: Sequence[float]) -> float:
    """Seconds left, from the ``(cost, seconds)`` of the points finished so far.

    Each point is taken to cost ``a + b·cost`` seconds: ``a`` a fixed overhead (building and
    tracing the model, evaluation set-up) that dominates small points, ``b`` the seconds per
    unit of :func:`_cost`. Both are fitted by least squares, kept non-negative; with fewer
    than two distinct costs finished, the overhead is unknown and the finished points' mean
    seconds per point and per unit cost bound the estimate (their smaller prediction is used).
    """
    if not finished or not len(remaining_costs):
        return 0.0
    costs, seconds = (np.asarray(v, dtype=float) for v in zip(*finished))
    remaining = np.asarray(remaining_costs, dtype=float)
    if np.ptp(costs) <= 1e-9 * max(costs.max(), 1e-300):
        per_point = seconds.mean() * len(remaining)
        per_cost = seconds.sum() / costs.sum() * remaining.sum()
        return float(min(per_point, per_cost))
    (a, b), *_ = np.linalg.lstsq(np.stack([np.ones_like(costs), costs], axis=1), seconds, rcond=None)
    if a < 0:
        a, b = 0.0, seconds.sum() / costs.sum()
    elif b < 0:
        a, b = seconds.mean(), 0.0
    return float(a * len(remaining) + b * remaining.sum())


def run(figure: Figure, scale: str = "quick", data_dir=None, output_dir=None, seed: int = 0,
        models: Optional[Sequence[str]] = None, resume: bool = False, strict_models: bool = True,
        log: Callable[[str], None] = print) -> dict:
    """Run ``figure`` at ``scale``; write ``<name>.csv``, ``<name>.json`` and ``<name>.png``.

    Args:
        figure: the figure's config.
        scale: ``'smoke'``, ``'quick'`` or ``'paper'`` (see :data:`SCALES`).
        data_dir: where the data are (default: ``$DELVM_DATA_DIR``, else ``../shared/data``).
        output_dir: default ``results/<figure.name>/``.
        seed: seeds the data subsets, the weights and the training.
        models: a subset of the figure's models (plus ``'random-init'`` to keep the probe
            controls); default all.
        resume: keep the CSV and skip the points already in it (same model, setting,
            epochs, train size, seed and scale); otherwise the CSV starts afresh.
        strict_models: raise if ``models`` names a model the figure does not have.
        log: where progress lines go.

    Returns a summary dict (``trained``, ``skipped``, ``rows``, ``wall_seconds``, paths).
    """
    import keras

    started = time.time()
    if scale not in SCALES:
        raise ValueError(f"Unknown scale {scale!r}; use one of {sorted(SCALES)}.")
    if models is not None:
        models = [m.strip() for m in models if m.strip()]
        unknown = [m for m in models if m not in figure.models and m != "random-init"]
        if unknown and strict_models:
            raise ValueError(f"{figure.name} has no model(s) {unknown}; it has {list(figure.models)} "
                             "(plus 'random-init' for probe figures).")
    protocol = SCALES[scale][figure.dataset]
    out = Path(output_dir) if output_dir else default_output_dir(figure)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path, png_path = (out / f"{figure.name}.{ext}" for ext in ("csv", "json", "png"))
    columns = csv_columns(figure.task, figure.sweep)
    data_dir = data_dir or default_data_dir()

    if not resume:
        for p in (csv_path, json_path):
            if p.exists():
                p.unlink()
    meta = json.loads(json_path.read_text()) if resume and json_path.is_file() else {}
    done = {row_key(r) for r in read_rows(csv_path)}

    log(f"[{figure.name}] scale={scale}: loading {figure.dataset} ...")
    data = load_data(figure, protocol, data_dir, seed)
    points = sweep_points(figure, protocol, models)
    train_size = protocol.sweep_train_size(figure.sweep)
    epochs_of = protocol.sweep_epochs(figure.sweep)
    n_train = len(data.x_train) if train_size is None else min(train_size, len(data.x_train))

    run_record = {"started": datetime.datetime.now().isoformat(timespec="seconds"),
                  "flags": {"scale": scale, "data_dir": data_dir, "output_dir": str(out), "seed": seed,
                            "models": list(models) if models else None, "resume": resume},
                  "argv": sys.argv, **environment()}
    meta.setdefault("figure", figure.name)
    meta.update({"title": figure.title, "dataset": figure.dataset, "task": figure.task, "sweep": figure.sweep,
                 "models": list(figure.models), "paper": figure.paper, "claims": list(figure.claims),
                 "columns": columns})
    meta.setdefault("scales", {})[scale] = {
        "protocol": dataclasses.asdict(protocol), "data": data.info, "data_source": data.source,
        "lossy": data.lossy, "subsets": data.subsets,
        "settings": {"batch_size": BATCH_SIZE, "sigma": list(protocol.sigmas) if figure.sweep == "sigma" else SIGMA,
                     "sigma_note": "fixed data scale of DELVM/DEM's Gaussian base" + (
                         " (swept in this ablation; random-init features do not depend on it)"
                         if figure.sweep == "sigma" else ""), "learning_rates": {
                         "images": f"{IMAGE_LR_TOP} x {IMAGE_LR_DECAY}^i floored at {IMAGE_LR_FLOOR} (layer i)",
                         "ecg": f"{ECG_LR} every layer"},
                     "sm_estimator_rule": "exact for single-layer DELVM (closed form); sliced (1 Rademacher "
                                          "projection) for deeper DELVM and for conv DEM",
                     "visible_bias_init": figure.visible_bias,
                     "cd_delvm_sampler": "paper, k=1", "dem_hidden_units": DEM_HIDDEN_UNITS,
                     "best_settings": {m: _best_setting(figure.dataset, m) for m in figure.models},
                     "best_settings_chosen": {m: BEST_CHOSEN[(figure.dataset, m)] for m in figure.models
                                              if (figure.dataset, m) in BEST_CHOSEN},
                     "probe": {"pool": PROBE_POOL, "batch_size": PROBE_BATCH_SIZE,
                               "learning_rate": PROBE_LEARNING_RATE,
                               "train_test_epochs_of_this_sweep": protocol.sweep_probe(figure.sweep)}
                     if figure.task == "probe" else None,
                     "threshold_rule": threshold_rule(figure.dataset) if figure.task == "anomaly" else None}}
    meta.setdefault("runs", []).append(run_record)
    meta.setdefault("points", {})
    if figure.task == "anomaly":
        meta.setdefault("references", {})[scale] = anomaly_references(figure.dataset, data)
    if figure.sweep == "sigma":
        meta.setdefault("references", {}).setdefault(scale, {}).update(
            {"patch_covariance": {str(k): patch_covariance_eigenvalues(data.x_train, k)
                                  for k in sorted({p.kernel_size for p in points})}}
            if figure.kind == "image" else {"data_covariance": data_covariance_eigenvalues(data.x_train)})
    write_json(json_path, meta)

    todo = [(p, _cost(p, figure, protocol, data.x_train.shape[1:]),
             point_row_base(figure, p, data, scale, seed, n_train, epochs_of)) for p in points]
    remaining_costs = [cost for _, cost, base in todo if _key_for(base) not in done]
    finished, trained, skipped = [], 0, 0
    for i, (point, cost, base) in enumerate(todo, 1):
        if _key_for(base) in done:
            skipped += 1
            log(f"[{figure.name} {scale} {i}/{len(todo)}] {point.label()}: done earlier, skipped (--resume)")
            continue
        t0 = time.time()
        keras.backend.clear_session()
        gc.collect()
        keras.utils.set_random_seed(seed)
        model, spec = build_model(point.model, figure.kind, point.size, point.kernel_size, point.layers, seed,
                                  protocol, epochs_of, sigma=point.sigma)
        x_fit = data.x_train[data.first("train", n_train)]
        model.build((None, *x_fit.shape[1:]))
        if figure.visible_bias == "data_mean" and spec["epochs"] and hasattr(model, "initialize_visible_bias"):
            model.initialize_visible_bias(x_fit)
        train_seconds = 0.0
        if spec["epochs"]:
            t_train = time.time()
            history = model.fit(x_fit, epochs=spec["epochs"], batch_size=BATCH_SIZE, shuffle=True, verbose=0)
            train_seconds = time.time() - t_train
            spec["final_loss"] = float(history.history["loss"][-1]) if history.history.get("loss") else None
            spec["stopped_early_divergence"] = str(getattr(model, "divergence", None) or "")
        if figure.task == "probe":
            metrics, details = probe_point(model, data, protocol, seed, figure.sweep)
        else:
            metrics, details = anomaly_point(model, point.model, figure.dataset, data)
        row = {**base, "objective": spec["objective"], "estimator": spec["estimator"],
               "train_seconds": round(train_seconds, 2), **metrics}
        append_row(csv_path, row, columns)
        meta["points"]["|".join(_key_for(base))] = {"spec": spec, "details": details,
                                                     "seconds_total": round(time.time() - t0, 2)}
        write_json(json_path, meta)
        trained += 1
        finished.append((cost, time.time() - t0))
        remaining_costs.remove(cost)
        eta = eta_seconds(finished, remaining_costs)
        shown = ", ".join(f"{k}={metrics[k]:.4f}" for k in (("accuracy",) if figure.task == "probe"
                                                            else ("f1", "precision", "recall", "auroc")))
        log(f"[{figure.name} {scale} {i}/{len(todo)}] {point.label()}: {shown} "
            f"(train {_fmt_time(train_seconds)}, point {_fmt_time(time.time() - t0)}) | elapsed "
            f"{_fmt_time(time.time() - started)} | ETA ~{_fmt_time(eta)}")
        del model
    rows = read_rows(csv_path)
    plot(figure, rows, meta, png_path, scale)
    wall = time.time() - started
    run_record.update(finished=datetime.datetime.now().isoformat(timespec="seconds"), wall_seconds=round(wall, 1),
                      trained_points=trained, skipped_points=skipped)
    meta["wall_seconds_total"] = round(sum(r.get("wall_seconds", 0) for r in meta["runs"]), 1)
    write_json(json_path, meta)
    log(f"[{figure.name}] {scale}: {trained} trained, {skipped} skipped, wall {_fmt_time(wall)}; wrote {csv_path}, "
        f"{png_path}, {json_path}")
    return {"figure": figure.name, "scale": scale, "trained": trained, "skipped": skipped, "rows": len(rows),
            "wall_seconds": wall, "csv": csv_path, "json": json_path, "png": png_path}


def point_row_base(figure, point, data, scale, seed, n_train, epochs_of) -> dict:
    """The identifying columns of a point's row (before training)."""
    key = {"SM-DELVM": "sm", "SM-DEM": "sm", "CD-DELVM": "cd", "CD-DEM": "cd", "CEBM": "cebm"}.get(point.model, "ae")
    random_init = point.model == "random-init"
    base = {"figure": figure.name, "dataset": figure.dataset, "data_source": data.source, "model": point.model,
            "filters_or_units": point.size, "kernel_size": point.kernel_size if point.kernel_size else "",
            "layers": point.layers, "epochs": 0 if random_init else epochs_of[key],
            "train_size": 0 if random_init else n_train, "seed": seed, "scale": scale}
    if point.sigma is not None:
        base[SIGMA_COLUMN] = point.sigma
    return base


def _key_for(row: dict) -> tuple:
    return row_key({k: _fmt(v) for k, v in row.items()})


# ----------------------------------------------------------------------------- plotting
def _num(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _series(rows, x_key, y_key):
    """Mean of ``y_key`` over seeds at each ``x_key``, sorted by x."""
    groups = {}
    for r in rows:
        groups.setdefault(_num(r[x_key]), []).append(_num(r[y_key]))
    xs = sorted(groups)
    return xs, [float(np.nanmean(groups[x])) for x in xs]


def plot(figure: Figure, rows: list[dict], meta: dict, path: Path, scale: str) -> None:
    """Draw the figure in the paper's layout (matplotlib, Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    source = meta.get("scales", {}).get(scale, {}).get("data_source", "")
    scales_present = sorted({r.get("scale", scale) for r in rows})
    title = f"{figure.title}\nscale={scale}" + (f" (rows of scales {', '.join(scales_present)})"
                                                if scales_present != [scale] else "") + f"; data: {source}"
    refs = meta.get("references", {}).get(scale, {})
    metric = "accuracy" if figure.task == "probe" else "f1"

    def model_rows(model, extra=None):
        return [r for r in rows if r["model"] == model and (extra is None or extra(r))]

    def label(model, rs):
        tags = sorted({r.get("scale", scale) for r in rs})
        return model + ("" if tags == [scale] else f" ({', '.join(tags)})")

    def references(ax, with_template=True):
        if figure.task != "anomaly":
            return
        if "trivial" in refs:
            ax.axhline(refs["trivial"]["f1"] * 100, color="0.3", ls=":", lw=1.2,
                       label=f"trivial rule (all abnormal) {refs['trivial']['f1'] * 100:.1f}")
        if with_template and "mean-template" in refs:
            ax.axhline(refs["mean-template"]["f1"] * 100, color="0.5", ls="--", lw=1.2,
                       label=f"mean template (no training) {refs['mean-template']['f1'] * 100:.1f}")

    if figure.sweep == "best":
        _plot_table(figure, rows, refs, path, title)
        return
    if figure.sweep == "sigma":
        _plot_sigma(figure, rows, meta, refs, path, title)
        return
    kernels = sorted({int(_num(r["kernel_size"])) for r in rows if r["kernel_size"]}) \
        if figure.sweep == "filters" else [None]
    panels = len(kernels) + (1 if figure.task == "anomaly" else 0)
    fig = MplFigure(figsize=(max(4.2 * panels + 0.5, 6.4), 4.2))  # wide enough for the two-line title
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, panels, i + 1) for i in range(panels)]
    x_key = {"filters": "filters_or_units", "units": "filters_or_units", "layers": "layers"}[figure.sweep]
    for ax, kernel in zip(axes, kernels):
        in_panel = (lambda r: _num(r["kernel_size"]) == kernel) if kernel is not None else None
        for model in (*figure.models, "random-init"):
            rs = model_rows(model, in_panel)
            if not rs:
                continue
            if model == "random-init":
                # filters sweep: one control line per panel; layers sweep: one per architecture
                def arch_of(r):
                    return None if figure.sweep == "filters" else (r["filters_or_units"], r["kernel_size"])
                for j, arch in enumerate(sorted({arch_of(r) for r in rs}, key=str)):
                    sub = [r for r in rs if arch_of(r) == arch]
                    xs, ys = _series(sub, x_key, metric)
                    tag = "" if arch is None else f" ({arch[0]}, {arch[1]})"
                    ax.plot(xs, np.array(ys) * 100, color="0.55", ls="--", marker="x", lw=1,
                            alpha=1 - 0.2 * j, label=f"random-init{tag}")
                continue
            xs, ys = _series(rs, x_key, metric)
            ax.plot(xs, np.array(ys) * 100, marker="o", color=COLORS.get(model), label=label(model, rs))
        _paper_markers(ax, figure, metric)
        references(ax)
        ax.set_xlabel({"filters": "number of filters", "units": "number of hidden units",
                       "layers": "number of hidden layers"}[figure.sweep])
        ax.set_ylabel("test accuracy (%)" if figure.task == "probe" else "F1 (%)")
        if figure.sweep == "units":
            ax.set_xscale("log", base=2)
        if figure.sweep == "layers":
            ax.set_xticks(sorted({int(_num(r["layers"])) for r in rows}))
        if kernel is not None:
            ax.set_title(f"kernel size {kernel}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if figure.task == "anomaly":  # an extra, threshold-free panel
        ax = axes[-1]
        for model in figure.models:
            rs = model_rows(model)
            if rs:
                xs, ys = _series(rs, x_key, "auroc")
                ax.plot(xs, np.array(ys) * 100, marker="o", color=COLORS.get(model), label=label(model, rs))
        if "mean-template" in refs:
            ax.axhline(refs["mean-template"]["auroc"] * 100, color="0.5", ls="--", lw=1.2, label="mean template")
        ax.set_xlabel(axes[0].get_xlabel())
        ax.set_ylabel("AUROC (%) (not in the paper)")
        if figure.sweep == "units":
            ax.set_xscale("log", base=2)
        if figure.sweep == "layers":
            ax.set_xticks(sorted({int(_num(r["layers"])) for r in rows}))
        ax.set_title("threshold-free check")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    _save(fig, title, path)


def _save(fig, title, path):
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _paper_markers(ax, figure, metric):
    for model, values in figure.paper.items():
        for entry in values if isinstance(values, list) else [values]:
            if metric in entry and "x" in entry:
                ax.plot([entry["x"]], [entry[metric]], marker="*", ms=13, ls="", color=COLORS.get(model),
                        markeredgecolor="k", label=f"paper {model}: {entry[metric]:.2f}")


def _plot_sigma(figure, rows, meta, refs, path, title):
    """The σ ablation: the figure's metric vs σ (probe accuracy with random-init as a line, or
    anomaly F1 and AUROC with the mean-template and trivial rules as lines), and the learned
    filters' effective rank vs σ beside the count of covariance eigenvalues above σ²."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(10, 4.2))
    FigureCanvasAgg(fig)
    metric_ax, rank_ax = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    probe = figure.task == "probe"
    for model in figure.models:
        rs = [r for r in rows if r["model"] == model]
        if not rs:
            continue
        kernel = rs[0]["kernel_size"]
        setting = f" ({rs[0]['filters_or_units']}, {kernel})" if kernel else f" ({rs[0]['filters_or_units']} units)"
        for metric, style in ((("accuracy", "-"),) if probe else (("f1", "-"), ("auroc", "--"))):
            xs, ys = _series(rs, SIGMA_COLUMN, metric)
            metric_ax.plot(xs, np.array(ys) * 100, marker="o", ls=style, color=COLORS.get(model),
                           label=model + setting + ("" if probe else f" {metric.upper()}"))
        ranks = {}
        for r in rs:
            details = meta.get("points", {}).get("|".join(_key_for(r)), {}).get("details", {})
            ranks.setdefault(_num(r[SIGMA_COLUMN]), []).append(details.get("first_layer_filter_effective_rank"))
        sig = sorted(s for s in ranks if None not in ranks[s])
        unit = "filters" if kernel else "weight vectors"
        rank_ax.plot(sig, [np.mean(ranks[s]) for s in sig], marker="o", color=COLORS.get(model),
                     label=f"{model}: effective rank of the {unit}")
        if _num(rs[0]["filters_or_units"]) <= 100:
            rank_ax.axhline(_num(rs[0]["filters_or_units"]), color=COLORS.get(model), ls=":", lw=1,
                            label=f"number of {unit} ({rs[0]['filters_or_units']})")
        spectrum = refs.get("patch_covariance", {}).get(str(kernel)) or refs.get("data_covariance")
        if spectrum:
            grid = np.geomspace(min(xs), max(xs), 200)
            eigenvalues = np.array(spectrum["eigenvalues"])
            what = f"patch-covariance (k={kernel})" if kernel else "data-covariance"
            rank_ax.step(grid, [np.sum(eigenvalues > g ** 2) for g in grid], where="mid", color="0.3", ls="--",
                         label=f"{what} eigenvalues > σ²")
    for j, r in enumerate(r for r in rows if r["model"] == "random-init"):
        label = f"random-init ({r['filters_or_units']}, {r['kernel_size']})"
        metric_ax.axhline(_num(r["accuracy"]) * 100, color="0.55", ls="--", lw=1, alpha=1 - 0.2 * j, label=label)
        rank = meta.get("points", {}).get("|".join(_key_for(r)), {}).get("details", {}).get(
            "first_layer_filter_effective_rank")
        if rank is not None:
            rank_ax.axhline(rank, color="0.55", ls="--", lw=1, alpha=1 - 0.2 * j, label=f"{label}: effective rank")
    for name, style in (("mean-template", "--"), ("trivial", ":")):
        if name in refs:
            metric_ax.axhline(refs[name]["f1"] * 100, color="0.5", ls=style, lw=1,
                              label=f"{name.replace('-', ' ')} rule F1 ({refs[name]['f1'] * 100:.2f})")
    metric_ax.axvline(SIGMA, color="0.8", lw=4, zorder=0, label=f"paper: σ = {SIGMA:g}")
    metric_ax.set_ylabel("test accuracy (%)" if probe else "test F1 / AUROC (%)")
    rank_ax.set_ylabel("number of directions")
    for ax in (metric_ax, rank_ax):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("σ (data scale of the Gaussian base)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    _save(fig, title, path)


def _plot_table(figure, rows, refs, path, title):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(13, 5.2))
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(1, 2, width_ratios=[1, 1.35])
    ax = fig.add_subplot(grid[0, 0])
    metrics = ("precision", "recall", "f1")
    models = [m for m in figure.models if any(r["model"] == m for r in rows)]
    width = 0.38
    for i, metric in enumerate(metrics):
        for j, model in enumerate(models):
            ours = np.nanmean([_num(r[metric]) for r in rows if r["model"] == model]) * 100
            paper = figure.paper.get(model, {}).get(metric)
            x = i * (len(models) + 1) + j
            ax.bar(x - width / 2, ours, width, color=COLORS.get(model), label=f"{model} (ours)" if i == 0 else None)
            if paper is not None:
                ax.bar(x + width / 2, paper, width, color=COLORS.get(model), alpha=0.35, hatch="//",
                       label=f"{model} (paper)" if i == 0 else None)
    ax.set_xticks([i * (len(models) + 1) + (len(models) - 1) / 2 for i in range(len(metrics))])
    ax.set_xticklabels(["precision", "recall", "F1"])
    if "trivial" in refs:
        ax.axhline(refs["trivial"]["f1"] * 100, color="0.3", ls=":", label="trivial rule F1")
    if "mean-template" in refs:
        ax.axhline(refs["mean-template"]["f1"] * 100, color="0.5", ls="--", label="mean template F1")
    ax.set_ylim(50, 101)
    ax.set_ylabel("%")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3, axis="y")
    tab = fig.add_subplot(grid[0, 1])
    tab.axis("off")
    cells = []
    for model in models:
        rs = [r for r in rows if r["model"] == model]
        ours = [np.nanmean([_num(r[m]) for r in rs]) * 100 for m in (*metrics, "auroc")]
        paper = figure.paper.get(model, {})
        setting = f"({rs[0]['filters_or_units']}, {rs[0]['kernel_size']})"
        cells.append([f"{model} {setting}", *(f"{v:.2f}" for v in ours),
                      " / ".join(f"{paper[m]:.2f}" for m in metrics if m in paper)])
    for name, ref in (("trivial rule", refs.get("trivial")), ("mean template", refs.get("mean-template"))):
        if ref:
            cells.append([name, f"{ref['precision'] * 100:.2f}", f"{ref['recall'] * 100:.2f}", f"{ref['f1'] * 100:.2f}",
                          f"{ref['auroc'] * 100:.2f}" if "auroc" in ref else "",
                          "73.3 / 100 / 84.6" if name == "trivial rule" else ""])
    table = tab.table(cellText=cells, colLabels=["model", "P", "R", "F1", "AUROC", "paper P / R / F1"],
                      loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(7.5)
    table.auto_set_column_width(list(range(6)))
    table.scale(1, 1.6)
    _save(fig, title, path)


# ----------------------------------------------------------------------------- CLI
def _define_flags(multi: bool) -> None:
    from absl import flags

    if "scale" in flags.FLAGS:
        return
    flags.DEFINE_enum("scale", "quick", list(SCALES),
                      "smoke: seconds, for CI; quick: ~30 min per image figure on 2 CPU cores (subsets, fewer "
                      "epochs, thinned grid; see the JSON); paper: the paper's protocol (GPU).")
    flags.DEFINE_string("data_dir", None, "Data folder (default: $DELVM_DATA_DIR, else ../shared/data, else the "
                                          "system/canonical locations of delvm_tf.datasets).")
    flags.DEFINE_string("output_dir", None, "Output folder (default results/<figure>/" +
                        ("; with several figures, a root holding one folder per figure)" if multi else ")"))
    flags.DEFINE_integer("seed", 0, "Seed of the data subsets, the weights and the training.")
    flags.DEFINE_list("models", None, "Subset of the figure's models (comma-separated; add 'random-init' to keep "
                                      "the probe controls). Default: all.")
    flags.DEFINE_boolean("resume", False, "Keep the CSV and skip the points already in it.")
    if multi:
        flags.DEFINE_list("figures", None, "Subset of the figures, by name or prefix (e.g. fig3,table1).")


def run_cli(figures) -> None:
    """The command line of a reproduce script: ``run_cli(FIGURE)`` or ``run_cli([FIGURE, ...])``."""
    from absl import app, flags

    multi = isinstance(figures, (list, tuple))
    _define_flags(multi)

    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
        f = flags.FLAGS
        selected = list(figures) if multi else [figures]
        if multi and f.figures:
            selected = [fig for fig in selected if any(fig.name == s or fig.name.startswith(s) for s in f.figures)]
        summaries = []
        for fig in selected:
            out = (Path(f.output_dir) / fig.name if multi else Path(f.output_dir)) if f.output_dir else None
            summaries.append(run(fig, scale=f.scale, data_dir=f.data_dir, output_dir=out, seed=f.seed,
                                 models=f.models, resume=f.resume, strict_models=not multi))
        if multi:
            for s in summaries:
                print(f"{s['figure']}: {s['trained']} trained, {s['skipped']} skipped, "
                      f"{_fmt_time(s['wall_seconds'])}")

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    app.run(main)


def load_figure_scripts(folder=None) -> list[Figure]:
    """The ``FIGURE`` of every ``reproduce/*.py`` script, in the order of :data:`ORDER`."""
    import importlib.util

    folder = Path(folder) if folder else Path(__file__).resolve().parents[1] / "reproduce"
    found = {}
    for path in sorted(folder.glob("*.py")):
        if path.stem == "all" or path.stem.startswith("_"):
            continue
        spec = importlib.util.spec_from_file_location(f"_reproduce_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if isinstance(getattr(module, "FIGURE", None), Figure):
            found[module.FIGURE.name] = module.FIGURE
    return [found[n] for n in sorted(found, key=lambda n: (ORDER.index(n.split("_")[0]) if n.split("_")[0] in ORDER
                                                           else len(ORDER), n))]


ORDER = ("fig1", "fig2", "fig3", "fig4", "fig5", "fig6", "fig7", "fig8", "fig9", "table1", "ablation")
