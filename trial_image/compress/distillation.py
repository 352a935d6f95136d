"""Knowledge distillation (Hinton et al. 2015), online and consistent (Beyer et al. 2022): the
student learns from the labels and from the teacher's softened outputs on the very images it
sees, shifted as final training shifts them.

``loss = α · CE(labels, student) + (1 − α) · T² · KL(teacher_T ‖ student_T)``, where ``p_T`` is a
model's output softened at temperature ``T`` (``softmax(logits / T)``; from probabilities,
``p^(1/T)`` renormalised, the same thing). The teacher is asked on every augmented batch: soft
targets computed once on the training images the teacher memorised are near one-hot and teach
little (measured: docs/benchmarks.md, "Figures behind the code"). ``α = 1`` is the student trained
on the labels alone by the same loop and augmentation: the baseline.

The default temperature is 1, not Hinton's higher ones: final training's teacher (augmentation,
cosine schedule) gives the true class 0.99 of its mass on its training images, and at ``T = 4``
only 0.47, with an entropy of 1.82 nats out of 2.30: targets that flat taught the student to be
unsure (10 seeds on digits: 0.9936 at ``T = 4``, 0.9947 at ``T = 1``, 0.9933 without the teacher).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import ops

from trial_image.data import Split


def soften(probabilities: Any, temperature: float) -> Any:
    """``softmax(log p / T)``; works on NumPy arrays and Keras tensors alike."""
    powered = ops.power(ops.maximum(probabilities, 1e-12), 1.0 / temperature)
    return powered / ops.sum(powered, axis=-1, keepdims=True)


def distillation_loss(labels: Any, student: Any, teacher: Any, temperature: float,
                      alpha: float) -> Any:
    """Per-example loss from integer labels and both models' class probabilities."""
    hard = keras.losses.sparse_categorical_crossentropy(labels, student)
    if alpha >= 1:
        return hard
    kd = keras.losses.kl_divergence(soften(teacher, temperature), soften(student, temperature))
    return alpha * hard + (1 - alpha) * temperature ** 2 * kd


class Distiller(keras.Model):
    """The student, trained with the (frozen) teacher's outputs on each batch."""

    def __init__(self, student: keras.Model, teacher: keras.Model | None, temperature: float,
                 alpha: float) -> None:
        super().__init__()
        self.student, self.teacher = student, teacher
        self.temperature, self.alpha = temperature, alpha if teacher is not None else 1.0
        if teacher is not None:
            teacher.trainable = False

    def call(self, x: Any, training: bool = False) -> Any:
        return self.student(x, training=training)

    def compute_loss(self, x: Any = None, y: Any = None, y_pred: Any = None,
                     sample_weight: Any = None, training: bool = True) -> Any:
        teacher = ops.stop_gradient(self.teacher(x, training=False)) if self.alpha < 1 else None
        return ops.mean(distillation_loss(y, y_pred, teacher, self.temperature, self.alpha))


def distill(student: Callable[[], keras.Model], teacher: keras.Model | None, train: Split, *,
            temperature: float, alpha: float, epochs: int, learning_rate: float,
            batch_size: int = 64, seed: int = 0) -> keras.Model:
    """The student ``student()`` builds (after seeding: the same seed, the same initial weights),
    trained on ``train`` (integer labels, light shifts) for ``epochs`` with a cosine learning
    rate; ``teacher=None`` or ``alpha=1``: on the labels alone."""
    keras.utils.set_random_seed(seed)
    student = student()
    steps = epochs * int(np.ceil(train.count / batch_size))
    model = Distiller(student, teacher, temperature, alpha)
    model.compile(optimizer=keras.optimizers.Adam(
        keras.optimizers.schedules.CosineDecay(learning_rate, steps)))
    model.fit(train.batches(batch_size, shuffle_seed=seed, augment="light"), epochs=epochs,
              shuffle=False, verbose=0)  # the pipeline shuffles, seeded
    return student
