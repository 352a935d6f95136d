"""Engine overhead, measured side by side in one run.

1. Per-trial overhead with a no-op trial: ``nasflow run`` of N no-op trials (one at a time)
   minus the same N processes started directly, divided by N. Target <= 50 ms.
   Then fixed and per-trial cost with MLflow tracking on (the default: a new SQLite store) and
   off, from runs of 41 and 201 no-op trials (wall = fixed + trials × per-trial), and where
   the fixed seconds with tracking go.
2. Peak memory (max RSS) of the engine running a 1,000-trial no-op experiment.
3. ``nasflow run manifests/experiments/random-digits.yaml`` (20 trials × 15 epochs, MLflow on)
   vs KerasTuner's RandomSearch on the same space, data split, epochs and early stopping:
   wall-time ratio (target <= 1.0) and best validation accuracy of each.

    .venv/bin/python benchmarks/engine_overhead.py [--parts noop tracking memory keras]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
NOOP = [sys.executable, "-c", "print('score=1.0')"]


def noop_manifest(name: str, trials: int, parallel: int) -> dict:
    return {"apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment",
            "metadata": {"name": name},
            "spec": {"objective": {"type": "maximize", "objectiveMetricName": "score"},
                     "algorithm": {"algorithmName": "random"},
                     "parallelTrialCount": parallel, "maxTrialCount": trials,
                     "parameters": [{"name": "x", "parameterType": "double",
                                     "feasibleSpace": {"min": "0", "max": "1"}}],
                     "trialTemplate": {
                         "primaryContainerName": "main",
                         "trialParameters": [{"name": "x", "reference": "x"}],
                         "trialSpec": {"apiVersion": "batch/v1", "kind": "Job", "spec": {
                             "template": {"spec": {"restartPolicy": "Never", "containers": [{
                                 "name": "main", "image": "none",
                                 "command": [*NOOP, "${trialParameters.x}"]}]}}}}}}}


def run_engine(doc: dict, tmp: Path, *extra: str) -> tuple[float, int]:
    """(wall seconds, engine max RSS in KiB)."""
    path = tmp / f"{doc['metadata']['name']}.yaml"
    path.write_text(yaml.safe_dump(doc))
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork+exec, so a parent that imported
    # TensorFlow would inflate the engine's figure.
    wrapper = ("import re, runpy, sys\n"
               f"sys.argv = ['nasflow', 'run', {str(path)!r}, '--quiet', '--workdir', "
               f"{str(tmp / '.nasflow')!r}, *{list(extra)!r}]\n"
               "try:\n    runpy.run_module('pipeline', run_name='__main__')\n"
               "finally:\n    status = open('/proc/self/status').read()\n"
               "    print('RSS', re.search(r'VmHWM:\\s+(\\d+)', status).group(1),"
               " file=sys.stderr)\n")
    start = time.perf_counter()
    # cwd: MLflow stores a SQLite store's artifacts under ./mlruns
    result = subprocess.run([sys.executable, "-c", wrapper], cwd=tmp, capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"nasflow run failed: {result.stderr[-2000:]}")
    rss = int(next(line.split()[1] for line in result.stderr.splitlines()
                   if line.startswith("RSS ")))
    return wall, rss


def part_noop(tmp: Path, n: int = 200) -> None:
    start = time.perf_counter()
    for _ in range(n):
        subprocess.run([*NOOP, "0.5"], capture_output=True, check=True)
    direct = time.perf_counter() - start
    engine_start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import pipeline.cli, optuna"], check=True)
    startup = time.perf_counter() - engine_start
    wall, _ = run_engine(noop_manifest("noop", n, 1), tmp, "--no-mlflow")
    per_trial = (wall - startup - direct) / n
    print(f"no-op trials, one at a time: {n} direct processes {direct:.2f} s; nasflow run "
          f"{wall:.2f} s (of which {startup:.2f} s interpreter + imports)")
    print(f"engine overhead per trial: {per_trial * 1000:.1f} ms  (target <= 50 ms)")


def part_tracking(tmp: Path, small: int = 41, large: int = 201) -> None:
    print(f"no-op trials, one at a time, {small} and {large} trials: wall = fixed + trials × "
          "per-trial")
    for label, extra in (("tracking off", ("--no-mlflow",)),
                         ("tracking on ", ("--tracking-uri", f"sqlite:///{tmp}/{{n}}.db"))):
        walls = {}
        for n in (small, large):
            args = [a.format(n=n) for a in extra]
            name = f"{'off' if args[0] == '--no-mlflow' else 'on'}-{n}"
            walls[n], _ = run_engine(noop_manifest(name, n, 1), tmp, *args)
        per_trial = (walls[large] - walls[small]) / (large - small)
        fixed = walls[small] - small * per_trial
        print(f"  {label}: {walls[small]:5.2f} s / {walls[large]:5.2f} s -> fixed {fixed:5.2f} s,"
              f" per trial {per_trial * 1000:5.1f} ms")
    steps = subprocess.run([sys.executable, "-c", FIXED_COST], cwd=tmp, capture_output=True,
                           text=True, check=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    print("  where the fixed seconds with tracking on go (a fresh process):\n" + steps, end="")


FIXED_COST = """
import os, sys, tempfile, time
os.environ["MLFLOW_LOGGING_LEVEL"] = "WARNING"
last = time.perf_counter()
def step(what):
    global last
    now = time.perf_counter()
    print(f"    {what:<44} {now - last:5.2f} s")
    last = now
import mlflow
step("import mlflow")
uri = f"sqlite:///{tempfile.mkdtemp()}/m.db"
mlflow.MlflowClient(uri).search_experiments()
step("create the SQLite store (schema migrations)")
from pipeline.engine.state import TrialRecord
from pipeline.engine.tracking import ExperimentTracking
tracking = ExperimentTracking(uri, "x", None, "kind: Experiment", {"seed": 0}, 20.0, None)
step("experiment, parent run, manifest, parameters")
done = [TrialRecord(i, f"t{i}", {"x": "0.5"}, status="Succeeded", finished=float(i),
                    observations={"score": ["1.0"], "Parameter-Count": ["100"]})
        for i in range(20)]
tracking.update(done, {i: 1.0 for i in range(20)}, True, force=True)
step("leaderboard and plots (matplotlib imported)")
tracking.end("FINISHED")
step("end the parent run")
"""


def part_memory(tmp: Path) -> None:
    wall, rss = run_engine(noop_manifest("noop-1000", 1000, 8), tmp, "--no-mlflow")
    print(f"1,000 no-op trials, 8 in parallel: {wall:.1f} s, engine peak RSS {rss / 1024:.0f} MiB")


def part_keras(tmp: Path, trials: int = 20, epochs: int = 15) -> None:
    doc = yaml.safe_load((ROOT / "manifests/experiments/random-digits.yaml").read_text())
    doc["spec"]["maxTrialCount"] = trials
    doc["spec"]["objective"].pop("goal")  # both run the whole budget
    start = time.perf_counter()
    path = tmp / "random-digits.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", str(path), "--quiet", "--output", "json",
         "--workdir", str(tmp / ".nasflow"), "--tracking-uri", f"sqlite:///{tmp / 'm.db'}"],
        cwd=tmp, capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    ours = time.perf_counter() - start
    status = json.loads(result.stdout)
    ours_best = max(float(m["max"]) for m in status["currentOptimalTrial"]["observation"][
        "metrics"] if m["name"] == "Validation-Accuracy")
    start = time.perf_counter()
    from baselines import keras_tuner_search

    kt_best = keras_tuner_search(tmp, trials, epochs).oracle.get_best_trials(1)[0].score
    theirs = time.perf_counter() - start
    print(f"random search, {trials} trials × {epochs} epochs on digits:")
    print(f"  nasflow run (2 parallel trials, MLflow on): {ours:6.1f} s, best val acc "
          f"{ours_best:.4f}")
    print(f"  KerasTuner RandomSearch (in-process)     : {theirs:6.1f} s, best val acc "
          f"{kt_best:.4f}")
    print(f"  wall-time ratio nasflow / KerasTuner: {ours / theirs:.2f}  (target <= 1.0)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parts = {"noop": part_noop, "tracking": part_tracking, "memory": part_memory,
             "keras": part_keras}
    parser.add_argument("--parts", nargs="+", choices=parts, default=list(parts))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for part in args.parts:
            parts[part](Path(tmp))


if __name__ == "__main__":
    main()
