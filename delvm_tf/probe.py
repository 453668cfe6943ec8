"""Linear feature probe (SPEC §2): how linearly separable are a frozen model's features?

For every encoder layer the activation maps (``model.layer_outputs``) are max-pooled 2×2
with stride 2 (dense layers' activations are used as they are), flattened and concatenated.
The features are standardised with train-split statistics and a linear softmax classifier
(one ``Dense`` layer, Adam, cross-entropy) is trained on the train labels; the result is
the test accuracy.

The features are **streamed**, never materialised: 4 conv layers × 80 maps of 14×14 on
60k Fashion-MNIST images would be 62,720 features × 60,000 ≈ 3.8 G floats (15 GB).

1. A first pass over the train split accumulates exact float64 moments batch by batch
   (Chan et al.'s pairwise update of count, mean and sum of squared deviations).
2. The classifier is a Keras model whose ``call`` recomputes the frozen features of each
   batch, standardises them and applies the ``Dense`` head, so ``fit`` only ever holds one
   batch of features. Only the head's weights are trained.
3. Test accuracy is computed batch by batch in the same way.

Peak memory is bounded by the batch size and the feature dimension, not by the number of
samples (see ``benchmarks/probe_memory.py``).

``random_init_copy(model)`` builds the same architecture untrained: the control every probe
result should be compared with (``linear_probe(..., control=True)`` runs both).
"""

from __future__ import annotations

import copy as _copy
import time
import weakref
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import keras
import numpy as np
import tensorflow as tf

DEFAULT_BATCH_SIZE = 256
#: Features whose train-split standard deviation is at most this are only centred
#: (dead ReLU units are constant; dividing by ~0 would blow them up).
STD_FLOOR = 1e-8


# --------------------------------------------------------------------------- features
def _pool_and_flatten(activation, pool: Optional[int]):
    """Max-pool ``pool``×``pool`` (stride ``pool``, 'valid') a map, then flatten per sample."""
    rank = len(activation.shape)
    if pool and pool > 1:
        spatial = activation.shape[1:-1]
        if rank in (3, 4, 5) and all(d is not None and d >= pool for d in spatial):
            activation = keras.ops.max_pool(activation, pool_size=pool, strides=pool, padding="valid")
    dim = int(np.prod(activation.shape[1:])) if rank > 1 else 1
    return keras.ops.reshape(activation, (-1, dim))


def _check_model(model) -> None:
    if not hasattr(model, "layer_outputs"):
        raise ValueError(f"The probe needs a delvm_tf model with layer_outputs(x); got {type(model).__name__}.")


def _check_pool(pool) -> Optional[int]:
    if pool is None:
        return None
    if isinstance(pool, bool) or not isinstance(pool, (int, np.integer)) or pool < 1:
        raise ValueError(f"pool must be a positive integer or None, got {pool!r}.")
    return int(pool)


def _feature_function(model, pool: Optional[int]):
    """A plain function ``x -> features`` (works on tensors and KerasTensors).

    It holds only a weak reference to ``model`` so that cached compiled versions of it do
    not keep the model alive.
    """
    model_ref = weakref.ref(model)

    def featurize(x):
        latent = model_ref()
        x = keras.ops.cast(x, latent.compute_dtype)
        parts = [_pool_and_flatten(a, pool) for a in latent.layer_outputs(x)]
        features = parts[0] if len(parts) == 1 else keras.ops.concatenate(parts, axis=1)
        return keras.ops.stop_gradient(features)
    return featurize


_COMPILED = weakref.WeakKeyDictionary()  # model -> {(kind, pool, input spec): tf.function}


def _compiled(model, kind: str, pool: Optional[int], spec: tf.TensorSpec):
    """A per-model cached ``tf.function`` (traced once per input spec, batch axis ``None``).

    ``kind`` is ``'features'`` (x → features), ``'moments'`` (x → count, float64 mean and
    M2 of the batch's features) or ``'predict'`` (x, kernel, bias, shift, inverse scale →
    predicted classes of the linear head; the head's weights are arguments so that every
    probe of the same model reuses one trace).
    """
    cache = _COMPILED.setdefault(model, {})
    key = (kind, pool, spec)
    if key in cache:
        return cache[key]
    featurize = _feature_function(model, pool)
    if kind == "features":
        function = tf.function(featurize, input_signature=[spec])
    elif kind == "moments":
        def moments(x):
            features = tf.cast(featurize(x), tf.float64)
            mean = tf.reduce_mean(features, axis=0)
            m2 = tf.reduce_sum(tf.square(features - mean), axis=0)
            return tf.shape(features)[0], mean, m2
        function = tf.function(moments, input_signature=[spec])
    elif kind == "predict":
        def predict(x, kernel, bias, shift, inverse_scale):
            logits = tf.matmul((featurize(x) - shift) * inverse_scale, kernel) + bias
            return tf.argmax(logits, axis=1)
        vector = tf.TensorSpec((None,), tf.float32)
        function = tf.function(predict, input_signature=[
            spec, tf.TensorSpec((None, None), tf.float32), vector, vector, vector])
    else:
        raise ValueError(kind)
    cache[key] = function
    return function


def layer_feature_dims(model, pool: int | None = 2) -> list[int]:
    """The number of probe features each encoder layer contributes (model must be built)."""
    _check_model(model)
    pool = _check_pool(pool)
    if getattr(model, "sample_shape", None) is None:
        raise ValueError("The model is not built; build it (model.build((None, *sample_shape))) first.")
    outputs = model.layer_outputs(keras.KerasTensor((None, *model.sample_shape)))
    return [int(_pool_and_flatten(a, pool).shape[1]) for a in outputs]


def probe_features(model, x, pool: int | None = 2, batch_size: int | None = None):
    """The probe's (unstandardised) features of ``x``, shape ``(n, feature_dim)``.

    Numpy in, numpy out (run in batches; this *materialises* the matrix, so use it on small
    inputs only); tensor in, tensor out.
    """
    _check_model(model)
    pool = _check_pool(pool)
    if tf.is_tensor(x) or isinstance(x, keras.KerasTensor):
        return _feature_function(model, pool)(x)
    x = model.check_input(x)
    _ensure_built(model, x.shape)
    compiled = _compiled(model, "features", pool, tf.TensorSpec((None, *x.shape[1:]), x.dtype))
    size = batch_size or DEFAULT_BATCH_SIZE
    parts = [compiled(tf.constant(x[i:i + size])).numpy() for i in range(0, len(x), size)]
    if not parts:
        raise ValueError("x is empty.")
    return np.concatenate(parts)


def _ensure_built(model, shape) -> None:
    if not model.built:
        model.build((None, *tuple(int(d) for d in shape[1:])))


# ---------------------------------------------------------------- exact streamed moments
class RunningMoments:
    """Exact streamed per-feature mean and variance in float64.

    Each batch contributes its count, mean and sum of squared deviations ``M2``; batches
    are merged with the pairwise update of Chan, Golub & LeVeque (1979), which is exact in
    exact arithmetic and numerically stable (no ``E[x²] − E[x]²`` cancellation).
    """

    def __init__(self):
        self.count = 0
        self.mean = None
        self.m2 = None

    def update_moments(self, count: int, mean, m2) -> None:
        """Merge a batch given by its ``count``, ``mean`` and ``M2 = Σ(x − mean)²``."""
        count = int(count)
        if count == 0:
            return
        mean = np.asarray(mean, dtype=np.float64)
        m2 = np.asarray(m2, dtype=np.float64)
        if self.count == 0:
            self.count, self.mean, self.m2 = count, mean.copy(), m2.copy()
            return
        total = self.count + count
        delta = mean - self.mean
        self.mean += delta * (count / total)
        self.m2 += m2 + delta ** 2 * (self.count * count / total)
        self.count = total

    def update(self, batch) -> None:
        """Merge a 2-D batch of samples (rows)."""
        batch = np.asarray(batch, dtype=np.float64)
        if len(batch) == 0:
            return
        mean = batch.mean(axis=0)
        self.update_moments(len(batch), mean, ((batch - mean) ** 2).sum(axis=0))

    @property
    def variance(self) -> np.ndarray:
        """Population variance (``ddof=0``, as ``np.var``)."""
        if self.count == 0:
            raise ValueError("No samples were seen.")
        return self.m2 / self.count

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.variance)


@dataclass
class FeatureStatistics:
    """Train-split statistics of the probe features (float64, population std)."""

    mean: np.ndarray
    std: np.ndarray
    count: int
    n_classes: int | None = None  # 1 + the largest train label seen, if labels were given

    @property
    def scale(self) -> np.ndarray:
        """The divisor used to standardise: ``std``, or 1 where ``std <= STD_FLOOR``."""
        return np.where(self.std > STD_FLOOR, self.std, 1.0)

    @property
    def n_constant(self) -> int:
        return int(np.sum(self.std <= STD_FLOOR))


def feature_statistics(model, data, pool: int | None = 2, batch_size: int | None = None) -> FeatureStatistics:
    """Exact train-split mean/std of the probe features, computed in one streamed pass.

    ``data`` is a numpy array ``x``, a tuple ``(x, y)`` of numpy arrays, or a
    ``tf.data.Dataset`` of ``x`` or ``(x, y)`` batches. Memory: one batch of features.
    """
    _check_model(model)
    return _statistics(model, _Split.of(model, data, "data", batch_size, labels_required=False), _check_pool(pool))


def _statistics(model, split, pool) -> FeatureStatistics:
    moments = _compiled(model, "moments", pool, split.spec)
    running = RunningMoments()
    max_label = -1
    for x, y in split.batches():
        count, mean, m2 = moments(x)
        running.update_moments(int(count), mean.numpy(), m2.numpy())
        if y is not None:
            max_label = max(max_label, _check_labels(y, split.name))
    if running.count == 0:
        raise ValueError(f"{split.name} is empty.")
    if not (np.all(np.isfinite(running.mean)) and np.all(np.isfinite(running.m2))):
        raise ValueError(f"The probe features of {split.name} contain NaN or Inf values; check the inputs and "
                         "the model's weights.")
    return FeatureStatistics(running.mean, running.std, running.count,
                             n_classes=max_label + 1 if max_label >= 0 else None)


# -------------------------------------------------------------------------- the splits
def _check_labels(y, name) -> int:
    """Validate a batch of integer class labels; return the largest."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{name} labels must be integer class indices of shape (n,) or (n, 1); got shape {y.shape}.")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise ValueError(f"{name} labels must be integer class indices; got non-integer values.")
    elif y.dtype.kind not in "iub":
        raise ValueError(f"{name} labels must be integer class indices; got dtype {y.dtype}.")
    if len(y) and y.min() < 0:
        raise ValueError(f"{name} labels must be non-negative class indices; got {y.min()}.")
    return int(y.max()) if len(y) else -1


class _Split:
    """A train or test split: numpy ``(x, y)`` or a ``tf.data.Dataset`` of batches."""

    def __init__(self, name, spec, x=None, y=None, dataset=None, batch_size=DEFAULT_BATCH_SIZE):
        self.name, self.x, self.y, self.dataset, self.batch_size = name, x, y, dataset, batch_size
        self.spec = spec  # TensorSpec of one batch of inputs, batch axis None

    @classmethod
    def of(cls, model, data, name, batch_size=None, labels_required=True):
        batch_size = int(batch_size or DEFAULT_BATCH_SIZE)
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        if isinstance(data, tf.data.Dataset):
            spec = data.element_spec
            if isinstance(spec, tuple) and len(spec) == 1:
                spec = spec[0]
            if isinstance(spec, tuple):
                if len(spec) != 2:
                    raise ValueError(f"{name} must yield (x, y) batches; its elements have {len(spec)} parts.")
                x_spec = spec[0]
            elif labels_required:
                raise ValueError(f"{name} must yield (x, y) batches (inputs and integer labels); it yields "
                                 "inputs only.")
            else:
                x_spec = spec
            if not isinstance(x_spec, tf.TensorSpec) or x_spec.shape.rank is None or x_spec.shape.rank < 2:
                raise ValueError(f"{name} must yield batched inputs (batch axis first); got element spec {spec}. "
                                 "Call .batch(n) on the dataset.")
            if None in x_spec.shape[1:]:
                raise ValueError(f"{name}: the per-sample input shape must be fully known; got {x_spec.shape}.")
            sample_shape = tuple(int(d) for d in x_spec.shape[1:])
            if model.built and getattr(model, "sample_shape", None) not in (None, sample_shape):
                raise ValueError(f"{name} yields inputs of shape (batch, {', '.join(map(str, sample_shape))}) but "
                                 f"the model was built for (batch, {', '.join(map(str, model.sample_shape))}).")
            _ensure_built(model, (None, *sample_shape))
            return cls(name, tf.TensorSpec((None, *sample_shape), x_spec.dtype), dataset=data, batch_size=batch_size)
        if isinstance(data, (tuple, list)):
            if len(data) != 2:
                raise ValueError(f"{name} must be a tuple (x, y) or a tf.data.Dataset; got a sequence of "
                                 f"{len(data)} items.")
            x, y = data
        elif labels_required:
            raise ValueError(f"{name} must be a tuple (x, y) of numpy arrays or a tf.data.Dataset of (x, y) "
                             f"batches; got {type(data).__name__}.")
        else:
            x, y = data, None
        x = model.check_input(x, name=f"{name} x")
        _ensure_built(model, x.shape)
        if len(x) == 0:
            raise ValueError(f"{name} is empty.")
        if y is not None:
            y = np.asarray(y)
            if len(y) != len(x):
                raise ValueError(f"{name}: x has {len(x)} samples but y has {len(y)} labels.")
            _check_labels(y, name)
            y = (y[:, 0] if y.ndim == 2 else y).astype(np.int64)
        return cls(name, tf.TensorSpec((None, *x.shape[1:]), x.dtype), x=x, y=y, batch_size=batch_size)

    @property
    def is_dataset(self) -> bool:
        return self.dataset is not None

    def batches(self):
        """Yield ``(x tensor, y numpy or None)`` batches."""
        if self.is_dataset:
            for element in self.dataset:
                if isinstance(element, (tuple, list)):
                    if len(element) == 1:
                        yield element[0], None
                    else:
                        yield element[0], element[1].numpy()
                else:
                    yield element, None
            return
        for i in range(0, len(self.x), self.batch_size):
            yield tf.constant(self.x[i:i + self.batch_size]), None if self.y is None else self.y[i:i + self.batch_size]


# ----------------------------------------------------------------------- the classifier
class _ProbeClassifier(keras.Model):
    """Frozen features → fixed standardisation → ``Dense(n_classes)`` (softmax in the loss).

    The latent model is reached only through the plain function ``featurize``, which Keras
    does not track: only the head's weights are trainable, and features exist per batch.
    """

    def __init__(self, featurize, mean, scale, n_classes, l2=0.0, seed=None, name="linear_probe", **kwargs):
        super().__init__(name=name, **kwargs)
        self._featurize = featurize
        self.shift = tf.constant(mean, dtype=tf.float32)
        self.inverse_scale = tf.constant(1.0 / scale, dtype=tf.float32)
        self.head = keras.layers.Dense(
            n_classes, kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
            kernel_regularizer=keras.regularizers.L2(l2) if l2 else None, name="linear_softmax")

    def call(self, x, training=False):
        features = (self._featurize(x) - self.shift) * self.inverse_scale
        return self.head(features)  # logits; the loss applies the softmax


# ----------------------------------------------------------------------------- results
@dataclass
class ProbeResult:
    """Outcome of :func:`linear_probe`; ``control`` holds the random-init control's result."""

    accuracy: float
    feature_dim: int
    n_train: int
    n_test: int
    n_classes: int
    epochs: int
    pool: int | None
    seconds: float
    train_accuracy: float
    train_loss: float
    layer_dims: list = field(default_factory=list)
    n_constant_features: int = 0
    batch_size: int = DEFAULT_BATCH_SIZE
    learning_rate: float = 1e-3
    l2: float = 0.0
    control: Optional["ProbeResult"] = None

    @property
    def control_accuracy(self) -> float | None:
        return None if self.control is None else self.control.accuracy

    def to_dict(self) -> dict[str, Any]:
        result = asdict(self)
        result["control_accuracy"] = self.control_accuracy
        return result


# ------------------------------------------------------------------------- public probe
def linear_probe(model, train, test, pool: int | None = 2, epochs: int = 5, batch_size: int = DEFAULT_BATCH_SIZE,
                 learning_rate: float = 1e-3, l2: float = 0.0, n_classes: int | None = None, seed: int | None = 0,
                 control: bool = False, control_seed: int | None = None, verbose: int | str = 0) -> ProbeResult:
    """Linear-probe test accuracy of ``model``'s frozen features (SPEC §2), streamed.

    Args:
        model: a delvm_tf model (anything with ``layer_outputs``); it is not modified.
        train, test: ``(x, y)`` numpy tuples (integer labels) or ``tf.data.Dataset``s of
            ``(x, y)`` batches (shuffle the train dataset yourself; numpy inputs are
            shuffled every epoch).
        pool: max-pool size and stride for the maps (``None`` or 1: no pooling). Layers
            whose output has no spatial axes (dense) are used as they are.
        epochs, batch_size, learning_rate, l2: the softmax classifier's training (Adam,
            cross-entropy, optional L2 on its weights).
        n_classes: number of classes (default: 1 + the largest train label).
        seed: seed of the classifier's initial weights.
        control: also run the same probe on ``random_init_copy(model, control_seed)``, the
            untrained architecture; its result is ``result.control``.
        verbose: passed to ``keras.Model.fit`` (1 shows progress bars).

    Returns:
        a :class:`ProbeResult` (``accuracy``, ``feature_dim``, ``n_train``, ``n_test`` …).
    """
    _check_model(model)
    pool = _check_pool(pool)
    if int(epochs) < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}.")
    start = time.perf_counter()
    train_split = _Split.of(model, train, "train", batch_size)
    test_split = _Split.of(model, test, "test", batch_size)

    stats = _statistics(model, train_split, pool)
    if n_classes is None:
        if stats.n_classes is None or stats.n_classes < 2:
            raise ValueError("The train labels must contain at least 2 classes (or pass n_classes).")
        n_classes = stats.n_classes
    elif stats.n_classes is not None and stats.n_classes > n_classes:
        raise ValueError(f"n_classes={n_classes} but the train labels go up to {stats.n_classes - 1}.")

    classifier = _ProbeClassifier(_feature_function(model, pool), stats.mean, stats.scale, int(n_classes), l2=l2, seed=seed)
    classifier.compile(optimizer=keras.optimizers.Adam(learning_rate),
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                       metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    if train_split.is_dataset:
        history = classifier.fit(train_split.dataset, epochs=int(epochs), shuffle=False, verbose=verbose)
    else:
        history = classifier.fit(train_split.x, train_split.y, batch_size=train_split.batch_size,
                                 epochs=int(epochs), shuffle=True, verbose=verbose)

    predict = _compiled(model, "predict", pool, test_split.spec)
    head = (tf.convert_to_tensor(classifier.head.kernel), tf.convert_to_tensor(classifier.head.bias),
            classifier.shift, classifier.inverse_scale)
    correct = n_test = 0
    for x, y in test_split.batches():
        if y is None:
            raise ValueError("test must yield (x, y) batches with labels.")
        y = np.asarray(y).reshape(len(y), -1)[:, 0]
        correct += int(np.sum(predict(x, *head).numpy() == y))
        n_test += len(y)
    if n_test == 0:
        raise ValueError("test is empty.")

    result = ProbeResult(
        accuracy=correct / n_test, feature_dim=int(stats.mean.shape[0]), n_train=stats.count, n_test=n_test,
        n_classes=int(n_classes), epochs=int(epochs), pool=pool, seconds=time.perf_counter() - start,
        train_accuracy=float(history.history["accuracy"][-1]), train_loss=float(history.history["loss"][-1]),
        layer_dims=layer_feature_dims(model, pool), n_constant_features=stats.n_constant,
        batch_size=train_split.batch_size, learning_rate=float(learning_rate), l2=float(l2))
    if control:
        fresh = random_init_copy(model, seed=control_seed)
        result.control = linear_probe(fresh, train, test, pool=pool, epochs=epochs, batch_size=batch_size,
                                      learning_rate=learning_rate, l2=l2, n_classes=n_classes, seed=seed,
                                      control=False, verbose=verbose)
    return result


# ------------------------------------------------------------------ random-init control
def _reseed_initializers(config, seed: int):
    """A copy of a serialised config with every seeded Keras initializer given a new seed."""
    config = _copy.deepcopy(config)
    counter = [0]

    def walk(node):
        if isinstance(node, dict):
            inner = node.get("config")
            if ("initializers" in str(node.get("module", "")) and isinstance(inner, dict) and "seed" in inner):
                inner["seed"] = int(seed) + counter[0]
                counter[0] += 1
            for value in node.values():
                walk(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                walk(value)

    walk(config)
    return config


def random_init_copy(model, seed: int | None = None, input_shape=None):
    """A fresh, untrained model of the same class and configuration as ``model``.

    Built by ``type(model).from_config(model.get_config())``, so its layers are new and
    their weights drawn by their initializers. If those initializers were seeded (e.g.
    ``networks.conv(..., seed=0)``) the copy starts from the same weights the original
    started from; pass ``seed`` to re-seed every seeded initializer (unseeded ones draw
    fresh random weights anyway). The copy is built for ``model.sample_shape`` (or
    ``input_shape``, the per-sample shape, if ``model`` is not built).
    """
    config = model.get_config()
    if seed is not None:
        config = _reseed_initializers(config, seed)
    fresh = type(model).from_config(config)
    shape = getattr(model, "sample_shape", None) or (tuple(input_shape) if input_shape is not None else None)
    if shape is not None:
        fresh.build((None, *shape))
    return fresh


__all__ = ["FeatureStatistics", "ProbeResult", "RunningMoments", "feature_statistics", "layer_feature_dims",
           "linear_probe", "probe_features", "random_init_copy"]
