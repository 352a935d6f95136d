"""Compression of the digits champion: every variant measured with itself, in one run.

Runs the default story (``nasflow run --finalize --promote``, ENAS on digits) in a temporary
folder, then ``nasflow compress models:/enas-digits@champion`` with every variant, and prints
each variant's test accuracy (the LiteRT interpreter running the ``.tflite`` file), its size
against the float32 ``.tflite`` and its batch-1 latency against float32's (one interpreter
thread, median of 100). Then distillation against its baseline: the same student (the most
accurate search trial with at most half the teacher's parameters) trained for the same epochs
with and without the teacher, ``--seeds`` seeds each.

    .venv/bin/python benchmarks/compression.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        nasflow = [sys.executable, "-m", "pipeline"]
        subprocess.run([*nasflow, "run", "--finalize", "--promote", "--quiet", "--tracking-uri",
                        uri], cwd=tmp, env=env, check=True, stdout=subprocess.DEVNULL)
        done = subprocess.run([*nasflow, "compress", "models:/enas-digits@champion",
                               "--tracking-uri", uri, "--output", "json"], cwd=tmp, env=env,
                              check=True, capture_output=True, text=True)
        results = {r["variant"]: r for r in json.loads(done.stdout)}
        report(results, uri)
        distillation(uri, args.seeds)


def report(results: dict, uri: str) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    base = results["float32"]
    source = client.get_run(base["run_id"]).data.metrics["Source-Test-Accuracy"]
    print(f"source model (Keras, float32): test accuracy {source:.4f}")
    print("| variant | test accuracy | change (pt) | .tflite bytes (vs float32) | gzip bytes "
          "(vs float32) | latency ms | latency vs float32 | registered |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        metrics = client.get_run(r["run_id"]).data.metrics
        extra = (f", sparsity {metrics['Sparsity']:.2f}" if "Sparsity" in metrics else "") + (
            f", {metrics['Parameter-Count']:.0f} parameters" if name == "distilled" else "")
        print(f"| {name}{extra} | {r['accuracy']:.4f} | {-r['drop']:+.2f} | {r['size']:.0f} "
              f"({r['size'] / base['size']:.2f}x) | {r['compressed']:.0f} "
              f"({r['compressed'] / base['compressed']:.2f}x) | {r['latency_ms']:.4f} | "
              f"{r['latency_ms'] / base['latency_ms']:.2f}x | "
              f"{'@' + name if r['version'] else r['reason']} |")


def distillation(uri: str, seeds: list[int]) -> None:
    """The product's student, trained with and without the teacher, same epochs, on the data
    the compress process uses (the champion's training images)."""
    import numpy as np

    from pipeline.compression import choose_student
    from pipeline.promotion.registry import Registry
    from trial_image.builder import build_model
    from trial_image.compress.distillation import distill
    from trial_image.compress.run import Source, build_parser
    from trial_image.trial_run import prepare_tensorflow

    prepare_tensorflow(0)  # deterministic, as the compress process is: same seed, same result
    os.environ["MLFLOW_TRACKING_URI"] = uri
    source = Source("models:/enas-digits@champion", retry_seconds=60)
    spec = source.student_spec(choose_student(Registry(uri, "enas-digits"), source.run).info.run_id)
    teacher, data = source.model, source.data
    defaults = build_parser().parse_args(["--model-uri", "x"])
    accuracy = {}
    for label, alpha in (("with the teacher", defaults.alpha), ("labels only", 1.0)):
        accuracy[label] = []
        for seed in seeds:
            student = distill(lambda: build_model(spec), teacher, data.x_train, data.y_train,
                              temperature=defaults.temperature, alpha=alpha,
                              epochs=defaults.distill_epochs,
                              learning_rate=spec.training.learning_rate, seed=seed)
            predicted = student.predict(data.x_test, verbose=0).argmax(1)
            accuracy[label].append(float(np.mean(predicted == data.y_test)))
    teacher_accuracy = source.accuracy
    params = build_model(spec).count_params()
    print(f"\ndistillation: teacher {teacher.count_params()} parameters, test accuracy "
          f"{teacher_accuracy:.4f}; student {params} parameters "
          f"({params / teacher.count_params():.2f}x), {defaults.distill_epochs} epochs, "
          f"T={defaults.temperature}, alpha={defaults.alpha}")
    for label, values in accuracy.items():
        print(f"  {label}: test accuracy {statistics.fmean(values):.4f} "
              f"(seeds {', '.join(f'{v:.4f}' for v in values)})")


if __name__ == "__main__":
    main()
