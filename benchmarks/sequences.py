"""Texts and series: the searched and finalized network against the first things to try.

For the generated tickets (text classification) and the generated sensor series (forecasting
one hour ahead), and each seed, ``nasflow run manifests/experiments/sequences/tpe-<set>.yaml
--finalize`` runs as a user would. On the very same splits, fitted on training + validation:
tickets: TF-IDF of words and word pairs with a logistic regression (linear) and with gradient
boosting; sensor: the seasonal-naive forecast (the value 24 hours before the target, no
fitting), and a ridge regression and gradient boosting on the last 168 hours as lag features.

    .venv/bin/python benchmarks/sequences.py [--trials 12] [--seeds 0 1 2] [--only sensor]
"""

from __future__ import annotations

import contextlib
import io
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tabular import arguments, cell, search

SETS = {"tickets": "sequences/tpe-tickets.yaml", "sensor": "sequences/tpe-sensor.yaml"}
SEASON = 24  # hours
LAGS = 168  # a week of hourly values


def text_baselines(seed: int) -> dict[str, float]:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from trial_image.data import load

    with contextlib.redirect_stderr(io.StringIO()):  # the loader's line about the columns
        data = load("tickets").merged()
    words = TfidfVectorizer(ngram_range=(1, 2), min_df=2)
    x = words.fit_transform(data.train.columns["text"])
    x_test = words.transform(data.test.columns["text"])
    linear = LogisticRegression(max_iter=5000, C=10).fit(x, data.train.y)
    boosting = HistGradientBoostingClassifier(random_state=seed).fit(x.toarray(), data.train.y)
    return {"linear": float(np.mean(linear.predict(x_test) == data.test.y)),
            "boosting": float(np.mean(boosting.predict(x_test.toarray()) == data.test.y))}


def series_baselines(seed: int) -> dict[str, float]:
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import Ridge

    from trial_image.data import Window, load

    with contextlib.redirect_stderr(io.StringIO()):  # the loader's line about the windows
        data = load("sensor", window=Window(lookback=LAGS)).merged()

    def rmse(predicted: np.ndarray) -> float:
        return float(np.sqrt(np.mean((predicted - data.test.y) ** 2)))

    # horizon 1: a window holds hours t-168 … t-1 and its target is hour t; hour t-24 is at
    # position 168 - 24 of the window
    naive = data.test.x[:, LAGS - SEASON]
    linear = Ridge().fit(data.train.x, data.train.y)
    boosting = HistGradientBoostingRegressor(random_state=seed).fit(data.train.x, data.train.y)
    return {"seasonal": rmse(naive), "linear": rmse(linear.predict(data.test.x)),
            "boosting": rmse(boosting.predict(data.test.x))}


def main() -> None:
    args = arguments(__doc__.splitlines()[0], list(SETS))
    print("| set | measure | finalized network | linear model | gradient boosting | "
          "seasonal naive | search + final |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            ours = [search(SETS[name], seed, args.trials, Path(tmp)) for seed in args.seeds]
            baselines = text_baselines if name == "tickets" else series_baselines
            theirs = [baselines(seed) for seed in args.seeds]
            naive = cell([r["seasonal"] for r in theirs]) if name == "sensor" else "–"
            print(f"| {name} | {'accuracy' if name == 'tickets' else 'RMSE'} | "
                  f"{cell([r['test'] for r in ours])} | {cell([r['linear'] for r in theirs])} | "
                  f"{cell([r['boosting'] for r in theirs])} | {naive} | "
                  f"{statistics.fmean(r['seconds'] for r in ours):.0f} s |", flush=True)


if __name__ == "__main__":
    main()
