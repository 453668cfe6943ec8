"""Energy-based models: the ``EnergyModel`` base and DELVM (SPEC §1.1).

An energy model only defines ``compute_energy(x)``; scores, reconstructions and the SM/CD
objectives come from the base class and ``delvm_tf.objectives``. Subclasses may override
``gradient_and_hessian_trace`` / ``hessian_quadratic_form`` with faster exact forms.

Every energy here has the Gaussian base ``||x − b||²/(2σ²)``. ``σ`` is a fixed data scale
(the paper uses 1). Because ``−½||f||²`` can only *lower* the curvature ``1/σ²``, DELVM
cannot represent data whose per-dimension variance is below ``σ²``: choose the data
scaling and ``σ`` together and record both.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from delvm_tf import jacobians, objectives, samplers
from delvm_tf.base import LatentModel

OBJECTIVES = ("sm", "cd")


class EnergyModel(LatentModel):
    """Base class of models defined by an energy ``E(x)``; trained by SM or CD.

    Args:
        encoder: the network (see ``delvm_tf.networks``).
        objective: ``'sm'`` (score matching) or ``'cd'`` (contrastive divergence).
        estimator: SM estimator, ``'exact'``, ``'sliced'`` or ``'denoising'``.
        sampler: CD sampler, ``'paper'``, ``'langevin'`` or a ``samplers.Sampler``.
        sigma: the fixed data scale σ of the Gaussian base.
        n_projections, projection: for ``estimator='sliced'``.
        noise_std: σₙ for ``estimator='denoising'``.
        jacobian_chunk_size: input directions per vectorised JVP/HVP chunk in the exact
            deep paths (``None``: all at once; lower it to bound memory).
        seed: seed of the sampling noise and projections.
    """

    default_sampler = "langevin"

    def __init__(self, encoder, objective: str = "sm", estimator: str = "exact", sampler=None,
                 sigma: float = 1.0, n_projections: int = 1, projection: str = "rademacher",
                 noise_std: float = 0.1, jacobian_chunk_size: int | None = None, seed: int | None = None,
                 **kwargs):
        super().__init__(encoder, seed=seed, **kwargs)
        if objective not in OBJECTIVES:
            raise ValueError(f"Unknown objective {objective!r}; use one of {OBJECTIVES}.")
        if estimator not in objectives.ESTIMATORS:
            raise ValueError(f"Unknown estimator {estimator!r}; use one of {objectives.ESTIMATORS}.")
        if projection not in objectives.PROJECTIONS:
            raise ValueError(f"Unknown projection {projection!r}; use one of {objectives.PROJECTIONS}.")
        if not sigma > 0 or not noise_std > 0:
            raise ValueError(f"sigma and noise_std must be positive, got {sigma} and {noise_std}.")
        if int(n_projections) < 1:
            raise ValueError(f"n_projections must be >= 1, got {n_projections}.")
        self.objective = objective
        self.estimator = estimator
        self.sigma = float(sigma)
        self.n_projections = int(n_projections)
        self.projection = projection
        self.noise_std = float(noise_std)
        self.jacobian_chunk_size = jacobian_chunk_size
        self.sampler = samplers.get(sampler if sampler is not None else self.default_sampler)
        if self.sampler.needs_latent_conditional and not hasattr(self, "sample_visible"):
            raise ValueError(f"The {type(self.sampler).__name__} needs the DELVM conditional p(x|h); "
                             f"use sampler='langevin' with {type(self).__name__}.")

    def build_model(self, input_shape):
        self.visible_bias = self.add_weight(shape=input_shape[1:], initializer="zeros", name="visible_bias")
        if not self.sampler.built:  # a deserialised sampler arrives built
            self.sampler.build(input_shape)

    def initialize_visible_bias(self, x, batch_size: int | None = None):
        """Set the base's centre to the data mean, ``b = (1/N) Σₙ xₙ``, before training.

        ``x``: a numpy array (validated, summed in batches) or a ``tf.data.Dataset`` of ``x``,
        ``(x,)`` or ``(x, y)`` batches (streamed). ``b`` starts at 0 otherwise, as in the paper;
        Adam then moves it by at most about the learning rate per step, so with σ² far below the
        data's offset from 0 the features spend their capacity on that offset. Returns ``self``.
        """
        total, count = None, 0
        if isinstance(x, tf.data.Dataset):
            batches = (keras.utils.unpack_x_y_sample_weight(batch)[0] for batch in x)
        else:
            x = self.check_input(x)
            if len(x) == 0:
                raise ValueError("x: the input is empty.")
            size = batch_size or 1024
            batches = (x[i:i + size] for i in range(0, len(x), size))
        for batch in batches:
            batch = np.asarray(batch, dtype=np.float64)
            if not self.built:
                self.build((None, *batch.shape[1:]))
            if tuple(batch.shape[1:]) != self.sample_shape:
                raise ValueError(f"x has samples of shape {batch.shape[1:]}, but this model was built for "
                                 f"{self.sample_shape}.")
            if not np.all(np.isfinite(batch)):
                raise ValueError("x contains NaN or Inf values.")
            total = batch.sum(axis=0) + (0.0 if total is None else total)
            count += len(batch)
        if not count:
            raise ValueError("x: the dataset is empty.")
        self.visible_bias.assign((total / count).astype(self.visible_bias.dtype))
        return self

    # ------------------------------------------------------------------ energy
    def compute_energy(self, x, training=False) -> tf.Tensor:
        """``E(x)`` per sample, shape ``(batch,)``, on tensors. Subclasses define it."""
        raise NotImplementedError

    def base_energy(self, x) -> tf.Tensor:
        """``||x − b||²/(2σ²)``, the Gaussian base every energy here shares."""
        return jacobians.squared_norm(x - self.visible_bias) / (2.0 * self.sigma ** 2)

    def energy(self, x, training=False, batch_size: int | None = None):
        """``E(x)`` per sample (numpy in, numpy out; tensor in, tensor out)."""
        return self._apply(lambda x_: self.compute_energy(x_, training=training), x, batch_size, name="energy")

    def energy_gradient(self, x, training=False):
        """``(E(x), ∇ₓE(x))`` on tensors, by reverse-mode autodiff."""
        with tf.GradientTape() as tape:
            tape.watch(x)
            energy = self.compute_energy(x, training=training)
        return energy, tape.gradient(energy, x)

    def score(self, x, batch_size: int | None = None):
        """The model score ``s(x) = −∇ₓE(x)`` (same shape as ``x``)."""
        return self._apply(lambda x_: -self.energy_gradient(x_)[1], x, batch_size, name="score")

    def compute_reconstruction(self, x, training=False):
        """``x̂ = x − σ²∇ₓE(x)`` (for DELVM, ``b + σ² J_fᵀ f(x)``)."""
        return x - self.sigma ** 2 * self.energy_gradient(x, training=training)[1]

    # ------------------------------------------------- second-order quantities
    def hessian_trace(self, x, training=False) -> tf.Tensor:
        """``tr ∇ₓ²E(x)``, exactly, by D Hessian-vector products (generic path)."""
        return jacobians.hessian_trace(lambda x_: self.compute_energy(x_, training=training), x,
                                       self.jacobian_chunk_size)

    def hessian_quadratic_form(self, x, v, training=False) -> tf.Tensor:
        """``vᵀ ∇ₓ²E(x) v`` per sample (generic path: one Hessian-vector product)."""
        return jacobians.hessian_quadratic_form(lambda x_: self.compute_energy(x_, training=training), x, v)

    def gradient_and_hessian_trace(self, x, training=False):
        """``(∇ₓE(x), tr ∇ₓ²E(x))``, what the exact SM estimator needs."""
        return self.energy_gradient(x, training=training)[1], self.hessian_trace(x, training=training)

    # --------------------------------------------------------------- objective
    def per_sample_loss(self, x, training=False):
        if self.objective == "sm":
            return objectives.score_matching_loss(
                self, x, self.estimator, self.n_projections, self.projection, self.noise_std,
                seed=self.seed_generator, training=training)
        return objectives.contrastive_divergence_loss(self, x, self.sampler, seed=self.seed_generator,
                                                      training=training)

    def get_config(self):
        return {**super().get_config(), "objective": self.objective, "estimator": self.estimator,
                "sampler": keras.saving.serialize_keras_object(self.sampler), "sigma": self.sigma,
                "n_projections": self.n_projections, "projection": self.projection,
                "noise_std": self.noise_std, "jacobian_chunk_size": self.jacobian_chunk_size}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["sampler"] = keras.saving.deserialize_keras_object(config["sampler"])
        return super().from_config(config)


@keras.saving.register_keras_serializable(package="delvm_tf")
class DELVM(EnergyModel):
    """Deep energy-based latent variable model (SPEC §1.1).

    Joint ``E(x,h) = ||x−b||²/(2σ²) + ½||h||² − hᵀf_θ(x)``, so ``p(h|x) = N(f_θ(x), I)`` and

        ``E(x)  = ||x−b||²/(2σ²) − ½||f_θ(x)||²``
        ``∇ₓE   = (x−b)/σ² − J_fᵀ f``,      ``x̂ = b + σ² J_fᵀ f = x − σ²∇ₓE``
        ``tr ∇²E = D/σ² − ||J_f||_F²``       (piecewise-linear ``f``, almost everywhere)

    ``||J_f||_F²`` is taken in closed form for a single Dense/Conv2D layer, by vectorised
    JVPs (or VJPs) for deeper piecewise-linear nets, and from Hessian-vector products of E
    for smooth activations. CD defaults to the paper's mean-field sampler.
    """

    default_sampler = "paper"

    def build_model(self, input_shape):
        super().build_model(input_shape)
        self.piecewise_linear = jacobians.is_piecewise_linear(self.encoder)
        self.closed_form_layer = jacobians.single_affine_layer(self.encoder) if self.piecewise_linear else None
        self.feature_shape = tuple(self.encoder.compute_output_shape(input_shape)[1:])

    def compute_energy(self, x, training=False):
        return self._energy_from_features(x, self.encoder(x, training=training))

    def _energy_from_features(self, x, features):
        return self.base_energy(x) - 0.5 * jacobians.squared_norm(features)

    def jacobian_frobenius_sq(self, x, features=None, training=False) -> tf.Tensor:
        """``||J_f(x)||_F²`` per sample (piecewise-linear encoders)."""
        if self.closed_form_layer is not None:
            if features is None:
                features = self.encoder(x, training=training)
            return jacobians.closed_form_frobenius_sq(self.closed_form_layer, features, x)
        return jacobians.frobenius_sq(lambda x_: self.encoder(x_, training=training), x, self.feature_shape,
                                      chunk_size=self.jacobian_chunk_size)

    def _curvature_of_base(self, x):
        return jacobians.input_dim(x) / self.sigma ** 2

    def _features_energy_gradient(self, x, training=False):
        """``(f(x), E(x), ∇ₓE(x))`` in one pass: written out for one layer, else by autodiff."""
        if self.closed_form_layer is not None:
            # ∇E = (x − b)/σ² − J_fᵀ f with J_fᵀ written out: cheaper than a nested tape.
            features = self.encoder(x, training=training)
            gradient = (x - self.visible_bias) / self.sigma ** 2 - jacobians.closed_form_jacobian_transpose(
                self.closed_form_layer, features, x)
            return features, self._energy_from_features(x, features), gradient
        with tf.GradientTape() as tape:
            tape.watch(x)
            features = self.encoder(x, training=training)
            energy = self._energy_from_features(x, features)
        return features, energy, tape.gradient(energy, x)

    def energy_gradient(self, x, training=False):
        _, energy, gradient = self._features_energy_gradient(x, training=training)
        return energy, gradient

    def hessian_trace(self, x, training=False):
        if not self.piecewise_linear:
            return super().hessian_trace(x, training=training)
        return self._curvature_of_base(x) - self.jacobian_frobenius_sq(x, training=training)

    def gradient_and_hessian_trace(self, x, training=False):
        if not self.piecewise_linear:
            return super().gradient_and_hessian_trace(x, training=training)
        features, _, gradient = self._features_energy_gradient(x, training=training)
        return gradient, self._curvature_of_base(x) - self.jacobian_frobenius_sq(x, features, training=training)

    def hessian_quadratic_form(self, x, v, training=False):
        """``vᵀ∇²E v = ||v||²/σ² − ||J_f v||²`` (piecewise-linear ``f``), else the generic HVP."""
        if not self.piecewise_linear:
            return super().hessian_quadratic_form(x, v, training=training)
        if self.closed_form_layer is not None:
            features = self.encoder(x, training=training)
            encoder_jvp = jacobians.squared_norm(jacobians.closed_form_jvp(self.closed_form_layer, features, v))
        else:
            encoder_jvp = jacobians.jvp_sq_norm(lambda x_: self.encoder(x_, training=training), x, v)
        return jacobians.squared_norm(v) / self.sigma ** 2 - encoder_jvp

    def sample_visible(self, x, seed=None, training=False):
        """One mean-field step: ``h ~ N(f(x), I)``, then ``x' = b + σ² J_f(x)ᵀ h``."""
        def sample_hidden(features):
            return features + keras.random.normal(tf.shape(features), dtype=features.dtype, seed=seed)

        if self.closed_form_layer is not None:
            features = self.encoder(x, training=training)
            jacobian_transpose_h = jacobians.closed_form_jacobian_transpose(
                self.closed_form_layer, features, x, sample_hidden(features))
        else:
            with tf.GradientTape() as tape:
                tape.watch(x)
                features = self.encoder(x, training=training)
            jacobian_transpose_h = tape.gradient(features, x, output_gradients=sample_hidden(features))
        return self.visible_bias + self.sigma ** 2 * jacobian_transpose_h
