"""Katib's literal value formats, shared by the ENAS and DARTS front ends.

Katib's suggestion services emit JSON (or a Python ``str()``) with every ``"`` replaced by ``'``.
The trial template wraps the value in literal double quotes; a ``sh -c`` wrapper (StdOut/File
collectors) strips them, an exec-form command (Push collector, the local engine) does not. So a
value may arrive with or without one layer of surrounding double quotes.
"""

from __future__ import annotations

import ast
from typing import Any

from trial_image.errors import InputError


def strip_outer_quotes(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].strip()
    return value


def parse_literal(value: str, flag: str) -> Any:
    """Parse a single-quoted JSON / Python literal as Katib emits it, without ``eval``."""
    text = strip_outer_quotes(value)
    try:
        # Katib's JSON uses null/true/false; Python's literal syntax uses None/True/False.
        return ast.literal_eval(
            text.replace("null", "None").replace("true", "True").replace("false", "False")
        )
    except (ValueError, SyntaxError) as exc:
        snippet = text if len(text) <= 60 else text[:57] + "..."
        raise InputError(
            f"{flag}: not a valid Katib value ({exc.__class__.__name__}): {snippet}") from None


def to_int(value: Any, what: str) -> int:
    """Katib sends categorical values as strings ('7') and int ranges as numbers."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what}: expected an integer, got {value!r}") from None
    if number != int(number):
        raise InputError(f"{what}: expected an integer, got {value!r}")
    return int(number)
