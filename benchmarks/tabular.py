"""Tables: the searched and finalized network against what a data scientist tries first.

For each of scikit-learn's bundled tables (breast cancer, wine: classification; diabetes:
regression) and each seed, ``nasflow run manifests/experiments/tables/tpe-<set>.yaml --finalize``
runs exactly as a user would; its final model's test measure (accuracy, or RMSE) is read from
the JSON result. On the very same splits (``trial_image.data.load``: the rows' content decides
them), fitted on training + validation as the final model is: gradient boosting
(``HistGradientBoostingClassifier/Regressor``, seeded) and a linear model (standardised logistic
regression, or ridge regression). The verdict per set is the issue's bar: the network no worse
than gradient boosting by more than 1 point of accuracy, or 5 % relative RMSE (means of the
seeds).

    .venv/bin/python benchmarks/tabular.py [--trials 12] [--seeds 0 1 2] [--only diabetes]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SETS = {"breast_cancer": "tpe-breast-cancer.yaml", "wine": "tpe-wine.yaml",
        "diabetes": "tpe-diabetes.yaml"}


def search(manifest: str, seed: int, trials: int, workdir: Path) -> dict[str, float]:
    """``nasflow run manifests/experiments/<manifest> --finalize`` with ``trials`` trials and
    ``--seed``: the final model's test score, the best search trial's, and the seconds."""
    doc = yaml.safe_load((ROOT / "manifests" / "experiments" / manifest).read_text())
    return run(doc, Path(manifest).stem, seed, trials, workdir)


def run(doc: dict, name: str, seed: int, trials: int, workdir: Path, final_epochs: int = 30
        ) -> dict[str, float]:
    """The Experiment ``doc`` as ``b-<name>-<seed>``, its whole budget of ``trials`` trials,
    then ``--finalize`` (``final``: its result, the ensemble's choice among it)."""
    experiment = f"b-{name}-{seed}"
    doc["metadata"]["name"] = experiment
    doc["spec"]["trialTemplate"]["trialSpec"]["metadata"]["labels"][
        "katib.kubeflow.org/experiment"] = experiment
    doc["spec"]["maxTrialCount"] = trials
    doc["spec"]["objective"].pop("goal", None)  # run the whole budget
    doc["spec"]["algorithm"]["algorithmSettings"] = []  # the seed comes from --seed
    path = workdir / f"{experiment}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", str(path), "--seed", str(seed), "--quiet",
         "--finalize", "--final-epochs", str(final_epochs), "--output", "json",
         "--workdir", str(workdir / ".nasflow"),
         "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}"],
        cwd=ROOT, capture_output=True, text=True, check=False)
    if result.returncode:
        raise SystemExit(f"nasflow run {path} exited {result.returncode}: "
                         f"{result.stderr[-2000:]}")
    out = json.loads(result.stdout)
    return {"test": out["final"]["test_score"], "search_test": out["final"][
        "best_search_test_score"], "seconds": out["search"]["elapsedSeconds"]
        + out["final"]["seconds"], "final": out["final"]}


def baselines(name: str, seed: int) -> dict[str, float]:
    """Gradient boosting and a linear model, fitted on training + validation, scored on test."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from trial_image.data import load

    with contextlib.redirect_stderr(io.StringIO()):  # the loader's line about the columns
        data = load(name).merged()

    def matrix(split) -> np.ndarray:
        return np.column_stack([split.columns[column] for column, _ in data.columns])

    x, y, x_test, y_test = matrix(data.train), data.train.y, matrix(data.test), data.test.y
    if data.task == "classification":
        models = {"boosting": HistGradientBoostingClassifier(random_state=seed),
                  "linear": make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))}
        return {k: float(np.mean(m.fit(x, y).predict(x_test) == y_test))
                for k, m in models.items()}
    models = {"boosting": HistGradientBoostingRegressor(random_state=seed),
              "linear": make_pipeline(StandardScaler(), Ridge())}
    return {k: float(np.sqrt(np.mean((m.fit(x, y).predict(x_test) - y_test) ** 2)))
            for k, m in models.items()}


def cell(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return (f"{', '.join(f'{v:.4f}' for v in values)} (**{statistics.fmean(values):.4f}** ± "
            f"{spread:.4f})")


def arguments(description: str, sets: list[str]) -> argparse.Namespace:
    """The flags both benchmarks take (``--trials``, ``--seeds``, ``--only``), said first."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", choices=sets, default=sets)
    args = parser.parse_args()
    print(f"{args.trials} TPE trials, then --finalize, per seed ({', '.join(map(str, args.seeds))})"
          "; the mean in bold ± stdev. Accuracy: higher is better; RMSE: lower.\n")
    return args


def main() -> None:
    args = arguments(__doc__.splitlines()[0], list(SETS))
    print("| set | measure | finalized network | gradient boosting | linear model | "
          "network − boosting | bar met | search + final |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            ours = [search(f"tables/{SETS[name]}", seed, args.trials, Path(tmp))
                    for seed in args.seeds]
            theirs = [baselines(name, seed) for seed in args.seeds]
            network = statistics.fmean(r["test"] for r in ours)
            boosting = statistics.fmean(r["boosting"] for r in theirs)
            regression = name == "diabetes"
            if regression:
                gap = f"{(network / boosting - 1) * 100:+.1f} % RMSE"
                met = network <= 1.05 * boosting
            else:
                gap = f"{(network - boosting) * 100:+.2f} points"
                met = network >= boosting - 0.01
            print(f"| {name} | {'RMSE' if regression else 'accuracy'} | "
                  f"{cell([r['test'] for r in ours])} | "
                  f"{cell([r['boosting'] for r in theirs])} | "
                  f"{cell([r['linear'] for r in theirs])} | {gap} | {'yes' if met else 'NO'} | "
                  f"{statistics.fmean(r['seconds'] for r in ours):.0f} s |", flush=True)


if __name__ == "__main__":
    main()
