"""What an algorithm declares next to its code, and the one table of every declared algorithm.

An algorithm module ends with ``ALGORITHMS = (Algorithm(...), ...)``: the Katib
``algorithmName`` it serves, its ``algorithmSettings`` (:class:`Setting`), which space it searches,
the trial parameters it assigns (NAS), extra manifest checks and its :class:`Suggestion` class.
``nasflow validate``, :func:`pipeline.suggestion.create`, ``nasflow space``, the README's table and
the conformance suite read :func:`algorithms`; adding an algorithm is one module listed in
:data:`MODULES` (or, in a test, one :func:`register` call).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline.katib.manifest import Problem
from pipeline.suggestion.base import Suggestion

INT32_MAX = 2**31 - 1  # every numeric setting stays within Katib's int32 counts
# The algorithm modules, in the order ``validate`` lists the algorithms it knows.
MODULES = ("optuna_samplers", "hyperband", "pbt", "enas", "darts", "evolution")


@dataclass(frozen=True)
class Setting:
    """One ``algorithmSettings`` entry: its type and allowed range, as Katib's service checks."""

    kind: Literal["int", "float", "choice", "text"]
    default: str = ""  # what applies when omitted (documentation; "" = the library's own)
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # the bound itself is excluded
    high_open: bool = False
    choices: tuple[str, ...] = ()
    none_ok: bool = False  # "None" is accepted (Katib's services read it as unset)
    required: bool = False
    nasflow_only: bool = False  # nasflow's extension; Katib's service passes it through
    # The value the embedded engine's implementation matches; any other value is accepted for
    # Katib and ignored by ``nasflow run`` (None: every value is ignored). Unset: honoured.
    honoured: str | Literal["all"] | None = "all"

    def check(self, value: str) -> str | None:
        """Why ``value`` is not allowed (None: it is)."""
        if self.kind == "text" or (self.none_ok and value == "None"):
            return None
        if self.kind == "choice":
            return None if value in self.choices else f"must be one of {', '.join(self.choices)}"
        number: Callable[[str], float] = int if self.kind == "int" else float
        try:
            x = number(value)
        except ValueError:
            return "must be an integer" if self.kind == "int" else "must be a number"
        if isinstance(x, float) and not math.isfinite(x):
            return "must be a finite number"
        if self.high is None and abs(x) > INT32_MAX:  # no setting needs more
            return f"must be between -{INT32_MAX} and {INT32_MAX}"
        if self.low is not None and (x <= self.low if self.low_open else x < self.low):
            return f"must be {'>' if self.low_open else '>='} {_bound(self.low)}"
        if self.high is not None and (x >= self.high if self.high_open else x > self.high):
            return f"must be {'<' if self.high_open else '<='} {_bound(self.high)}"
        return None

    def describe(self) -> str:
        """``int >= 1, default 3``, ``GP / RF``..., for the README's table."""
        if self.kind == "choice":
            text = " / ".join(self.choices)
        else:
            text = {"int": "int", "float": "number", "text": "text"}[self.kind]
            bounds = []
            if self.low is not None:
                bounds.append(f"{'>' if self.low_open else '>='} {_bound(self.low)}")
            if self.high is not None:
                bounds.append(f"{'<' if self.high_open else '<='} {_bound(self.high)}")
            text += " " + ", ".join(bounds) if bounds else ""
            text += " or None" if self.none_ok else ""
        notes = [f"default {self.default}" if self.default else "",
                 "required" if self.required else "",
                 "nasflow's extension" if self.nasflow_only else "",
                 "" if self.honoured == "all" else "ignored by nasflow run" if self.honoured is None
                 else f"nasflow run: {self.honoured} only"]
        return ", ".join([text, *filter(None, notes)])


def _bound(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


ManifestCheck = Callable[[Any, Mapping[str, str]], list[Problem]]


@dataclass(frozen=True)
class Algorithm:
    """One Katib ``algorithmName`` and everything nasflow knows about it."""

    name: str
    summary: str  # one line for the README's table
    settings: Mapping[str, Setting]
    suggestion: type[Suggestion] | None  # None: the embedded engine cannot run it
    space: Literal["parameters", "nas", "either"] = "parameters"
    outputs: frozenset[str] = frozenset()  # the trial-parameter references a NAS algorithm sets
    katib: bool = True  # False: nasflow's own, Katib ships no service for it
    local_limit: str = ""  # why the embedded engine cannot run it (with ``suggestion=None``)
    ignored_note: str = ""  # what the engine does instead of the settings it ignores
    passes_unknown_settings: bool = False  # Katib's service hands unknown names to the trial
    checks: tuple[ManifestCheck, ...] = ()  # extra checks Katib's service makes at start
    # seconds a trial costs beyond its training epochs (``nasflow space``'s estimate)
    trial_overhead: Callable[[Mapping[str, str]], float] = field(default=lambda settings: 0.0)

    def ignored(self, settings: Mapping[str, str]) -> list[str]:
        """``name=value`` of the given settings the embedded engine accepts but ignores."""
        return [f"{name}={value}" for name, value in settings.items()
                if (s := self.settings.get(name)) is not None and s.honoured != "all"
                and value != s.honoured]


_registry: dict[str, Algorithm] = {}


def register(algorithm: Algorithm) -> None:
    """Add an algorithm (the modules of :data:`MODULES` are registered on first use)."""
    algorithms()[algorithm.name] = algorithm


def unregister(name: str) -> None:
    del algorithms()[name]


def algorithms() -> dict[str, Algorithm]:
    """Every declared algorithm by Katib's ``algorithmName``, in :data:`MODULES` order."""
    if not _registry:
        for module in MODULES:
            for algorithm in importlib.import_module(f"pipeline.suggestion.{module}").ALGORITHMS:
                _registry[algorithm.name] = algorithm
    return _registry


def markdown_table() -> str:
    """The README's algorithm table (``tests/test_registry.py`` keeps the README equal to it)."""
    rows = ["| algorithmName | engines | settings | what it is |", "|---|---|---|---|"]
    for a in algorithms().values():
        engines = " + ".join(e for e, ok in (("Katib", a.katib),
                                              ("nasflow run", a.suggestion is not None)) if ok)
        settings = "; ".join(f"`{n}` {s.describe()}" for n, s in a.settings.items()) or "none"
        rows.append(f"| `{a.name}` | {engines} | {settings} | {a.summary} |")
    return "\n".join(rows)

