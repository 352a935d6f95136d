"""Numbers read from people: flags, settings, environment variables. A number is ASCII (``٣`` is
not 3), finite, and inside the range that makes sense for what it counts, so that ``nan``,
``1e300`` or a negative count is refused as bad input, naming the field, before anything runs.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def number(low: float, high: float, integer: bool = False, low_open: bool = False,
           high_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in [low, high] (``low_open``/``high_open``: that end
    excluded); argparse names the flag in its error (exit 2)."""

    def parse(text: str) -> float:
        value = parse_number(text, integer)
        if value is None:
            raise argparse.ArgumentTypeError(
                f"{text[:40]!r} is not {'an integer' if integer else 'a finite number'}")
        if not (low < value if low_open else low <= value) or \
                not (value < high if high_open else value <= high):
            raise argparse.ArgumentTypeError(
                f"{text[:40]!r} is not in {'(' if low_open else '['}{exact(low)}, "
                f"{exact(high)}{')' if high_open else ']'}")
        return value

    parse.__name__ = "integer" if integer else "number"  # argparse names the type in errors
    return parse


def parse_number(text: str, integer: bool = False) -> float | None:
    """``text`` as an ASCII, finite number (an integer: digits only); None if it is not one."""
    text = str(text).strip()
    if not text.isascii() or len(text) > 40:
        return None
    if integer:
        return int(text) if re.fullmatch(r"[+-]?[0-9]+", text) else None
    if not DECIMAL.fullmatch(text):  # no nan, inf, 1_000 or 0x10: what float() also reads
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def exact(bound: float) -> str:
    """A bound as written, not rounded (2**32 - 1, not 4.29497e+09)."""
    return str(int(bound)) if float(bound).is_integer() and abs(bound) < 1e16 else f"{bound:g}"
