"""Autoencoder baselines, dense (AE) and convolutional (CAE) (SPEC §1.6).

The encoder has the same architecture as DELVM's ``f_θ``; unless a decoder is given, the
decoder mirrors it when the model is built: the encoder's layers in reverse order, each
Dense becoming a Dense back to its input size and each Conv2D a Conv2DTranspose back to its
input channels (same kernel size, strides and padding; cropped if a strided layer's output
was rounded up), Flatten/Reshape becoming the inverse Reshape and pooling becoming
UpSampling2D. The last decoder layer is linear and outputs the input's size/channels; every
other decoder layer uses the activation of the encoder layer that produced its target
space. The mirrored decoder is not tied to the encoder's weights.

Training minimises the per-sample mean squared error ``||x − x̂||²/D`` (Keras' MSE; the
learning rate then does not depend on the input size). The anomaly score is the summed
``RE(x) = ||x − x̂||² = D × loss`` (``reconstruction_error``, inherited).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from delvm_tf.base import LatentModel

# Layers that do not change the shape of the space and are skipped when mirroring.
_SKIPPED = (keras.layers.InputLayer, keras.layers.Dropout, keras.layers.SpatialDropout2D,
            keras.layers.Activation, keras.layers.ReLU, keras.layers.LeakyReLU, keras.layers.ELU,
            keras.layers.BatchNormalization, keras.layers.LayerNormalization, keras.layers.GaussianNoise,
            keras.layers.Identity)
_POOLING = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)


def _flat_layers(network) -> list:
    """The network's layers, nested Sequentials expanded, in order."""
    if isinstance(network, keras.Sequential):
        out = []
        for layer in network.layers:
            out.extend(_flat_layers(layer))
        return out
    return [network]


def _shape_fix(produced, target, name) -> list:
    """Cropping2D / ZeroPadding2D layers that turn a (H, W, C) map ``produced`` into ``target``."""
    dh, dw = int(produced[0]) - int(target[0]), int(produced[1]) - int(target[1])
    fixes = []
    if dh > 0 or dw > 0:
        fixes.append(keras.layers.Cropping2D(((0, max(dh, 0)), (0, max(dw, 0))), name=f"{name}_crop"))
    if dh < 0 or dw < 0:
        fixes.append(keras.layers.ZeroPadding2D(((0, max(-dh, 0)), (0, max(-dw, 0))), name=f"{name}_pad"))
    return fixes


def mirror_decoder(encoder, input_shape, name: str = "decoder") -> keras.Sequential:
    """A decoder mirroring ``encoder`` for inputs of shape ``input_shape`` (batch axis first).

    Supported encoder layers: Dense, Conv2D (channels_last, no groups), Flatten, Reshape,
    MaxPooling2D/AveragePooling2D, and shape-preserving layers (Dropout, activations,
    normalisation), which are skipped. Anything else needs an explicit ``decoder``.
    """
    layers = _flat_layers(encoder)
    shapes = [tuple(input_shape)]
    for layer in layers:
        shapes.append(tuple(layer.compute_output_shape(shapes[-1])))

    def target_activation(i):
        """The activation of the nearest Dense/Conv2D before layer i (linear if none)."""
        for layer in reversed(layers[:i]):
            if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)):
                return layer.activation
        return "linear"

    decoder_layers = []
    for i in reversed(range(len(layers))):
        layer, in_shape, out_shape = layers[i], shapes[i], shapes[i + 1]
        base = f"{name}_{layer.name}"
        if isinstance(layer, _SKIPPED):
            continue
        if isinstance(layer, keras.layers.Dense):
            if len(in_shape) != 2:
                raise ValueError(f"Cannot mirror Dense layer {layer.name!r} applied to a rank-{len(in_shape) - 1} "
                                 "input; pass a decoder.")
            decoder_layers.append(keras.layers.Dense(int(in_shape[-1]), activation=target_activation(i), name=base))
        elif isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, keras.layers.Conv2DTranspose):
            if layer.data_format != "channels_last" or layer.groups != 1:
                raise ValueError(f"Cannot mirror Conv2D layer {layer.name!r} (channels_first or grouped); "
                                 "pass a decoder.")
            deconv = keras.layers.Conv2DTranspose(
                int(in_shape[-1]), layer.kernel_size, strides=layer.strides, padding=layer.padding,
                dilation_rate=layer.dilation_rate, activation=target_activation(i), name=base)
            decoder_layers.append(deconv)
            produced = deconv.compute_output_shape(out_shape)
            decoder_layers.extend(_shape_fix(produced[1:3], in_shape[1:3], base))
        elif isinstance(layer, (keras.layers.Flatten, keras.layers.Reshape)):
            decoder_layers.append(keras.layers.Reshape(tuple(int(d) for d in in_shape[1:]), name=base))
        elif isinstance(layer, _POOLING):
            if layer.data_format != "channels_last":
                raise ValueError(f"Cannot mirror {layer.name!r} with channels_first; pass a decoder.")
            upsample = keras.layers.UpSampling2D(layer.strides, name=base)
            decoder_layers.append(upsample)
            produced = upsample.compute_output_shape(out_shape)
            decoder_layers.extend(_shape_fix(produced[1:3], in_shape[1:3], base))
        else:
            raise ValueError(f"Cannot mirror encoder layer {layer.name!r} ({type(layer).__name__}); "
                             "pass a decoder=... to AutoEncoder.")
    if not decoder_layers:
        raise ValueError("The encoder has no Dense/Conv2D layer to mirror; pass a decoder.")
    return keras.Sequential(decoder_layers, name=name)


@keras.saving.register_keras_serializable(package="delvm_tf")
class AutoEncoder(LatentModel):
    """Autoencoder (AE) or, with a conv encoder, convolutional autoencoder (CAE) (SPEC §1.6).

    Args:
        encoder: the encoder (same architecture as DELVM's ``f_θ``, e.g.
            ``delvm_tf.networks.dense([256])`` or ``networks.conv([50], [5])``).
        decoder: optional decoder mapping the encoder's output back to the input's shape;
            if ``None``, a mirrored decoder is built with the model (see ``mirror_decoder``).
            A given decoder is saved in the config; a mirrored one is rebuilt on load.
        seed: seed of the model's random numbers.

    ``per_sample_loss`` is the per-sample MSE ``||x − x̂||²/D``; ``reconstruction_error`` is
    ``||x − x̂||²`` (the anomaly score); ``layer_outputs`` are the encoder's activations.
    """

    def __init__(self, encoder, decoder=None, seed: int | None = None, **kwargs):
        super().__init__(encoder, seed=seed, **kwargs)
        if decoder is not None and not isinstance(decoder, keras.layers.Layer):
            raise ValueError(f"decoder must be a Keras layer or model, got {type(decoder).__name__}.")
        self.decoder_given = decoder is not None
        self.decoder = decoder

    def build_model(self, input_shape):
        input_shape = tuple(input_shape)
        code_shape = tuple(self.encoder.compute_output_shape(input_shape))
        if self.decoder is None:
            self.decoder = mirror_decoder(self.encoder, input_shape)
        if not self.decoder.built:
            self.decoder.build(code_shape)
        spec = self.decoder.compute_output_spec(keras.KerasTensor(code_shape))
        if not isinstance(spec, keras.KerasTensor) or tuple(spec.shape[1:]) != tuple(input_shape[1:]):
            shown = spec.shape if isinstance(spec, keras.KerasTensor) else type(spec).__name__
            raise ValueError(f"The decoder maps codes of shape {code_shape} to {shown}, but inputs have "
                             f"shape {input_shape}; it must reproduce the input shape.")

    def decode(self, code, training=False):
        """``x̂`` from the encoder's output (tensors)."""
        return self.decoder(code, training=training)

    def compute_reconstruction(self, x, training=False):
        """``x̂ = decoder(encoder(x))``."""
        return self.decoder(self.encoder(x, training=training), training=training)

    def per_sample_loss(self, x, training=False):
        """Per-sample mean squared error ``||x − x̂||²/D``."""
        x = tf.cast(x, self.compute_dtype)
        residual = tf.reshape(x - self.compute_reconstruction(x, training=training), [tf.shape(x)[0], -1])
        return tf.reduce_mean(tf.square(residual), axis=1)

    def get_config(self):
        decoder = keras.saving.serialize_keras_object(self.decoder) if self.decoder_given else None
        return {**super().get_config(), "decoder": decoder}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("decoder") is not None:
            config["decoder"] = keras.saving.deserialize_keras_object(config["decoder"])
        return super().from_config(config)
