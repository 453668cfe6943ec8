"""Training-step cost of each objective relative to a plain autoencoder step, in one run.

    python benchmarks/step_cost.py            # prints the table, writes results/benchmarks/step_cost.{csv,json}

For every encoder (dense 4×512 on 140-d, conv 1×(70,5) and 4×(70,5) on 28×28) it times a
training step of: the AE with a mirrored decoder (the reference), SM exact / sliced (1
projection) / denoising, CD with the paper sampler (k=1) and CD with Langevin (k=5). Rounds
are interleaved (every model once per round), each timing spans at least ``--min_seconds``,
and each ratio is the median over rounds of ``t_objective / t_AE`` measured in the same round,
so that the machine's drift cancels in each pair. Exact SM on deep nets needs D JVPs
per sample, so it is also measured, with its AE reference, against the input size D
(dense 4×512 on D inputs, conv 2×(16,3) on s×s images) to show how the ratio grows with D.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import delvm_tf  # noqa: E402
from delvm_tf import networks, reproduction, samplers  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch_size", 100, "Batch size (the paper's).")
flags.DEFINE_integer("steps", 10, "Timed steps per measurement, at least (more if they take under --min_seconds).")
flags.DEFINE_float("min_seconds", 2.0, "Each measurement runs enough steps to take at least this long.")
flags.DEFINE_integer("rounds", 3, "Measurement rounds; the median is reported.")
flags.DEFINE_string("output_dir", "results/benchmarks", "Where step_cost.csv/json go.")
flags.DEFINE_boolean("exact_deep_conv", False, "Also time exact SM on 4×(70,5) at 28×28 (very slow on CPU).")

ENCODERS = {
    "dense 4x512, D=140": ((140,), lambda: networks.dense([512] * 4, seed=0)),
    "conv 1x(70,5), 28x28": ((28, 28, 1), lambda: networks.conv([70], [5], seed=0)),
    "conv 4x(70,5), 28x28": ((28, 28, 1), lambda: networks.conv([70] * 4, [5] * 4, seed=0)),
}
OBJECTIVES = {
    "AE": None,
    "SM exact": dict(objective="sm", estimator="exact"),
    "SM sliced (1 proj.)": dict(objective="sm", estimator="sliced", n_projections=1),
    "SM denoising": dict(objective="sm", estimator="denoising"),
    "CD paper (k=1)": dict(objective="cd", sampler="paper"),
    "CD Langevin (k=5)": dict(objective="cd", sampler=None),
}


def make_model(encoder, options):
    if options is None:
        return delvm_tf.AutoEncoder(encoder=encoder)
    options = dict(options)
    if options.get("sampler", "") is None:
        options["sampler"] = samplers.LangevinSampler(steps=5)
    return delvm_tf.DELVM(encoder=encoder, seed=0, jacobian_chunk_size=196, **options)


def compile_and_calibrate(model, shape, batch_size, min_steps, min_seconds):
    """Compile, trace (a warm-up fit) and pick the number of timed steps: at least ``min_steps``
    and enough for the measurement to take ``min_seconds``. Returns ``(data, steps)``."""
    x = np.random.default_rng(0).normal(size=(batch_size, *shape)).astype(np.float32)
    data = tf.data.Dataset.from_tensors(x).repeat()
    model.compile(optimizer=keras.optimizers.Adam(1e-4))
    model.fit(data, epochs=1, steps_per_epoch=2, verbose=0)  # traces the train function
    per_step = seconds_per_step(model, data, 2)
    return data, max(min_steps, math.ceil(min_seconds / per_step))


def seconds_per_step(model, data, steps):
    """Wall time of one compiled training step, averaged over ``steps`` steps of one ``fit``."""
    start = time.perf_counter()
    model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)
    return (time.perf_counter() - start) / steps


def main(_):
    started = time.time()
    cases = [(name, shape, factory, objective, options)
             for name, (shape, factory) in ENCODERS.items() for objective, options in OBJECTIVES.items()
             if not (objective == "SM exact" and name.startswith("conv 4x") and not FLAGS.exact_deep_conv)]
    # Exact SM against input dimension: dense 4×512 on D inputs, conv 2×(16,3) on s×s images.
    scaling = [(f"scaling: dense 4x512, D={d}", (d,), lambda: networks.dense([512] * 4, seed=0))
               for d in (35, 70, 140, 280)]
    scaling += [(f"scaling: conv 2x(16,3), {s}x{s}", (s, s, 1), lambda: networks.conv([16, 16], [3, 3], seed=0))
                for s in (7, 10, 14, 20)]
    for name, shape, factory in scaling:
        cases += [(name, shape, factory, objective, OBJECTIVES[objective]) for objective in ("AE", "SM exact")]
    models = {}
    for name, shape, factory, objective, options in cases:
        model = make_model(factory(), options)
        min_steps = max(2, FLAGS.steps // 4) if name.startswith("conv 4x") else FLAGS.steps  # ~2 s/step
        models[(name, objective)] = (model, shape, *compile_and_calibrate(
            model, shape, FLAGS.batch_size, min_steps, FLAGS.min_seconds))
    print(f"compiled and calibrated {len(models)} models ({time.time() - started:.0f} s)", flush=True)
    times, ratios = {}, {}
    for round_ in range(FLAGS.rounds):
        measured = {}
        for key, (model, _, data, steps) in models.items():  # interleaved rounds share the machine's noise
            measured[key] = seconds_per_step(model, data, steps)
            times.setdefault(key, []).append(measured[key])
        for (name, objective), seconds in measured.items():
            ratios.setdefault((name, objective), []).append(seconds / measured[(name, "AE")])
        print(f"round {round_ + 1}/{FLAGS.rounds} done ({time.time() - started:.0f} s)", flush=True)
    rows = [{"encoder": name, "objective": objective, "input_dim": int(np.prod(models[(name, objective)][1])),
             "timed_steps": models[(name, objective)][3], "ms_per_step": 1000 * statistics.median(seconds),
             "ratio_to_AE": statistics.median(ratios[(name, objective)]),
             "ratio_min": min(ratios[(name, objective)]), "ratio_max": max(ratios[(name, objective)])}
            for (name, objective), seconds in times.items()]
    table = pd.DataFrame(rows)
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    table.to_csv(os.path.join(FLAGS.output_dir, "step_cost.csv"), index=False, float_format="%.4g")
    metadata = {
        "script": "benchmarks/step_cost.py", "flags": {f: FLAGS[f].value for f in ("batch_size", "steps", "min_seconds",
                                                                                   "rounds", "exact_deep_conv")},
        "wall_seconds": round(time.time() - started, 1),
        **reproduction.environment(),  # versions, hardware, git commit and uncommitted files
    }
    with open(os.path.join(FLAGS.output_dir, "step_cost.json"), "w") as f:
        json.dump(metadata, f, indent=2)
    with pd.option_context("display.width", 160, "display.max_rows", 100):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    app.run(main)
