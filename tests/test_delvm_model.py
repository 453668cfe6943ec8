"""DELVM as a Keras citizen: fit/evaluate/predict, save/load, optimizers, callbacks, bad input."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import delvm_tf
from delvm_tf import networks, samplers


@pytest.fixture
def images(rng):
    return rng.normal(size=(200, 8, 8, 1)).astype(np.float32)


def conv_model(**kwargs):
    return delvm_tf.DELVM(encoder=networks.conv([4, 4], [3, 3], seed=0), seed=0, **kwargs)


def test_usage_from_the_readme(images):
    model = conv_model(objective="sm", estimator="exact")
    model.compile(optimizer=delvm_tf.layerwise_adam(model, [1e-3, 1e-4]))
    history = model.fit(images, epochs=2, batch_size=100, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()
    x = images[:5]
    assert model.energy(x).shape == (5,)
    assert model.score(x).shape == x.shape
    assert model.reconstruct(x).shape == x.shape
    assert model.reconstruction_error(x).shape == (5,)
    assert [o.shape for o in model.layer_outputs(x)] == [(5, 8, 8, 4), (5, 8, 8, 4)]
    assert model.predict(x, verbose=0).shape == (5, 8, 8, 4)
    assert np.isfinite(model.evaluate(images, batch_size=100, verbose=0))
    for estimator in ("exact", "sliced", "denoising"):
        loss = delvm_tf.score_matching_loss(model, x, estimator=estimator, n_projections=2, noise_std=0.1)
        assert loss.shape == (5,)


@pytest.mark.parametrize("kwargs", [
    dict(objective="sm", estimator="sliced", n_projections=2),
    dict(objective="sm", estimator="denoising"),
    dict(objective="cd", sampler="paper"),
    dict(objective="cd", sampler=samplers.LangevinSampler(steps=3, persistent=True, buffer_size=50)),
])
def test_every_objective_trains_from_tf_data(kwargs, images):
    model = conv_model(**kwargs)
    model.compile(optimizer="adam")
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(50)
    history = model.fit(dataset, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def test_save_and_load_round_trip(tmp_path, images):
    model = conv_model(objective="cd", sampler=samplers.LangevinSampler(steps=2, persistent=True, buffer_size=20))
    model.compile(optimizer=delvm_tf.layerwise_adam(model, [1e-3, 1e-4], bias_learning_rate=1e-2))
    model.fit(images, epochs=1, batch_size=100, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded, delvm_tf.DELVM) and isinstance(loaded.optimizer, delvm_tf.LayerwiseAdam)
    assert loaded.sampler.get_config() == model.sampler.get_config()
    x = images[:7]
    np.testing.assert_array_equal(loaded.energy(x), model.energy(x))
    np.testing.assert_array_equal(loaded.score(x), model.score(x))
    np.testing.assert_array_equal(loaded.sampler.buffer.numpy(), model.sampler.buffer.numpy())
    # optimizer state (Adam moments, per-layer rates) survives: one more identical step
    loaded.seed_generator.state.assign(model.seed_generator.state.numpy())
    for m in (model, loaded):
        m.fit(images[:100], epochs=1, batch_size=100, shuffle=False, verbose=0)
    for a, b in zip(model.trainable_variables, loaded.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)


def test_layerwise_learning_rates_are_applied(images):
    """A layer with learning rate 0 does not move; the others do."""
    model = conv_model()
    model.compile(optimizer=delvm_tf.layerwise_adam(model, [1e-2, 1e-30], bias_learning_rate=1e-30))
    model.build((None, 8, 8, 1))
    first, second = model.encoder.layers
    before = [v.numpy().copy() for v in (first.kernel, second.kernel, model.visible_bias)]
    model.fit(images, epochs=1, batch_size=100, verbose=0)
    assert not np.allclose(first.kernel.numpy(), before[0])
    np.testing.assert_allclose(second.kernel.numpy(), before[1], atol=1e-20)
    np.testing.assert_allclose(model.visible_bias.numpy(), before[2], atol=1e-20)
    optimizer = model.optimizer
    assert optimizer.multiplier_for(second.kernel.path) == pytest.approx(1e-28)


def test_layerwise_adam_checks_its_arguments():
    model = conv_model()
    with pytest.raises(ValueError, match="2 weighted encoder layers"):
        delvm_tf.layerwise_adam(model, [1e-3])
    with pytest.raises(ValueError, match="positive"):
        delvm_tf.layerwise_adam(model, [1e-3, -1.0])


def test_keras_callbacks_work(tmp_path, images):
    model = conv_model()
    model.compile(optimizer="adam")
    callbacks = [keras.callbacks.ModelCheckpoint(tmp_path / "best.keras", monitor="loss"),
                 keras.callbacks.TerminateOnNaN(),
                 keras.callbacks.TensorBoard(log_dir=str(tmp_path / "logs"))]
    model.fit(images, epochs=1, batch_size=100, callbacks=callbacks, validation_data=(images[:100],), verbose=0)
    assert (tmp_path / "best.keras").exists() and any((tmp_path / "logs").rglob("*"))


def test_training_is_deterministic_given_seeds(images):
    histories = []
    for _ in range(2):
        keras.utils.set_random_seed(0)
        model = conv_model(objective="cd", sampler=samplers.LangevinSampler(steps=3))
        model.compile(optimizer="adam")
        histories.append(model.fit(images, epochs=2, batch_size=50, verbose=0).history["loss"])
    assert histories[0] == histories[1]


def test_divergence_stops_and_keeps_last_good_weights(images):
    """A batch that makes the loss NaN stops training at that step with the weights before it."""
    poisoned = images.copy()
    poisoned[120] = np.nan  # batch 3 of 50
    model = conv_model()
    model.compile(optimizer="adam")

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if np.isfinite(logs["loss"]):
                self.weights = [v.numpy().copy() for v in self.model.trainable_variables]

    record = Record()
    dataset = tf.data.Dataset.from_tensor_slices(poisoned).batch(50)
    with pytest.warns(RuntimeWarning, match=r"diverged.*epoch 1, step 3"):
        model.fit(dataset, epochs=3, callbacks=[record], verbose=0)
    assert model.divergence["step"] == 3 and model.divergence["epoch"] == 1
    for value, variable in zip(record.weights, model.trainable_variables):
        np.testing.assert_array_equal(variable.numpy(), value)
    with pytest.raises(delvm_tf.callbacks.DivergenceError):
        model.fit(dataset, epochs=1, callbacks=[delvm_tf.DivergenceMonitor(raise_error=True)], verbose=0)


def test_data_far_below_sigma_still_trains(rng):
    """Data variance 1e-4 ≪ σ² = 1: DELVM cannot fit it (−½||f||² only widens the base), but training
    must stay finite."""
    x = (0.01 * rng.normal(size=(400, 10))).astype(np.float32)
    for estimator in ("exact", "sliced"):
        model = delvm_tf.DELVM(encoder=networks.dense([16, 16], seed=0), estimator=estimator, seed=0)
        model.compile(optimizer="adam")
        history = model.fit(x, epochs=5, batch_size=100, verbose=0)
        assert np.isfinite(history.history["loss"]).all()
        assert model.divergence is None


def test_visible_bias_can_start_at_the_data_mean(images):
    expected = images.astype(np.float64).mean(axis=0)
    model = conv_model()
    assert model.initialize_visible_bias(images, batch_size=64) is model  # builds the model if needed
    np.testing.assert_allclose(np.asarray(model.visible_bias), expected, atol=1e-6)
    streamed = conv_model()
    streamed.initialize_visible_bias(tf.data.Dataset.from_tensor_slices((images, np.zeros(len(images)))).batch(30))
    np.testing.assert_allclose(np.asarray(streamed.visible_bias), expected, atol=1e-6)
    dem = delvm_tf.DEM(encoder=networks.dense([4], seed=0), hidden_units=3, seed=0)
    dem.initialize_visible_bias(images.reshape(len(images), -1))
    np.testing.assert_allclose(np.asarray(dem.visible_bias), expected.reshape(-1), atol=1e-6)
    with pytest.raises(ValueError, match="NaN or Inf"):
        model.initialize_visible_bias(np.where(images > 2.5, np.nan, images))
    with pytest.raises(ValueError, match="shape"):
        model.initialize_visible_bias(images[:, :4])
    with pytest.raises(ValueError, match="empty"):
        conv_model().initialize_visible_bias(tf.data.Dataset.from_tensor_slices(images[:0]).batch(4))


# ------------------------------------------------------------------ bad input
def test_bad_input_raises_clear_errors(images):
    model = conv_model()
    model.build((None, 8, 8, 1))
    with pytest.raises(ValueError, match=r"built for inputs of shape \(batch, 8, 8, 1\)"):
        model.energy(np.zeros((3, 8, 8, 2), np.float32))
    with pytest.raises(ValueError, match="batch axis"):
        model.score(np.zeros(5, np.float32))
    bad = images[:4].copy()
    bad[2, 3, 3, 0] = np.inf
    with pytest.raises(ValueError, match=r"1 NaN or Inf values \(first at index \(2, 3, 3, 0\)\)"):
        model.reconstruction_error(bad)
    bad[2, 3, 3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        model.fit(bad, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="numeric"):
        model.energy(np.array([["a", "b"]]))


@pytest.mark.parametrize("kwargs, message", [
    (dict(objective="ml"), "Unknown objective 'ml'"),
    (dict(estimator="hutchinson"), "Unknown estimator 'hutchinson'"),
    (dict(objective="cd", sampler="gibbs"), "Unknown sampler 'gibbs'"),
    (dict(projection="sphere", estimator="sliced"), "Unknown projection 'sphere'"),
    (dict(sigma=0.0), "sigma and noise_std must be positive"),
])
def test_unknown_options_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        conv_model(**kwargs)


def test_unusable_encoders_are_rejected():
    with pytest.raises(ValueError, match="Keras layer or model"):
        delvm_tf.DELVM(encoder=lambda x: x)
    inputs = keras.Input((4,))
    two_outputs = keras.Model(inputs, [keras.layers.Dense(2)(inputs), keras.layers.Dense(3)(inputs)])
    with pytest.raises(ValueError, match="single tensor"):
        delvm_tf.DELVM(encoder=two_outputs).build((None, 4))


def test_paper_sampler_needs_a_delvm():
    class Quadratic(delvm_tf.EnergyModel):
        def compute_energy(self, x, training=False):
            return self.base_energy(x)

    with pytest.raises(ValueError, match="needs the DELVM conditional"):
        Quadratic(encoder=networks.dense([2]), objective="cd", sampler="paper")


def test_models_are_freed_after_numpy_calls(images):
    """The compiled numpy-path functions must not keep a model alive (sweeps build many)."""
    import gc
    import weakref

    model = conv_model()
    model.energy(images[:3])
    model.reconstruction_error(images[:3])
    reference = weakref.ref(model)
    del model
    gc.collect()
    assert reference() is None
