"""Baselines DEM, CEBM and (C)AE: energies against independent maths, training on real ECG,
serialisation and input errors. Fixtures ``float64``, ``rng`` and ``ecg_normal_slice``
come from tests/conftest.py."""

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import delvm_tf
from delvm_tf import networks, samplers
from delvm_tf.autoencoder import AutoEncoder, mirror_decoder
from delvm_tf.cebm import CEBM, default_encoder, sgld_sampler
from delvm_tf.dem import DEM


# ------------------------------------------------------------------ helpers
def softplus(a):
    return np.logaddexp(0.0, a)


def dense_dem(sigma=1.0, **kwargs):
    model = DEM(encoder=networks.dense([5], seed=0), hidden_units=4, sigma=sigma, seed=0, **kwargs)
    model.build((None, 6))
    return model


def conv_dem(**kwargs):
    model = DEM(encoder=networks.conv([2], [3], seed=0), hidden_units=3, seed=0, **kwargs)
    model.build((None, 5, 5, 1))
    return model


def dense_cebm(**kwargs):
    kwargs.setdefault("sampler", samplers.LangevinSampler(steps=3, step_size=0.1, persistent=True,
                                                          buffer_size=32))
    model = CEBM(encoder=networks.dense([5], activation="tanh", seed=0), latent_dim=3, seed=0, **kwargs)
    model.build((None, 6))
    return model


def conv_cebm(**kwargs):
    model = CEBM(encoder=default_encoder("image", n_layers=2, seed=0), latent_dim=3, seed=0,
                 sampler=samplers.LangevinSampler(steps=2, persistent=True, buffer_size=16), **kwargs)
    model.build((None, 6, 6, 1))
    return model


def randomise(model, rng, scale=0.5):
    """Non-trivial weights (biases included) so that every term of the energy matters."""
    for v in model.trainable_variables:
        v.assign(scale * rng.normal(size=v.shape))


def brute_force_gradient_and_hessian(energy_fn, x):
    """``∇E`` and the full Hessian per sample, by nested tapes (no delvm_tf code)."""
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            energy = tf.reduce_sum(energy_fn(x))
        gradient = inner.gradient(energy, x)
    hessian = outer.batch_jacobian(gradient, x)  # (B, *shape, *shape)
    d = int(np.prod(x.shape[1:]))
    return tf.reshape(gradient, [-1, d]).numpy(), tf.reshape(hessian, [-1, d, d]).numpy()


def dem_energy_by_hand(model, x):
    """DEM energy written out from the weights (dense ReLU encoder of one layer)."""
    layer = model.encoder.layers[0]
    g = tf.nn.relu(tf.matmul(x, layer.kernel) + layer.bias)
    a = tf.matmul(g, model.top.kernel) + model.top.bias
    base = tf.reduce_sum(tf.square(x - model.visible_bias), axis=1) / (2 * model.sigma ** 2)
    return base - tf.reduce_sum(tf.math.softplus(a), axis=1)


def cebm_energy_by_hand(model, x):
    """CEBM energy from the weights: η from tanh(Wx+c) and the head, then A(λ) − A(λ+η)."""
    layer = model.encoder.layers[0]
    h = tf.tanh(tf.matmul(x, layer.kernel) + layer.bias)
    raw = tf.matmul(h, model.head.kernel) + model.head.bias
    k = model.latent_dim
    eta1, eta2 = raw[:, :k], -tf.math.softplus(raw[:, k:])
    post2 = -0.5 + eta2
    log_a_post = tf.reduce_sum(-tf.square(eta1) / (4 * post2) - 0.5 * tf.math.log(-2 * post2), axis=1)
    return 0.0 - log_a_post  # A(λ) = Σ[0 − ½ log 1] = 0


# ------------------------------------------------------------ energies, scores
@pytest.mark.parametrize("build, by_hand", [(dense_dem, dem_energy_by_hand), (dense_cebm, cebm_energy_by_hand)])
def test_energy_and_score_match_independent_autodiff(build, by_hand, float64, rng):
    model = build()
    randomise(model, rng)
    x = rng.normal(size=(7, 6))
    np.testing.assert_allclose(model.energy(x), by_hand(model, tf.constant(x)).numpy(), rtol=1e-10, atol=1e-12)
    gradient, _ = brute_force_gradient_and_hessian(lambda x_: by_hand(model, x_), x)
    np.testing.assert_allclose(model.score(x), -gradient, rtol=1e-9, atol=1e-12)
    # and a central finite difference on one coordinate
    eps = 1e-6
    shift = np.zeros_like(x)
    shift[:, 2] = eps
    numeric = (model.energy(x + shift) - model.energy(x - shift)) / (2 * eps)
    np.testing.assert_allclose(-model.score(x)[:, 2], numeric, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("build", [conv_dem, conv_cebm])
def test_conv_score_is_minus_energy_gradient(build, float64, rng):
    model = build()
    randomise(model, rng, 0.3)
    shape = model.sample_shape
    x = rng.normal(size=(3, *shape))
    gradient, _ = brute_force_gradient_and_hessian(lambda x_: model.compute_energy(x_), x)
    np.testing.assert_allclose(model.score(x).reshape(3, -1), -gradient, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("build, sigma", [(dense_dem, 1.0), (dense_dem, 0.7), (conv_dem, 1.0)])
def test_dem_exact_score_matching_equals_full_hessian(build, sigma, float64, rng):
    model = build(sigma=sigma) if build is dense_dem else build()
    randomise(model, rng)
    x = rng.normal(size=(4, *model.sample_shape))
    gradient, hessian = brute_force_gradient_and_hessian(lambda x_: model.compute_energy(x_), x)
    expected = 0.5 * np.sum(gradient ** 2, axis=1) - np.trace(hessian, axis1=1, axis2=2)
    loss = delvm_tf.score_matching_loss(model, x, estimator="exact").numpy()
    np.testing.assert_allclose(loss, expected, rtol=1e-9, atol=1e-10)
    # softplus curvature makes the Hessian differ from the piecewise-linear DELVM form
    assert np.abs(np.trace(hessian, axis1=1, axis2=2) - model.hessian_trace(tf.constant(x)).numpy()).max() < 1e-9


def test_dem_sliced_score_matching_is_unbiased(float64, rng):
    model = dense_dem()
    randomise(model, rng)
    x = rng.normal(size=(3, 6))
    exact = delvm_tf.score_matching_loss(model, x, estimator="exact").numpy()
    m = 4000
    sliced = delvm_tf.score_matching_loss(model, x, estimator="sliced", n_projections=m,
                                          seed=keras.random.SeedGenerator(0)).numpy()
    _, hessian = brute_force_gradient_and_hessian(lambda x_: model.compute_energy(x_), x)
    off_diagonal = hessian - np.einsum("bii->bi", hessian)[:, :, None] * np.eye(6)
    std = np.sqrt(2 * np.sum(off_diagonal ** 2, axis=(1, 2)) / m)  # Rademacher vᵀHv variance
    assert np.all(np.abs(sliced - exact) < 5 * std + 1e-9)


def test_cebm_energy_is_log_partition_difference(float64, rng):
    model = conv_cebm()
    randomise(model, rng, 0.3)
    x = rng.normal(size=(5, 6, 6, 1))
    eta1, eta2 = (t.numpy() for t in model.natural_parameters(tf.constant(x)))
    assert eta1.shape == eta2.shape == (5, 3) and np.all(eta2 < 0)
    # η from the encoder output and the head, in numpy
    features = model.encoder(tf.constant(x)).numpy().reshape(5, -1)
    raw = features @ model.head.kernel.numpy() + model.head.bias.numpy()
    np.testing.assert_allclose(eta1, raw[:, :3], rtol=1e-12)
    np.testing.assert_allclose(eta2, -softplus(raw[:, 3:]), rtol=1e-12)

    def log_partition(n1, n2):
        return np.sum(-n1 ** 2 / (4 * n2) - 0.5 * np.log(-2 * n2), axis=-1)

    prior1, prior2 = np.zeros(3), np.full(3, -0.5)
    expected = log_partition(prior1, prior2) - log_partition(prior1 + eta1, prior2 + eta2)
    np.testing.assert_allclose(model.energy(x), expected, rtol=1e-10, atol=1e-12)
    # posterior N(μ, s²): μ = −η1'/(2η2'), s² = −1/(2η2')
    mean, std = model.latent_params(x)
    np.testing.assert_allclose(mean, -eta1 / (2 * (eta2 - 0.5)), rtol=1e-10)
    np.testing.assert_allclose(std ** 2, -1 / (2 * (eta2 - 0.5)), rtol=1e-10)
    # no Gaussian base on x: the bias b is unused and frozen; x̂ = x − σ²∇E
    assert all("visible_bias" not in v.path for v in model.trainable_variables)
    np.testing.assert_allclose(model.reconstruct(x), x + model.score(x), rtol=1e-10, atol=1e-12)


def test_cebm_defaults_follow_the_cebm_repository():
    sampler = sgld_sampler()
    assert sampler.persistent and sampler.steps == 60 and sampler.buffer_size == 5000
    assert sampler.step_size == 2.0 and math.isclose(sampler.reinit_prob, 0.05)
    # s·√ε equals CEBM's per-step noise std 0.0075
    assert math.isclose(sampler.noise_scale * math.sqrt(sampler.step_size), 0.0075)
    assert sampler.max_gradient_norm == 1.0  # our stabiliser; None gives CEBM's exact recipe
    assert sgld_sampler(max_gradient_norm=None).max_gradient_norm is None
    model = CEBM(encoder=default_encoder("ecg"))
    assert model.objective == "cd" and model.latent_dim == 128 and model.default_anomaly_score == "energy"
    assert isinstance(model.sampler, samplers.LangevinSampler) and model.sampler.persistent
    assert [layer.units for layer in model.encoder.layers] == [2048]
    image = default_encoder("image")
    assert [layer.filters for layer in image.layers] == [64, 64, 32, 32]
    assert [layer.kernel_size[0] for layer in image.layers] == [3, 4, 4, 4]
    assert [layer.strides[0] for layer in image.layers] == [1, 2, 2, 2]
    assert image.compute_output_shape((None, 28, 28, 1)) == (None, 4, 4, 32)
    assert len(default_encoder("ecg", n_layers=3).layers) == 3
    with pytest.raises(ValueError, match="kind"):
        default_encoder("audio")
    with pytest.raises(ValueError, match="n_layers"):
        default_encoder("image", n_layers=5)


# ------------------------------------------------------------ autoencoders
def test_mirrored_dense_decoder(rng):
    model = AutoEncoder(encoder=networks.dense([8, 4], seed=0), seed=0)
    x = rng.normal(size=(5, 10)).astype(np.float32)
    recon = model.reconstruct(x)
    decoder = model.decoder
    assert [type(l).__name__ for l in decoder.layers] == ["Dense", "Dense"]
    assert [l.units for l in decoder.layers] == [8, 10]
    assert keras.activations.serialize(decoder.layers[-1].activation) == "linear"
    assert keras.activations.serialize(decoder.layers[0].activation) == "relu"
    np.testing.assert_allclose(recon, decoder(model.encoder(x)).numpy(), rtol=1e-6)
    np.testing.assert_allclose(model.reconstruction_error(x), np.sum((x - recon) ** 2, axis=1), rtol=1e-5)
    loss = model.per_sample_loss(tf.constant(x)).numpy()
    np.testing.assert_allclose(loss, np.mean((x - recon) ** 2, axis=1), rtol=1e-5)  # per-sample MSE
    assert [o.shape for o in model.layer_outputs(x)] == [(5, 8), (5, 4)]


def test_mirrored_conv_decoder(rng):
    encoder = keras.Sequential([keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="c0"),
                                keras.layers.Conv2D(4, 4, strides=2, padding="same", activation="relu", name="c1"),
                                keras.layers.MaxPooling2D(2, name="pool"),
                                keras.layers.Flatten(name="flat"),
                                keras.layers.Dense(6, activation="relu", name="d0")])
    decoder = mirror_decoder(encoder, (None, 7, 7, 2))
    names = [type(l).__name__ for l in decoder.layers]
    assert names[:2] == ["Dense", "Reshape"] and names.count("Conv2DTranspose") == 2
    assert tuple(decoder.compute_output_shape((None, 6))) == (None, 7, 7, 2)
    cae = AutoEncoder(encoder=networks.conv([4, 5], [3, 5], seed=0))
    x = rng.normal(size=(3, 9, 9, 2)).astype(np.float32)
    assert cae.reconstruct(x).shape == x.shape
    assert [type(l).__name__ for l in cae.decoder.layers] == ["Conv2DTranspose", "Conv2DTranspose"]
    assert cae.decoder.layers[-1].filters == 2
    assert [o.shape for o in cae.layer_outputs(x)] == [(3, 9, 9, 4), (3, 9, 9, 5)]


def test_autoencoder_with_given_decoder(rng):
    decoder = keras.Sequential([keras.layers.Dense(10, name="out")], name="my_decoder")
    model = AutoEncoder(encoder=networks.dense([3], seed=0), decoder=decoder)
    x = rng.normal(size=(4, 10)).astype(np.float32)
    assert model.reconstruct(x).shape == (4, 10)
    assert model.decoder is decoder
    bad = AutoEncoder(encoder=networks.dense([3]), decoder=keras.Sequential([keras.layers.Dense(7)]))
    with pytest.raises(ValueError, match="reproduce the input shape"):
        bad.build((None, 10))


# ------------------------------------------------------------ training on ECG
def _fit(model, x, epochs, lr):
    keras.utils.set_random_seed(0)
    model.compile(optimizer=keras.optimizers.Adam(lr))
    history = model.fit(x, epochs=epochs, batch_size=100, verbose=0, shuffle=False)
    losses = history.history["loss"]
    assert all(np.isfinite(losses)), losses
    assert model.divergence is None
    return losses


def test_dem_sm_loss_falls_on_ecg(ecg_normal_slice):
    model = DEM(encoder=networks.dense([8], seed=0), hidden_units=4, objective="sm", seed=0)
    losses = _fit(model, ecg_normal_slice, epochs=4, lr=1e-2)
    assert losses[-1] < losses[0], losses
    assert model.reconstruction_error(ecg_normal_slice[:10]).shape == (10,)
    assert [o.shape for o in model.layer_outputs(ecg_normal_slice[:10])] == [(10, 8)]


# For CD the reported loss E(x) − E(x') is not an objective that must fall (it rises whenever
# the chains find lower energies than the data); CD training is checked by the data energy
# falling relative to noise instead.
def _energy_gap(model, x):
    noise = np.random.default_rng(1).uniform(-1, 1, size=x.shape).astype(np.float32)
    return float(model.energy(noise).mean() - model.energy(x).mean())


def test_dem_cd_lowers_data_energy_on_ecg(ecg_normal_slice):
    sampler = samplers.LangevinSampler(steps=5, step_size=0.05)
    model = DEM(encoder=networks.dense([8], seed=0), hidden_units=4, objective="cd", sampler=sampler, seed=0)
    model.build((None, 140))
    before = _energy_gap(model, ecg_normal_slice)
    _fit(model, ecg_normal_slice, epochs=3, lr=1e-2)
    assert _energy_gap(model, ecg_normal_slice) > before + 1.0


def test_cebm_lowers_data_energy_on_ecg(ecg_normal_slice):
    sampler = sgld_sampler(steps=10, buffer_size=300)  # CEBM's step sizes, fewer steps
    model = CEBM(encoder=default_encoder("ecg", units=16, seed=0), latent_dim=4, sampler=sampler, seed=0)
    model.build((None, 140))
    before = _energy_gap(model, ecg_normal_slice)
    buffer_before = sampler.buffer.numpy().copy()
    _fit(model, ecg_normal_slice, epochs=4, lr=1e-3)
    assert _energy_gap(model, ecg_normal_slice) > before + 0.2
    assert not np.allclose(sampler.buffer.numpy(), buffer_before)  # the persistent chains moved
    assert np.isfinite(sampler.buffer.numpy()).all()


def test_autoencoder_loss_falls_on_ecg(ecg_normal_slice):
    model = AutoEncoder(encoder=networks.dense([16], seed=0), seed=0)
    losses = _fit(model, ecg_normal_slice, epochs=4, lr=1e-2)
    assert losses[-1] < 0.8 * losses[0], losses
    assert [o.shape for o in model.layer_outputs(ecg_normal_slice[:10])] == [(10, 16)]


def test_cae_trains_on_ecg_as_an_image(ecg_normal_slice):
    x = ecg_normal_slice[:200, :140].reshape(200, 10, 14, 1)
    model = AutoEncoder(encoder=networks.conv([4], [3], seed=0), seed=0)
    losses = _fit(model, x, epochs=3, lr=1e-2)
    assert losses[-1] < losses[0], losses


def test_dem_works_with_layerwise_adam(rng):
    model = DEM(encoder=networks.dense([4, 3], seed=0), hidden_units=2, seed=0)
    optimizer = delvm_tf.layerwise_adam(model, [1e-2, 1e-3])
    optimizer.learning_rate_multipliers["dem_top"] = 0.5
    model.compile(optimizer=optimizer)
    model.fit(rng.normal(size=(20, 5)).astype(np.float32), epochs=1, batch_size=10, verbose=0)
    assert optimizer.multiplier_for(model.top.kernel.path) == 0.5


# ------------------------------------------------------------ serialisation
def _roundtrip(model, tmp_path):
    path = tmp_path / "m.keras"
    model.save(path)
    return keras.saving.load_model(path)


@pytest.mark.parametrize("make", ["dem_dense", "dem_conv", "cebm", "ae", "cae", "ae_decoder"])
def test_save_and_load_round_trip(make, tmp_path, rng):
    x_flat = rng.uniform(size=(12, 6)).astype(np.float32)
    x_img = rng.uniform(size=(4, 6, 6, 1)).astype(np.float32)
    if make == "dem_dense":
        model, x = DEM(encoder=networks.dense([5]), hidden_units=3, objective="cd", sigma=0.5, seed=3), x_flat
    elif make == "dem_conv":
        model, x = DEM(encoder=networks.conv([2], [3]), hidden_units=3, estimator="sliced", n_projections=2), x_img
    elif make == "cebm":
        model, x = CEBM(encoder=default_encoder("image", n_layers=2), latent_dim=3,
                        sampler=sgld_sampler(steps=2, buffer_size=8), energy_regularization=0.2), x_img
    elif make == "ae":
        model, x = AutoEncoder(encoder=networks.dense([4, 2])), x_flat
    elif make == "cae":
        model, x = AutoEncoder(encoder=default_encoder("image", n_layers=3, activation="relu")), x_img
    else:
        decoder = keras.Sequential([keras.layers.Dense(6, activation="sigmoid", name="out")], name="given")
        model, x = AutoEncoder(encoder=networks.dense([3]), decoder=decoder), x_flat
    model.compile(optimizer="adam")
    model.fit(x, epochs=1, batch_size=4, verbose=0)
    loaded = _roundtrip(model, tmp_path)
    assert type(loaded) is type(model)
    assert json.loads(json.dumps(loaded.get_config())) == json.loads(json.dumps(model.get_config()))
    np.testing.assert_array_equal(loaded.reconstruct(x), model.reconstruct(x))
    np.testing.assert_array_equal(loaded.reconstruction_error(x), model.reconstruction_error(x))
    for a, b in zip(loaded.layer_outputs(x), model.layer_outputs(x)):
        np.testing.assert_array_equal(a, b)
    if hasattr(model, "energy"):
        np.testing.assert_array_equal(loaded.energy(x), model.energy(x))
        np.testing.assert_array_equal(loaded.score(x), model.score(x))
    if make == "cebm":
        assert loaded.sampler.persistent and loaded.energy_regularization == 0.2
        np.testing.assert_array_equal(loaded.sampler.buffer.numpy(), model.sampler.buffer.numpy())
        for a, b in zip(loaded.latent_params(x), model.latent_params(x)):
            np.testing.assert_array_equal(a, b)
    if make == "ae_decoder":
        assert loaded.decoder.name == "given" and loaded.get_config()["decoder"] is not None
    if make in ("ae", "cae"):
        assert model.get_config()["decoder"] is None


# ------------------------------------------------------------ input errors
@pytest.mark.parametrize("build", [dense_dem, dense_cebm,
                                   lambda: AutoEncoder(encoder=networks.dense([3]))])
def test_bad_inputs_are_refused(build, rng):
    model = build()
    x = rng.normal(size=(4, 6)).astype(np.float32)
    model.reconstruction_error(x)  # builds the AE
    with pytest.raises(ValueError, match="built for inputs of shape"):
        model.reconstruction_error(rng.normal(size=(4, 7)))
    bad = x.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.reconstruct(bad)
    with pytest.raises(ValueError, match="numeric"):
        model.layer_outputs(np.array([["a"] * 6]))
    if hasattr(model, "energy"):
        with pytest.raises(ValueError, match="NaN"):
            model.energy(bad)
        with pytest.raises(ValueError, match="built for inputs of shape"):
            model.score(rng.normal(size=(4, 2, 3)))


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="Unknown objective"):
        DEM(encoder=networks.dense([3]), hidden_units=2, objective="ml")
    with pytest.raises(ValueError, match="Unknown objective"):
        CEBM(encoder=networks.dense([3]), objective="ml")
    with pytest.raises(ValueError, match="langevin"):
        DEM(encoder=networks.dense([3]), hidden_units=2, objective="cd", sampler="paper")
    with pytest.raises(ValueError, match="langevin"):
        CEBM(encoder=networks.dense([3]), sampler="paper")
    with pytest.raises(ValueError, match="hidden_units"):
        DEM(encoder=networks.dense([3]), hidden_units=0)
    with pytest.raises(ValueError, match="latent_dim"):
        CEBM(encoder=networks.dense([3]), latent_dim=2.5)
    with pytest.raises(ValueError, match=">= 0"):
        CEBM(encoder=networks.dense([3]), energy_regularization=-1.0)
    with pytest.raises(ValueError, match="encoder must be a Keras layer"):
        AutoEncoder(encoder="dense")
    with pytest.raises(ValueError, match="decoder must be a Keras layer"):
        AutoEncoder(encoder=networks.dense([3]), decoder="mirror")
    unsupported = keras.Sequential([keras.layers.Conv1D(2, 3), keras.layers.Flatten()])
    with pytest.raises(ValueError, match="Cannot mirror"):
        AutoEncoder(encoder=unsupported).build((None, 8, 1))


def test_encoders_with_flatten_build(rng):
    """Unbuilt Sequential encoders with a Flatten layer (a Keras 3 compute_output_spec quirk)."""
    def encoder():
        return keras.Sequential([keras.layers.Conv2D(2, 3, activation="relu"), keras.layers.Flatten(),
                                 keras.layers.Dense(4, activation="relu")])
    x = rng.normal(size=(3, 6, 6, 1)).astype(np.float32)
    for model in (DEM(encoder=encoder(), hidden_units=2), CEBM(encoder=encoder(), latent_dim=2),
                  AutoEncoder(encoder=encoder())):
        assert model.reconstruct(x).shape == x.shape
        assert [o.shape for o in model.layer_outputs(x)] == [(3, 4, 4, 2), (3, 32), (3, 4)]


def test_dem_defaults():
    model = DEM(encoder=networks.dense([3]), hidden_units=2, objective="cd")
    assert isinstance(model.sampler, samplers.LangevinSampler)
    assert model.default_anomaly_score == "reconstruction_error"
    assert AutoEncoder.default_anomaly_score == "reconstruction_error"
