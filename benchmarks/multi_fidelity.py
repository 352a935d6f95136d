"""Where compute matters: random, random + medianstop, random + ASHA, hyperband and TPE + ASHA at
the same wall-time budget, 3 seeds each, on the embedded engine.

1. **Curves, measured.** Every configuration of a 216-point space (learning rate, optimizer,
   batch size, filters and dropout of a two-block CNN with a 32-unit head) is trained for 30
   epochs on digits with real TensorFlow, once: its validation accuracy after each epoch, each
   epoch's seconds and the model's set-up seconds (``--table``, cached).
2. **Searches, real.** Each method runs as a Katib Experiment on ``nasflow run`` (the engine,
   its algorithms and early stopping as users get them) with 27 parallel trials (hyperband's
   ``r_l`` 30 with ``eta`` 3 needs 27: Katib's rule), whose trials *replay* their configuration's
   measured curve, sleeping its measured times × ``--scale`` (by default, so that the median
   epoch takes 0.5 s: the engine's 0.5 s polling is about an epoch, where beside real epochs on
   real data it is nothing, so early stopping's savings here are if anything understated).
   The engine is stopped (SIGINT) after ``--budget`` seconds.
3. **Figures.** For each run, the best validation accuracy of the trials finished so far against
   wall time; the mean over seeds per method (a plot in MLflow and ``docs/figures``); the time
   ASHA needs to reach the best accuracy the run without early stopping reached, as a fraction of
   that run's wall time; time to a target every method reaches.

    .venv/bin/python benchmarks/multi_fidelity.py [--budget 100] [--seeds 0 1 2]
        [--table /var/tmp/nasflow-multi-fidelity/table.json] [--tracking-uri URI]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EPOCHS = 30
SPACE = {"learning_rate": ["0.0003", "0.001", "0.003", "0.01", "0.03", "0.1"],
         "optimizer": ["adam", "sgd", "rmsprop"], "batch_size": ["64", "256"],
         "filters": ["8", "16", "32"], "dropout": ["0.0", "0.3"]}
METHODS = {  # name: (algorithm, settings, early stopping)
    "random": ("random", [], None),
    "random + medianstop": ("random", [], {"algorithmName": "medianstop"}),
    "random + ASHA": ("random", [], "asha"),
    "hyperband": ("hyperband", [{"name": "r_l", "value": str(EPOCHS)},
                                {"name": "eta", "value": "3"},
                                {"name": "resource_name", "value": "epochs"}], None),
    "TPE + ASHA": ("tpe", [], "asha"),
}
# rungs at 3, 9 and 27 epochs: a grace period of a tenth of the training (at 1 epoch, one seed's
# run stopped the space's best configuration, a slow starter, at its 9-epoch rung)
ASHA = {"algorithmName": "asha", "algorithmSettings": [
    {"name": "min_resource", "value": "3"}, {"name": "reduction_factor", "value": "3"},
    {"name": "max_resource", "value": str(EPOCHS)}]}
PARALLEL = 27


def key(values: dict[str, str]) -> str:
    return ",".join(f"{name}={values[name]}" for name in SPACE)


# ---- 1. the measured curves ----------------------------------------------------------------


def _clock() -> type:
    import keras

    class Clock(keras.callbacks.Callback):
        """Each epoch's seconds."""

        def on_train_begin(self, logs=None):
            self.times, self.mark = [], time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            self.times.append(now - self.mark)
            self.mark = now

    return Clock


def record(path: Path) -> dict:
    """Train every configuration once (seed 0, op determinism) and keep its curve and times."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(ROOT))
    import keras

    from trial_image import data as datasets
    from trial_image.builder import build_model
    from trial_image.frontends import hyperparams
    from trial_image.spec import Frame, Head, Training
    from trial_image.training import compile_model
    from trial_image.trial_run import prepare_tensorflow

    prepare_tensorflow(0)
    data = datasets.load("digits", test=False)
    (x, y), (vx, vy) = data.train.take(data.train.count), data.validation.take(
        data.validation.count)
    table = json.loads(path.read_text()) if path.exists() else {}
    combos = [dict(zip(SPACE, values, strict=True))
              for values in itertools.product(*SPACE.values())]
    for n, values in enumerate(combos):
        if key(values) in table:
            continue
        start = time.perf_counter()
        keras.utils.set_random_seed(0)
        training = Training(optimizer=values["optimizer"],
                            learning_rate=float(values["learning_rate"]),
                            batch_size=int(values["batch_size"]), epochs=EPOCHS)
        filters = int(values["filters"])
        spec = hyperparams.to_spec(
            num_blocks=2, filters=[filters, filters], kernel_sizes=[3, 3],
            poolings=["max", "max"], batch_norm=False,
            frame=Frame(data.input_shape, data.num_classes, data.scale,
                        head=Head(dense_units=32, dropout=float(values["dropout"])),
                        training=training))
        model = build_model(spec, data.train)
        compile_model(model, training, -(-len(x) // training.batch_size))
        overhead = time.perf_counter() - start
        clock = _clock()()
        history = model.fit(x, y, batch_size=training.batch_size, epochs=EPOCHS, verbose=0,
                            validation_data=(vx, vy), callbacks=[clock], shuffle=True)
        curve = [float(v) for v in history.history["val_accuracy"]]
        table[key(values)] = {"curve": curve, "epoch_seconds": clock.times,
                              "overhead": overhead}
        if n % 12 == 0:
            print(f"  recorded {n + 1}/{len(combos)}: {key(values)} -> {max(curve):.4f}",
                  flush=True)
            path.write_text(json.dumps(table))
    path.write_text(json.dumps(table))
    return table


# ---- the replayed trial (what each search's trial command runs) ------------------------------


def replay(argv: list[str]) -> int:
    """Print a configuration's measured curve as Katib metric lines, at its measured pace."""
    parser = argparse.ArgumentParser(prog="multi_fidelity.py replay")
    parser.add_argument("--table", type=Path, required=True)
    parser.add_argument("--scale", type=float, required=True)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    for name in SPACE:
        parser.add_argument(f"--{name}", required=True)
    args = parser.parse_args(argv)
    entry = json.loads(args.table.read_text())[key(vars(args))]
    time.sleep(entry["overhead"] * args.scale)
    for value, seconds in list(zip(entry["curve"], entry["epoch_seconds"], strict=True))[
            :args.epochs]:
        time.sleep(seconds * args.scale)
        print(f"Validation-Accuracy={value}", flush=True)
    return 0


# ---- 2. the searches ---------------------------------------------------------------------------


def manifest(method: str, seed: int, table: Path, scale: float) -> dict:
    algorithm, settings, early = METHODS[method]
    params = [{"name": n, "parameterType": "categorical", "feasibleSpace": {"list": v}}
              for n, v in SPACE.items()]
    command = ["python", str(Path(__file__).resolve()), "replay", f"--table={table}",
               f"--scale={scale}", *[f"--{n}=${{trialParameters.{n}}}" for n in SPACE]]
    references = list(SPACE)
    if algorithm == "hyperband":
        params.append({"name": "epochs", "parameterType": "int",
                       "feasibleSpace": {"min": "1", "max": str(EPOCHS)}})
        command.append("--epochs=${trialParameters.epochs}")
        references.append("epochs")
    else:
        settings = [*settings, {"name": "random_state", "value": str(seed)}]
    spec = {
        "objective": {"type": "maximize", "objectiveMetricName": "Validation-Accuracy"},
        "algorithm": {"algorithmName": algorithm, "algorithmSettings": settings},
        "parallelTrialCount": PARALLEL, "maxTrialCount": 5000, "maxFailedTrialCount": 5000,
        "parameters": params,
        "trialTemplate": {"primaryContainerName": "main",
                          "trialParameters": [{"name": r, "reference": r} for r in references],
                          "trialSpec": {"apiVersion": "batch/v1", "kind": "Job", "spec": {
                              "template": {"spec": {"restartPolicy": "Never", "containers": [
                                  {"name": "main", "image": "none", "command": command}]}}}}}}
    if early is not None:
        spec["earlyStopping"] = ASHA if early == "asha" else early
    name = method.lower().replace(" + ", "-").replace(" ", "-")
    return {"apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment",
            "metadata": {"name": f"mf-{name}-{seed}"}, "spec": spec}


def search(doc: dict, seed: int, budget: float, work: Path) -> list[tuple[float, float]]:
    """Run ``doc`` on the engine for ``budget`` seconds; the (seconds, value) of every trial
    that finished with a value (succeeded or early-stopped), from the first trial's start."""
    import yaml

    sys.path.insert(0, str(ROOT))
    from pipeline.engine.state import StateStore

    path = work / f"{doc['metadata']['name']}.yaml"
    path.write_text(yaml.safe_dump(doc))
    engine = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", str(path), "--no-mlflow", "--quiet",
         "--seed", str(seed), "--workdir", str(work / ".nasflow")], cwd=work,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    try:
        engine.wait(timeout=budget)
    except subprocess.TimeoutExpired:
        engine.send_signal(signal.SIGINT)
    _, err = engine.communicate(timeout=120)
    store = StateStore(work / ".nasflow" / doc["metadata"]["name"] / "state.db")
    trials = store.trials()
    store.close()
    if not trials:
        raise SystemExit(f"{doc['metadata']['name']}: no trial ran\n{err[-2000:]}")
    start = min(t.started for t in trials)
    out = []
    for t in trials:
        values = [float(v) for v in t.observations.get("Validation-Accuracy", [])]
        if t.status in ("Succeeded", "EarlyStopped") and values and t.finished - start <= budget:
            out.append((t.finished - start, max(values)))
    return sorted(out)


def best_at(points: list[tuple[float, float]], when: float) -> float:
    seen = [v for t, v in points if t <= when]
    return max(seen) if seen else float("nan")


def reached(points: list[tuple[float, float]], target: float) -> float:
    """When the run's best first reached ``target`` (inf: never)."""
    return next((t for t, v in points if v >= target - 1e-12), float("inf"))


# ---- 3. figures ----------------------------------------------------------------------------


def figure(runs: dict[str, list[list[tuple[float, float]]]], budget: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = [budget * i / 200 for i in range(1, 201)]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    lowest = 1.0
    for method, per_seed in runs.items():
        mean = [statistics.fmean(best_at(p, t) for p in per_seed)
                if all(best_at(p, t) == best_at(p, t) for p in per_seed) else float("nan")
                for t in grid]
        ax.plot(grid, mean, label=method)
        lowest = min([lowest, *(m for t, m in zip(grid, mean, strict=True)
                                if m == m and t >= budget / 3)])
    ax.set_xlabel("wall time (s)")
    ax.set_ylabel("best validation accuracy so far (mean of seeds)")
    ax.set_ylim(lowest - 0.02, 1.0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title("digits, 27 parallel trials of up to 30 epochs (replayed)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    if sys.argv[1:2] == ["replay"]:
        raise SystemExit(replay(sys.argv[2:]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=100.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--table", type=Path,
                        default=Path("/var/tmp/nasflow-multi-fidelity/table.json"))
    parser.add_argument("--scale", type=float, default=None,
                        help="replay speed (default: the median epoch takes 0.5 s)")
    parser.add_argument("--figure", type=Path, default=ROOT / "docs/figures/multi_fidelity.png")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow to log the figure and figures to (default: a SQLite store "
                        "beside the table)")
    args = parser.parse_args()
    args.table.parent.mkdir(parents=True, exist_ok=True)
    print(f"1. curves: {args.table}", flush=True)
    table = record(args.table)
    epoch = statistics.median(s for e in table.values() for s in e["epoch_seconds"][1:])
    scale = args.scale or 0.5 / epoch
    finals = sorted(max(e["curve"]) for e in table.values())
    print(f"   {len(table)} configurations; best accuracy {finals[-1]:.4f}, median "
          f"{statistics.median(finals):.4f}; median epoch {epoch * 1000:.0f} ms, replayed "
          f"× {scale:.1f}", flush=True)

    runs: dict[str, list[list[tuple[float, float]]]] = {m: [] for m in METHODS}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for method in METHODS:
                points = search(manifest(method, seed, args.table, scale), seed, args.budget,
                                Path(tmp))
                runs[method].append(points)
                print(f"2. seed {seed} {method:20s}: {len(points):4d} trials with a value, "
                      f"best {best_at(points, args.budget):.4f}", flush=True)

    print(f"\n3. best validation accuracy at {args.budget:.0f} s (mean of {len(args.seeds)} "
          "seeds) and the time to reach it")
    for method, per_seed in runs.items():
        bests = [best_at(p, args.budget) for p in per_seed]
        print(f"   {method:20s} {statistics.fmean(bests):.4f}  "
              f"(seeds {' '.join(f'{b:.4f}' for b in bests)})")
    ratios = []
    for seed, plain, asha in zip(args.seeds, runs["random"], runs["random + ASHA"], strict=True):
        target = best_at(plain, args.budget)
        ratios.append(reached(asha, target) / args.budget)
        print(f"   seed {seed}: random's best {target:.4f} at {reached(plain, target):.1f} s; "
              f"random + ASHA reaches it at {reached(asha, target):.1f} s = "
              f"{ratios[-1]:.2f} × the random run's {args.budget:.0f} s")
    print(f"   ASHA / no early stopping, time to the no-early-stopping best: mean "
          f"{statistics.fmean(ratios):.2f} (target <= 0.4)")
    target = min(best_at(p, args.budget) for per_seed in runs.values() for p in per_seed)
    print(f"   time to {target:.4f} (reached by every run), mean of seeds:")
    for method, per_seed in runs.items():
        print(f"   {method:20s} {statistics.fmean(reached(p, target) for p in per_seed):6.1f} s")
    asha_best = statistics.fmean(best_at(p, args.budget) for p in runs["random + ASHA"])
    hyperband = statistics.fmean(best_at(p, args.budget) for p in runs["hyperband"])
    print(f"   random + ASHA {asha_best:.4f} vs hyperband {hyperband:.4f} at equal wall time")

    figure(runs, args.budget, args.figure)
    print(f"   figure: {args.figure}")
    log_to_mlflow(args, runs, ratios, target)


def log_to_mlflow(args: argparse.Namespace, runs: dict, ratios: list[float],
                  target: float) -> None:
    import mlflow

    uri = args.tracking_uri or f"sqlite:///{args.table.parent / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("multi-fidelity-benchmark")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(
        "multi-fidelity-benchmark")
    run = client.create_run(experiment_id, run_name=f"budget-{args.budget:.0f}s")
    for method, per_seed in runs.items():
        slug = method.replace(" + ", "-").replace(" ", "-")
        client.log_metric(run.info.run_id, f"best-{slug}",
                          statistics.fmean(best_at(p, args.budget) for p in per_seed))
        client.log_metric(run.info.run_id, f"time-to-target-{slug}",
                          statistics.fmean(reached(p, target) for p in per_seed))
    client.log_metric(run.info.run_id, "asha-time-ratio", statistics.fmean(ratios))
    client.log_artifact(run.info.run_id, str(args.figure))
    client.set_terminated(run.info.run_id)
    print(f"   MLflow: {uri}, run {run.info.run_id}")


if __name__ == "__main__":
    main()
