"""Fig. 5 — CIFAR-10, single layer, SM-DELVM vs SM-DEM: probe accuracy vs #filters per kernel size.

    python reproduce/fig5_cifar_filters_delvm_dem.py [--scale=smoke|quick|paper] [--resume] [--models=...]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from delvm_tf import reproduction  # noqa: E402
from delvm_tf.reproduction import Figure  # noqa: E402

FIGURE = Figure(
    name="fig5_cifar_filters_delvm_dem",
    title="Fig. 5: CIFAR-10, single layer, SM-DELVM vs SM-DEM (linear probe)",
    dataset="cifar10", sweep="filters", models=("SM-DELVM", "SM-DEM"),
    claims=("DELVM >> DEM",),
)

if __name__ == "__main__":
    reproduction.run_cli(FIGURE)
