"""etcd, kube-apiserver, kube-controller-manager and kube-scheduler, as Kubernetes' own binaries
(built by ``make cluster-build``), started with the flags a kubeadm cluster would give them
where it matters to Katib and nasflow: RBAC, service-account tokens, and webhooks reached at
their endpoints (there is no kube-proxy)."""

from __future__ import annotations

import ssl
import urllib.request

from devcluster import processes
from devcluster.layout import API_PORT, BIN, HOST_IP, KUBECONFIG, PKI, RUN, SERVICE_RANGE

ETCD_PORT = 2379


def _etcd() -> None:
    processes.start("etcd", [
        BIN / "etcd", "--data-dir", RUN / "etcd", "--name", "devcluster",
        f"--listen-client-urls=http://127.0.0.1:{ETCD_PORT}",
        f"--advertise-client-urls=http://127.0.0.1:{ETCD_PORT}",
        "--listen-peer-urls=http://127.0.0.1:2380",
        "--initial-advertise-peer-urls=http://127.0.0.1:2380",
        "--initial-cluster=devcluster=http://127.0.0.1:2380",
        "--unsafe-no-fsync", "--quota-backend-bytes=2147483648", "--log-level=warn"])
    processes.wait_until("etcd", lambda: urllib.request.urlopen(
        f"http://127.0.0.1:{ETCD_PORT}/health", timeout=2).status == 200, timeout=30)


def _apiserver() -> None:
    processes.start("kube-apiserver", [
        BIN / "kube-apiserver",
        f"--etcd-servers=http://127.0.0.1:{ETCD_PORT}",
        "--bind-address=0.0.0.0", f"--secure-port={API_PORT}", f"--advertise-address={HOST_IP}",
        f"--tls-cert-file={PKI / 'apiserver.crt'}",
        f"--tls-private-key-file={PKI / 'apiserver.key'}",
        f"--client-ca-file={PKI / 'ca.crt'}",
        "--authorization-mode=RBAC",
        f"--service-account-key-file={PKI / 'sa.pub'}",
        f"--service-account-signing-key-file={PKI / 'sa.key'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-cluster-ip-range={SERVICE_RANGE}",
        # No kube-proxy: the API server calls webhooks (Katib's) at their endpoints
        "--enable-aggregator-routing=true",
        "--allow-privileged=true", "--profiling=false", "--v=1"])
    context = ssl.create_default_context(cafile=str(PKI / "ca.crt"))
    context.load_cert_chain(str(PKI / "admin.crt"), str(PKI / "admin.key"))
    processes.wait_until("kube-apiserver", lambda: urllib.request.urlopen(
        f"https://127.0.0.1:{API_PORT}/readyz", context=context, timeout=5).status == 200,
        timeout=120)


def _controllers() -> None:
    processes.start("kube-controller-manager", [
        BIN / "kube-controller-manager", f"--kubeconfig={KUBECONFIG}",
        f"--authentication-kubeconfig={KUBECONFIG}", f"--authorization-kubeconfig={KUBECONFIG}",
        f"--service-account-private-key-file={PKI / 'sa.key'}",
        f"--root-ca-file={PKI / 'ca.crt'}", "--use-service-account-credentials=true",
        "--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=10257",
        # the controllers a cluster without a cloud or IP management runs
        "--controllers=*,-node-ipam-controller,-cloud-node-lifecycle-controller,"
        "-service-lb-controller,-node-route-controller,-persistentvolume-attach-detach-controller,"
        "-persistentvolume-expander-controller",
        "--concurrent-gc-syncs=5", "--v=1"])
    processes.start("kube-scheduler", [
        BIN / "kube-scheduler", f"--kubeconfig={KUBECONFIG}",
        f"--authentication-kubeconfig={KUBECONFIG}", f"--authorization-kubeconfig={KUBECONFIG}",
        "--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=10259", "--v=1"])
    insecure = ssl._create_unverified_context()  # their own self-signed serving certificates
    for name, port in (("kube-controller-manager", 10257), ("kube-scheduler", 10259)):
        processes.wait_until(name, lambda port=port: urllib.request.urlopen(
            f"https://127.0.0.1:{port}/healthz", context=insecure, timeout=5).status == 200,
            timeout=60)


def start() -> None:
    _etcd()
    _apiserver()
    _controllers()
