"""Fig. 3 — Fashion-MNIST, probe accuracy vs #hidden layers: SM-DELVM, CD-DELVM, SM-DEM, CD-DEM, CEBM.

    python reproduce/fig3_hidden_layers.py [--scale=smoke|quick|paper] [--resume] [--models=...]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from delvm_tf import reproduction  # noqa: E402
from delvm_tf.reproduction import Figure  # noqa: E402

FIGURE = Figure(
    name="fig3_hidden_layers",
    title="Fig. 3: Fashion-MNIST, accuracy vs #hidden layers (linear probe)",
    dataset="fashion_mnist", sweep="layers", models=("SM-DELVM", "CD-DELVM", "SM-DEM", "CD-DEM", "CEBM"),
    claims=("2 layers best for the SM models", "CEBM between DEM and DELVM", "SM > CD"),
)

if __name__ == "__main__":
    reproduction.run_cli(FIGURE)
