"""Fig. 9 — CIFAR-10 anomaly detection (normal: airplane), F1 vs #layers: SM-DELVM, CD-DELVM, CAE, CEBM.

    python reproduce/fig9_cifar_anomaly_layers.py [--scale=smoke|quick|paper] [--resume] [--models=...]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from delvm_tf import reproduction  # noqa: E402
from delvm_tf.reproduction import Figure  # noqa: E402

FIGURE = Figure(
    name="fig9_cifar_anomaly_layers",
    title="Fig. 9: CIFAR-10 anomaly detection (normal = airplane), F1 vs #layers (threshold: best F1 on val.)",
    dataset="cifar10_anomaly", sweep="layers", models=("SM-DELVM", "CD-DELVM", "CAE", "CEBM"),
    paper={"SM-DELVM": [{"x": 1, "f1": 85.23}], "CD-DELVM": [{"x": 1, "f1": 85.17}], "CAE": [{"x": 1, "f1": 84.76}]},
    claims=("all F1 close to the trivial rule's 84.6",),
)

if __name__ == "__main__":
    reproduction.run_cli(FIGURE)
