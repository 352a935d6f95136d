"""A generated customer table with what real tables have: numbers and text, integer codes that
are categories, missing values in both, and a target that depends on them (churn, or a monthly
bill for regression). Seeded: the same rows every time."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def customers(rows: int = 1200, seed: int = 7) -> pandas.DataFrame:  # noqa: F821
    import pandas as pd

    rng = np.random.default_rng(seed)
    age = rng.normal(45, 12, rows).round(0)
    tenure = rng.exponential(24, rows).round(1)
    plan = rng.choice(["basic", "plus", "premium"], rows, p=[0.5, 0.3, 0.2])
    region = rng.integers(1, 6, rows)
    calls = rng.poisson(2, rows)
    bill = (20 + 15 * (plan == "plus") + 40 * (plan == "premium") + 0.3 * tenure
            + 4 * (region == 3) + rng.normal(0, 3, rows)).round(2)
    risk = 1.2 * (calls > 3) - 0.04 * tenure + 0.8 * (plan == "basic") + 0.6 * (region == 5) - 0.2
    churn = np.where(rng.random(rows) < 1 / (1 + np.exp(-3 * risk)), "yes", "no")
    frame = pd.DataFrame({"age": age, "tenure_months": tenure, "plan": plan, "region": region,
                          "support_calls": calls, "monthly_bill": bill, "churn": churn})
    frame.loc[rng.random(rows) < 0.08, "age"] = np.nan
    frame["plan"] = frame["plan"].astype(object)
    frame.loc[rng.random(rows) < 0.05, "plan"] = None
    return frame


def write_customers(folder: Path, rows: int = 1200) -> Path:
    path = folder / "customers.csv"
    customers(rows).to_csv(path, index=False)
    return path
