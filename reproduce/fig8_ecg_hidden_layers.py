"""Fig. 8 — ECG5000 anomaly detection, F1 vs #hidden layers: SM-DELVM, CD-DELVM, AE, CEBM.

    python reproduce/fig8_ecg_hidden_layers.py [--scale=smoke|quick|paper] [--resume] [--models=...]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from delvm_tf import reproduction  # noqa: E402
from delvm_tf.reproduction import Figure, f1_from  # noqa: E402

FIGURE = Figure(
    name="fig8_ecg_hidden_layers",
    title="Fig. 8: ECG5000 anomaly detection, F1 vs #hidden layers (threshold mean+std)",
    dataset="ecg5000", sweep="layers", models=("SM-DELVM", "CD-DELVM", "AE", "CEBM"),
    paper={"SM-DELVM": [{"x": 1, "f1": f1_from(90.57, 99.46)}, {"x": 4, "f1": 96.46}],
           "CD-DELVM": [{"x": 1, "f1": f1_from(90.5, 90.18)}], "AE": [{"x": 1, "f1": f1_from(96.24, 91.43)}]},
    claims=("4-layer SM-DELVM best, F1 96.46", "similar to AE, far above CD-DELVM and CEBM"),
)

if __name__ == "__main__":
    reproduction.run_cli(FIGURE)
