"""Negative-sample generators for contrastive divergence (SPEC §1.3).

A sampler is a small Keras layer (so that its state, such as a persistent replay buffer,
is tracked, saved and restored with the model) exposing ``sample(model, x, seed, training)``.

- ``PaperSampler`` — the paper's "simple procedure", a mean-field step of the DELVM joint:
  ``h ~ N(f(x), I)``, ``x' = b + σ² J_f(x)ᵀ h``, repeated ``steps`` times from the data.
- ``LangevinSampler`` — ``x ← x − (ε/2) ∇ₓE(x) + s·√ε ξ``, ``ξ ~ N(0, I)``, for ``steps`` steps,
  started at the data (CD-k) or, with ``persistent=True``, at a replay buffer (PCD).
"""

from __future__ import annotations

import keras
import tensorflow as tf


class Sampler(keras.layers.Layer):
    """Base class: ``sample(model, x, seed, training) -> x'`` (same shape as ``x``)."""

    #: Whether the sampler needs ``model.sample_visible`` (the DELVM conditional).
    needs_latent_conditional = False

    def __init__(self, steps: int = 1, **kwargs):
        super().__init__(**kwargs)
        if int(steps) < 1:
            raise ValueError(f"steps must be >= 1, got {steps}.")
        self.steps = int(steps)

    def build(self, input_shape):
        self.built = True

    def sample(self, model, x, seed=None, training=False):
        raise NotImplementedError

    def get_config(self):
        return {**super().get_config(), "steps": self.steps}


@keras.saving.register_keras_serializable(package="delvm_tf")
class PaperSampler(Sampler):
    """``steps`` mean-field steps ``h ~ N(f(x), I)``, ``x ← b + σ² J_f(x)ᵀ h`` from the data."""

    needs_latent_conditional = True

    def sample(self, model, x, seed=None, training=False):
        for _ in range(self.steps):
            x = model.sample_visible(x, seed=seed, training=training)
        return x


@keras.saving.register_keras_serializable(package="delvm_tf")
class LangevinSampler(Sampler):
    """Unadjusted Langevin dynamics ``x ← x − (ε/2)∇E(x) + s√ε ξ``.

    Args:
        steps: number of Langevin steps k.
        step_size: ε.
        noise_scale: s (1 gives the exact Langevin diffusion; smaller values are the usual
            "SGLD" heuristic of JEM/CEBM).
        persistent: start chains from a replay buffer (PCD) instead of the data.
        buffer_size: number of persistent chains.
        reinit_prob: probability that a drawn chain restarts from ``N(0, init_std²)``.
        init_std: standard deviation of fresh chains.
        max_gradient_norm: optional per-sample clip of ``||∇E||`` for stability.
    """

    def __init__(self, steps: int = 20, step_size: float = 1e-2, noise_scale: float = 1.0,
                 persistent: bool = False, buffer_size: int = 10000, reinit_prob: float = 0.05,
                 init_std: float = 1.0, max_gradient_norm: float | None = None, **kwargs):
        super().__init__(steps=steps, **kwargs)
        if step_size <= 0 or noise_scale < 0:
            raise ValueError("step_size must be > 0 and noise_scale >= 0.")
        if not 0.0 <= reinit_prob <= 1.0:
            raise ValueError(f"reinit_prob must lie in [0, 1], got {reinit_prob}.")
        if persistent and buffer_size < 1:
            raise ValueError(f"buffer_size must be >= 1, got {buffer_size}.")
        self.step_size = float(step_size)
        self.noise_scale = float(noise_scale)
        self.persistent = bool(persistent)
        self.buffer_size = int(buffer_size)
        self.reinit_prob = float(reinit_prob)
        self.init_std = float(init_std)
        self.max_gradient_norm = max_gradient_norm

    def build(self, input_shape):
        if self.persistent:
            self.buffer = self.add_weight(
                shape=(self.buffer_size, *input_shape[1:]), name="replay_buffer", trainable=False,
                initializer=keras.initializers.RandomNormal(stddev=self.init_std))
        self.built = True

    def _initial_state(self, x, seed):
        if not self.persistent:
            return x, None
        batch = tf.shape(x)[0]
        index = keras.random.randint((batch,), 0, self.buffer_size, seed=seed)
        chains = tf.gather(tf.convert_to_tensor(self.buffer), index)
        fresh = self.init_std * keras.random.normal(tf.shape(x), seed=seed)
        restart = keras.random.uniform((batch,), seed=seed) < self.reinit_prob
        restart = tf.reshape(restart, [-1] + [1] * (len(x.shape) - 1))
        return tf.where(restart, fresh, chains), index

    def _step(self, model, x, seed, training):
        _, gradient = model.energy_gradient(x, training=training)
        if self.max_gradient_norm is not None:
            gradient = tf.clip_by_norm(gradient, self.max_gradient_norm, axes=list(range(1, len(x.shape))))
        noise = keras.random.normal(tf.shape(x), dtype=x.dtype, seed=seed)
        return tf.stop_gradient(x - 0.5 * self.step_size * gradient
                                + self.noise_scale * self.step_size ** 0.5 * noise)

    def sample(self, model, x, seed=None, training=False):
        x, index = self._initial_state(tf.stop_gradient(x), seed)
        _, x = tf.while_loop(lambda i, _: i < self.steps,
                             lambda i, x_: (i + 1, self._step(model, x_, seed, training)),
                             (tf.constant(0), x))
        if index is not None and training:
            self.buffer.assign(tf.tensor_scatter_nd_update(
                tf.convert_to_tensor(self.buffer), index[:, None], x))
        return x

    def get_config(self):
        return {**super().get_config(), "step_size": self.step_size, "noise_scale": self.noise_scale,
                "persistent": self.persistent, "buffer_size": self.buffer_size,
                "reinit_prob": self.reinit_prob, "init_std": self.init_std,
                "max_gradient_norm": self.max_gradient_norm}


SAMPLERS = {"paper": PaperSampler, "langevin": LangevinSampler}


def get(sampler, **kwargs) -> Sampler:
    """A sampler from its name (``'paper'``, ``'langevin'``), a config dict or an instance."""
    if isinstance(sampler, Sampler):
        return sampler
    if isinstance(sampler, dict):
        return keras.saving.deserialize_keras_object(sampler)
    if sampler not in SAMPLERS:
        raise ValueError(f"Unknown sampler {sampler!r}; use one of {sorted(SAMPLERS)} or a Sampler instance.")
    return SAMPLERS[sampler](**kwargs)
