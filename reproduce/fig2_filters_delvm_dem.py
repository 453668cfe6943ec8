"""Fig. 2 — Fashion-MNIST, single layer, SM-DELVM vs SM-DEM: probe accuracy vs #filters per kernel size.

    python reproduce/fig2_filters_delvm_dem.py [--scale=smoke|quick|paper] [--resume] [--models=...]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from delvm_tf import reproduction  # noqa: E402
from delvm_tf.reproduction import Figure  # noqa: E402

FIGURE = Figure(
    name="fig2_filters_delvm_dem",
    title="Fig. 2: Fashion-MNIST, single layer, SM-DELVM vs SM-DEM (linear probe)",
    dataset="fashion_mnist", sweep="filters", models=("SM-DELVM", "SM-DEM"),
    claims=("DELVM improves with more filters while DEM degrades",),
)

if __name__ == "__main__":
    reproduction.run_cli(FIGURE)
