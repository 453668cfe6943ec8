"""Conjugate energy-based model (CEBM; Wu, Esmaeili, Wick, Tristan, van de Meent, ICML 2021;
SPEC §1.5).

The network gives natural parameters ``η(x) = (η1, η2)``, ``η2 < 0``, of a Gaussian over a
latent ``z ∈ R^K``; with the conjugate prior ``N(0, I)`` (natural parameters ``λ = (0, −½)``)
the joint ``E(x, z) = −⟨η(x), t(z)⟩ − log p(z)`` has the tractable posterior
``p(z | x)`` with natural parameters ``λ + η(x)`` and the marginal energy

    ``E(x) = A(λ) − A(λ + η(x))``,   ``A(η1, η2) = Σ_k [−η1_k²/(4η2_k) − ½ log(−2η2_k)]``.

There is **no** Gaussian base ``||x − b||²/(2σ²)`` on ``x``: SPEC §1.5 and the original CEBM
define the energy by the log-partition difference alone (the data scale enters only through
the network). ``EnergyModel`` still creates its ``visible_bias`` weight; CEBM freezes it and
never uses it.

Training (defaults follow the CEBM repository, github.com/hao-w/cebm, ``train_ebm.py`` and
``sgld.py``): maximum likelihood, i.e. ``objective='cd'`` with a persistent SGLD sampler, plus
CEBM's energy-magnitude penalty ``energy_regularization × (E(x)² + E(x')²)`` and Gaussian
noise (std ``data_noise_std``) added to the training data at every step.

SGLD mapping. CEBM updates ``x ← x − (α/2)∇E + noise_std·ξ`` with ``α = 2`` and
``noise_std = 0.0075``, for 60 steps, from a replay buffer of 5000 chains reused with
probability 0.95 (so ``reinit_prob = 0.05``), fresh chains ``~ U(−1, 1)``. Our
``LangevinSampler`` updates ``x ← x − (ε/2)∇E + s√ε ξ``, so ``ε = α = 2`` and
``s = noise_std/√ε = 0.0075/√2 ≈ 0.0053``. Fresh chains are ``N(0, init_std²)`` here; we
use ``init_std = 1/√3``, the standard deviation of ``U(−1, 1)``.

One deviation, for stability: the SGLD gradient is clipped to ``||∇E|| ≤ 1`` per sample
(``max_gradient_norm=1``, a common EBM stabiliser; CEBM's code does not clip). CEBM's
energy is not bounded below for unbounded encoders (``η1`` grows linearly in ``x``, so
``E ≈ −||η1||²/(4|λ2+η2|)`` falls quadratically). With ε = 2 and no clipping, the chains
ran off to ±inf within a few epochs on min–max scaled ECG5000 (2048 units with lr 1e-3;
64 units with lr 1e-3, 1e-4 and 5e-5). Clipped chains trained stably: 2048 units, K = 128,
20 SGLD steps, lr 1e-3, 12 epochs on 1000 normal beats gave an energy AUROC ≈ 0.98 on
held-out normal vs abnormal beats. ``sgld_sampler(max_gradient_norm=None)`` restores the
exact recipe. Weights use PyTorch's default init (``torch_default_initializer``) for the
same reason.

Anomaly score. CEBM has no decoder. The inherited ``reconstruction_error`` is
``||σ²∇ₓE||²`` with σ = 1 (a one-step "denoising" reconstruction ``x − ∇E``) and exists, but
it measures how steep the energy is, not how improbable ``x`` is (it vanishes at every
stationary point of E, maxima included), and without DELVM's quadratic base it has no
reason to grow away from the data. The anomaly runner should use the **energy** ``E(x)``
(``default_anomaly_score = 'energy'``), which is what maximum likelihood trains
(``−log p(x)`` up to the constant ``log Z``). In a quick check (above) the energy also
ranked abnormal beats better than the gradient score (AUROC ≈ 0.98 vs ≈ 0.97, and
0.92 vs 0.84 for a 64-unit net). Caveat: the energy is unbounded below far outside the
training range, so inputs must be scaled like the training data.

Features for the probe: ``layer_outputs(x)`` returns the encoder's layer activations (the
conv maps for images), as for DELVM; ``latent_params(x)`` gives the posterior mean and
standard deviation of ``z`` (CEBM's own probe uses the posterior mean).
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from delvm_tf import objectives
from delvm_tf.energies import EnergyModel
from delvm_tf.samplers import LangevinSampler

HEAD_LAYER_NAME = "cebm_head"

#: CEBM's SGLD defaults mapped to ``LangevinSampler`` (see the module docstring).
SGLD_STEPS = 60
SGLD_ALPHA = 2.0
SGLD_NOISE_STD = 0.0075
BUFFER_SIZE = 5000
REINIT_PROB = 0.05
INIT_STD = 1.0 / math.sqrt(3.0)
#: Our addition (not in CEBM's code): per-sample clip of ||∇E|| in the SGLD steps.
MAX_GRADIENT_NORM = 1.0

#: Default architectures (SPEC §1.5): conv filters, kernel sizes and the CEBM strides.
IMAGE_FILTERS = (64, 64, 32, 32)
IMAGE_KERNEL_SIZES = (3, 4, 4, 4)
IMAGE_STRIDES = (1, 2, 2, 2)
ECG_UNITS = 2048


def sgld_sampler(**overrides) -> LangevinSampler:
    """A persistent SGLD sampler with CEBM's settings: 60 steps, ε = 2, s = 0.0075/√2,
    buffer 5000, reinit 0.05, fresh chains of std 1/√3, plus ``max_gradient_norm = 1``
    (keyword overrides allowed; ``max_gradient_norm=None`` gives CEBM's exact recipe)."""
    settings = dict(steps=SGLD_STEPS, step_size=SGLD_ALPHA, noise_scale=SGLD_NOISE_STD / math.sqrt(SGLD_ALPHA),
                    persistent=True, buffer_size=BUFFER_SIZE, reinit_prob=REINIT_PROB, init_std=INIT_STD,
                    max_gradient_norm=MAX_GRADIENT_NORM)
    settings.update(overrides)
    return LangevinSampler(**settings)


def torch_default_initializer(seed: int | None = None) -> keras.initializers.Initializer:
    """PyTorch's default Linear/Conv2d weight init, ``U(±1/√fan_in)`` (``kaiming_uniform(a=√5)``),
    which the CEBM repository uses. It keeps the energy's curvature in ``x`` small at the
    start, so that CEBM's large SGLD steps (ε = 2) do not run away; Glorot init typically
    makes the chains diverge within a few steps."""
    return keras.initializers.VarianceScaling(scale=1.0 / 3.0, mode="fan_in", distribution="uniform", seed=seed)


def default_encoder(kind: str = "image", n_layers: int | None = None, activation: str = "silu",
                    units: int = ECG_UNITS, seed: int | None = None) -> keras.Sequential:
    """CEBM's default encoder (without the η head, which ``CEBM`` adds).

    - ``'image'``: Conv2D filters (64, 64, 32, 32), kernels (3, 4, 4, 4), strides (1, 2, 2, 2),
      'same' padding (CEBM pads by 1; for even sizes the output shapes agree, for odd sizes
      'same' gives one more row/column), the first ``n_layers`` of them (default 4).
    - ``'ecg'``: ``n_layers`` (default 1) Dense layers of ``units`` (default 2048) units.

    ``activation`` defaults to SiLU (Swish), CEBM's choice; weights use PyTorch's default
    init (``torch_default_initializer``), as in CEBM's code.
    """
    if kind not in ("image", "ecg"):
        raise ValueError(f"Unknown kind {kind!r}; use 'image' or 'ecg'.")
    limit = len(IMAGE_FILTERS) if kind == "image" else None
    if n_layers is None:
        n_layers = len(IMAGE_FILTERS) if kind == "image" else 1
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1 \
            or (limit is not None and n_layers > limit):
        raise ValueError(f"n_layers must be an integer in [1, {limit or 'inf'}], got {n_layers!r}.")
    if isinstance(units, bool) or not isinstance(units, int) or units < 1:
        raise ValueError(f"units must be a positive integer, got {units!r}.")

    def initializer(i):
        return torch_default_initializer(None if seed is None else seed + i)

    if kind == "ecg":
        layers = [keras.layers.Dense(units, activation=activation, kernel_initializer=initializer(i),
                                     name=f"dense_{i}") for i in range(n_layers)]
        return keras.Sequential(layers, name="cebm_dense_encoder")
    layers = [
        keras.layers.Conv2D(f, k, strides=s, padding="same", activation=activation,
                            kernel_initializer=initializer(i), name=f"conv_{i}")
        for i, (f, k, s) in enumerate(zip(IMAGE_FILTERS[:n_layers], IMAGE_KERNEL_SIZES, IMAGE_STRIDES))
    ]
    return keras.Sequential(layers, name="cebm_conv_encoder")


def log_partition(eta1: tf.Tensor, eta2: tf.Tensor) -> tf.Tensor:
    """``A(η1, η2) = Σ_k [−η1_k²/(4η2_k) − ½ log(−2η2_k)]`` of a diagonal Gaussian (``η2 < 0``)."""
    return tf.reduce_sum(-tf.square(eta1) / (4.0 * eta2) - 0.5 * tf.math.log(-2.0 * eta2), axis=-1)


@keras.saving.register_keras_serializable(package="delvm_tf")
class CEBM(EnergyModel):
    """Conjugate EBM with a spherical Gaussian prior: ``E(x) = A(λ) − A(λ + η(x))``.

    Args:
        encoder: the network ``h(x)``; ``default_encoder('image'|'ecg')`` gives CEBM's. A
            conv encoder's output is flattened before the head.
        latent_dim: K, the dimension of ``z`` (CEBM default 128).
        objective: ``'cd'`` (default: maximum likelihood with SGLD negatives) or ``'sm'``.
        sampler: CD sampler; default ``sgld_sampler()``, CEBM's persistent SGLD (for ``'sm'``: unused).
        energy_regularization: coefficient of ``E(x)² + E(x')²`` added to the CD loss
            (CEBM: 0.1; 0 gives plain CD). Ignored for ``objective='sm'``.
        data_noise_std: std of Gaussian noise added to training inputs (CEBM: 0.03; 0 disables).
        Other arguments: as for ``EnergyModel`` (``sigma`` only scales the inherited
            reconstruction ``x − σ²∇E``; the energy has no σ).

    The head is one ``Dense(2K)`` named ``"cebm_head"``:
    ``η1 = raw[:K]``, ``η2 = −softplus(raw[K:]) < 0``, so the posterior precision
    ``−2(λ2 + η2) = 1 + 2·softplus(·) > 1`` and ``λ2 + η2 < 0`` always. (CEBM's repository
    also lets ``η2`` reach +½, i.e. posterior variances above the prior's; SPEC's ``η2 < 0``
    is followed here.)
    """

    default_sampler = "langevin"  # CEBM passes sgld_sampler() when sampler is None
    #: The anomaly score the anomaly runner should use (see the module docstring).
    default_anomaly_score = "energy"
    #: CEBM's default encoders: ``CEBM.default_encoder('image'|'ecg', n_layers=...)``.
    default_encoder = staticmethod(default_encoder)
    #: CEBM's persistent SGLD sampler: ``CEBM.sgld_sampler(**overrides)``.
    sgld_sampler = staticmethod(sgld_sampler)

    def __init__(self, encoder, latent_dim: int = 128, objective: str = "cd", estimator: str = "exact",
                 sampler=None, energy_regularization: float = 0.1, data_noise_std: float = 0.03, **kwargs):
        if sampler is None:  # no replay buffer is needed (or saved) for score matching
            sampler = sgld_sampler() if objective == "cd" else "langevin"
        super().__init__(encoder, objective=objective, estimator=estimator, sampler=sampler, **kwargs)
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
            raise ValueError(f"latent_dim must be a positive integer, got {latent_dim!r}.")
        if not energy_regularization >= 0 or not data_noise_std >= 0:
            raise ValueError("energy_regularization and data_noise_std must be >= 0, got "
                             f"{energy_regularization} and {data_noise_std}.")
        self.latent_dim = int(latent_dim)
        self.energy_regularization = float(energy_regularization)
        self.data_noise_std = float(data_noise_std)

    def build_model(self, input_shape):
        super().build_model(input_shape)
        # CEBM has no Gaussian base on x: keep EnergyModel's b but freeze it (unused).
        self.visible_bias.trainable = False
        flat_size = math.prod(int(d) for d in self.encoder.compute_output_shape(input_shape)[1:])
        self.flatten = keras.layers.Flatten(name="cebm_flatten")
        self.head = keras.layers.Dense(2 * self.latent_dim, name=HEAD_LAYER_NAME,
                                       kernel_initializer=torch_default_initializer(self.seed))
        self.head.build((None, flat_size))

    # ------------------------------------------------------------------ energy
    @property
    def prior_natural_parameters(self):
        """``λ = (0, −½)`` of the ``N(0, I)`` prior, each of shape ``(K,)``."""
        return (tf.zeros((self.latent_dim,), self.compute_dtype),
                tf.fill((self.latent_dim,), tf.constant(-0.5, self.compute_dtype)))

    def natural_parameters(self, x, training=False):
        """``η(x) = (η1, η2)``, each ``(batch, K)``, with ``η2 < 0`` (tensors)."""
        raw = self.head(self.flatten(self.encoder(x, training=training)))
        eta1, eta2_raw = tf.split(raw, 2, axis=-1)
        return eta1, -tf.math.softplus(eta2_raw)

    def posterior_natural_parameters(self, x, training=False):
        """``λ + η(x)``, the natural parameters of ``p(z | x)``."""
        eta1, eta2 = self.natural_parameters(x, training=training)
        prior1, prior2 = self.prior_natural_parameters
        return prior1 + eta1, prior2 + eta2

    def compute_energy(self, x, training=False):
        post1, post2 = self.posterior_natural_parameters(x, training=training)
        prior1, prior2 = self.prior_natural_parameters
        return log_partition(prior1, prior2) - log_partition(post1, post2)

    def latent_params(self, x, batch_size: int | None = None):
        """Posterior ``p(z | x) = N(μ, diag(s²))``: ``(μ, s)`` with ``μ = −η1'/(2η2')``,
        ``s = (−1/(2η2'))^½``, ``η' = λ + η(x)``."""
        def params(x_):
            post1, post2 = self.posterior_natural_parameters(x_)
            return -0.5 * post1 / post2, tf.sqrt(-0.5 / post2)
        return self._apply(params, x, batch_size, name="latent_params")

    # --------------------------------------------------------------- objective
    def per_sample_loss(self, x, training=False):
        x = tf.cast(x, self.compute_dtype)
        if training and self.data_noise_std > 0:
            x = x + self.data_noise_std * keras.random.normal(tf.shape(x), dtype=x.dtype, seed=self.seed_generator)
        if self.objective != "cd":
            return super().per_sample_loss(x, training=training)
        return objectives.contrastive_divergence_loss(self, x, self.sampler, seed=self.seed_generator,
                                                      training=training, energy_l2=self.energy_regularization)

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim,
                "energy_regularization": self.energy_regularization, "data_noise_std": self.data_noise_std}
