"""Real data, offline: nasflow's finalized champion against the strongest classical baseline of
each kind, on the same split.

The sets ship inside packages (``benchmarks/real_data_tools.py export``: statsmodels' datasets,
sktime's bundled UCR sets; no real text set ships offline): tables (classification and
regression), series forecasting and series classification. For each set and seed, a manifest
made from the repository's own (``tables/tpe-breast-cancer.yaml`` or ``tpe-diabetes.yaml``,
``sequences/tpe-sensor.yaml``), its data flags replaced, runs ``--trials`` TPE trials and
``--finalize`` (top 3, an ensemble of up to 3; 30 epochs for tables, 100 for the series, which
also train in batches of 16 for up to 100 epochs: they have a few hundred examples) exactly as a
user would. The baselines
are fitted on training + validation of the very splits nasflow's trials read
(``trial_image.data.load``) and scored on its test split:

* tables: histogram gradient boosting (categories as such) and a standardised logistic or
  ridge regression (categories one-hot);
* forecasting, one step ahead over the last 20 % of the values: seasonal naive, ridge on
  lags (four seasons), ETS and ARIMA (statsmodels, their state updated through the test values
  without refitting);
* series classification: MiniRocket with a ridge classifier (sktime).

The bar per set (means of the seeds): within 0.5 point of accuracy or 2 % of RMSE of the best
baseline, or better.

    .venv/bin/python benchmarks/real_data.py [--trials 12] [--seeds 0 1 2] [--only co2 fair]
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
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from tabular import cell, run  # noqa: E402

BENCH_PYTHON = ROOT / ".venv" / "bench" / "bin" / "python"
# The sensor manifest trains 4,000 hourly windows in batches of 64 for 30 epochs; these series
# have 200 to 1,100 examples, which that budget leaves at 100 to 500 steps: smaller batches,
# more epochs, final training as long (FINAL_EPOCHS)
SERIES_TRAINING = ["--epochs=100", "--patience=10", "--batch-size=16"]
FINAL_EPOCHS = {"table": 30, "forecast": 100, "series-classification": 100}
TOOLS = ROOT / "benchmarks" / "real_data_tools.py"


def tools(command: str, path: Path) -> dict[str, Any]:
    """``real_data_tools.py COMMAND PATH`` in the benchmark's environment: its JSON."""
    done = subprocess.run([str(BENCH_PYTHON), str(TOOLS), command, str(path)], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"real_data_tools.py {command} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def manifest(name: str, about: dict[str, Any], path: Path) -> dict[str, Any]:
    """The repository's manifest for this kind of data, reading ``path``."""
    kind = about["kind"]
    source = {"table": "tables/tpe-breast-cancer.yaml" if about.get("task") == "classification"
              else "tables/tpe-diabetes.yaml"}.get(kind, "sequences/tpe-sensor.yaml")
    doc = yaml.safe_load((ROOT / "manifests" / "experiments" / source).read_text())
    spec = doc["spec"]
    container = spec["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    flags = [a for a in container["command"] if not a.startswith(("--dataset=", "--horizon="))]
    if kind == "table":
        data = [f"--dataset=csv:{path}", f"--target={about['target']}", f"--task={about['task']}"]
    elif kind == "forecast":
        data = [f"--dataset=series:{path}", "--target=value", "--horizon=1"]
        # windows of 1, 2, 4 or 8 seasons (ETS and ARIMA read the whole past), up to a fifth of
        # the series: a third of the training split, so that most of it still gives windows
        season = about["season"]
        lookbacks = [season * k for k in (1, 2, 4, 8) if season * k <= about["rows"] / 5]
        for parameter in spec["parameters"]:
            if parameter["name"] == "lookback":
                parameter["feasibleSpace"] = {"list": list(map(str, lookbacks))}
    else:  # a series a row: classified whole (no lookback, no level), by accuracy; the space
        # of a series classifier: FCN's wider filters and longer kernels (Wang et al. 2017),
        # MiniRocket's features as the wide path
        data = [f"--dataset=series:{path}", "--target=label", "--task=classification"]
        dropped = ("lookback", "level")
        flags = [a for a in flags if not a.startswith(tuple(f"--{d}=" for d in dropped))]
        spec["parameters"] = [p for p in spec["parameters"] if p["name"] not in dropped]
        spec["trialTemplate"]["trialParameters"] = [
            p for p in spec["trialTemplate"]["trialParameters"] if p["name"] not in dropped]
        lists = {"units": ["32", "64", "128"], "kernel_size": ["3", "5", "8"],
                 "wide": ["none", "linear", "kernels"]}
        for parameter in spec["parameters"]:
            if parameter["name"] in lists:
                parameter["feasibleSpace"] = {"list": lists[parameter["name"]]}
        spec["objective"] = {"type": "maximize", "objectiveMetricName": "Validation-Accuracy",
                             "additionalMetricNames": ["Validation-Loss", "Parameter-Count"]}
    if kind != "table":  # a few hundred windows or series: more, smaller steps (SERIES_TRAINING)
        flags = [a for a in flags if not a.startswith(("--epochs=", "--patience=",
                                                        "--batch-size="))] + SERIES_TRAINING
    container["command"] = flags[:3] + data + flags[3:]
    return doc


def loaded(name: str, about: dict[str, Any], path: Path, lookback: int | None = None) -> Any:
    """The splits nasflow's trials read, training + validation merged (as final training)."""
    from trial_image.data import TableOptions, Window, load

    if about["kind"] == "table":
        dataset, options = f"csv:{path}", TableOptions(about["target"], about["task"])
    elif about["kind"] == "forecast":
        dataset, options = f"series:{path}", TableOptions("value")
    else:
        dataset, options = f"series:{path}", TableOptions("label", "classification")
    with contextlib.redirect_stderr(io.StringIO()):  # the loader's line about the data
        return load(dataset, table=options, window=Window(lookback or 24, 1)
                    if about["kind"] == "forecast" else None).merged()


def table_baselines(data: Any, seed: int) -> dict[str, float]:
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    numeric = [n for n, kind in data.columns if kind == "numeric"]
    categorical = [n for n, kind in data.columns if kind != "numeric"]
    train, test = (pd.DataFrame(s.columns) for s in (data.train, data.test))
    linear_inputs = ColumnTransformer([
        ("numbers", make_pipeline(SimpleImputer(), StandardScaler()), numeric),
        ("categories", OneHotEncoder(handle_unknown="ignore"), categorical)])
    tree_inputs = ColumnTransformer([
        ("numbers", "passthrough", numeric),
        ("categories", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1,
                                      encoded_missing_value=-1), categorical)])
    flags = [False] * len(numeric) + [True] * len(categorical)
    classify = data.task == "classification"
    boosting = (HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor)(
        random_state=seed, categorical_features=flags)
    models = {"gradient boosting": make_pipeline(tree_inputs, boosting),
              "logistic regression" if classify else "ridge": make_pipeline(
                  linear_inputs, LogisticRegression(max_iter=5000) if classify else Ridge())}
    out = {}
    for name, model in models.items():
        started = time.perf_counter()
        predicted = model.fit(train, data.train.y).predict(test)
        out[name] = float(np.mean(predicted == data.test.y)) if classify else \
            float(np.sqrt(np.mean((predicted - data.test.y) ** 2)))
        out[f"{name} seconds"] = time.perf_counter() - started
    return out


def forecast_baselines(name: str, about: dict[str, Any], path: Path, folder: Path
                       ) -> dict[str, float]:
    from sklearn.linear_model import Ridge

    from trial_image.data.splits import TEST_FRACTION

    season = about["season"]
    data = loaded(name, about, path, lookback=4 * season)
    rmse = lambda predicted: float(np.sqrt(np.mean((predicted - data.test.y) ** 2)))  # noqa: E731
    started = time.perf_counter()
    out = {"seasonal naive": rmse(data.test.x[:, -season]),
           "ridge on lags": rmse(Ridge().fit(data.train.x, data.train.y).predict(data.test.x))}
    out["ridge on lags seconds"] = time.perf_counter() - started
    values = np.loadtxt(path, skiprows=1, delimiter=",")
    test_from = round(len(values) * (1 - TEST_FRACTION))  # trial_image/data/series.py
    assert np.allclose(values[test_from:], data.test.y, rtol=1e-5), "another test split"
    np.savez(folder / f"{name}.npz", values=values, test_from=test_from, season=season)
    statistical = tools("forecast", folder / f"{name}.npz")
    out.update({"ETS": statistical["ets"], "ETS seconds": statistical["ets_seconds"],
                f"ARIMA{statistical['arima_order']}": statistical["arima"],
                "ARIMA seconds": statistical["arima_seconds"]})
    return out


def rocket_baseline(name: str, about: dict[str, Any], path: Path, folder: Path, seed: int
                    ) -> dict[str, float]:
    data = loaded(name, about, path)
    np.savez(folder / f"{name}-{seed}.npz", x=data.train.x, y=data.train.y, x_test=data.test.x,
             y_test=data.test.y, seed=seed)
    found = tools("rocket", folder / f"{name}-{seed}.npz")
    return {"MiniRocket": found["minirocket"], "MiniRocket seconds": found["minirocket_seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sets = tools("export", folder / "data")
        print(f"{args.trials} TPE trials, then --finalize (top 3, ensemble of up to 3; final "
              f"epochs {FINAL_EPOCHS}), per seed ({', '.join(map(str, args.seeds))}); the mean "
              "in bold ± stdev; accuracy: higher is better, RMSE: lower.\n")
        print("| set | measure | finalized network | best baseline | other baselines | "
              "network − best | bar met | ensemble chosen | nasflow s | baselines s |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        chosen = []
        for name, about in sets.items():
            if args.only and name not in args.only:
                continue
            path = folder / "data" / f"{name}.csv"
            ours = [run(manifest(name, about, path), name, seed, args.trials, folder,
                        FINAL_EPOCHS[about["kind"]]) for seed in args.seeds]
            if about["kind"] == "table":
                theirs = [table_baselines(loaded(name, about, path), seed)
                          for seed in args.seeds]
            elif about["kind"] == "forecast":
                theirs = [forecast_baselines(name, about, path, folder)] * len(args.seeds)
            else:
                theirs = [rocket_baseline(name, about, path, folder, seed)
                          for seed in args.seeds]
            print(row(name, about, ours, theirs), flush=True)
            print(json.dumps({"set": name, "ours": ours, "theirs": theirs}), file=sys.stderr,
                  flush=True)  # everything measured, for another table
            chosen += [(name, seed, r["final"]) for seed, r in zip(args.seeds, ours, strict=True)
                       if (r["final"].get("ensemble") or {}).get("chosen")]
        print("\nEnsembles chosen by the final stage: the ensemble's test measure against the "
              "winner's final model alone (the best single final model by validation)\n")
        print("| set | seed | members (weights) | ensemble | winner alone | parameters × | "
              "latency × |")
        print("|---|---|---|---|---|---|---|")
        for name, seed, final in chosen:
            e = final["ensemble"]
            weights = ", ".join(f"{w:.2f}" for w in e["weights"].values())
            print(f"| {name} | {seed} | {len(e['weights'])} ({weights}) | "
                  f"{final['test_score']:.4f} | {e['winner_test_score']:.4f} | "
                  f"{e['size_ratio']:.2f} | "
                  f"{e['latency_ratio']:.2f} |")


def row(name: str, about: dict[str, Any], ours: list[dict], theirs: list[dict]) -> str:
    regression = about["kind"] == "forecast" or about.get("task") == "regression"
    names = [k for k in theirs[0] if not k.endswith("seconds")]
    means = {k: statistics.fmean(t[k] for t in theirs) for k in names}
    best = (min if regression else max)(names, key=means.get)
    network = statistics.fmean(r["test"] for r in ours)
    if regression:
        gap = f"{(network / means[best] - 1) * 100:+.1f} % RMSE"
        met = network <= 1.02 * means[best]
    else:
        gap = f"{(network - means[best]) * 100:+.2f} points"
        met = network >= means[best] - 0.005
    chosen = sum(bool((r["final"].get("ensemble") or {}).get("chosen")) for r in ours)
    others = "; ".join(f"{k} {means[k]:.4f}" for k in names if k != best)
    baseline_seconds = statistics.fmean(sum(v for k, v in t.items() if k.endswith("seconds"))
                                        for t in theirs)
    return (f"| {name} | {'RMSE' if regression else 'accuracy'} | "
            f"{cell([r['test'] for r in ours])} | {best} {cell([t[best] for t in theirs])} | "
            f"{others} | {gap} | {'yes' if met else 'NO'} | {chosen}/{len(ours)} | "
            f"{statistics.fmean(r['seconds'] for r in ours):.0f} | {baseline_seconds:.1f} |")


if __name__ == "__main__":
    main()
