"""Fig. 4 — CIFAR-10, single-layer DELVM, SM vs CD: probe accuracy vs #filters per kernel size.

    python reproduce/fig4_cifar_filters_sm_cd.py [--scale=smoke|quick|paper] [--resume] [--models=...]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from delvm_tf import reproduction  # noqa: E402
from delvm_tf.reproduction import Figure  # noqa: E402

FIGURE = Figure(
    name="fig4_cifar_filters_sm_cd",
    title="Fig. 4: CIFAR-10, single-layer DELVM, SM vs CD (linear probe)",
    dataset="cifar10", sweep="filters", models=("SM-DELVM", "CD-DELVM"),
    claims=("single-layer SM ≈ CD",),
)

if __name__ == "__main__":
    reproduction.run_cli(FIGURE)
