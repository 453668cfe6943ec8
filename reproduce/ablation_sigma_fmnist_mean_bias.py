"""Ablation (not in the paper): as ablation_sigma_fmnist.py, but the base centre ``b`` starts at the
training mean image instead of 0, so that small σ is not confounded with a ``b`` that Adam has not yet
moved to the data (see ablation_sigma_ecg_mean_bias.py).

    python reproduce/ablation_sigma_fmnist_mean_bias.py [--scale=smoke|quick|paper] [--resume]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from delvm_tf import reproduction  # noqa: E402
from delvm_tf.reproduction import Figure  # noqa: E402

FIGURE = Figure(
    name="ablation_sigma_fmnist_mean_bias",
    title="Ablation (not in the paper): Fashion-MNIST single-layer SM-DELVM vs σ, b from the training mean",
    dataset="fashion_mnist", sweep="sigma", models=("SM-DELVM",),
    claims=("SPEC §1.1: DELVM cannot fit directions whose variance is below σ²",),
    visible_bias="data_mean",
)

if __name__ == "__main__":
    reproduction.run_cli(FIGURE)
