"""Katib's file metrics collector (StdOut and File), re-implemented with its parsing rules.

:func:`collect` is Katib's ``CollectObservationLog`` (docs/katib.md §3): the StdOut collector
parses the trial's merged output as TEXT, the File collector its file as TEXT or JSON.

* TEXT: a line is considered only if it contains one of the metric names; if its first
  space-separated token parses as RFC3339 it is the timestamp; every match of every filter regex
  (group 1 = name, group 2 = value, ``\\w`` ASCII as in Go) whose name is a metric is an
  observation. Values stay strings (DARTS reports a genotype).
* JSON: one object per line; only string values count; ``timestamp`` is RFC3339 or epoch seconds,
  whose fraction Katib reads as a count of nanoseconds (1638422847.28721 → .000028721).
* A missing file, an unknown format or a line that is not JSON is a :class:`CollectorError` (the
  trial fails); an objective never reported becomes one ``unavailable`` observation.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

DEFAULT_FILTER = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
UNSET_TIME = "0001-01-01T00:00:00Z"
UNAVAILABLE = "unavailable"
FORMATS = ("TEXT", "JSON")
_RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")


class CollectorError(Exception):
    """Katib's collector gives up on the trial's metrics (the trial fails)."""


@dataclass(frozen=True)
class Observation:
    name: str
    value: str
    timestamp: str  # RFC3339, as Katib stores it

    @property
    def order(self) -> tuple[datetime, int]:
        """The timestamp as (second, nanosecond), for Katib's ``ORDER BY time``."""
        match = _RFC3339.match(self.timestamp)
        zone = match[3].replace("Z", "+00:00")
        second = datetime.fromisoformat(match[1] + zone).astimezone(UTC)
        return second, int((match[2] or ".0")[1:].ljust(9, "0"))


def _valid_time(text: str) -> bool:
    if not _RFC3339.match(text):
        return False
    try:
        Observation("", "", text).order  # noqa: B018 - month 13 and the like
    except ValueError:
        return False
    return True


def _epoch(seconds: float) -> str:
    """Katib's reading of a JSON number: integer part = seconds, fraction digits = nanoseconds."""
    whole, _, fraction = format(Decimal(repr(float(seconds))), "f").partition(".")
    nanos = int(fraction) if fraction.isdigit() else 0
    stamp = datetime.fromtimestamp(int(whole) + nanos // 10**9, UTC)
    digits = f"{nanos % 10**9:09d}".rstrip("0")
    return stamp.strftime("%Y-%m-%dT%H:%M:%S") + (f".{digits}" if digits else "") + "Z"


def observable(value: str) -> bool:
    """Is ``value`` an observation? Not Katib's ``unavailable``, not an empty match, not NaN or
    infinity (a diverged trial's ``Validation-Accuracy=nan`` must never become optimal). Text that
    is not a number (a DARTS genotype) is an observation."""
    if value in ("", UNAVAILABLE):
        return False
    try:
        return math.isfinite(float(value))
    except ValueError:
        return True


def parse_text(lines: Iterable[str], metrics: list[str],
               filters: Iterable[str] | None = None) -> list[Observation]:
    regexes = [re.compile(f, re.ASCII) for f in (filters or [DEFAULT_FILTER])]
    observations = []
    for line in lines:
        if not any(name in line for name in metrics):
            continue
        first, space, _ = line.partition(" ")
        stamp = first if space and _valid_time(first) else UNSET_TIME
        for regex in regexes:
            for match in regex.finditer(line):
                if regex.groups < 2:
                    continue
                name, value = match.group(1).strip(), (match.group(2) or "").strip()
                if name in metrics:
                    observations.append(Observation(name, value, stamp))
    return observations


def parse_json(lines: Iterable[str], metrics: list[str]) -> list[Observation]:
    observations = []
    for line in lines:
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CollectorError(f"failed to parse the json object: {exc}") from None
        if not isinstance(record, dict):
            raise CollectorError("failed to parse the json object: not an object")
        raw = record.get("timestamp")
        if isinstance(raw, str) and _valid_time(raw):
            stamp = raw
        elif isinstance(raw, int | float) and not isinstance(raw, bool):
            stamp = _epoch(raw)
        else:
            stamp = UNSET_TIME
        observations.extend(Observation(m, record[m], stamp) for m in metrics
                            if isinstance(record.get(m), str))
    return observations


def collect(path: Path, metrics: list[str], filters: Iterable[str] | None = None,
            fmt: str = "TEXT") -> list[Observation]:
    """Katib's ``CollectObservationLog``: ``metrics[0]`` is the objective."""
    if fmt not in FORMATS:
        raise CollectorError(f"format must be set {' or '.join(FORMATS)}")
    try:
        lines = path.read_text(errors="replace").split("\n")
    except OSError as exc:
        raise CollectorError(f"failed to open the file {path.name}: {exc.strerror}") from None
    found = parse_json(lines, metrics) if fmt == "JSON" else parse_text(lines, metrics, filters)
    if not any(o.name == metrics[0] for o in found):
        return [Observation(metrics[0], UNAVAILABLE, UNSET_TIME)]
    return found
