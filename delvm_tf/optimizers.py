"""Adam with a learning rate per layer (the paper uses 1e-3 … 1e-5 per layer).

``LayerwiseAdam`` is a serialisable ``keras.optimizers.Adam`` that multiplies the learning
rate of each variable by a factor looked up from the variable's path
(``"delvm/conv_encoder/conv_1/kernel"`` takes the factor given for ``"conv_1"``). It saves and
loads with the model (``.keras``), optimizer state included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras

from delvm_tf.networks import encoder_layers

_PARAMETER_FREE = (
    keras.layers.InputLayer, keras.layers.Activation, keras.layers.ReLU, keras.layers.LeakyReLU,
    keras.layers.Flatten, keras.layers.Reshape, keras.layers.Dropout, keras.layers.MaxPooling2D,
    keras.layers.MaxPooling1D, keras.layers.AveragePooling2D, keras.layers.ZeroPadding2D,
)


@keras.saving.register_keras_serializable(package="delvm_tf")
class LayerwiseAdam(keras.optimizers.Adam):
    """Adam with ``lr(v) = learning_rate × learning_rate_multipliers[name]`` for every variable ``v``
    whose path contains ``name`` as a component; other variables use ``learning_rate``."""

    def __init__(self, learning_rate=1e-3, learning_rate_multipliers: Mapping[str, float] | None = None,
                 **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.learning_rate_multipliers = {str(k): float(v) for k, v in (learning_rate_multipliers or {}).items()}

    def multiplier_for(self, path: str) -> float:
        """The factor for a variable path: the first name that is one of its components."""
        components = path.split("/")
        for name, multiplier in self.learning_rate_multipliers.items():
            if name in components:
                return multiplier
        return 1.0

    def build(self, var_list):
        super().build(var_list)
        self._variable_multipliers = [self.multiplier_for(v.path) for v in var_list]

    def update_step(self, gradient, variable, learning_rate):
        multiplier = self._variable_multipliers[self._get_variable_index(variable)]
        return super().update_step(gradient, variable, learning_rate * multiplier)

    def get_config(self):
        return {**super().get_config(), "learning_rate_multipliers": dict(self.learning_rate_multipliers)}


def parametric_layers(encoder) -> list:
    """The encoder's layers that own (or, once built, will own) weights, in order."""
    return [layer for layer in encoder_layers(encoder)
            if layer.weights or (not layer.built and not isinstance(layer, _PARAMETER_FREE))]


def layerwise_adam(model, learning_rates: Sequence[float], bias_learning_rate: float | None = None,
                   **adam_kwargs) -> LayerwiseAdam:
    """Adam with ``learning_rates[i]`` for the i-th weighted encoder layer.

    The visible bias ``b`` uses ``bias_learning_rate`` (default: the first layer's rate);
    any other variable (e.g. DEM's top layer) uses the first layer's rate.
    """
    layers = parametric_layers(model.encoder)
    learning_rates = [float(lr) for lr in learning_rates]
    if len(learning_rates) != len(layers):
        raise ValueError(f"Got {len(learning_rates)} learning rates for {len(layers)} weighted encoder layers "
                         f"({[layer.name for layer in layers]}).")
    if any(lr <= 0 for lr in learning_rates):
        raise ValueError(f"Learning rates must be positive, got {learning_rates}.")
    base = learning_rates[0]
    multipliers = {layer.name: lr / base for layer, lr in zip(layers, learning_rates)}
    multipliers["visible_bias"] = (bias_learning_rate or base) / base
    return LayerwiseAdam(learning_rate=base, learning_rate_multipliers=multipliers, **adam_kwargs)
