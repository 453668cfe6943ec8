"""delvm_tf: score-matching and contrastive-divergence training of deep energy-based
latent variable models (DELVM) as Keras models."""

from delvm_tf import anomaly, callbacks, datasets, jacobians, networks, objectives, probe, samplers
from delvm_tf.autoencoder import AutoEncoder
from delvm_tf.base import LatentModel
from delvm_tf.callbacks import DivergenceMonitor
from delvm_tf.cebm import CEBM
from delvm_tf.dem import DEM
from delvm_tf.energies import DELVM, EnergyModel
from delvm_tf.objectives import contrastive_divergence_loss, score_matching_loss
from delvm_tf.optimizers import LayerwiseAdam, layerwise_adam

__version__ = "0.1.0"

__all__ = [
    "AutoEncoder", "CEBM", "DEM", "anomaly", "datasets", "probe",
    "DELVM", "DivergenceMonitor", "EnergyModel", "LatentModel", "LayerwiseAdam",
    "callbacks", "contrastive_divergence_loss", "jacobians", "layerwise_adam", "networks",
    "objectives", "samplers", "score_matching_loss",
]
