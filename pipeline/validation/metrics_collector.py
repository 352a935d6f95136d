"""``spec.metricsCollectorSpec``: Katib's rules once its defaulter filled in the defaults."""

from __future__ import annotations

import re
from typing import Any

from pipeline.katib.manifest import Problem

COLLECTORS = {"StdOut", "File", "TensorFlowEvent", "PrometheusMetric", "Custom", "Push"}
# where Katib's defaulter points a File or TensorFlowEvent collector without a source
DEFAULT_PATHS = {"File": "/var/log/katib/metrics.log", "TensorFlowEvent": "/var/log/katib/tfevent/"}


def check_metrics_collector(spec: Any, raw: dict[str, Any]) -> list[Problem]:
    """Katib's rules after its defaulter filled the collector's defaults (docs/katib.md §3)."""
    mc = spec.metrics_collector_spec
    if mc is None:
        return []
    base = "spec.metricsCollectorSpec"
    kind = mc.collector.kind if mc.collector and mc.collector.kind else "StdOut"
    if kind not in COLLECTORS:
        return [Problem(f"{base}.collector.kind",
                        f"must be one of {', '.join(sorted(COLLECTORS))}")]
    out = []
    source = mc.source
    path = source.file_system_path if source else None
    formats = (source.filter.metrics_format if source and source.filter else None) or []
    for i, fmt in enumerate(formats):
        try:
            groups = re.compile(fmt).groups
        except re.error as exc:
            out.append(Problem(f"{base}.source.filter.metricsFormat[{i}]", f"invalid regex: {exc}"))
            continue
        if groups < 2:
            out.append(Problem(f"{base}.source.filter.metricsFormat[{i}]",
                               "needs two capture groups: metric name and value"))
    where = f"{base}.source.fileSystemPath"
    if kind == "File":
        location = (path.path if path else None) or DEFAULT_PATHS["File"]
        if (path.kind if path else None) not in (None, "", "File"):
            out.append(Problem(f"{where}.kind", "must be File"))
        if not location.startswith("/"):
            out.append(Problem(f"{where}.path", "must be absolute"))
        fmt = (path.format if path else None) or "TEXT"
        if fmt not in ("TEXT", "JSON"):
            out.append(Problem(f"{where}.format", "must be TEXT or JSON"))
        if fmt == "JSON" and source.filter is not None:
            out.append(Problem(f"{base}.source.filter", "must be omitted with the JSON format"))
    if kind == "TensorFlowEvent":
        location = (path.path if path else None) or DEFAULT_PATHS["TensorFlowEvent"]
        if (path.kind if path else None) not in (None, "", "Directory"):
            out.append(Problem(f"{where}.kind", "must be Directory"))
        if not location.startswith("/"):
            out.append(Problem(f"{where}.path", "must be an absolute directory"))
        if path is not None and path.format:
            out.append(Problem(f"{where}.format", "must be empty"))
    if kind == "PrometheusMetric":
        http = ((raw.get("spec") or {}).get("metricsCollectorSpec") or {}).get(
            "source", {}).get("httpGet") or {}
        port = http.get("port", 8080)
        if not re.fullmatch(r"\d+", str(port)) or int(port) <= 0:
            out.append(Problem(f"{base}.source.httpGet.port",
                               f"must be a positive integer, got {port!r}"))
        if not str(http.get("path", "/metrics")).startswith("/"):
            out.append(Problem(f"{base}.source.httpGet.path", "must start with /"))
    if kind == "Custom":
        if mc.collector.custom_collector is None:
            out.append(Problem(f"{base}.collector.customCollector", "required for Custom"))
        if path is not None and (not (path.path or "").startswith("/")
                                 or path.kind not in ("Directory", "File")):
            out.append(Problem(where, "needs an absolute path and kind File or Directory"))
    return out


