"""Baselines the searches are measured against, on the same digits split as nasflow's trials."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def svc_test_accuracy() -> float:
    """An RBF support vector machine (``SVC(C=10)``) on raw pixels, fitted on training +
    validation: the best classical baseline on this split."""
    from sklearn.svm import SVC

    from trial_image import data as datasets

    data = datasets.load("digits").merged()
    flat = data.train.x.reshape(len(data.train.x), -1)
    model = SVC(C=10).fit(flat, data.train.y)
    return float(model.score(data.test.x.reshape(len(data.test.x), -1), data.test.y))


def keras_tuner_search(tmp: Path, trials: int, epochs: int, seed: int = 0) -> Any:
    """KerasTuner's RandomSearch over random-digits.yaml's space (same builder, split, epochs
    and early stopping as nasflow's trials), in-process; the finished tuner."""
    import keras
    import keras_tuner

    from trial_image import data as datasets
    from trial_image.builder import build_model
    from trial_image.frontends import hyperparams
    from trial_image.spec import Frame, Head, Training
    from trial_image.training import compile_model, quiet_keras

    quiet_keras()
    data = datasets.load("digits")

    def hypermodel(hp: keras_tuner.HyperParameters) -> keras.Model:
        blocks = hp.Int("num_blocks", 1, 3)
        spec = hyperparams.to_spec(
            num_blocks=blocks, filters=[hp.Choice("filters", [16, 32, 64])] * blocks,
            kernel_sizes=[hp.Choice("kernel_size", [3, 5, 7])] * blocks,
            poolings=[hp.Choice("pooling", ["max", "avg", "none"])] * blocks,
            batch_norm=hp.Boolean("batch_norm"), frame=Frame(
                data.input_shape, data.num_classes, data.scale,
                head=Head(dense_units=hp.Choice("dense_units", [0, 64, 128]),
                          dropout=hp.Float("dropout", 0.0, 0.5)),
                training=Training(optimizer=hp.Choice("optimizer", ["adam", "sgd", "rmsprop"]),
                                  learning_rate=hp.Float("lr", 3e-4, 3e-2, sampling="log"),
                                  batch_size=64, epochs=epochs)))
        model = build_model(spec)
        compile_model(model, spec.training)
        return model

    class Tuner(keras_tuner.RandomSearch):
        def run_trial(self, trial, *args, **kwargs):
            kwargs["batch_size"] = trial.hyperparameters.Choice("batch_size", [32, 64, 128])
            return super().run_trial(trial, *args, **kwargs)

    tuner = Tuner(hypermodel, objective="val_accuracy", max_trials=trials, seed=seed,
                  directory=str(tmp / "kt"), project_name="digits", overwrite=True)
    tuner.search(data.train.x, data.train.y, epochs=epochs, verbose=0,
                 validation_data=(data.validation.x, data.validation.y),
                 callbacks=[keras.callbacks.EarlyStopping("val_accuracy", patience=5)])
    return tuner


def keras_tuner_retrained(tuner: Any, epochs: int) -> float:
    """Test accuracy of the tuner's best hyperparameters trained again from scratch on training
    + validation for the search's epochs (KerasTuner's own way to a final model)."""
    from trial_image import data as datasets

    data = datasets.load("digits")
    best = tuner.get_best_hyperparameters(1)[0]
    model = tuner.hypermodel.build(best)
    merged = data.merged()
    model.fit(merged.train.x, merged.train.y, epochs=epochs, verbose=0,
              batch_size=best.get("batch_size"))
    return float(model.evaluate(data.test.x, data.test.y, verbose=0)[1])


