"""CD samplers: their statistics on models whose answer is known in closed form."""

import keras
import numpy as np
import tensorflow as tf

import delvm_tf
from delvm_tf import networks, samplers


def linear_delvm(sigma=1.0, sampler="paper"):
    model = delvm_tf.DELVM(encoder=networks.dense([2], activation="linear", seed=0), objective="cd",
                           sampler=sampler, sigma=sigma, seed=0)
    model.build((None, 3))
    return model


def test_paper_sampler_matches_the_conditional_gaussian():
    """Linear f = Wᵀx + c: x' = b + σ²W h, h ~ N(f(x), I), so x' ~ N(b + σ²W f(x), σ⁴ W Wᵀ)."""
    sigma = 0.8
    model = linear_delvm(sigma)
    layer = model.encoder.layers[0]
    layer.kernel.assign([[0.5, -0.2], [0.1, 0.4], [-0.3, 0.2]])
    layer.bias.assign([0.3, -0.1])
    model.visible_bias.assign([0.1, 0.2, -0.1])
    x = np.tile([[1.0, -1.0, 0.5]], (50_000, 1)).astype(np.float32)
    negatives = model.sampler.sample(model, tf.constant(x), seed=model.seed_generator).numpy()
    w, c, b = layer.kernel.numpy(), layer.bias.numpy(), model.visible_bias.numpy()
    np.testing.assert_allclose(negatives.mean(0), b + sigma ** 2 * w @ (x[0] @ w + c), atol=0.01)
    np.testing.assert_allclose(np.cov(negatives.T), sigma ** 4 * w @ w.T, atol=0.01)


def test_langevin_samples_a_gaussian_energy():
    """With W = 0, E(x) = ||x − b||²/(2σ²): long Langevin chains reach N(b, σ²I)."""
    sigma = 0.5
    model = linear_delvm(sigma, sampler=samplers.LangevinSampler(steps=300, step_size=0.01))
    for weight in model.encoder.weights:
        weight.assign(np.zeros(weight.shape))
    model.visible_bias.assign([1.0, -1.0, 0.0])
    start = np.zeros((4000, 3), np.float32)
    chains = tf.function(lambda x: model.sampler.sample(model, x, seed=model.seed_generator))(start).numpy()
    np.testing.assert_allclose(chains.mean(0), [1.0, -1.0, 0.0], atol=0.03)
    # ULA has a small O(ε) bias in the variance: σ²/(1 − ε/(4σ²)).
    np.testing.assert_allclose(chains.var(0), sigma ** 2 / (1 - 0.01 / (4 * sigma ** 2)), rtol=0.06)


def test_persistent_chains_are_stored_and_reused():
    sampler = samplers.LangevinSampler(steps=2, step_size=0.1, persistent=True, buffer_size=8, reinit_prob=0.0)
    model = linear_delvm(sampler=sampler)
    before = sampler.buffer.numpy().copy()
    x = np.zeros((8, 3), np.float32)
    out = sampler.sample(model, tf.constant(x), seed=model.seed_generator, training=True).numpy()
    after = sampler.buffer.numpy()
    assert not np.allclose(before, after)
    # every written chain is one of the returned samples
    assert all(np.isclose(after[i], out).all(axis=1).any() for i in range(8) if not np.allclose(after[i], before[i]))
    # evaluation does not touch the buffer
    sampler.sample(model, tf.constant(x), seed=model.seed_generator, training=False)
    np.testing.assert_array_equal(sampler.buffer.numpy(), after)


def test_cd_loss_is_energy_difference():
    model = linear_delvm()
    x = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
    keras.utils.set_random_seed(1)
    loss = delvm_tf.contrastive_divergence_loss(model, x, model.sampler, seed=keras.random.SeedGenerator(3))
    negatives = model.sampler.sample(model, tf.constant(x), seed=keras.random.SeedGenerator(3))
    np.testing.assert_allclose(loss, model.energy(tf.constant(x)) - model.energy(negatives), rtol=1e-5, atol=1e-5)


def test_cd_training_moves_towards_the_data():
    """CD-DELVM with the paper sampler lowers the energy of the data relative to noise."""
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(2000, 6)) * 0.3 + 2.0).astype(np.float32)
    model = delvm_tf.DELVM(encoder=networks.dense([8], seed=0), objective="cd", seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(x, epochs=5, batch_size=100, verbose=0)
    noise = rng.normal(size=(2000, 6)).astype(np.float32)
    assert model.energy(x).mean() < model.energy(noise).mean()


def test_single_layer_mean_field_step_matches_autodiff():
    """The written-out J_fᵀh of a one-layer conv DELVM equals the reverse-mode VJP (same noise)."""
    model = delvm_tf.DELVM(encoder=networks.conv([3], [3], seed=0), objective="cd", seed=0)
    model.build((None, 5, 5, 2))
    assert model.closed_form_layer is not None
    x = tf.constant(np.random.default_rng(0).normal(size=(4, 5, 5, 2)).astype(np.float32))
    fast = model.sample_visible(x, seed=keras.random.SeedGenerator(7))
    with tf.GradientTape() as tape:
        tape.watch(x)
        features = model.encoder(x)
    hidden = features + keras.random.normal(tf.shape(features), seed=keras.random.SeedGenerator(7))
    slow = model.visible_bias + tape.gradient(features, x, output_gradients=hidden)
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-5)
