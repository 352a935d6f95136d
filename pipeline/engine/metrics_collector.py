"""Katib's StdOut and File metrics collectors, re-implemented with their parsing rules.

* TEXT (StdOut and File/TEXT): a line is considered only if it contains one of the wanted
  metric names; if its first space-separated token parses as RFC3339 it is the timestamp; every
  match of every filter regex (group 1 = name, group 2 = value) whose name is wanted is an
  observation. Values stay strings (DARTS reports a genotype).
* JSON (File/JSON): one object per line; only string values count (Katib's Go code type-asserts
  ``string``); ``timestamp`` is RFC3339 or epoch seconds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

DEFAULT_FILTER = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
UNSET_TIME = datetime(1, 1, 1, tzinfo=UTC)


def now_rfc3339() -> str:
    """Now, in the timestamp format Katib (and Kubernetes) write and this collector reads."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def metric_strategy(objective: Any, metric: str) -> str:
    """Which of a metric's min/max/latest is its value (Katib's experiment defaults): the
    objective's ``metricStrategies`` entry, else max for a maximize objective and min for a
    minimize one; Katib gives additional metrics the objective's default too."""
    for strategy in objective.metric_strategies or []:
        if strategy.name == metric:
            return strategy.value
    return "max" if objective.type == "maximize" else "min"


@dataclass(frozen=True)
class Observation:
    name: str
    value: str
    timestamp: datetime


def _rfc3339(token: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(token.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None and "T" in token else None


def parse_text(lines: Iterable[str], metric_names: Iterable[str],
               filters: Iterable[str] | None = None) -> list[Observation]:
    names = set(metric_names)
    regexes = [re.compile(f) for f in (filters or [DEFAULT_FILTER])]
    observations = []
    for line in lines:
        if not any(name in line for name in names):
            continue
        first = line.split(" ", 1)[0]
        stamp = _rfc3339(first) or UNSET_TIME
        for regex in regexes:
            for match in regex.finditer(line):
                name, value = match.group(1).strip(), match.group(2).strip()
                if name in names:
                    observations.append(Observation(name, value, stamp))
    return observations


def parse_json(lines: Iterable[str], metric_names: Iterable[str]) -> list[Observation]:
    names = set(metric_names)
    observations = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict):
            continue
        raw = record.get("timestamp")
        if isinstance(raw, int | float):
            stamp = datetime.fromtimestamp(raw, UTC)
        elif isinstance(raw, str):
            stamp = _rfc3339(raw) or UNSET_TIME
        else:
            stamp = UNSET_TIME
        observations.extend(Observation(name, value, stamp) for name, value in record.items()
                            if name in names and isinstance(value, str))
    return observations
