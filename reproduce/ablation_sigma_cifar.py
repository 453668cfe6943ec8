"""Ablation (not in the paper): CIFAR-10 single-layer SM-DELVM at its best setting (80, 3)
for σ = 2 … 1/8, with the learned filters' effective rank and the patch-covariance eigenvalues
above σ² that bound it (SPEC §1.1). Compare with Fig. 4, made at the paper's σ = 1.

    python reproduce/ablation_sigma_cifar.py [--scale=smoke|quick|paper] [--resume]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from delvm_tf import reproduction  # noqa: E402
from delvm_tf.reproduction import Figure  # noqa: E402

FIGURE = Figure(
    name="ablation_sigma_cifar",
    title="Ablation (not in the paper): CIFAR-10 single-layer SM-DELVM vs σ (linear probe)",
    dataset="cifar10", sweep="sigma", models=("SM-DELVM",),
    claims=("SPEC §1.1: DELVM cannot fit directions whose variance is below σ²",),
)

if __name__ == "__main__":
    reproduction.run_cli(FIGURE)
