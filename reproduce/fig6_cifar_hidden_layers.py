"""Fig. 6 — CIFAR-10, probe accuracy vs #hidden layers: SM-DELVM, CD-DELVM, SM-DEM, CD-DEM, CEBM.

    python reproduce/fig6_cifar_hidden_layers.py [--scale=smoke|quick|paper] [--resume] [--models=...]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from delvm_tf import reproduction  # noqa: E402
from delvm_tf.reproduction import Figure  # noqa: E402

FIGURE = Figure(
    name="fig6_cifar_hidden_layers",
    title="Fig. 6: CIFAR-10, accuracy vs #hidden layers (linear probe)",
    dataset="cifar10", sweep="layers", models=("SM-DELVM", "CD-DELVM", "SM-DEM", "CD-DEM", "CEBM"),
    claims=("SM > CD at 2-4 layers", "DELVM >> DEM"),
)

if __name__ == "__main__":
    reproduction.run_cli(FIGURE)
