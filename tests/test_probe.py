"""Tests of the streamed linear feature probe (delvm_tf.probe, SPEC §2)."""

import numpy as np
import pytest
import tensorflow as tf

import delvm_tf
from delvm_tf import datasets, probe

@pytest.fixture(scope="module")
def fashion_slice():
    """2000 train / 500 test Fashion-MNIST images, z-scored with the full train statistics."""
    try:
        (x_train, y_train), (x_test, y_test) = datasets.load("fashion_mnist", download=False)
    except datasets.DataNotFoundError:
        pytest.skip("Fashion-MNIST not found; install the Debian package dataset-fashion-mnist.")
    return (x_train[:2000], y_train[:2000]), (x_test[:500], y_test[:500])


def _conv_model(filters=(4, 3), kernels=(3, 3), shape=(8, 8, 1), seed=0):
    model = delvm_tf.DELVM(encoder=delvm_tf.networks.conv(list(filters), list(kernels), seed=seed))
    model.build((None, *shape))
    return model


def _dense_model(units=(16, 8), dim=12, seed=0):
    model = delvm_tf.DELVM(encoder=delvm_tf.networks.dense(list(units), seed=seed))
    model.build((None, dim))
    return model


def _toy_labelled(n, shape, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    x = rng.normal(size=(n, *shape)).astype(np.float32)
    x += 3.0 * y.reshape(-1, *([1] * len(shape))).astype(np.float32)  # class-dependent shift: separable
    return x, y


# ------------------------------------------------------------------------------ features
def test_features_are_pooled_flattened_concatenated_layer_outputs():
    model = _conv_model(filters=(4, 3), shape=(8, 8, 1))
    x = np.random.default_rng(0).normal(size=(5, 8, 8, 1)).astype(np.float32)
    expected = []
    for a in model.layer_outputs(x):
        n, h, w, c = a.shape
        expected.append(a.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4)).reshape(n, -1))
    features = probe.probe_features(model, x)
    np.testing.assert_allclose(features, np.concatenate(expected, axis=1), rtol=1e-6, atol=1e-6)
    assert probe.layer_feature_dims(model) == [4 * 4 * 4, 3 * 4 * 4]
    assert probe.layer_feature_dims(model, pool=None) == [4 * 8 * 8, 3 * 8 * 8]
    # Tensor in, tensor out.
    assert tf.is_tensor(probe.probe_features(model, tf.constant(x)))


def test_dense_features_are_the_hidden_activations():
    model = _dense_model(units=(16, 8))
    x = np.random.default_rng(1).normal(size=(6, 12)).astype(np.float32)
    np.testing.assert_allclose(probe.probe_features(model, x), np.concatenate(model.layer_outputs(x), axis=1),
                               rtol=1e-6, atol=1e-6)
    assert probe.layer_feature_dims(model) == [16, 8]


# ------------------------------------------------------------------- exact streamed stats
def test_running_moments_equal_numpy_in_float64():
    rng = np.random.default_rng(2)
    data = rng.normal(loc=1e3, scale=0.5, size=(103, 7))
    running = probe.RunningMoments()
    start = 0
    for size in (1, 10, 2, 50, 40):
        running.update(data[start:start + size])
        start += size
    assert running.count == 103
    np.testing.assert_allclose(running.mean, data.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(running.std, data.std(axis=0), rtol=1e-10)


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_streamed_statistics_equal_full_feature_matrix(kind):
    rng = np.random.default_rng(3)
    if kind == "dense":
        model, x = _dense_model(), rng.normal(size=(53, 12)).astype(np.float32)
    else:
        model, x = _conv_model(), rng.normal(size=(37, 8, 8, 1)).astype(np.float32)
    full = probe.probe_features(model, x, batch_size=7).astype(np.float64)  # the matrix the probe never builds
    stats = probe.feature_statistics(model, x, batch_size=7)
    assert stats.count == len(x)
    np.testing.assert_allclose(stats.mean, full.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(stats.std, full.std(axis=0), rtol=1e-9, atol=1e-12)
    # Same statistics from a tf.data pipeline with another batch size.
    dataset = tf.data.Dataset.from_tensor_slices((x, np.zeros(len(x), np.int64))).batch(10)
    from_dataset = probe.feature_statistics(model, dataset)
    np.testing.assert_allclose(from_dataset.mean, full.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(from_dataset.std, full.std(axis=0), rtol=1e-5, atol=1e-6)
    assert from_dataset.count == len(x) and from_dataset.n_classes == 1


def test_constant_features_are_centred_not_divided_by_zero():
    stats = probe.FeatureStatistics(mean=np.zeros(3), std=np.array([0.0, 2.0, 1e-12]), count=4)
    np.testing.assert_array_equal(stats.scale, [1.0, 2.0, 1.0])
    assert stats.n_constant == 2


# ------------------------------------------------------------------------------- probe
def test_probe_on_fashion_mnist_slice_is_above_chance(fashion_slice):
    train, test = fashion_slice
    model = delvm_tf.DELVM(encoder=delvm_tf.networks.conv([8], [5], seed=0))
    model.build((None, 28, 28, 1))
    result = probe.linear_probe(model, train, test, epochs=3, batch_size=100)
    assert result.accuracy > 0.5, result  # chance is 0.1
    assert result.feature_dim == 8 * 14 * 14 and result.layer_dims == [8 * 14 * 14]
    assert (result.n_train, result.n_test, result.n_classes, result.epochs) == (2000, 500, 10, 3)
    assert result.seconds > 0 and 0 <= result.train_accuracy <= 1


def test_random_init_control_runs_and_gives_a_number():
    train = _toy_labelled(120, (8, 8, 1), seed=4)
    test = _toy_labelled(60, (8, 8, 1), seed=5)
    model = _conv_model()
    model.compile(optimizer="adam")
    model.fit(train[0], epochs=1, batch_size=40, verbose=0)
    result = probe.linear_probe(model, train, test, epochs=2, control=True, control_seed=11)
    assert isinstance(result.control, probe.ProbeResult)
    assert isinstance(result.control_accuracy, float) and 0.0 <= result.control_accuracy <= 1.0
    assert result.control.feature_dim == result.feature_dim and result.control.n_test == result.n_test
    summary = result.to_dict()
    assert summary["control_accuracy"] == result.control_accuracy and summary["control"]["control"] is None


def test_random_init_copy_is_a_fresh_model_of_the_same_architecture():
    x = _toy_labelled(50, (8, 8, 1))[0]
    model = _conv_model(seed=3)
    initial = [w.numpy().copy() for w in model.encoder.weights]
    model.compile(optimizer="adam")
    model.fit(x, epochs=1, batch_size=25, verbose=0)

    fresh = probe.random_init_copy(model)
    assert type(fresh) is type(model) and fresh.built and fresh.sample_shape == model.sample_shape
    assert [w.shape for w in fresh.weights] == [w.shape for w in model.weights]
    # Seeded initializers: the copy starts where the original started, not where it ended.
    for a, b, c in zip(fresh.encoder.weights, initial, model.encoder.weights):
        np.testing.assert_array_equal(a.numpy(), b)
    assert not all(np.array_equal(a.numpy(), c.numpy()) for a, c in zip(fresh.encoder.weights, model.encoder.weights))
    # A new seed draws other weights.
    reseeded = probe.random_init_copy(model, seed=123)
    assert not np.array_equal(reseeded.encoder.weights[0].numpy(), initial[0])
    assert model.get_config()["encoder"] == probe.random_init_copy(model).get_config()["encoder"]


def test_probe_accepts_datasets_and_leaves_the_model_untouched():
    x, y = _toy_labelled(150, (12,), seed=6)
    xt, yt = _toy_labelled(70, (12,), seed=7)
    model = _dense_model()
    before = [w.numpy().copy() for w in model.weights]
    train = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(150, seed=0).batch(32)
    test = tf.data.Dataset.from_tensor_slices((xt, yt)).batch(32)
    result = probe.linear_probe(model, train, test, epochs=3, learning_rate=1e-2)
    assert (result.n_train, result.n_test, result.n_classes, result.feature_dim) == (150, 70, 3, 24)
    assert result.accuracy > 0.6  # the toy classes are linearly separable
    from_numpy = probe.linear_probe(model, (x, y), (xt, yt), epochs=3, batch_size=32, learning_rate=1e-2, l2=1e-4)
    assert from_numpy.n_train == 150 and from_numpy.accuracy > 0.6
    for w, b in zip(model.weights, before):
        np.testing.assert_array_equal(w.numpy(), b)
    assert model.encoder.trainable


def test_probe_builds_an_unbuilt_model():
    x, y = _toy_labelled(40, (12,))
    model = delvm_tf.DELVM(encoder=delvm_tf.networks.dense([5]))
    result = probe.linear_probe(model, (x, y), (x, y), epochs=1)
    assert model.built and result.feature_dim == 5


# ------------------------------------------------------------------------------ errors
def test_probe_errors_are_clear():
    x, y = _toy_labelled(30, (12,))
    model = _dense_model()
    with pytest.raises(ValueError, match="layer_outputs"):
        probe.linear_probe(object(), (x, y), (x, y))
    with pytest.raises(ValueError, match="tuple \\(x, y\\)"):
        probe.linear_probe(model, x, (x, y))
    with pytest.raises(ValueError, match="30 samples but y has 29"):
        probe.linear_probe(model, (x, y[:-1]), (x, y))
    with pytest.raises(ValueError, match="non-negative"):
        probe.linear_probe(model, (x, y - 5), (x, y))
    with pytest.raises(ValueError, match="integer class indices"):
        probe.linear_probe(model, (x, y + 0.5), (x, y))
    with pytest.raises(ValueError, match="at least 2 classes"):
        probe.linear_probe(model, (x, np.zeros_like(y)), (x, y))
    with pytest.raises(ValueError, match="pool"):
        probe.linear_probe(model, (x, y), (x, y), pool=0)
    with pytest.raises(ValueError, match="epochs"):
        probe.linear_probe(model, (x, y), (x, y), epochs=0)
    with pytest.raises(ValueError, match="shape"):
        probe.linear_probe(model, (x[:, :5], y), (x, y))
    with pytest.raises(ValueError, match="NaN"):
        probe.linear_probe(model, (np.full_like(x, np.nan), y), (x, y))
    unlabelled = tf.data.Dataset.from_tensor_slices(x).batch(8)
    with pytest.raises(ValueError, match="\\(x, y\\) batches"):
        probe.linear_probe(model, unlabelled, (x, y))
    unbatched = tf.data.Dataset.from_tensor_slices((x, y))
    with pytest.raises(ValueError, match="batch"):
        probe.linear_probe(model, unbatched, (x, y))
    with pytest.raises(ValueError, match="n_classes=2"):
        probe.linear_probe(model, (x, y), (x, y), n_classes=2)
