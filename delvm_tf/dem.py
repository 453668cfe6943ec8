"""Deep energy model (DEM; Ngiam et al., ICML 2011; SPEC §1.4).

    ``E(x) = ||x − b||²/(2σ²) − Σ_j softplus(w_jᵀ g_φ(x) + c_j)``

``g_φ`` is a deterministic dense or conv encoder; the top layer of stochastic binary units
``h_j ∈ {0, 1}`` is summed out analytically, which turns ``−Σ_j h_j (w_jᵀg + c_j)`` into
``−Σ_j softplus(w_jᵀg + c_j)``. Only ``compute_energy`` is defined here: the score, the
reconstruction ``x − σ²∇ₓE`` (the anomaly score's ``x̂``), the Hessian trace for exact SM
(Hessian-vector products, because softplus is smooth and the piecewise-linear shortcut of
DELVM does not apply), ``sliced``/``denoising`` SM and CD with Langevin negatives all come
from ``EnergyModel`` and ``delvm_tf.objectives``.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from delvm_tf.energies import EnergyModel

TOP_LAYER_NAME = "dem_top"


@keras.saving.register_keras_serializable(package="delvm_tf")
class DEM(EnergyModel):
    """Deep energy model: a Gaussian base plus a softplus "free energy" top layer on ``g_φ(x)``.

    Args:
        encoder: the deterministic network ``g_φ`` (``delvm_tf.networks.dense`` or ``conv``).
            A conv encoder's output maps are flattened before the top layer.
        hidden_units: number of top (summed-out binary) units ``j``. The paper does not state
            it; record the value used.
        objective, estimator, sampler, sigma, n_projections, projection, noise_std,
        jacobian_chunk_size, seed: as for ``EnergyModel``. ``objective='cd'`` uses Langevin
            negatives (``sampler='langevin'``, the default); the DELVM ``'paper'`` sampler needs
            the latent conditional ``p(x|h)`` of DELVM and is refused.

    The top layer is a ``Dense(hidden_units)`` named ``"dem_top"`` (so ``LayerwiseAdam`` can
    give it its own learning rate through ``learning_rate_multipliers={"dem_top": ...}``;
    ``layerwise_adam`` gives it the first layer's rate).

    ``layer_outputs(x)`` returns the *encoder's* layer activations only, not the top
    layer's: the probe of SPEC §2 max-pools and concatenates the conv maps, as for DELVM,
    and the top units are a function of the last map that DELVM has no counterpart of.
    Use ``top_activations(x)`` for the top units' ``P(h_j = 1 | x) = sigmoid(w_jᵀg + c_j)``.
    """

    default_sampler = "langevin"

    def __init__(self, encoder, hidden_units: int, objective: str = "sm", estimator: str = "exact",
                 sampler=None, **kwargs):
        super().__init__(encoder, objective=objective, estimator=estimator, sampler=sampler, **kwargs)
        if isinstance(hidden_units, bool) or not isinstance(hidden_units, int) or hidden_units < 1:
            raise ValueError(f"hidden_units must be a positive integer, got {hidden_units!r}.")
        self.hidden_units = int(hidden_units)

    def build_model(self, input_shape):
        super().build_model(input_shape)
        flat_size = math.prod(int(d) for d in self.encoder.compute_output_shape(input_shape)[1:])
        self.flatten = keras.layers.Flatten(name="dem_flatten")
        self.top = keras.layers.Dense(self.hidden_units, name=TOP_LAYER_NAME)
        self.top.build((None, flat_size))

    def top_preactivations(self, x, training=False) -> tf.Tensor:
        """``w_jᵀ g_φ(x) + c_j`` for every top unit, shape ``(batch, hidden_units)``."""
        return self.top(self.flatten(self.encoder(x, training=training)))

    def compute_energy(self, x, training=False):
        free_energy = tf.reduce_sum(tf.math.softplus(self.top_preactivations(x, training=training)), axis=-1)
        return self.base_energy(x) - free_energy

    def top_activations(self, x, batch_size: int | None = None):
        """``P(h_j = 1 | x) = sigmoid(w_jᵀ g_φ(x) + c_j)``, shape ``(batch, hidden_units)``."""
        return self._apply(lambda x_: tf.sigmoid(self.top_preactivations(x_)), x, batch_size,
                           name="top_activations")

    def get_config(self):
        return {**super().get_config(), "hidden_units": self.hidden_units}
