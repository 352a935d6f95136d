"""Which split an example belongs to, decided by its identity alone.

Retraining runs on a growing dataset, and champion and challenger are compared on the test split,
so an example must never change split when others are added. Each example's identity (its path
relative to the dataset root, or its record key) is hashed to a number ``u`` in [0, 1):

* ``u < test``                                  → test
* ``u < test + (1 − test) × validation``        → validation
* otherwise                                     → train

``test`` is :data:`TEST_FRACTION` unless the data brings its own test split (a ``test/`` folder,
``test-*`` shards), then 0; ``validation`` is the trial's ``--validation-split`` unless the data
brings its own validation split, then 0. Changing ``--validation-split`` never moves a test
example; adding files never moves anything; nothing else needs to be listed to decide.
"""

from __future__ import annotations

import hashlib

TEST_FRACTION = 0.2
SPLITS = ("train", "validation", "test")


def position(identity: str) -> float:
    """The example's stable place in [0, 1): the first 8 bytes of SHA-256 of its identity."""
    digest = hashlib.sha256(identity.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def assign(identity: str, test: float, validation: float) -> str:
    return place(position(identity), test, validation)


def place(u: float, test: float, validation: float) -> str:
    """The split of the example at position ``u``."""
    if u < test:
        return "test"
    if u < test + (1 - test) * validation:
        return "validation"
    return "train"
