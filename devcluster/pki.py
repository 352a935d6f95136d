"""The cluster's certificates and keys (openssl): one CA for the API server's serving
certificate and the admin's client certificate, and the key that signs service-account tokens.
Made once per ``cluster-up`` and thrown away by ``cluster-down``."""

from __future__ import annotations

import subprocess
from pathlib import Path

from devcluster.layout import API_PORT, HOST_IP, PKI

DAYS = "30"
API_NAMES = ["kubernetes", "kubernetes.default", "kubernetes.default.svc",
             "kubernetes.default.svc.cluster.local", "localhost"]
API_ADDRESSES = ["127.0.0.1", HOST_IP, "10.96.0.1"]


def _openssl(*argv: str) -> None:
    subprocess.run(["openssl", *argv], check=True, capture_output=True)


def _signed(name: str, subject: str, alt_names: str | None = None) -> None:
    key, csr, crt = (PKI / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
    _openssl("genrsa", "-out", str(key), "2048")
    request = ["req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr)]
    if alt_names:
        request += ["-addext", f"subjectAltName={alt_names}"]
    _openssl(*request)
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(PKI / "ca.crt"), "-CAkey",
             str(PKI / "ca.key"), "-CAcreateserial", "-days", DAYS, "-copy_extensions",
             "copyall", "-out", str(crt))
    csr.unlink()


def create() -> None:
    """The CA, the API server's and the admin's certificates, the service-account key pair."""
    PKI.mkdir(parents=True, exist_ok=True)
    PKI.chmod(0o700)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(PKI / "ca.key"),
             "-out", str(PKI / "ca.crt"), "-days", DAYS, "-subj", "/CN=nasflow-devcluster-ca")
    alt = ",".join([f"DNS:{n}" for n in API_NAMES] + [f"IP:{a}" for a in API_ADDRESSES])
    _signed("apiserver", "/CN=kube-apiserver", alt)
    _signed("admin", "/O=system:masters/CN=nasflow-admin")
    _openssl("genrsa", "-out", str(PKI / "sa.key"), "2048")
    _openssl("rsa", "-in", str(PKI / "sa.key"), "-pubout", "-out", str(PKI / "sa.pub"))


def kubeconfig(path: Path, server: str = f"https://127.0.0.1:{API_PORT}") -> None:
    """A kubeconfig for the cluster's admin (client certificate, group system:masters)."""
    path.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: nasflow-dev
  cluster:
    server: {server}
    certificate-authority: {PKI / "ca.crt"}
users:
- name: nasflow-admin
  user:
    client-certificate: {PKI / "admin.crt"}
    client-key: {PKI / "admin.key"}
contexts:
- name: nasflow-dev
  context: {{cluster: nasflow-dev, user: nasflow-admin}}
current-context: nasflow-dev
""")
    path.chmod(0o600)
