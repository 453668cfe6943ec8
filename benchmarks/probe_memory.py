"""Peak memory of the streamed linear probe (SPEC §2) on Fashion-MNIST-sized data.

Builds a 4-layer conv DELVM (80 maps of 5×5 per layer by default; untrained: memory does
not depend on the weights) and runs ``delvm_tf.probe.linear_probe`` for one classifier
epoch. Materialising its features for all 60,000 training images would take
4 × 80 × 14 × 14 = 62,720 features × 60,000 ≈ 3.8 G floats (15 GB); the probe streams them,
so its peak RSS should not grow with ``--n_train``.

Prints the peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``), the RSS before the
probe started (imports, model and input data), and the wall time. Example::

    nice python benchmarks/probe_memory.py --n_train 2000 --n_test 500
    nice python benchmarks/probe_memory.py --n_train 8000 --n_test 500
    python benchmarks/probe_memory.py --input stream      # all 60k, inputs generated per batch

Inputs: ``numpy`` (default) holds the random inputs in memory (n × 3 KiB), ``dataset``
wraps the same arrays in a ``tf.data.Dataset``, ``stream`` generates each batch on the fly
(nothing proportional to n is held anywhere). ``--data fashion`` uses the real
Fashion-MNIST IDX files instead of random inputs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import numpy as np



def rss_mib() -> float:
    """Current resident set size (MiB), from /proc (Linux)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def peak_rss_mib() -> float:
    """Peak resident set size so far (MiB); ``ru_maxrss`` is in KiB on Linux, bytes on macOS."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** 20 if sys.platform == "darwin" else peak / 1024


def load_data(kind: str, n_train: int, n_test: int, seed: int):
    if kind == "fashion":
        from delvm_tf import datasets
        (x_train, y_train), (x_test, y_test) = datasets.load("fashion_mnist", download=False)
        return (x_train[:n_train], y_train[:n_train]), (x_test[:n_test], y_test[:n_test])
    rng = np.random.default_rng(seed)
    def split(n):
        return (rng.standard_normal((n, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, n))
    return split(n_train), split(n_test)


def streamed_split(tf, n: int, batch_size: int, seed: int):
    """A dataset of random (x, y) batches generated per batch (stateless, same every epoch)."""
    n_batches = -(-n // batch_size)

    def batch(i):
        size = tf.minimum(batch_size, n - tf.cast(i, tf.int32) * batch_size)
        key = tf.stack([tf.cast(i, tf.int32), seed])
        x = tf.random.stateless_normal((size, 28, 28, 1), seed=key)
        y = tf.random.stateless_uniform((size,), seed=key + 1, minval=0, maxval=10, dtype=tf.int32)
        return tf.ensure_shape(x, (None, 28, 28, 1)), y

    return tf.data.Dataset.range(n_batches).map(batch).prefetch(1)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n_train", type=int, default=60000)
    parser.add_argument("--n_test", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--filters", type=int, default=80)
    parser.add_argument("--kernel_size", type=int, default=5)
    parser.add_argument("--data", choices=("random", "fashion"), default="random")
    parser.add_argument("--input", choices=("numpy", "dataset", "stream"), default="numpy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=0)
    parser.add_argument("--json", help="also write the result to this JSON file")
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root
    import tensorflow as tf

    import delvm_tf
    from delvm_tf import probe

    model = delvm_tf.DELVM(encoder=delvm_tf.networks.conv([args.filters] * args.layers,
                                                          [args.kernel_size] * args.layers, seed=args.seed))
    model.build((None, 28, 28, 1))
    if args.input == "stream":
        if args.data != "random":
            parser.error("--input stream generates random data; use --data random.")
        train = streamed_split(tf, args.n_train, args.batch_size, args.seed)
        test = streamed_split(tf, args.n_test, args.batch_size, args.seed + 1)
    else:
        train, test = load_data(args.data, args.n_train, args.n_test, args.seed)
        if args.input == "dataset":
            train = tf.data.Dataset.from_tensor_slices(train).shuffle(4096, seed=args.seed).batch(args.batch_size)
            test = tf.data.Dataset.from_tensor_slices(test).batch(args.batch_size)
    rss_before, peak_before = rss_mib(), peak_rss_mib()
    dims = probe.layer_feature_dims(model)
    print(f"model: {args.layers} conv layers × {args.filters} maps ({args.kernel_size}×{args.kernel_size}); "
          f"probe features: {sum(dims)} ({' + '.join(map(str, dims))})")
    print(f"data: {args.data}, input: {args.input}, n_train={args.n_train}, n_test={args.n_test}; "
          f"a materialised train feature matrix would be {sum(dims) * args.n_train * 4 / 2 ** 30:.2f} GiB (float32)")
    print(f"RSS before the probe: {rss_before:.0f} MiB (peak so far {peak_before:.0f} MiB)", flush=True)

    start = time.perf_counter()
    result = probe.linear_probe(model, train, test, epochs=args.epochs, batch_size=args.batch_size,
                                verbose=args.verbose)
    wall = time.perf_counter() - start
    report = {
        "n_train": result.n_train, "n_test": result.n_test, "epochs": args.epochs, "batch_size": args.batch_size,
        "feature_dim": result.feature_dim, "data": args.data, "input": args.input,
        "accuracy": result.accuracy, "wall_s": wall, "seconds_per_train_sample": wall / result.n_train,
        "rss_before_mib": rss_before, "peak_rss_mib": peak_rss_mib(),
        "materialised_features_gib": result.feature_dim * result.n_train * 4 / 2 ** 30,
    }
    print(f"peak RSS: {report['peak_rss_mib']:.0f} MiB (ru_maxrss); wall time: {wall:.1f} s "
          f"({1e3 * wall / result.n_train:.1f} ms per train sample incl. test); accuracy {result.accuracy:.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main()
