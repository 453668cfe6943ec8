"""Every figure and Table 1, in order (figures 1–9, Table 1, then the σ ablations), with the same flags.

    python reproduce/all.py [--scale=smoke|quick|paper] [--figures=fig3,table1] [--resume] [--output_dir=ROOT]

With --output_dir, each figure goes to ROOT/<figure>/ (default results/<figure>/). --models
keeps, in each figure, the named models it has.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from delvm_tf import reproduction  # noqa: E402

FIGURES = reproduction.load_figure_scripts(os.path.dirname(os.path.abspath(__file__)))

if __name__ == "__main__":
    reproduction.run_cli(FIGURES)
