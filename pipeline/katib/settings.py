"""One ``algorithmSettings`` entry of a Suggestion or EarlyStopping algorithm: its type and
allowed range, checked as Katib's services check them (``nasflow validate``, the services'
``Validate*Settings``), and described for the README's tables."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

INT32_MAX = 2**31 - 1  # every numeric setting stays within Katib's int32 counts


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
        wanted = "must be an integer" if self.kind == "int" else "must be a number"
        if not value.isascii():  # Python would read '٣' as 3; Katib's services would not
            return f"{wanted} (ASCII digits)"
        try:
            x = number(value)
        except ValueError:
            return wanted
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
