"""Encoder networks ``f_θ`` used by every model.

``dense(units)`` builds a ReLU FFNN and ``conv(filters, kernel_sizes)`` a stack of
'same'-padded, stride-1 ReLU Conv2D layers (SPEC §1.1). Both return a plain
``keras.Sequential``: any other Keras layer or model can be passed as an encoder too.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras


def _as_list(value, n: int, what: str) -> list:
    if isinstance(value, int):
        return [value] * n
    value = list(value)
    if len(value) != n:
        raise ValueError(f"{what} has {len(value)} entries but there are {n} layers.")
    return value


def _check_positive(values: Sequence[int], what: str) -> None:
    if not values or any((not isinstance(v, int)) or v < 1 for v in values):
        raise ValueError(f"{what} must be a non-empty list of positive integers, got {values!r}.")


def dense(units: int | Sequence[int], activation: str = "relu", seed: int | None = None,
          name: str | None = None) -> keras.Sequential:
    """A dense encoder: ``f(x) = g(W_L … g(W_1 x + c_1) … + c_L)`` with ``g = activation``."""
    units = [units] if isinstance(units, int) else list(units)
    _check_positive(units, "units")
    layers = [
        keras.layers.Dense(
            n, activation=activation,
            kernel_initializer=keras.initializers.GlorotUniform(seed=None if seed is None else seed + i),
            name=f"dense_{i}")
        for i, n in enumerate(units)
    ]
    return keras.Sequential(layers, name=name or "dense_encoder")


def conv(filters: int | Sequence[int], kernel_sizes: int | Sequence[int], activation: str = "relu",
         seed: int | None = None, name: str | None = None) -> keras.Sequential:
    """A convolutional encoder of Conv2D layers ('same' padding, stride 1)."""
    filters = [filters] if isinstance(filters, int) else list(filters)
    _check_positive(filters, "filters")
    kernel_sizes = _as_list(kernel_sizes, len(filters), "kernel_sizes")
    _check_positive(kernel_sizes, "kernel_sizes")
    layers = [
        keras.layers.Conv2D(
            n, k, padding="same", strides=1, activation=activation,
            kernel_initializer=keras.initializers.GlorotUniform(seed=None if seed is None else seed + i),
            name=f"conv_{i}")
        for i, (n, k) in enumerate(zip(filters, kernel_sizes))
    ]
    return keras.Sequential(layers, name=name or "conv_encoder")


def encoder_layers(encoder) -> list:
    """The layers whose outputs are the model's features (a Sequential's layers, else the encoder)."""
    if isinstance(encoder, keras.Sequential):
        return list(encoder.layers)
    return [encoder]
