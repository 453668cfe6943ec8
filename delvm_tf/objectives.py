"""Training objectives as small pure functions of ``(model, x)``; each returns a per-sample loss.

Score matching (Hyvärinen 2005; SPEC §1.2), with score ``s = −∇ₓE``::

    J(θ) = E_x[ ½||∇ₓE(x)||² − tr ∇ₓ²E(x) ]

- ``exact``     — the Hessian trace exactly (closed form, JVPs or HVPs, chosen by the model).
- ``sliced``    — SSM with variance reduction (Song et al. 2019):
                  ``½||∇E||² − vᵀ∇²E v`` with ``E[vvᵀ] = I`` (Rademacher or Gaussian ``v``);
                  unbiased for the same ``J(θ)``.
- ``denoising`` — DSM (Vincent 2011): ``½||∇E(x̃) − (x̃ − x)/σₙ²||²``, ``x̃ = x + σₙ ε``.
                  NOTE: DSM matches the score of the *noise-smoothed* density ``p * N(0, σₙ²I)``,
                  so it is a different objective from ``exact``/``sliced`` (equal only as σₙ → 0).

Contrastive divergence (SPEC §1.3): ``mean E(x) − mean E(stop_grad(x'))`` with ``x'`` from a sampler,
whose gradient is ``E_data[∇θE] − E_model[∇θE]``.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from delvm_tf.jacobians import squared_norm

ESTIMATORS = ("exact", "sliced", "denoising")
PROJECTIONS = ("rademacher", "gaussian")


def random_projections(shape, distribution: str = "rademacher", seed=None, dtype="float32") -> tf.Tensor:
    """Random vectors with ``E[vvᵀ] = I``: Rademacher (±1) or standard Gaussian."""
    if distribution == "rademacher":
        signs = keras.random.randint(shape, 0, 2, seed=seed)
        return tf.cast(2 * signs - 1, dtype)
    if distribution == "gaussian":
        return keras.random.normal(shape, dtype=dtype, seed=seed)
    raise ValueError(f"Unknown projection {distribution!r}; use one of {PROJECTIONS}.")


def exact_score_matching(model, x, training=False) -> tf.Tensor:
    """``½||∇ₓE(x)||² − tr ∇ₓ²E(x)``, the trace computed exactly by the model."""
    gradient, trace = model.gradient_and_hessian_trace(x, training=training)
    return 0.5 * squared_norm(gradient) - trace


def sliced_score_matching(model, x, n_projections: int = 1, projection: str = "rademacher",
                          seed=None, training=False) -> tf.Tensor:
    """``½||∇ₓE(x)||² − (1/M) Σ_m v_mᵀ ∇ₓ²E(x) v_m`` (SSM-VR), M = ``n_projections``."""
    _, gradient = model.energy_gradient(x, training=training)
    x_rep = tf.repeat(x, n_projections, axis=0)
    v = random_projections(tf.shape(x_rep), projection, seed=seed, dtype=x.dtype)
    quadratic = model.hessian_quadratic_form(x_rep, v, training=training)
    quadratic = tf.reduce_mean(tf.reshape(quadratic, [-1, n_projections]), axis=1)
    return 0.5 * squared_norm(gradient) - quadratic


def denoising_score_matching(model, x, noise_std: float = 0.1, seed=None, training=False) -> tf.Tensor:
    """``½||∇E(x̃) − (x̃ − x)/σₙ²||²`` with ``x̃ = x + σₙ ε`` (targets the smoothed density)."""
    noise = keras.random.normal(tf.shape(x), dtype=x.dtype, seed=seed)
    _, gradient = model.energy_gradient(x + noise_std * noise, training=training)
    return 0.5 * squared_norm(gradient - noise / noise_std)


def score_matching_loss(model, x, estimator: str = "exact", n_projections: int = 1,
                        projection: str = "rademacher", noise_std: float = 0.1, seed=None,
                        training: bool = False) -> tf.Tensor:
    """Per-sample score-matching loss ``(batch,)`` of an energy model with the chosen estimator."""
    x = tf.cast(x, model.compute_dtype)
    if estimator == "exact":
        return exact_score_matching(model, x, training=training)
    if estimator == "sliced":
        return sliced_score_matching(model, x, n_projections, projection, seed=seed, training=training)
    if estimator == "denoising":
        return denoising_score_matching(model, x, noise_std, seed=seed, training=training)
    raise ValueError(f"Unknown estimator {estimator!r}; use one of {ESTIMATORS}.")


def contrastive_divergence_loss(model, x, sampler, seed=None, training: bool = False,
                                energy_l2: float = 0.0) -> tf.Tensor:
    """Per-sample ``E(x) − E(stop_grad(x'))`` with negatives ``x'`` drawn by ``sampler``,
    plus ``energy_l2·(E(x)² + E(x')²)`` when given (the energy-magnitude penalty of JEM/CEBM)."""
    x = tf.cast(x, model.compute_dtype)
    negatives = tf.stop_gradient(sampler.sample(model, x, seed=seed, training=training))
    energy_data = model.energy(x, training=training)
    energy_model = model.energy(negatives, training=training)
    loss = energy_data - energy_model
    if energy_l2:
        loss += energy_l2 * (tf.square(energy_data) + tf.square(energy_model))
    return loss
