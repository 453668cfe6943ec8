"""Fig. 1 — Fashion-MNIST, single-layer DELVM, SM vs CD: probe accuracy vs #filters per kernel size.

    python reproduce/fig1_filters_sm_cd.py [--scale=smoke|quick|paper] [--resume] [--models=...]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from delvm_tf import reproduction  # noqa: E402
from delvm_tf.reproduction import Figure  # noqa: E402

FIGURE = Figure(
    name="fig1_filters_sm_cd",
    title="Fig. 1: Fashion-MNIST, single-layer DELVM, SM vs CD (linear probe)",
    dataset="fashion_mnist", sweep="filters", models=("SM-DELVM", "CD-DELVM"),
    claims=("SM > CD at equal filters", "DELVM improves with more filters"),
)

if __name__ == "__main__":
    reproduction.run_cli(FIGURE)
