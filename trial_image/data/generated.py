"""The two generated sets, for the families scikit-learn bundles nothing real for. Seeded and
made in memory: the same rows on every machine, offline.

* ``tickets``: 2,000 support tickets in four classes (billing, login, shipping, cancellation),
  written from phrase templates with shared words, filler and misspellings, so that no single
  word gives the class away; one in ten is labelled with another team than its words name
  (about 0.93 is the best accuracy any model can reach);
* ``sensor``: 4,000 hourly readings of a sensor with a daily and a weekly cycle, a slow drift
  and autocorrelated noise (the series a seasonal-naive forecast is made for).
"""

from __future__ import annotations

import numpy as np

TICKET_CLASSES = ("billing", "login", "shipping", "cancellation")
_PHRASES = {
    "billing": ["I was charged twice for my {thing}", "the invoice shows the wrong amount",
                "why is there an extra fee on my {thing}", "refund the payment for my {thing}",
                "my card was billed after the trial", "the price on the bill is not what I agreed"],
    "login": ["I cannot sign in to my {thing}", "the password reset link does not work",
              "my account is locked after the update", "two factor code never arrives",
              "it says wrong password for my {thing}", "I am logged out every few minutes"],
    "shipping": ["my {thing} has not arrived yet", "the parcel was sent to the wrong address",
                 "tracking shows no update for a week", "the box arrived damaged",
                 "when will my {thing} be delivered", "the courier lost my order"],
    "cancellation": ["please cancel my {thing}", "I want to end my subscription",
                     "how do I close my account", "stop renewing my {thing}",
                     "I no longer need the {thing}, cancel it", "terminate the contract please"],
}
_THINGS = ["order", "account", "subscription", "plan", "package", "service", "membership"]
_FILLER = ["hello", "hi team", "thanks", "please help", "this is urgent", "again",
           "as soon as possible", "I already wrote yesterday", "best regards", "any news",
           "it is the second time", "on my phone", "since monday"]


def tickets(rows: int = 2000, seed: int = 11) -> tuple[list[str], list[str]]:
    """(texts, classes)."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(rows):
        label = TICKET_CLASSES[rng.integers(len(TICKET_CLASSES))]
        # a quarter of the tickets mention another class's phrase too: words overlap; one in
        # ten was routed to a team its words do not name (what triage data looks like), so no
        # model can be right on all of them
        other = TICKET_CLASSES[rng.integers(len(TICKET_CLASSES))]
        written = other if rng.random() < 0.1 else label
        parts = [str(rng.choice(_PHRASES[written]))]
        if rng.random() < 0.25:
            parts.append("also " + str(rng.choice(_PHRASES[other])))
        parts = [p.format(thing=str(rng.choice(_THINGS))) for p in parts]
        if rng.random() < 0.6:
            parts.insert(0, str(rng.choice(_FILLER)))
        if rng.random() < 0.6:
            parts.append(str(rng.choice(_FILLER)))
        words = " ".join(parts).split()
        for i in range(len(words)):  # misspellings: a dropped letter in 5 % of the words
            if len(words[i]) > 3 and rng.random() < 0.05:
                cut = int(rng.integers(len(words[i])))
                words[i] = words[i][:cut] + words[i][cut + 1:]
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


def sensor(points: int = 4000, seed: int = 5) -> np.ndarray:
    """Hourly values: a daily and a weekly cycle, a drift, AR(1) noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(points, dtype="float64")
    noise = np.zeros(points)
    for i in range(1, points):
        noise[i] = 0.7 * noise[i - 1] + rng.normal(0, 0.6)
    return (20 + 5 * np.sin(2 * np.pi * t / 24) + 2 * np.sin(2 * np.pi * t / 168)
            + 0.001 * t + noise).astype("float32")
