"""Katib's literal value formats, shared by the ENAS and DARTS front ends.

Katib's suggestion services emit JSON (or a Python ``str()``) with every ``"`` replaced by ``'``.
The trial template wraps the value in literal double quotes; a ``sh -c`` wrapper (StdOut/File
collectors) strips them, an exec-form command (Push collector, the local engine) does not. So a
value may arrive with or without one layer of surrounding double quotes.
"""

from __future__ import annotations

import ast
import math
from typing import Any

from trial_image.errors import InputError
from trial_image.numbers import parse_number


def strip_outer_quotes(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].strip()
    return value


MAX_TEXT = 1 << 20  # characters of an architecture, a configuration, a genotype
MAX_NESTING = 64  # brackets within brackets
MAX_OPERATORS = 1000  # unary and binary operators: none of Katib's strings needs many


def literal_tree(text: str, flag: str, mode: str = "eval") -> ast.AST:
    """``text`` parsed by Python's parser, refused first where the parser would recurse or
    allocate without bound (60,000 ``-`` in a row, 30,000 ``1+``, brackets nested 10,000
    deep)."""
    if len(text) > MAX_TEXT:
        raise InputError(f"{flag}: {len(text)} characters; at most {MAX_TEXT}")
    depth = deepest = 0
    for char in text:
        depth += char in "([{"
        depth -= char in ")]}"
        deepest = max(deepest, depth)
    if deepest > MAX_NESTING:
        raise InputError(f"{flag}: brackets nested {deepest} deep; at most {MAX_NESTING}")
    if sum(text.count(op) for op in "+-*/~") > MAX_OPERATORS:
        raise InputError(f"{flag}: more than {MAX_OPERATORS} operators (+, -, *, /, ~): not "
                         "one of Katib's values")
    try:
        return ast.parse(text, mode=mode)
    except (RecursionError, MemoryError):
        raise InputError(f"{flag}: too deeply nested to read") from None


def parse_literal(value: str, flag: str) -> Any:
    """Parse a single-quoted JSON / Python literal as Katib emits it, without ``eval``."""
    text = strip_outer_quotes(value)
    try:
        # Katib's JSON uses null/true/false; Python's literal syntax uses None/True/False.
        return ast.literal_eval(literal_tree(
            text.replace("null", "None").replace("true", "True").replace("false", "False"),
            flag).body)
    except (ValueError, SyntaxError) as exc:
        snippet = text if len(text) <= 60 else text[:57] + "..."
        raise InputError(
            f"{flag}: not a valid Katib value ({exc.__class__.__name__}): {snippet}") from None


def to_int(value: Any, what: str) -> int:
    """Katib sends categorical values as strings ('7') and int ranges as numbers ('7.0' too);
    ASCII, finite and at most 2**31 (larger counts nothing a trial can hold)."""
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else parse_number(str(value)[:41])
    if number is None or not math.isfinite(number) or number != int(number):
        raise InputError(f"{what}: expected an integer, got {str(value)[:40]!r}")
    if abs(number) > 2**31:
        raise InputError(f"{what}: {str(value)[:40]!r} is too large")
    return int(number)
