"""Training safety: stop a diverging run and keep the last good weights."""

from __future__ import annotations

import math
import warnings

import keras


class DivergenceError(RuntimeError):
    """Raised by ``DivergenceMonitor(raise_error=True)`` when the loss becomes NaN or Inf."""


class DivergenceMonitor(keras.callbacks.Callback):
    """Stops training at the first non-finite loss and restores the last good weights.

    After every batch whose loss is finite the trainable weights are copied to host memory
    (the models here are small). When a batch reports a NaN/Inf loss, training stops with a
    message naming the epoch and step, ``model.set_weights`` restores the copy, and
    ``model.divergence`` records what happened. Every delvm_tf model adds this callback
    to ``fit`` itself; pass ``ModelCheckpoint`` as well to keep good weights on disk.
    """

    def __init__(self, restore_weights: bool = True, raise_error: bool = False):
        super().__init__()
        self.restore_weights = restore_weights
        self.raise_error = raise_error
        self._good_weights = None
        self._epoch = 0
        self._global_step = 0

    def on_train_begin(self, logs=None):
        self._snapshot()
        self.model.divergence = None

    def _snapshot(self):
        if self.restore_weights:
            self._good_weights = [v.numpy() for v in self.model.trainable_variables]

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self._global_step += 1
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(float(loss)):
            self._snapshot()
            return
        message = (f"Training diverged: loss became {float(loss)} at epoch {self._epoch + 1}, "
                   f"step {batch + 1} (global step {self._global_step}). ")
        if self.restore_weights and self._good_weights is not None:
            for variable, value in zip(self.model.trainable_variables, self._good_weights):
                variable.assign(value)
            message += "The weights from the last finite step were restored."
        else:
            message += "The weights were not restored."
        message += " Try a smaller learning rate, a larger sigma or standardised inputs."
        self.model.divergence = {"epoch": self._epoch + 1, "step": batch + 1,
                                 "global_step": self._global_step, "loss": float(loss)}
        self.model.stop_training = True
        if self.raise_error:
            raise DivergenceError(message)
        warnings.warn(message, RuntimeWarning, stacklevel=2)
