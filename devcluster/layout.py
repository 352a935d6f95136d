"""Where the development cluster keeps its build and its running state (both ignored by git)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / ".devcluster"
BIN = HOME / "bin"
RUN = HOME / "run"
PKI = RUN / "pki"
LOGS = RUN / "logs"
PODS = RUN / "pods"
KUBECONFIG = RUN / "kubeconfig"
VENV = ROOT / ".venv"

KUBERNETES_VERSION = "v1.34.4"
KATIB_VERSION = "v0.19.0"
TRAINER_VERSION = "v2.3.0"
JOBSET_VERSION = "v0.12.0"  # the version Trainer v2.3.0 requires

# The pod network: a bridge on the host, one address per pod (the node agent's). The host is
# .1 there, where pods reach the API server, and the host's PostgreSQL and MLflow.
BRIDGE = "nasflow0"
POD_NETWORK = "10.244.0"
HOST_IP = f"{POD_NETWORK}.1"
SERVICE_RANGE = "10.96.0.0/16"
API_PORT = 6443
NODE_NAME = "nasflow-node"
