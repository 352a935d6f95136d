"""Trainer overhead: nasflow's trial loop (Katib metrics + MLflow logging on) vs plain ``fit``.

Both train the same candidate on digits for the same epochs, alternating, several rounds; the
figure is the ratio of training throughput (samples/s during fit), target >= 0.95. The per-trial
fixed costs outside fit (storing metrics and the model in MLflow) are printed too.

    .venv/bin/python benchmarks/trial_overhead.py [--epochs 30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras

from tests.mlflow_server import MlflowServer
from trial_image import data as datasets
from trial_image.builder import build_model
from trial_image.frontends import hyperparams
from trial_image.katib_metrics import MetricsReporter
from trial_image.spec import Frame, Head, Training
from trial_image.tracking import Tracker
from trial_image.training import compile_model, quiet_keras, train


def make_model(spec, seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = build_model(spec)
    compile_model(model, spec.training)
    return model


def plain_fit(spec, data, seed: int) -> float:
    model = make_model(spec, seed)
    start = time.perf_counter()
    model.fit(data.train.x, data.train.y, batch_size=spec.training.batch_size,
              epochs=spec.training.epochs, validation_data=(data.validation.x, data.validation.y),
              verbose=0)
    return spec.training.epochs * len(data.train.x) / (time.perf_counter() - start)


def nasflow_trial(spec, data, seed: int, uri: str, round_: int) -> tuple[float, float]:
    model = make_model(spec, seed)
    tracker = Tracker(uri, "trial-overhead-benchmark", retry_seconds=30)
    tracker.start(f"round-{round_}", None, {"katib.trial": f"round-{round_}"},
                  {"epochs": spec.training.epochs}, {"candidate_spec.json": spec.to_dict()})
    reporter = MetricsReporter()
    with contextlib.redirect_stdout(io.StringIO()):  # Katib metric lines, 4 per epoch
        result = train(model, data, spec.training, seed=seed, patience=10_000, time_budget=None,
                       on_epoch=lambda e, m, _: (reporter.report(m), tracker.log_epoch(e, m)))
    start = time.perf_counter()
    tracker.finish({"Test-Accuracy": 0.0}, model, data.test.x[:5], data)
    return result.samples_per_second, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    quiet_keras()
    data = datasets.load("digits")
    spec = hyperparams.to_spec(
        num_blocks=2, filters=[32, 32], kernel_sizes=[3, 3], poolings=["max", "max"],
        batch_norm=True,
        frame=Frame(data.input_shape, data.num_classes, data.scale, head=Head(dense_units=64),
                    training=Training(batch_size=64, epochs=args.epochs)))
    with tempfile.TemporaryDirectory() as tmp:
        server = MlflowServer(Path(tmp)).start()
        try:
            plain_fit(spec, data, 0)  # warm-up: first graph tracing in this process
            plain, ours, fixed = [], [], []
            for r in range(args.rounds):
                plain.append(plain_fit(spec, data, r))
                throughput, finish_seconds = nasflow_trial(spec, data, r, server.uri, r)
                ours.append(throughput)
                fixed.append(finish_seconds)
        finally:
            server.stop()
    p, o = statistics.median(plain), statistics.median(ours)
    print(f"candidate: 2 conv blocks x 32 filters, dense 64, {args.epochs} epochs, batch 64, "
          f"digits ({len(data.train.x)} training images), {args.rounds} rounds, medians")
    print(f"plain model.fit           : {p:9.0f} samples/s  (rounds: "
          f"{', '.join(f'{x:.0f}' for x in plain)})")
    print(f"nasflow trainer + MLflow  : {o:9.0f} samples/s  (rounds: "
          f"{', '.join(f'{x:.0f}' for x in ours)})")
    print(f"throughput ratio          : {o / p:.3f}  (target >= 0.95)")
    print(f"per-trial MLflow finish   : {statistics.median(fixed):.2f} s  (final metrics + "
          "model with signature and input example)")


if __name__ == "__main__":
    main()
