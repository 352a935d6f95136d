"""Records what Katib v0.19.0 writes, on the development cluster, into
tests/data/katib/recorded/ (``make cluster-up``, then ``.venv/bin/python -m tests.e2e.record``).

Three small experiments of manifests/experiments/, run at once, give every trial outcome the fast
tests rely on: ``random-digits`` (3 trials; the first trial's pod is deleted mid-run: Failed,
then two Succeeded), ``asha-digits`` (4 trials: EarlyStopped ones) and ``random-digits`` with a
collector filter no line matches (MetricsUnavailable). Each object is written as the API server
returns it, less ``managedFields``."""

from __future__ import annotations

import json
import subprocess
import time

import yaml

from tests.conftest import ROOT
from tests.e2e.conftest import Cluster, experiment

OUT = ROOT / "tests" / "data" / "katib" / "recorded"


def _get(cluster: Cluster, kind: str, name: str | None = None, selector: str | None = None):
    argv = ["-n", cluster.namespace, "get", kind, *([name] if name else []), "-o", "json"]
    if selector:
        argv += ["-l", selector]
    found = json.loads(cluster.kubectl(*argv).stdout)
    for item in found.get("items", [found]):
        item["metadata"].pop("managedFields", None)
    return found.get("items", found)


def _finished(cluster: Cluster, name: str) -> bool:
    conditions = _get(cluster, "experiment", name)["status"].get("conditions", [])
    return any(c["type"] in ("Succeeded", "Failed") and c["status"] == "True"
               for c in conditions)


def main() -> None:
    from devcluster.host_services import MLFLOW_PORT
    from devcluster.layout import HOST_IP, KUBECONFIG

    cluster = Cluster(KUBECONFIG, f"http://{HOST_IP}:{MLFLOW_PORT}")
    failed = experiment("random-digits.yaml", trials=3, parallel=1, failures=2, epochs=4)
    stopped = experiment("asha-digits.yaml", trials=4, parallel=1, epochs=3)
    unavailable = experiment("random-digits.yaml", trials=1, parallel=1, failures=1)
    unavailable["spec"]["metricsCollectorSpec"] = {
        "collector": {"kind": "StdOut"},
        "source": {"filter": {"metricsFormat": ["([\\w-]+)==([+-]?\\d+(?:\\.\\d+)?)"]}}}
    bodies = {"failed": failed, "early-stopped": stopped, "metrics-unavailable": unavailable}
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(bodies.values()))
    name = failed["metadata"]["name"]
    snapshots: dict[str, object] = {}
    deleted = False
    while not all(_finished(cluster, b["metadata"]["name"]) for b in bodies.values()):
        pods = _get(cluster, "pods", selector="batch.kubernetes.io/job-name")
        running = [p for p in pods if p["status"].get("phase") == "Running" and p["metadata"]
                   ["labels"]["batch.kubernetes.io/job-name"].startswith(f"{name}-")]
        if running and not deleted:
            time.sleep(8)  # into its first epochs
            snapshots["experiment-running"] = _get(cluster, "experiment", name)
            cluster.kubectl("-n", cluster.namespace, "delete", "pod",
                            running[0]["metadata"]["name"], "--wait=false")
            deleted = True
        time.sleep(2)
    OUT.mkdir(parents=True, exist_ok=True)
    for key, body in bodies.items():
        exp = body["metadata"]["name"]
        recorded = {"experiment": _get(cluster, "experiment", exp),
                    "trials": _get(cluster, "trials",
                                   selector=f"katib.kubeflow.org/experiment={exp}"),
                    "suggestion": _get(cluster, "suggestion", exp)}
        if key == "failed":
            recorded["experimentRunning"] = snapshots["experiment-running"]
        header = (f"# Recorded from Katib v0.19.0 on the development cluster by "
                  f"tests/e2e/record.py ({time.strftime('%Y-%m-%d')}): {key}\n")
        (OUT / f"{key}.yaml").write_text(header + yaml.safe_dump(recorded, sort_keys=False))
    subprocess.run(["git", "status", "--short", str(OUT)], cwd=ROOT, check=False)


if __name__ == "__main__":
    main()
