"""What runs on the host beside the control plane: PostgreSQL for Katib's DB manager (Debian's
server, as the team-MLflow tests run it) and the MLflow server the trials log to. Pods reach
each through a Service without a selector whose EndpointSlice is the host's bridge address,
the way a cluster names a server that lives outside it."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path

from devcluster import processes
from devcluster.kubectl import kubectl
from devcluster.layout import HOST_IP, RUN, VENV

POSTGRES_PORT = 5432
MLFLOW_PORT = 5000
# Katib's own install's values (katib-postgres-secrets): a throwaway database that listens on
# the bridge address only, reachable from this machine's pods alone.
KATIB_DB = "katib"
# The names pods use for MLflow (manifests/base's ConfigMap): MLflow checks the Host header
MLFLOW_NAMES = ("mlflow.nasflow-system.svc.cluster.local", "mlflow.nasflow-system.svc",
                "mlflow.nasflow-system")


def endpoint_slice(service: str, namespace: str, port: int, port_name: str) -> str:
    return f"""\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {service}-host
  namespace: {namespace}
  labels:
    kubernetes.io/service-name: {service}
    endpointslice.kubernetes.io/managed-by: devcluster.nasflow
addressType: IPv4
ports:
  - {{name: {port_name}, port: {port}, protocol: TCP}}
endpoints:
  - addresses: ["{HOST_IP}"]
    conditions: {{ready: true}}
"""


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise FileNotFoundError("PostgreSQL's server (apt-get install postgresql) is needed for "
                                "Katib's DB manager: make postgresql")
    return Path(found[-1]).parent


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def start_postgres() -> None:
    """Katib's database. Its folder is a private one under the system's temporary folder (the
    checkout's may not be reachable by the ``postgres`` user), named in ``run/postgres``."""
    folder = Path(tempfile.mkdtemp(prefix="nasflow-devcluster-pg-"))
    RUN.joinpath("postgres-folder").write_text(str(folder))
    if os.geteuid() == 0:
        ids = pwd.getpwnam("postgres")
        os.chown(folder, ids.pw_uid, ids.pw_gid)
    secret = folder / "pw"
    secret.write_text(KATIB_DB)
    if os.geteuid() == 0:
        os.chown(secret, pwd.getpwnam("postgres").pw_uid, -1)
    binaries = _postgres_bin()
    subprocess.run(_as_postgres([str(binaries / "initdb"), "-D", str(folder / "data"), "-U",
                                 KATIB_DB, "--auth-host=scram-sha-256", "--auth-local=peer",
                                 f"--pwfile={secret}"]), check=True, capture_output=True)
    secret.unlink()
    with open(folder / "data" / "pg_hba.conf", "a") as hba:
        hba.write(f"host all all {HOST_IP.rsplit('.', 1)[0]}.0/24 scram-sha-256\n")
    processes.start("postgres", _as_postgres([
        str(binaries / "postgres"), "-D", str(folder / "data"), "-h", HOST_IP, "-p",
        str(POSTGRES_PORT), "-k", str(folder), "-c", "fsync=off"]))
    tcp = ["-h", HOST_IP, "-p", str(POSTGRES_PORT), "-U", KATIB_DB]
    processes.wait_until("postgres", lambda: subprocess.run(
        [str(binaries / "pg_isready"), *tcp], capture_output=True).returncode == 0, timeout=60)
    subprocess.run([str(binaries / "createdb"), *tcp, KATIB_DB], check=True,
                   capture_output=True, env={**os.environ, "PGPASSWORD": KATIB_DB})


def remove_postgres_folder() -> None:
    record = RUN / "postgres-folder"
    if record.exists():
        shutil.rmtree(record.read_text().strip(), ignore_errors=True)


def start_mlflow() -> str:
    """MLflow with a SQLite store and proxied artifacts under ``run/mlflow``; its URI here."""
    folder = RUN / "mlflow"
    folder.mkdir(parents=True, exist_ok=True)
    processes.start("mlflow", [
        VENV / "bin" / "mlflow", "server", "--host", HOST_IP, "--port", str(MLFLOW_PORT),
        "--workers", "1", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination", folder / "artifacts", "--allowed-hosts", ",".join(
            f"{host}{port}" for host in (HOST_IP, *MLFLOW_NAMES)
            for port in ("", f":{MLFLOW_PORT}"))],
        env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_TRACKING_URI": ""})
    uri = f"http://{HOST_IP}:{MLFLOW_PORT}"
    processes.wait_until("mlflow", lambda: urllib.request.urlopen(
        f"{uri}/health", timeout=2).status == 200, timeout=120)
    return uri


def expose_mlflow() -> None:
    """Service ``mlflow`` of ``nasflow-system`` (manifests/base's ConfigMap names it) at the
    host's MLflow."""
    service = f"""\
apiVersion: v1
kind: Service
metadata: {{name: mlflow, namespace: nasflow-system}}
spec:
  ports: [{{name: http, port: {MLFLOW_PORT}, protocol: TCP}}]
---
{endpoint_slice("mlflow", "nasflow-system", MLFLOW_PORT, "http")}"""
    kubectl("apply", "-f", "-", stdin=service)
