"""Jacobian and Hessian contractions that the score-matching objectives need.

All functions act per sample: ``x`` has a leading batch axis and the result has shape
``(batch,)``. They are built from first-order autodiff primitives so that they stay
differentiable with respect to the network's parameters (the training tape sits outside).

- ``jvp_sq_norm(f, x, v)``        = ``||J_f(x) v||²``            (forward mode)
- ``vjp_sq_norm(f, x, u)``        = ``||J_f(x)ᵀ u||²``           (reverse mode)
- ``hessian_quadratic_form(E, x, v)`` = ``vᵀ ∇ₓ²E(x) v``          (forward-over-reverse)
- ``frobenius_sq(f, x)``          = ``||J_f(x)||_F²``  closed form, or a sum over basis directions
- ``hessian_trace(E, x)``         = ``tr ∇ₓ²E(x)``    sum of ``e_iᵀ ∇²E e_i`` over the D inputs
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from delvm_tf.networks import encoder_layers

#: Activations whose derivative is piecewise constant, so ``∂²f/∂x² = 0`` almost everywhere,
#: mapped to their slope for negative inputs (Keras' leaky_relu default is 0.2).
PIECEWISE_LINEAR_ACTIVATIONS = {"relu": 0.0, "linear": 1.0, "leaky_relu": 0.2}
#: Layers that are linear or piecewise linear in their input and carry no curvature.
_PIECEWISE_LINEAR_LAYERS = (
    keras.layers.InputLayer, keras.layers.Flatten, keras.layers.Reshape, keras.layers.Dropout,
    keras.layers.MaxPooling1D, keras.layers.MaxPooling2D, keras.layers.AveragePooling2D,
    keras.layers.ReLU, keras.layers.LeakyReLU, keras.layers.ZeroPadding2D, keras.layers.Identity,
)
_AFFINE_LAYERS = (keras.layers.Dense, keras.layers.Conv1D, keras.layers.Conv2D)


def _activation_name(layer) -> str | None:
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    name = keras.activations.serialize(activation)
    return name if isinstance(name, str) else None


def _negative_slope(layer) -> float:
    """Slope of the layer's activation for negative pre-activations (ReLU 0, linear 1)."""
    return PIECEWISE_LINEAR_ACTIVATIONS[_activation_name(layer)]


def is_piecewise_linear(encoder) -> bool:
    """True when every layer of ``encoder`` is (piecewise) linear, so ``tr ∇²E`` needs only ``J_f``."""
    for layer in encoder_layers(encoder):
        if isinstance(layer, keras.Sequential):
            if not is_piecewise_linear(layer):
                return False
        elif isinstance(layer, _AFFINE_LAYERS):
            if _activation_name(layer) not in PIECEWISE_LINEAR_ACTIVATIONS:
                return False
        elif not isinstance(layer, _PIECEWISE_LINEAR_LAYERS):
            return False
    return True


def single_affine_layer(encoder):
    """The encoder's only Dense/Conv2D layer when it has a closed-form ``||J_f||_F²``, else None."""
    layers = [l for l in encoder_layers(encoder) if not isinstance(l, keras.layers.InputLayer)]
    if len(layers) != 1:
        return None
    layer = layers[0]
    if not isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)):
        return None
    if _activation_name(layer) not in PIECEWISE_LINEAR_ACTIVATIONS:
        return None
    if isinstance(layer, keras.layers.Conv2D) and layer.groups != 1:
        return None
    return layer


def closed_form_frobenius_sq(layer, features: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
    """``||J_f(x)||_F²`` of one piecewise-linear Dense or Conv2D layer from its output ``features``.

    Dense:  ``Σ_j g'(a_j)² ||w_j||²``.
    Conv2D: ``Σ_{p,k} g'(a_{p,k})² M_{p,k}`` with ``M = conv2d(ones_like(x), W⊙W)``, the in-bounds
    sum of squared weights feeding each output unit (one extra convolution of a single image).
    For ReLU-like activations ``a > 0 ⇔ f > 0``, so ``g'(a)`` is read off the features.
    """
    slope = _negative_slope(layer)
    positive = tf.cast(features > 0, features.dtype)
    derivative_sq = positive + slope * slope * (1.0 - positive) if slope else positive
    kernel_sq = tf.square(tf.convert_to_tensor(layer.kernel))
    if isinstance(layer, keras.layers.Dense):
        column_norms_sq = tf.reduce_sum(kernel_sq, axis=0)  # (units,)
        return tf.reduce_sum(derivative_sq * column_norms_sq, axis=-1)
    in_bounds = tf.nn.convolution(
        tf.ones_like(x[:1]), kernel_sq, strides=layer.strides, padding=layer.padding.upper(),
        dilations=layer.dilation_rate, data_format="NHWC" if layer.data_format == "channels_last" else "NCHW")
    return tf.reduce_sum(derivative_sq * in_bounds, axis=[1, 2, 3])


def closed_form_jacobian_transpose(layer, features: tf.Tensor, x: tf.Tensor, u: tf.Tensor | None = None) -> tf.Tensor:
    """``J_f(x)ᵀ u = Wᵀ(g'(a) ⊙ u)`` of one piecewise-linear Dense or Conv2D layer, written out
    (a matmul or a transposed convolution) so that SM needs no inner tape for it.
    ``u=None`` means ``u = f``, for which ``g'(a) ⊙ f = f`` under ReLU and linear activations."""
    slope = _negative_slope(layer)
    if u is None:
        u = features if slope in (0.0, 1.0) else tf.where(features > 0, features, slope * features)
    elif slope != 1.0:
        u = tf.where(features > 0, u, slope * u)
    kernel = tf.convert_to_tensor(layer.kernel)
    if isinstance(layer, keras.layers.Dense):
        return tf.matmul(u, kernel, transpose_b=True)
    return tf.nn.conv2d_transpose(u, kernel, tf.shape(x), strides=layer.strides, padding=layer.padding.upper(),
                                  dilations=layer.dilation_rate)


def closed_form_jvp(layer, features: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
    """``J_f(x) v = g'(a) ⊙ (W v)`` of one piecewise-linear Dense or Conv2D layer (one matmul/conv)."""
    kernel = tf.convert_to_tensor(layer.kernel)
    if isinstance(layer, keras.layers.Dense):
        linear = tf.matmul(v, kernel)
    else:
        linear = tf.nn.convolution(v, kernel, strides=layer.strides, padding=layer.padding.upper(),
                                   dilations=layer.dilation_rate)
    slope = _negative_slope(layer)
    return linear if slope == 1.0 else tf.where(features > 0, linear, slope * linear)


def _flat_size(shape) -> int:
    return int(np.prod([int(d) for d in shape]))


def _sum_nonbatch(t: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(tf.reshape(t, [tf.shape(t)[0], -1]), axis=1)


def squared_norm(t: tf.Tensor) -> tf.Tensor:
    """Per-sample ``||t||²`` over every non-batch axis."""
    return _sum_nonbatch(tf.square(t))


def jvp_sq_norm(fn, x: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
    """``||J_fn(x) v||²`` per row of ``x`` (forward-mode autodiff)."""
    with tf.autodiff.ForwardAccumulator(x, v) as acc:
        y = fn(x)
    return squared_norm(acc.jvp(y))


def vjp_sq_norm(fn, x: tf.Tensor, u: tf.Tensor) -> tf.Tensor:
    """``||J_fn(x)ᵀ u||²`` per row of ``x`` (reverse-mode autodiff)."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    return squared_norm(tape.gradient(y, x, output_gradients=u))


def hessian_quadratic_form(energy_fn, x: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
    """``vᵀ ∇ₓ²E(x) v`` per row of ``x``: a forward-mode JVP of the reverse-mode gradient."""
    with tf.autodiff.ForwardAccumulator(x, v) as acc:
        with tf.GradientTape() as tape:
            tape.watch(x)
            energy = energy_fn(x)
        gradient = tape.gradient(energy, x)
    return _sum_nonbatch(v * acc.jvp(gradient))


def _sum_over_basis(contraction, fn, x: tf.Tensor, basis_shape, chunk_size: int | None) -> tf.Tensor:
    """``Σ_i contraction(fn, x, e_i)`` over the standard basis of ``basis_shape``, vectorised.

    Each chunk of K basis vectors is handled in one call on the batch repeated K times.
    """
    n = _flat_size(basis_shape)
    chunk = n if not chunk_size else min(chunk_size, n)
    total = tf.zeros(tf.shape(x)[:1], x.dtype)
    for start in range(0, n, chunk):
        k = min(chunk, n - start)
        basis = tf.reshape(tf.eye(n, dtype=x.dtype)[start:start + k], [k, *basis_shape])
        batch = tf.shape(x)[0]
        x_rep = tf.repeat(x, k, axis=0)                          # row b*k + i is sample b
        directions = tf.tile(basis, [batch] + [1] * len(basis_shape))
        values = contraction(fn, x_rep, directions)               # (batch*k,)
        total += tf.reduce_sum(tf.reshape(values, [batch, k]), axis=1)
    return total


def frobenius_sq(fn, x: tf.Tensor, output_shape, mode: str = "auto", chunk_size: int | None = None) -> tf.Tensor:
    """Exact ``||J_fn(x)||_F²`` by D forward JVPs (``mode='forward'``) or H reverse VJPs
    (``'reverse'``); ``'auto'`` takes whichever of D inputs and H outputs is smaller."""
    input_shape = x.shape[1:]
    if mode == "auto":
        mode = "forward" if _flat_size(input_shape) <= _flat_size(output_shape) else "reverse"
    if mode == "forward":
        return _sum_over_basis(jvp_sq_norm, fn, x, input_shape, chunk_size)
    if mode == "reverse":
        return _sum_over_basis(vjp_sq_norm, fn, x, output_shape, chunk_size)
    raise ValueError(f"Unknown Jacobian mode {mode!r}; use 'auto', 'forward' or 'reverse'.")


def hessian_trace(energy_fn, x: tf.Tensor, chunk_size: int | None = None) -> tf.Tensor:
    """Exact ``tr ∇ₓ²E(x) = Σ_i e_iᵀ ∇²E e_i`` by D Hessian-vector products (any smooth energy)."""
    return _sum_over_basis(hessian_quadratic_form, energy_fn, x, x.shape[1:], chunk_size)


def input_dim(x) -> int:
    """D, the number of input dimensions of one sample."""
    return int(math.prod(int(d) for d in x.shape[1:]))
