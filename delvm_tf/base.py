"""``LatentModel``: the Keras base class shared by every model in delvm_tf.

It owns what DELVM, DEM, CEBM and the autoencoders have in common:

- an ``encoder`` network whose layer activations are the learned features;
- one ``train_step``/``test_step`` that minimise ``mean(per_sample_loss(x))`` — subclasses
  only define ``per_sample_loss`` (and their energy or decoder);
- input validation with clear errors, numpy-or-tensor public methods run in batches;
- ``get_config``/``from_config`` and ``.keras`` serialisation;
- a ``DivergenceMonitor`` added to ``fit`` so a NaN/Inf loss stops training with the last
  good weights restored.

Public methods such as ``reconstruction_error(x)`` accept a numpy array (validated, run in
batches, numpy returned) or a tensor (used as is inside graphs, tensor returned).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from delvm_tf.callbacks import DivergenceMonitor
from delvm_tf.jacobians import squared_norm
from delvm_tf.networks import encoder_layers

DEFAULT_BATCH_SIZE = 256


def _is_tensor(x) -> bool:
    return tf.is_tensor(x) or isinstance(x, keras.KerasTensor)


def _features_of(data):
    """The inputs ``x`` of a batch given as ``x``, ``(x,)``, ``(x, y)`` or ``(x, y, w)``."""
    x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
    return x


class LatentModel(keras.Model):
    """Base class: an encoder ``f_θ`` plus a per-sample training loss.

    Args:
        encoder: any Keras layer or model mapping a batch of inputs to one float tensor,
            typically from ``delvm_tf.networks``.
        seed: seed of the model's own random numbers (sampling noise, projections).
    """

    #: The anomaly score that suits the model (a name understood by ``delvm_tf.anomaly``).
    default_anomaly_score = "reconstruction_error"

    def __init__(self, encoder, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(encoder, keras.layers.Layer):
            raise ValueError(f"encoder must be a Keras layer or model, got {type(encoder).__name__}.")
        self.encoder = encoder
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.sample_shape = None
        self.divergence = None
        self._compiled_functions = {}  # method name -> tf.function of the numpy path

    # ----------------------------------------------------------------- building
    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) < 2:
            raise ValueError(f"Inputs need a batch axis and at least one feature axis; got shape {input_shape}.")
        self.sample_shape = tuple(int(d) for d in input_shape[1:])
        if not self.encoder.built:  # (an unbuilt Sequential with Flatten cannot compute_output_spec)
            self.encoder.build((None, *self.sample_shape))
        spec = self.encoder.compute_output_spec(keras.KerasTensor((None, *self.sample_shape)))
        if not isinstance(spec, keras.KerasTensor):
            raise ValueError("The encoder must return a single tensor; it returned "
                             f"{type(spec).__name__}. Wrap multi-output networks so that they return one tensor.")
        if not keras.backend.is_float_dtype(spec.dtype) or len(spec.shape) < 2:
            raise ValueError(f"The encoder output must be a float tensor with a batch axis; got {spec}.")
        self.build_model((None, *self.sample_shape))
        self.built = True

    def build_model(self, input_shape) -> None:
        """Hook for subclasses to create their own weights once the input shape is known."""

    def call(self, x, training=False):
        """The encoder's output ``f_θ(x)`` (for DELVM, the posterior mean of ``h``)."""
        return self.encoder(x, training=training)

    # ------------------------------------------------------------ per-sample API
    def per_sample_loss(self, x, training=False) -> tf.Tensor:
        """The training loss of each sample, shape ``(batch,)``. Subclasses define it."""
        raise NotImplementedError

    def compute_reconstruction(self, x, training=False) -> tf.Tensor:
        raise NotImplementedError

    def reconstruct(self, x, batch_size: int | None = None):
        """The model's reconstruction ``x̂`` of ``x`` (same shape)."""
        return self._apply(self.compute_reconstruction, x, batch_size)

    def reconstruction_error(self, x, batch_size: int | None = None):
        """``RE(x) = ||x − x̂||²`` per sample, the anomaly score of SPEC §3."""
        def error(x_):
            return squared_norm(x_ - self.compute_reconstruction(x_))
        return self._apply(error, x, batch_size, name="reconstruction_error")

    def layer_outputs(self, x, batch_size: int | None = None):
        """The activations of every encoder layer, as a list (the probe's features)."""
        def outputs(x_):
            activations = []
            for layer in encoder_layers(self.encoder):
                if isinstance(layer, keras.layers.InputLayer):
                    continue
                x_ = layer(x_, training=False)
                activations.append(x_)
            return activations
        return self._apply(outputs, x, batch_size, name="layer_outputs")

    # ---------------------------------------------------------------- training
    def _ensure_built(self, x):
        # Keras defers building to the first trace of the train/test function.
        if not self.built:
            self.build(tuple(x.shape))

    def train_step(self, data):
        x = _features_of(data)
        self._ensure_built(x)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(self.per_sample_loss(x, training=True))
            # Gradients are summed over replicas under tf.distribute, as in Keras' own train_step.
            scaled_loss = self.optimizer.scale_loss(_scale_for_replicas(loss))
        gradients = tape.gradient(scaled_loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        self.loss_tracker.update_state(loss, sample_weight=tf.shape(x)[0])
        return {"loss": self.loss_tracker.result()}

    def test_step(self, data):
        x = _features_of(data)
        self._ensure_built(x)
        loss = tf.reduce_mean(self.per_sample_loss(x, training=False))
        self.loss_tracker.update_state(loss, sample_weight=tf.shape(x)[0])
        return {"loss": self.loss_tracker.result()}

    @property
    def metrics(self):
        return [self.loss_tracker]

    def fit(self, x=None, y=None, *args, callbacks=None, **kwargs):
        """``keras.Model.fit`` with input checks and a ``DivergenceMonitor`` (unsupervised: ``y`` is ignored)."""
        if x is not None and not isinstance(x, tf.data.Dataset) and not _is_tensor(x) \
                and not hasattr(x, "__next__") and not isinstance(x, keras.utils.PyDataset):
            x = self.check_input(x)
        callbacks = list(callbacks or [])
        if not any(isinstance(c, DivergenceMonitor) for c in callbacks):
            callbacks.append(DivergenceMonitor())
        return super().fit(x, y, *args, callbacks=callbacks, **kwargs)

    # ---------------------------------------------------------- input handling
    def check_input(self, x, name: str = "x") -> np.ndarray:
        """Validate a numpy batch: numeric, finite, and of the shape the model was built for."""
        try:
            x = np.asarray(x)
        except Exception as error:  # ragged lists and the like
            raise ValueError(f"{name} could not be converted to an array: {error}") from None
        if x.dtype.kind not in "fiub":
            raise ValueError(f"{name} must be numeric, got dtype {x.dtype}.")
        if x.ndim < 2:
            raise ValueError(f"{name} must have a batch axis and at least one feature axis; got shape {x.shape}.")
        if self.sample_shape is not None and tuple(x.shape[1:]) != self.sample_shape:
            raise ValueError(f"{name} has shape {x.shape}, but this model was built for inputs of shape "
                             f"(batch, {', '.join(map(str, self.sample_shape))}).")
        x = x.astype(self.compute_dtype, copy=False)
        bad = ~np.isfinite(x)
        if bad.any():
            raise ValueError(f"{name} contains {int(bad.sum())} NaN or Inf values "
                             f"(first at index {tuple(int(i) for i in np.argwhere(bad)[0])}).")
        return x

    def _apply(self, fn, x, batch_size=None, name=None):
        """Run ``fn`` on a tensor directly, or on a validated numpy array in compiled batches."""
        if _is_tensor(x):
            return fn(x)
        x = self.check_input(x)
        if not self.built:
            self.build((None, *x.shape[1:]))
        key = name or fn.__name__
        if key not in self._compiled_functions:
            self._compiled_functions[key] = tf.function(fn, reduce_retracing=True)
        compiled = self._compiled_functions[key]
        size = batch_size or DEFAULT_BATCH_SIZE
        parts = [compiled(tf.constant(x[i:i + size])) for i in range(0, len(x), size)]
        if not parts:
            raise ValueError(f"{name or 'x'}: the input is empty.")
        return tf.nest.map_structure(lambda *p: np.concatenate([t.numpy() for t in p]), *parts)

    # ---------------------------------------------------------- serialisation
    def get_config(self):
        return {**super().get_config(), "encoder": keras.saving.serialize_keras_object(self.encoder),
                "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)

    def get_build_config(self):
        return {"input_shape": (None, *self.sample_shape)} if self.sample_shape else {}

    def build_from_config(self, config):
        if config.get("input_shape"):
            self.build(tuple(config["input_shape"]))


def _scale_for_replicas(loss):
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss / replicas if replicas > 1 else loss
