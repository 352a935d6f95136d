"""The real-data benchmark's other half, run in its own environment (``.venv/bench``: sktime
pins pandas < 3.1, which nasflow's TensorFlow environment has moved past):

* ``export DIR``: the real sets that ship inside packages (statsmodels' datasets, sktime's
  bundled UCR archive sets), written as nasflow reads them: tables as CSV with their target,
  series as one ``value`` column in time order, labelled series one a row (``label``, then the
  values); ``DIR/sets.json`` says what each is;
* ``forecast NPZ``: ETS and ARIMA (statsmodels), fitted on the values before the test split and
  forecasting each test value one step ahead (the state updated with the values before it, the
  parameters not refitted), as nasflow's windows do;
* ``rocket NPZ``: MiniRocket features and a ridge classifier (sktime) on the same split as
  nasflow's.

Each prints one JSON object. ``benchmarks/real_data.py`` calls them.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np


def export(folder: Path) -> None:
    import pandas as pd
    import statsmodels.api as sm
    from sktime.datasets import load_arrow_head, load_gunpoint, load_italy_power_demand

    folder.mkdir(parents=True, exist_ok=True)
    sets = {}

    def table(name: str, frame: pd.DataFrame, target: str, task: str, what: str) -> None:
        frame.to_csv(folder / f"{name}.csv", index=False)
        sets[name] = {"kind": "table", "task": task, "target": target, "rows": len(frame),
                      "what": what}

    fair = sm.datasets.fair.load_pandas().data
    fair["affair"] = np.where(fair.pop("affairs") > 0, "yes", "no")
    table("fair", fair, "affair", "classification",
          "statsmodels fair: 6,366 women (1974 survey), had an affair, 8 columns")
    anes = sm.datasets.anes96.load_pandas().data.drop(columns=["logpopul"])
    anes["vote"] = np.where(anes["vote"] > 0, "dole", "clinton")
    table("anes96", anes, "vote", "classification",
          "statsmodels anes96: 944 voters (1996), Clinton or Dole, 9 columns")
    star98 = sm.datasets.star98.load_pandas().data
    star = star98.iloc[:, 2:].assign(pass_rate=star98.iloc[:, 0] / star98.iloc[:, :2].sum(axis=1))
    table("star98", star, "pass_rate", "regression",
          "statsmodels star98: 303 California school districts, share above the math "
          "median, 18 columns")
    grunfeld = sm.datasets.grunfeld.load_pandas().data
    grunfeld["firm"] = grunfeld["firm"].astype(str)
    table("grunfeld", grunfeld, "invest", "regression",
          "statsmodels grunfeld: 220 firm-years, investment from value, capital, firm, year")
    randhie = sm.datasets.randhie.load_pandas().data
    table("randhie", randhie, "mdvis", "regression",
          "statsmodels randhie: 20,190 people (RAND health insurance experiment), doctor "
          "visits, 9 columns")

    def series(name: str, values: np.ndarray, season: int, what: str) -> None:
        pd.DataFrame({"value": values}).to_csv(folder / f"{name}.csv", index=False)
        sets[name] = {"kind": "forecast", "season": season, "rows": len(values), "what": what}

    co2 = sm.datasets.co2.load_pandas().data["co2"].resample("MS").mean().interpolate()
    series("co2", co2.to_numpy(), 12, "statsmodels co2: Mauna Loa CO₂, monthly means of the "
           "weekly record 1958-2001 (gaps interpolated)")
    sunspots = sm.datasets.sunspots.load_pandas().data["SUNACTIVITY"].to_numpy()
    series("sunspots", sunspots, 11, "statsmodels sunspots: yearly sunspot numbers 1700-2008")
    elnino = sm.datasets.elnino.load_pandas().data.drop(columns=["YEAR"]).to_numpy().ravel()
    series("elnino", elnino, 12, "statsmodels elnino: monthly sea surface temperature "
           "1950-2010")

    def labelled(name: str, loader, what: str) -> None:
        parts = [loader(split=split, return_type="numpy2D") for split in ("train", "test")]
        x = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        frame = pd.DataFrame(x, columns=[f"t{i}" for i in range(x.shape[1])])
        frame.insert(0, "label", [f"c{v}" for v in y])
        frame.to_csv(folder / f"{name}.csv", index=False)
        sets[name] = {"kind": "series-classification", "rows": len(frame), "what": what}

    labelled("gunpoint", load_gunpoint, "sktime GunPoint (UCR): 200 hand motions of 150 steps, "
             "gun drawn or pointed")
    labelled("arrowhead", load_arrow_head, "sktime ArrowHead (UCR): 211 arrowhead outlines of "
             "251 steps, 3 types")
    labelled("italypower", load_italy_power_demand, "sktime ItalyPowerDemand (UCR): 1,096 days "
             "of 24 hourly loads, winter or summer")
    (folder / "sets.json").write_text(json.dumps(sets, indent=1))
    print(json.dumps(sets))


def forecast(path: Path) -> dict[str, float]:
    """ETS (additive trend, additive season when there is one) and ARIMA (order by AIC over a
    small grid) one step ahead over the test values."""
    from statsmodels.tsa.arima.model import ARIMA
    from statsmodels.tsa.statespace.exponential_smoothing import ExponentialSmoothing

    data = np.load(path)
    values, test_from, season = data["values"].astype("float64"), int(data["test_from"]), \
        int(data["season"])
    history, truth = values[:test_from], values[test_from:]
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        started = time.perf_counter()
        ets = ExponentialSmoothing(history, trend=True, seasonal=season or None).fit(disp=False)
        predicted = ets.apply(values).fittedvalues[test_from:]
        out["ets"] = float(np.sqrt(np.mean((predicted - truth) ** 2)))
        out["ets_seconds"] = time.perf_counter() - started
        started = time.perf_counter()
        best = None
        for p in (0, 1, 2):
            for d in (0, 1):
                for q in (0, 1, 2):
                    try:
                        fitted = ARIMA(history, order=(p, d, q)).fit()
                    except (ValueError, np.linalg.LinAlgError):
                        continue
                    if best is None or fitted.aic < best.aic:
                        best = fitted
        predicted = best.apply(values).fittedvalues[test_from:]
        out["arima"] = float(np.sqrt(np.mean((predicted - truth) ** 2)))
        out["arima_order"] = str(best.model.order)
        out["arima_seconds"] = time.perf_counter() - started
    return out


def rocket(path: Path) -> dict[str, float]:
    """MiniRocket's 10,000 features and a ridge classifier with cross-validated strength (its
    authors' recipe), fitted on training + validation."""
    from sklearn.linear_model import RidgeClassifierCV
    from sklearn.preprocessing import StandardScaler
    from sktime.transformations.panel.rocket import MiniRocket

    data = np.load(path)
    started = time.perf_counter()
    # not a scikit-learn Pipeline: its callbacks do not know sktime's transformers
    rocket = MiniRocket(random_state=int(data["seed"])).fit(data["x"][:, None, :])
    scale = StandardScaler(with_mean=False)
    features = scale.fit_transform(rocket.transform(data["x"][:, None, :]))
    ridge = RidgeClassifierCV(alphas=np.logspace(-3, 3, 10)).fit(features, data["y"])
    test = scale.transform(rocket.transform(data["x_test"][:, None, :]))
    accuracy = float(np.mean(ridge.predict(test) == data["y_test"]))
    return {"minirocket": accuracy, "minirocket_seconds": time.perf_counter() - started}


if __name__ == "__main__":
    command, target = sys.argv[1], Path(sys.argv[2])
    if command == "export":
        export(target)
    else:
        print(json.dumps({"forecast": forecast, "rocket": rocket}[command](target)))
