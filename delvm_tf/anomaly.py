"""Semi-supervised anomaly detection with a trained model's scores (SPEC §3).

The anomaly score is the reconstruction error ``RE(x) = ||x − x̂||²`` (for DELVM,
``σ⁴||∇ₓE||²``) or, optionally, the energy ``E(x)``; higher means more abnormal. A sample
is called abnormal (label 1) when its score exceeds a threshold ``τ``:

- ``'mean_std'`` (the paper's ECG rule): ``τ = mean + std`` of the scores of the normal
  training data (population std, ``ddof=0``);
- ``'best_f1'`` (the paper's CIFAR-10 rule): the ``τ`` that maximises F1 on labelled
  validation data (the paper uses the normal training data plus an abnormal validation
  set), found exactly by scanning every distinct score;
- ``'percentile'``: that percentile of the normal training scores;
- a number: a fixed ``τ``.

Metrics treat abnormal (1) as the positive class. :func:`evaluate` also reports AUROC,
AUPRC (threshold-free) and the F1 of the trivial rule "everything is abnormal", the
baseline any F1 should be read against.

The API follows scikit-learn/PyOD: ``AnomalyDetector(model).fit(x_normal)`` sets the fitted
attributes ``threshold_`` and ``decision_scores_``; ``score``/``decision_function``,
``predict`` and ``evaluate`` follow.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Callable, Optional, Union

import numpy as np
from sklearn.exceptions import NotFittedError
from sklearn.metrics import average_precision_score, roc_auc_score

SCORES = ("reconstruction_error", "energy", "auto")
THRESHOLDS = ("mean_std", "best_f1", "percentile")
METRIC_KEYS = ("precision", "recall", "f1", "auroc", "auprc", "threshold", "trivial_f1")


# ------------------------------------------------------------------------ validation
def _as_numeric_vector(a, name: str, what: str) -> np.ndarray:
    """``a`` as a numeric 1-D array (a column vector is flattened); clear errors otherwise."""
    a = np.asarray(a)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array with {what}; got shape {a.shape}.")
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric ({what}); got dtype {a.dtype}.")
    return a


def check_labels(y, name: str = "y") -> np.ndarray:
    """``y`` as a 1-D int array of 0 (normal) / 1 (abnormal); clear errors otherwise."""
    y = _as_numeric_vector(y, name, "the labels 0 (normal) and 1 (abnormal)")
    values = np.unique(y)
    bad = values[(values != 0) & (values != 1)]
    if bad.size:
        raise ValueError(f"{name} must contain only 0 (normal) and 1 (abnormal) labels; found "
                         f"{', '.join(map(str, bad[:5].tolist()))}{' …' if bad.size > 5 else ''}. "
                         "Convert class labels first (the paper labels abnormal as 1).")
    return y.astype(np.int64)


def check_scores(scores, name: str = "scores") -> np.ndarray:
    """``scores`` as a 1-D float64 array with no NaN/Inf."""
    scores = _as_numeric_vector(scores, name, "one score per sample").astype(np.float64)
    bad = ~np.isfinite(scores)
    if bad.any():
        raise ValueError(f"{name} contain {int(bad.sum())} NaN or Inf values (first at index "
                         f"{int(np.argmax(bad))}); the model may have diverged.")
    return scores


def _check_pair(y, scores):
    y, scores = check_labels(y), check_scores(scores)
    if len(y) != len(scores):
        raise ValueError(f"y has {len(y)} labels but there are {len(scores)} scores.")
    if len(y) == 0:
        raise ValueError("y and scores are empty.")
    return y, scores


# --------------------------------------------------------------------------- metrics
def _f1(tp, fp, fn) -> float:
    denominator = 2 * tp + fp + fn
    return 0.0 if denominator == 0 else 2.0 * tp / denominator


def evaluate(y_true, scores, threshold: float) -> dict:
    """Detection metrics of the rule ``score > threshold`` (abnormal, label 1, positive).

    Returns a dict with ``precision``, ``recall``, ``f1`` (0 where undefined, as
    scikit-learn's ``zero_division=0``), ``auroc`` and ``auprc`` (scikit-learn's
    ``roc_auc_score`` and ``average_precision_score``; NaN, with a warning, when ``y_true``
    has a single class), the ``threshold`` and ``trivial_f1``, the F1 of calling everything
    abnormal.
    """
    y, scores = _check_pair(y_true, scores)
    threshold = _check_threshold_value(threshold)
    predicted = scores > threshold
    positive = y == 1
    tp = int(np.sum(predicted & positive))
    fp = int(np.sum(predicted & ~positive))
    fn = int(np.sum(~predicted & positive))
    n_positive = int(positive.sum())
    if 0 < n_positive < len(y):
        auroc = float(roc_auc_score(y, scores))
        auprc = float(average_precision_score(y, scores))
    else:
        warnings.warn("y_true contains a single class; AUROC and AUPRC are undefined (NaN).", stacklevel=2)
        auroc = auprc = float("nan")
    return {
        "precision": 0.0 if tp + fp == 0 else tp / (tp + fp),
        "recall": 0.0 if n_positive == 0 else tp / n_positive,
        "f1": _f1(tp, fp, fn),
        "auroc": auroc,
        "auprc": auprc,
        "threshold": threshold,
        "trivial_f1": _f1(n_positive, len(y) - n_positive, 0),
    }


def _candidate_thresholds(y, scores):
    """Every distinct rule ``score >= s`` (s a distinct score, highest first) with its F1."""
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, sorted_y = scores[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(scores) - 1]  # end of each run of ties
    tp = np.cumsum(sorted_y)[last]
    predicted = last + 1
    n_positive = int(y.sum())
    f1 = 2.0 * tp / (predicted + n_positive)  # 2TP / (2TP + FP + FN) = 2TP / (TP + FP + P)
    return sorted_scores[last], f1


def best_f1_threshold(y, scores, return_f1: bool = False):
    """The threshold ``τ`` for the rule ``score > τ`` that maximises F1 on ``(y, scores)``.

    Exact: every distinct score is a candidate cut (vectorised, ``O(n log n)``). The cut
    between the chosen score ``s`` and the next lower distinct score ``s'`` is returned as
    their midpoint (``s`` minus a tiny step if ``s`` is the lowest score), so ``score > τ``
    flags exactly the samples with ``score >= s``. Ties in F1 go to the highest threshold.

    Args:
        y: 0/1 labels (1 = abnormal); at least one abnormal sample.
        scores: anomaly scores, higher = more abnormal.
        return_f1: also return the F1 reached.
    """
    y, scores = _check_pair(y, scores)
    if not y.any():
        raise ValueError("best_f1 needs at least one abnormal (label 1) sample in the validation data.")
    cuts, f1 = _candidate_thresholds(y, scores)
    best = int(np.argmax(f1))
    if best + 1 < len(cuts):
        upper, lower = cuts[best], cuts[best + 1]
        threshold = lower + (upper - lower) / 2.0
        if not lower <= threshold < upper:  # adjacent floats: nothing lies strictly between
            threshold = lower
    else:
        threshold = float(np.nextafter(cuts[best], -np.inf))
    threshold = float(threshold)
    return (threshold, float(f1[best])) if return_f1 else threshold


def _check_threshold_value(threshold) -> float:
    if isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, numbers.Real):
        raise ValueError(f"threshold must be a real number, got {threshold!r}.")
    threshold = float(threshold)
    if np.isnan(threshold):
        raise ValueError("threshold is NaN.")
    return threshold


# -------------------------------------------------------------------------- detector
class AnomalyDetector:
    """Flags samples whose anomaly score exceeds a threshold fitted on normal data.

    Args:
        model: a trained delvm_tf model (``reconstruction_error``; ``energy`` for
            ``score='energy'``).
        score: ``'reconstruction_error'`` (SPEC §3's score), ``'energy'``, ``'auto'`` (the
            model's ``default_anomaly_score``, e.g. ``'energy'`` for CEBM), or a callable
            mapping a batch ``x`` to one score per sample (higher = more abnormal).
        threshold: ``'mean_std'``, ``'best_f1'``, ``'percentile'`` or a number (fixed τ).
        percentile: the percentile (0–100) used by ``threshold='percentile'``.
        batch_size: batch size for scoring (the model's default if None).

    Fitted attributes (after :meth:`fit`):
        threshold_: τ; ``predict`` returns 1 where ``score > threshold_``.
        decision_scores_: scores of the normal training data (None for a fixed τ fitted
            without data).
        validation_scores_, validation_f1_: scores of ``x_val`` and the F1 at ``τ`` on
            ``(x_val, y_val)``, when validation data were given.
    """

    def __init__(self, model, score: Union[str, Callable] = "reconstruction_error",
                 threshold: Union[str, float] = "mean_std", percentile: float = 95.0,
                 batch_size: Optional[int] = None):
        if score == "auto":
            score = getattr(model, "default_anomaly_score", "reconstruction_error")
        if callable(score) and not isinstance(score, str):
            pass
        elif score not in SCORES[:2]:
            raise ValueError(f"Unknown score {score!r}; use one of {SCORES} or a callable.")
        elif not callable(getattr(model, score, None)):
            hint = " Use score='reconstruction_error'." if score == "energy" else ""
            raise ValueError(f"score={score!r} needs a model with an {score}(x) method; "
                             f"{type(model).__name__} has none.{hint}")
        if isinstance(threshold, str):
            if threshold not in THRESHOLDS:
                raise ValueError(f"Unknown threshold {threshold!r}; use one of {THRESHOLDS} or a number.")
        else:
            threshold = _check_threshold_value(threshold)
        if isinstance(percentile, (bool, np.bool_)) or not isinstance(percentile, numbers.Real) \
                or not 0 <= percentile <= 100:
            raise ValueError(f"percentile must be a number in [0, 100], got {percentile!r}.")
        self.model = model
        self.score_name = score if isinstance(score, str) else getattr(score, "__name__", "custom")
        self._score_function = score
        self.threshold = threshold
        self.percentile = float(percentile)
        self.batch_size = batch_size

    def __repr__(self):
        return (f"AnomalyDetector(model={type(self.model).__name__}, score={self.score_name!r}, "
                f"threshold={self.threshold!r}, percentile={self.percentile})")

    # ----------------------------------------------------------------- scoring
    def score(self, x) -> np.ndarray:
        """Anomaly scores of ``x`` (float64, higher = more abnormal)."""
        if callable(self._score_function) and not isinstance(self._score_function, str):
            raw = self._score_function(x)
        else:
            method = getattr(self.model, self._score_function)
            raw = method(x) if self.batch_size is None else method(x, batch_size=self.batch_size)
        if hasattr(raw, "numpy"):
            raw = raw.numpy()
        scores = np.asarray(raw)
        if scores.ndim != 1 or len(scores) != len(x):
            raise ValueError(f"The {self.score_name} score must give one value per sample; got shape "
                             f"{scores.shape} for {len(x)} samples.")
        return check_scores(scores, name=f"{self.score_name} scores")

    decision_function = score  # PyOD / scikit-learn name

    # ----------------------------------------------------------------- fitting
    def fit(self, x_normal=None, x_val=None, y_val=None) -> "AnomalyDetector":
        """Set ``threshold_`` from normal training data (and labelled validation data).

        Args:
            x_normal: normal training data (required except for a fixed numeric threshold).
            x_val, y_val: labelled validation data (0 normal, 1 abnormal), required by
                ``'best_f1'``. The paper's CIFAR-10 protocol uses the normal training data
                plus an abnormal validation set: pass their concatenation.
        """
        if (x_val is None) != (y_val is None):
            raise ValueError("Pass both x_val and y_val (validation inputs and their 0/1 labels), or neither.")
        if self.threshold == "best_f1" and x_val is None:
            raise ValueError("threshold='best_f1' needs labelled validation data: fit(x_normal, x_val, y_val), "
                             "with y_val 0 (normal) / 1 (abnormal).")
        if x_normal is None and isinstance(self.threshold, str) and self.threshold != "best_f1":
            raise ValueError(f"threshold={self.threshold!r} needs the normal training data x_normal.")
        if y_val is not None:
            y_val = check_labels(y_val, "y_val")
            if len(y_val) != len(x_val):
                raise ValueError(f"x_val has {len(x_val)} samples but y_val has {len(y_val)} labels.")

        self.decision_scores_ = None if x_normal is None else self.score(x_normal)
        self.validation_scores_ = None if x_val is None else self.score(x_val)
        if isinstance(self.threshold, float):
            threshold = self.threshold
        elif self.threshold == "mean_std":
            threshold = float(np.mean(self.decision_scores_) + np.std(self.decision_scores_))
        elif self.threshold == "percentile":
            threshold = float(np.percentile(self.decision_scores_, self.percentile))
        else:
            threshold = best_f1_threshold(y_val, self.validation_scores_)
        self.threshold_ = threshold
        self.validation_f1_ = None if y_val is None else evaluate(y_val, self.validation_scores_, threshold)["f1"]
        return self

    def _check_fitted(self):
        if not hasattr(self, "threshold_"):
            raise NotFittedError("This AnomalyDetector is not fitted yet; call fit(x_normal, ...) first.")

    # -------------------------------------------------------------- prediction
    def predict(self, x) -> np.ndarray:
        """0 (normal) / 1 (abnormal) per sample: 1 where ``score(x) > threshold_``."""
        self._check_fitted()
        return (self.score(x) > self.threshold_).astype(np.int64)

    def evaluate(self, x, y) -> dict:
        """:func:`evaluate` of ``score(x)`` against the 0/1 labels ``y`` at ``threshold_``."""
        self._check_fitted()
        y = check_labels(y)
        if len(y) != len(x):
            raise ValueError(f"x has {len(x)} samples but y has {len(y)} labels.")
        return evaluate(y, self.score(x), self.threshold_)


# ----------------------------------------------------------------------------- plots
def plot_score_histograms(scores_normal, scores_abnormal, threshold: Optional[float] = None,
                          path: Optional[str] = None, bins: int = 50, title: Optional[str] = None,
                          log_scale: bool = False):
    """Overlaid histograms of normal and abnormal scores, with the threshold as a line.

    The paper picks its CIFAR-10 threshold from these two histograms. Uses matplotlib's
    object-oriented API with the Agg canvas (no pyplot state, any backend). Saves to
    ``path`` if given; returns the ``Figure``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    normal = check_scores(scores_normal, "scores_normal")
    abnormal = check_scores(scores_abnormal, "scores_abnormal")
    both = np.concatenate([normal, abnormal])
    if log_scale:
        if both.min() <= 0:
            raise ValueError("log_scale needs positive scores.")
        edges = np.geomspace(both.min(), both.max(), bins + 1) if both.max() > both.min() else bins
    else:
        edges = np.histogram_bin_edges(both, bins=bins)
    figure = Figure(figsize=(6, 4))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.hist(normal, bins=edges, alpha=0.6, label=f"normal (n={len(normal)})", color="tab:blue")
    axes.hist(abnormal, bins=edges, alpha=0.6, label=f"abnormal (n={len(abnormal)})", color="tab:red")
    if threshold is not None:
        axes.axvline(_check_threshold_value(threshold), color="black", linestyle="--",
                     label=f"threshold {float(threshold):.4g}")
    if log_scale:
        axes.set_xscale("log")
    axes.set_xlabel("anomaly score")
    axes.set_ylabel("count")
    if title:
        axes.set_title(title)
    axes.legend()
    figure.tight_layout()
    if path is not None:
        figure.savefig(path, dpi=120)
    return figure


__all__ = ["METRIC_KEYS", "SCORES", "THRESHOLDS", "AnomalyDetector", "best_f1_threshold", "check_labels",
           "check_scores", "evaluate", "plot_score_histograms"]
