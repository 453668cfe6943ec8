"""Every score-matching path against brute force: full autodiff Hessians on tiny models."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import delvm_tf
from delvm_tf import jacobians, networks


def brute_force_sm(model, x):
    """Per-sample ½||∇E||² − tr ∇²E from the full autodiff Hessian of each sample."""
    losses = []
    for row in x:
        xi = tf.constant(row[None])
        with tf.GradientTape() as outer:
            outer.watch(xi)
            with tf.GradientTape() as inner:
                inner.watch(xi)
                energy = model.compute_energy(xi)
            gradient = inner.gradient(energy, xi)
        d = int(np.prod(row.shape))
        hessian = tf.reshape(outer.jacobian(gradient, xi), [d, d])
        losses.append(0.5 * tf.reduce_sum(gradient ** 2) - tf.linalg.trace(hessian))
    return np.array(losses)


def brute_force_score(model, x):
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        energy = tf.reduce_sum(model.compute_energy(xt))
    return -tape.gradient(energy, xt).numpy()


def make_delvm(encoder, shape, **kwargs):
    model = delvm_tf.DELVM(encoder=encoder, seed=0, **kwargs)
    model.build((None, *shape))
    # a non-zero visible bias so that b enters every formula
    model.visible_bias.assign(np.linspace(-0.5, 0.5, int(np.prod(shape))).reshape(shape))
    return model


CASES = {
    # name: (encoder factory, input shape, expected path)
    "dense-closed-form": (lambda: networks.dense([7], seed=1), (5,), "closed_form"),
    "dense-leaky-closed-form": (lambda: networks.dense([7], activation="leaky_relu", seed=1), (5,), "closed_form"),
    "conv-closed-form": (lambda: networks.conv([3], [3], seed=1), (5, 5, 2), "closed_form"),
    "deep-dense-forward": (lambda: networks.dense([9, 8], seed=1), (5,), "forward"),
    "deep-dense-reverse": (lambda: networks.dense([4, 2], seed=1), (10,), "reverse"),
    "deep-conv-forward": (lambda: networks.conv([3, 2], [3, 2], seed=1), (4, 4, 1), "forward"),
    "tanh-generic-hvp": (lambda: networks.dense([6], activation="tanh", seed=1), (4,), "hvp"),
    "deep-softplus-generic-hvp": (lambda: networks.dense([5, 4], activation="softplus", seed=1), (4,), "hvp"),
}


def path_of(model):
    if not model.piecewise_linear:
        return "hvp"
    if model.closed_form_layer is not None:
        return "closed_form"
    d = int(np.prod(model.sample_shape))
    return "forward" if d <= int(np.prod(model.feature_shape)) else "reverse"


@pytest.mark.parametrize("case", sorted(CASES))
def test_exact_paths_match_full_hessian(case, float64, rng):
    factory, shape, expected_path = CASES[case]
    model = make_delvm(factory(), shape, sigma=0.8)
    assert path_of(model) == expected_path
    x = rng.normal(size=(4, *shape))
    exact = delvm_tf.score_matching_loss(model, x, estimator="exact").numpy()
    # TF's second derivative of leaky_relu uses its slope as a float32 attribute (0.2f), so the
    # brute force itself is only float32-accurate there.
    rtol = 1e-6 if "leaky" in case else 1e-9
    np.testing.assert_allclose(exact, brute_force_sm(model, x), rtol=rtol, atol=1e-9)


@pytest.mark.parametrize("case", sorted(CASES))
def test_score_is_minus_energy_gradient(case, float64, rng):
    factory, shape, _ = CASES[case]
    model = make_delvm(factory(), shape, sigma=0.8)
    x = rng.normal(size=(3, *shape))
    rtol = 1e-6 if "leaky" in case else 1e-10  # TF's LeakyReluGrad holds its slope in float32
    np.testing.assert_allclose(model.score(x), brute_force_score(model, x), rtol=rtol, atol=1e-12)
    # x − x̂ = σ²∇E
    np.testing.assert_allclose(x - model.reconstruct(x), -0.64 * model.score(x), rtol=1e-9, atol=1e-12)


def test_delvm_reconstruction_is_tied_autoencoder(float64, rng):
    """Single ReLU layer: x̂ = b + σ² Wᵀ relu(Wx + c) (paper eq. 9–12)."""
    model = make_delvm(networks.dense([6], seed=2), (4,), sigma=1.5)
    x = rng.normal(size=(5, 4))
    layer = model.encoder.layers[0]
    w, c = layer.kernel.numpy(), layer.bias.numpy()
    expected = model.visible_bias.numpy() + 1.5 ** 2 * np.maximum(x @ w + c, 0) @ w.T
    np.testing.assert_allclose(model.reconstruct(x), expected, rtol=1e-10)
    energy = ((x - model.visible_bias.numpy()) ** 2).sum(1) / (2 * 1.5 ** 2) \
        - 0.5 * (np.maximum(x @ w + c, 0) ** 2).sum(1)
    np.testing.assert_allclose(model.energy(x), energy, rtol=1e-10)


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_frobenius_modes_match_full_jacobian(mode, float64, rng):
    encoder = networks.conv([2, 3], [3, 3], seed=3)
    encoder.build((None, 4, 4, 2))
    x = tf.constant(rng.normal(size=(3, 4, 4, 2)))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = encoder(x)
    full = tape.batch_jacobian(y, x).numpy().reshape(3, -1)
    value = jacobians.frobenius_sq(encoder, x, (4, 4, 3), mode=mode, chunk_size=7)
    np.testing.assert_allclose(value, (full ** 2).sum(1), rtol=1e-10)


def test_generic_hessian_trace_matches_piecewise_shortcut(float64, rng):
    """The HVP path of EnergyModel and DELVM's D/σ² − ||J||² agree on a ReLU model."""
    model = make_delvm(networks.dense([6, 5], seed=4), (4,), sigma=1.3)
    x = tf.constant(rng.normal(size=(5, 4)))
    generic = delvm_tf.EnergyModel.hessian_trace(model, x)
    np.testing.assert_allclose(model.hessian_trace(x), generic, rtol=1e-10)
    v = tf.constant(rng.normal(size=(5, 4)))
    np.testing.assert_allclose(model.hessian_quadratic_form(x, v),
                               delvm_tf.EnergyModel.hessian_quadratic_form(model, x, v), rtol=1e-10)


@pytest.mark.parametrize("projection", ["rademacher", "gaussian"])
@pytest.mark.parametrize("case", ["conv-closed-form", "tanh-generic-hvp"])
def test_sliced_estimate_averages_to_exact(case, projection, float64, rng):
    factory, shape, _ = CASES[case]
    model = make_delvm(factory(), shape)
    x = rng.normal(size=(3, *shape))
    exact = delvm_tf.score_matching_loss(model, x, estimator="exact").numpy()
    n = 4000
    sliced = delvm_tf.score_matching_loss(model, x, estimator="sliced", n_projections=n,
                                          projection=projection).numpy()
    tolerance = 6 * np.sqrt(2.0 / n) * (np.abs(exact) + int(np.prod(shape)))
    assert np.all(np.abs(sliced - exact) < tolerance), (sliced, exact)


def test_rademacher_sliced_is_exact_for_diagonal_hessian(float64, rng):
    """With W = 0 the Hessian is I/σ², so vᵀHv = D/σ² for every Rademacher v: no variance."""
    model = make_delvm(networks.dense([3], seed=0), (4,), sigma=0.7)
    for w in model.encoder.weights:
        w.assign(np.zeros(w.shape))
    x = rng.normal(size=(6, 4))
    np.testing.assert_allclose(
        delvm_tf.score_matching_loss(model, x, estimator="sliced", n_projections=1),
        delvm_tf.score_matching_loss(model, x, estimator="exact"), rtol=1e-12)


def test_denoising_expectation_on_gaussian(float64, rng):
    """For a quadratic energy with precision P (linear encoder) and x ~ N(0, C):
    E[½||P x̃ − ε/σₙ||²] = ½[tr(P C P) + σₙ² tr(P²) − 2 tr P + D/σₙ²]."""
    model = make_delvm(networks.dense([3], activation="linear", seed=5), (3,), sigma=1.0)
    model.visible_bias.assign(np.zeros(3))
    model.encoder.layers[0].bias.assign(np.zeros(3))
    w = model.encoder.layers[0].kernel.numpy()
    precision = np.eye(3) - w @ w.T
    covariance = np.diag([1.5, 2.0, 3.0])
    noise_std = 0.3
    x = rng.multivariate_normal(np.zeros(3), covariance, size=200_000)
    loss = delvm_tf.score_matching_loss(model, x, estimator="denoising", noise_std=noise_std).numpy()
    expected = 0.5 * (np.trace(precision @ covariance @ precision) + noise_std ** 2 * np.trace(precision @ precision)
                      - 2 * np.trace(precision) + 3 / noise_std ** 2)
    standard_error = loss.std() / np.sqrt(len(loss))
    assert abs(loss.mean() - expected) < 5 * standard_error


def _fit_gaussian(estimator, x, epochs, sigma=1.0, **kwargs):
    keras.utils.set_random_seed(0)
    model = delvm_tf.DELVM(encoder=networks.dense([3], activation="linear", seed=0), estimator=estimator,
                           sigma=sigma, seed=0, **kwargs)
    schedule = keras.optimizers.schedules.ExponentialDecay(0.03, decay_steps=200, decay_rate=0.5)
    model.compile(optimizer=keras.optimizers.Adam(schedule))
    model.fit(x, epochs=epochs, batch_size=200, verbose=0)
    w = model.encoder.layers[0].kernel.numpy()
    c = model.encoder.layers[0].bias.numpy()
    precision = np.eye(3) / sigma ** 2 - w @ w.T
    mean = np.linalg.solve(precision, model.visible_bias.numpy() / sigma ** 2 + w @ c)
    return precision, mean


def test_score_matching_recovers_gaussian_precision(rng):
    """SM's optimum on Gaussian data is the empirical precision and mean (variances > σ² = 1)."""
    covariance = np.array([[2.0, 0.6, 0.0], [0.6, 1.8, 0.3], [0.0, 0.3, 3.0]])
    x = rng.multivariate_normal([1.0, -0.5, 0.2], covariance, size=4000).astype(np.float32)
    target = np.linalg.inv(np.cov(x.T, bias=True))
    precision, mean = _fit_gaussian("exact", x, epochs=60)
    np.testing.assert_allclose(precision, target, atol=0.03)
    np.testing.assert_allclose(mean, x.mean(0), atol=0.05)
    # sliced SM has the same optimum
    precision_sliced, _ = _fit_gaussian("sliced", x, epochs=60, n_projections=4)
    np.testing.assert_allclose(precision_sliced, target, atol=0.06)


@pytest.mark.parametrize("sigma", [1.0, 0.5])
def test_score_matching_clips_the_covariance_at_sigma_squared(sigma, rng):
    """DELVM's precision I/σ² − WWᵀ is ⪯ I/σ², so SM's optimum on N(μ, C) is the model
    covariance U diag(max(c_i, σ²)) Uᵀ (KKT of the convex ½tr(PCP) − tr P over P ⪯ I/σ²):
    the filters W span only the eigen-directions of C whose variance exceeds σ² (SPEC §1.1)."""
    rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    x = rng.multivariate_normal(np.zeros(3), rotation @ np.diag([3.0, 2.0, 0.5]) @ rotation.T, size=4000)
    eigenvalues, vectors = np.linalg.eigh(np.cov(x.T, bias=True))
    clipped = vectors @ np.diag(np.maximum(eigenvalues, sigma ** 2)) @ vectors.T
    precision, _ = _fit_gaussian("exact", x.astype(np.float32), epochs=60, sigma=sigma)
    np.testing.assert_allclose(np.linalg.inv(precision), clipped, atol=0.02)
    filter_rank = int(np.sum(np.linalg.eigvalsh(np.eye(3) / sigma ** 2 - precision) > 0.05))
    assert filter_rank == int(np.sum(eigenvalues > sigma ** 2))  # 2 at σ = 1, 3 at σ = 0.5


@pytest.mark.parametrize("case", ["dense-closed-form", "dense-leaky-closed-form", "conv-closed-form"])
def test_closed_form_gradient_matches_autodiff(case, float64, rng):
    """The written-out ∇E = (x − b)/σ² − Wᵀ(g'(a) ⊙ f) of the single-layer path equals autodiff."""
    factory, shape, _ = CASES[case]
    model = make_delvm(factory(), shape, sigma=0.8)
    x = tf.constant(rng.normal(size=(4, *shape)))
    gradient, _ = model.gradient_and_hessian_trace(x)
    rtol = 1e-6 if "leaky" in case else 1e-10  # TF's LeakyReluGrad holds its slope in float32
    np.testing.assert_allclose(gradient, -brute_force_score(model, x.numpy()), rtol=rtol, atol=1e-12)
