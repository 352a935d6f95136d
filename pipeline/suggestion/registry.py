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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline.katib.manifest import Problem
from pipeline.katib.settings import Setting
from pipeline.suggestion.base import Suggestion

# The algorithm modules, in the order ``validate`` lists the algorithms it knows.
MODULES = ("optuna_samplers", "hyperband", "pbt", "enas", "darts", "evolution")


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

