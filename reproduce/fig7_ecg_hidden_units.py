"""Fig. 7 — ECG5000 anomaly detection, F1 vs #hidden units, single layer: SM-DELVM, CD-DELVM, AE.

    python reproduce/fig7_ecg_hidden_units.py [--scale=smoke|quick|paper] [--resume] [--models=...]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from delvm_tf import reproduction  # noqa: E402
from delvm_tf.reproduction import Figure, f1_from  # noqa: E402

FIGURE = Figure(
    name="fig7_ecg_hidden_units",
    title="Fig. 7: ECG5000 anomaly detection, F1 vs #hidden units (single layer, threshold mean+std)",
    dataset="ecg5000", sweep="units", models=("SM-DELVM", "CD-DELVM", "AE"),
    paper={  # SPEC §7: best single layer (precision, recall); F1 computed from them
        "SM-DELVM": {"x": 2048, "precision": 90.57, "recall": 99.46, "f1": f1_from(90.57, 99.46)},
        "CD-DELVM": {"x": 512, "precision": 90.5, "recall": 90.18, "f1": f1_from(90.5, 90.18)},
        "AE": {"x": 256, "precision": 96.24, "recall": 91.43, "f1": f1_from(96.24, 91.43)},
    },
    claims=("best single layer: SM-DELVM P 90.57 / R 99.46 at 2048 units; CD-DELVM 90.5 / 90.18 at 512; "
            "AE 96.24 / 91.43 at 256",),
)

if __name__ == "__main__":
    reproduction.run_cli(FIGURE)
