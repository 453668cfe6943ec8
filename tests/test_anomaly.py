"""Tests of anomaly detection (delvm_tf.anomaly, SPEC §3)."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score, roc_auc_score

import delvm_tf
from delvm_tf import anomaly


def _random_labelled_scores(seed, n=300, ties=False):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    scores = rng.normal(size=n) + 1.2 * y
    if ties:
        scores = np.round(scores, 1)  # many tied scores
    return y, scores


@pytest.fixture(scope="module")
def trained_model():
    rng = np.random.default_rng(0)
    x_normal = rng.normal(size=(300, 10)).astype(np.float32)
    model = delvm_tf.DELVM(encoder=delvm_tf.networks.dense([16], seed=0))
    model.build((None, 10))
    model.compile(optimizer="adam")
    model.fit(x_normal, epochs=1, batch_size=100, verbose=0)
    return model, x_normal


def _test_set(seed=1, n=200):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(int)
    x = rng.normal(size=(n, 10)).astype(np.float32)
    x[y == 1] *= 4.0  # abnormal: far larger spread
    return x, y


# ------------------------------------------------------------------------------ metrics
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ties", [False, True])
def test_metrics_equal_scikit_learn(seed, ties):
    y, scores = _random_labelled_scores(seed, ties=ties)
    threshold = float(np.quantile(scores, 0.6))
    metrics = anomaly.evaluate(y, scores, threshold)
    assert set(metrics) == set(anomaly.METRIC_KEYS)
    predicted = (scores > threshold).astype(int)
    assert metrics["precision"] == pytest.approx(precision_score(y, predicted, zero_division=0), abs=1e-12)
    assert metrics["recall"] == pytest.approx(recall_score(y, predicted, zero_division=0), abs=1e-12)
    assert metrics["f1"] == pytest.approx(f1_score(y, predicted, zero_division=0), abs=1e-12)
    assert metrics["auroc"] == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    assert metrics["auprc"] == pytest.approx(average_precision_score(y, scores), abs=1e-12)
    assert metrics["trivial_f1"] == pytest.approx(f1_score(y, np.ones_like(y)), abs=1e-12)
    assert metrics["threshold"] == threshold


def test_metrics_when_nothing_is_flagged_and_single_class():
    y, scores = _random_labelled_scores(3)
    metrics = anomaly.evaluate(y, scores, scores.max() + 1)
    assert metrics["precision"] == metrics["recall"] == metrics["f1"] == 0.0
    with pytest.warns(UserWarning, match="single class"):
        single = anomaly.evaluate(np.zeros(10, int), np.arange(10.0), 4.5)
    assert np.isnan(single["auroc"]) and np.isnan(single["auprc"]) and single["trivial_f1"] == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("ties", [False, True])
def test_best_f1_threshold_reaches_the_brute_force_maximum(seed, ties):
    y, scores = _random_labelled_scores(seed, n=150, ties=ties)
    threshold, best = anomaly.best_f1_threshold(y, scores, return_f1=True)
    candidates = np.r_[np.unique(scores), -np.inf]  # every distinct rule "score > u"
    brute = max(f1_score(y, (scores > u).astype(int), zero_division=0) for u in candidates)
    reached = f1_score(y, (scores > threshold).astype(int), zero_division=0)
    assert reached == pytest.approx(brute, abs=1e-12)
    assert best == pytest.approx(brute, abs=1e-12)
    assert anomaly.best_f1_threshold(y, scores) == threshold


def test_best_f1_threshold_lies_between_the_classes_when_separable():
    y = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.9, 1.0])
    assert anomaly.best_f1_threshold(y, scores) == pytest.approx(0.6)
    # All abnormal is best: the cut lies just below the lowest score.
    threshold = anomaly.best_f1_threshold(np.ones(3, int), np.array([1.0, 2.0, 3.0]))
    assert threshold < 1.0 and threshold == pytest.approx(1.0)


# ----------------------------------------------------------------------------- detector
def test_mean_std_threshold_and_consistent_predict_evaluate(trained_model):
    model, x_normal = trained_model
    detector = anomaly.AnomalyDetector(model).fit(x_normal)
    scores_normal = model.reconstruction_error(x_normal).astype(np.float64)
    assert detector.threshold_ == pytest.approx(scores_normal.mean() + scores_normal.std(), rel=1e-12)
    np.testing.assert_allclose(detector.decision_scores_, scores_normal)

    x, y = _test_set()
    predicted = detector.predict(x)
    assert predicted.dtype.kind == "i" and set(np.unique(predicted)) <= {0, 1}
    np.testing.assert_array_equal(predicted, (detector.score(x) > detector.threshold_).astype(int))
    metrics = detector.evaluate(x, y)
    assert metrics["f1"] == pytest.approx(f1_score(y, predicted), abs=1e-12)
    assert metrics["precision"] == pytest.approx(precision_score(y, predicted), abs=1e-12)
    assert metrics["threshold"] == detector.threshold_
    assert metrics["auroc"] > 0.9  # scaled-up inputs have much larger reconstruction errors


def test_percentile_fixed_and_best_f1_thresholds(trained_model):
    model, x_normal = trained_model
    scores_normal = model.reconstruction_error(x_normal).astype(np.float64)
    detector = anomaly.AnomalyDetector(model, threshold="percentile", percentile=90).fit(x_normal)
    assert detector.threshold_ == pytest.approx(np.percentile(scores_normal, 90))
    assert anomaly.AnomalyDetector(model, threshold=3.5).fit().threshold_ == 3.5

    x_val, y_val = _test_set(seed=2)
    detector = anomaly.AnomalyDetector(model, threshold="best_f1").fit(x_normal, x_val, y_val)
    assert detector.threshold_ == anomaly.best_f1_threshold(y_val, detector.validation_scores_)
    assert detector.validation_f1_ == pytest.approx(f1_score(y_val, detector.predict(x_val)))


def test_energy_score(trained_model):
    model, x_normal = trained_model
    detector = anomaly.AnomalyDetector(model, score="energy").fit(x_normal)
    np.testing.assert_allclose(detector.score(x_normal[:20]), model.energy(x_normal[:20]), rtol=1e-6)
    custom = anomaly.AnomalyDetector(model, score=lambda x: np.abs(x).sum(axis=1)).fit(x_normal)
    np.testing.assert_allclose(custom.score(x_normal), np.abs(x_normal).sum(axis=1), rtol=1e-6)


def test_auto_score_uses_the_model_default(trained_model):
    model, x_normal = trained_model
    assert anomaly.AnomalyDetector(model, score="auto").score_name == model.default_anomaly_score
    other = delvm_tf.DELVM(encoder=delvm_tf.networks.dense([4]))
    other.default_anomaly_score = "energy"
    assert anomaly.AnomalyDetector(other, score="auto").score_name == "energy"


def test_plot_score_histograms(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "hist.png"
    figure = anomaly.plot_score_histograms(rng.normal(size=100), rng.normal(2, 1, 50), 1.0, path, title="RE")
    assert path.stat().st_size > 1000 and len(figure.axes) == 1


# ------------------------------------------------------------------------------ errors
def test_detector_errors_are_clear(trained_model):
    model, x_normal = trained_model
    x, y = _test_set()
    with pytest.raises(NotFittedError, match="fit"):
        anomaly.AnomalyDetector(model).predict(x)
    with pytest.raises(ValueError, match="not fitted"):  # NotFittedError is a ValueError too
        anomaly.AnomalyDetector(model).evaluate(x, y)
    with pytest.raises(ValueError, match="validation"):
        anomaly.AnomalyDetector(model, threshold="best_f1").fit(x_normal)
    with pytest.raises(ValueError, match="both x_val and y_val"):
        anomaly.AnomalyDetector(model, threshold="best_f1").fit(x_normal, x_val=x)
    with pytest.raises(ValueError, match="only 0 \\(normal\\) and 1"):
        anomaly.AnomalyDetector(model, threshold="best_f1").fit(x_normal, x, y + 1)
    with pytest.raises(ValueError, match="only 0 \\(normal\\) and 1"):
        anomaly.evaluate(np.array([0, 2, 1]), np.arange(3.0), 0.5)
    with pytest.raises(ValueError, match="Unknown score"):
        anomaly.AnomalyDetector(model, score="likelihood")
    with pytest.raises(ValueError, match="Unknown threshold"):
        anomaly.AnomalyDetector(model, threshold="otsu")
    with pytest.raises(ValueError, match="percentile"):
        anomaly.AnomalyDetector(model, threshold="percentile", percentile=150)
    no_energy = delvm_tf.LatentModel(encoder=delvm_tf.networks.dense([4]))
    with pytest.raises(ValueError, match="energy"):
        anomaly.AnomalyDetector(no_energy, score="energy")
    nan_scores = anomaly.AnomalyDetector(model, score=lambda x: np.full(len(x), np.nan))
    with pytest.raises(ValueError, match="NaN"):
        nan_scores.fit(x_normal)
    with pytest.raises(ValueError, match="NaN"):
        anomaly.evaluate(y, np.where(y == 1, np.nan, 0.0), 0.5)
    with pytest.raises(ValueError, match="labels but there are"):
        anomaly.evaluate(y[:-1], np.zeros(len(y)), 0.5)
    with pytest.raises(ValueError, match="abnormal"):
        anomaly.best_f1_threshold(np.zeros(5, int), np.arange(5.0))
    with pytest.raises(ValueError, match="x_normal"):
        anomaly.AnomalyDetector(model).fit()


def test_no_warnings_on_the_normal_path(trained_model):
    model, x_normal = trained_model
    x, y = _test_set()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        anomaly.AnomalyDetector(model).fit(x_normal).evaluate(x, y)
