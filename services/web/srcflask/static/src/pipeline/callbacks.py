"""The Keras callbacks of fine_tune (a module of their own: importing Keras takes seconds, and
finetune.py stays cheap to import until training starts)."""
import time

import tf_keras


class Progress(tf_keras.callbacks.Callback):
    """Tells `on_progress` after every step where training stands and how long it should still
    take; stops training when it answers False (`cancelled`)."""

    def __init__(self, on_progress, epochs, steps):
        super().__init__()
        self._on_progress, self._epochs, self._steps = on_progress, epochs, steps
        self._epoch, self._started = 0, None
        self.cancelled = False

    def on_train_begin(self, logs=None):
        self._started = time.monotonic()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self._on_progress is None:
            return
        done = self._epoch * self._steps + batch + 1
        # The first step's XLA compilation and each epoch's validation are in the average: the
        # estimate errs on the long side at first and settles as steps go by.
        per_step = (time.monotonic() - self._started) / done
        answer = self._on_progress({
            "epoch": self._epoch + 1, "epochs": self._epochs, "step": batch + 1, "steps": self._steps,
            "loss": float(logs["loss"]) if logs and "loss" in logs else None,
            "seconds_left": round(per_step * (self._epochs * self._steps - done), 1),
        })
        if answer is False:
            self.cancelled = True
            self.model.stop_training = True


class Validate(tf_keras.callbacks.Callback):
    """Puts the validation loss (finetune._Measure: the mean over continuation tokens) into the
    epoch's logs as `val_loss`, where EarlyStopping, placed after it, reads it."""

    def __init__(self, measure, validation):
        super().__init__()
        self._measure, self._validation = measure, validation

    def on_epoch_end(self, epoch, logs=None):
        if self.model.stop_training:  # cancelled during this epoch: nothing will be kept
            return
        logs["val_loss"] = self._measure(self._validation)
