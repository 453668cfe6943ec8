"""fit under tf.distribute.MirroredStrategy on 2 logical CPU devices matches a single device.

Logical devices must be configured before TensorFlow initialises, so the check runs in a
fresh interpreter.
"""

import json
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import json, numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, delvm_tf

    OPTIONS = json.loads(sys_argv)
    x = np.random.default_rng(0).normal(size=(400, 6, 6, 1)).astype(np.float32)

    def train(strategy):
        with strategy.scope():
            model = delvm_tf.DELVM(encoder=delvm_tf.networks.conv([3, 3], [3, 3], seed=0), seed=0, **OPTIONS)
            model.compile(optimizer=delvm_tf.layerwise_adam(model, [1e-2, 1e-3]))
        history = model.fit(x, epochs=3, batch_size=100, shuffle=False, verbose=0)
        return history.history["loss"], [v.numpy() for v in model.trainable_variables]

    single_loss, single_weights = train(tf.distribute.OneDeviceStrategy("/cpu:0"))
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert mirrored.num_replicas_in_sync == 2
    mirrored_loss, mirrored_weights = train(mirrored)
    print(json.dumps({"single": single_loss, "mirrored": mirrored_loss,
                      "max_weight_difference": max(float(np.abs(a - b).max())
                                                   for a, b in zip(single_weights, mirrored_weights))}))
""")


@pytest.mark.parametrize("options, tolerance", [
    ({"objective": "sm", "estimator": "exact"}, 1e-4),
    # Random projections are drawn per replica, so the sliced trajectory agrees only statistically.
    ({"objective": "sm", "estimator": "sliced", "n_projections": 4}, 2e-2),
])
def test_mirrored_strategy_matches_single_device(options, tolerance):
    code = f"sys_argv = {json.dumps(json.dumps(options))}\n" + SCRIPT
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for single, mirrored in zip(report["single"], report["mirrored"]):
        assert mirrored == pytest.approx(single, rel=tolerance, abs=tolerance)
    if options["estimator"] == "exact":  # deterministic: the same weights too
        assert report["max_weight_difference"] < tolerance
