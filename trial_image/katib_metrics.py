"""Reporting metrics the way Katib's collectors read them.

StdOut collector: one ``<RFC3339 timestamp> <name>=<value>`` line per metric, which Katib's default
filter ``([\\w|-]+)\\s*=\\s*([+-]?\\d*(\\.\\d+)?([Ee][+-]?\\d+)?)`` parses; the leading timestamp
orders the observations (without one they all tie at 0001-01-01). File collector: the same lines
(``TEXT``) or one JSON object per report whose values are strings, as Katib's JSON reader
requires (``JSON``).
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

FORMATS = ("text", "json")


class MetricsReporter:
    def __init__(self, metrics_file: Path | None = None, fmt: str = "text") -> None:
        self.metrics_file = metrics_file
        self.fmt = fmt
        if metrics_file is not None:
            metrics_file.parent.mkdir(parents=True, exist_ok=True)

    def report(self, metrics: dict[str, float | str]) -> None:
        """Numbers as ``repr(float)``; strings (a DARTS genotype) as they are."""
        now = time.time()
        stamp = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")
        stamp = stamp.replace("+00:00", "Z")
        values = {name: v if isinstance(v, str) else repr(float(v)) for name, v in metrics.items()}
        lines = [f"{stamp} {name}={value}" for name, value in values.items()]
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
        if self.metrics_file is None:
            return
        if self.fmt == "json":
            record: dict[str, object] = dict(values)
            record["timestamp"] = now
            lines = [json.dumps(record)]
        with self.metrics_file.open("a") as f:
            f.write("\n".join(lines) + "\n")
