"""The node agent: registers one Node, keeps its Lease and Ready condition as a kubelet does,
runs the pods the scheduler binds to it (``pod.Pod``) and keeps every pod's Service names
current (``names.py``)."""

from __future__ import annotations

import datetime
import logging
import os
import platform
import signal
import threading
import time
from pathlib import Path

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from devcluster.layout import HOST_IP, KUBERNETES_VERSION, NODE_NAME, RUN
from devcluster.node_agent import names, network
from devcluster.node_agent.containers import now
from devcluster.node_agent.pod import Pod

log = logging.getLogger("node-agent")
LEASE_S = 40
RENEW_S = 10
# What the scheduler may place here: more CPU than the machine has, so that a search's parallel
# trials and Katib's own pods fit on a 2-core machine (they share its cores, as they would
# share an oversubscribed node).
CAPACITY = {"cpu": "8", "memory": "24Gi", "pods": "110", "ephemeral-storage": "50Gi"}
CREATED_MOUNT_POINTS = RUN / "mount-points"


class NodeAgent:
    def __init__(self, kubeconfig: Path) -> None:
        config.load_kube_config(str(kubeconfig))
        self.core = client.CoreV1Api()
        self.leases = client.CoordinationV1Api()
        self.discovery = client.DiscoveryV1Api()
        self.addresses = network.Addresses()
        self.pods: dict[str, Pod] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.hosts = ""

    # -- the Node -------------------------------------------------------------------------
    def register(self) -> None:
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE_NAME, "labels": {
            "kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64"}}}
        try:
            self.core.create_node(node)
        except ApiException as error:
            if error.status != 409:
                raise
        self._node_status()

    def _node_status(self) -> None:
        stamp = now()
        conditions = [{"type": kind, "status": "False", "reason": f"KubeletHasNo{kind}",
                       "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}
                      for kind in ("MemoryPressure", "DiskPressure", "PIDPressure")]
        conditions.append({"type": "Ready", "status": "True", "reason": "KubeletReady",
                           "message": "nasflow node agent is posting ready status",
                           "lastHeartbeatTime": stamp, "lastTransitionTime": stamp})
        uname = platform.uname()
        status = {"capacity": CAPACITY, "allocatable": CAPACITY, "conditions": conditions,
                  "addresses": [{"type": "InternalIP", "address": HOST_IP},
                                {"type": "Hostname", "address": NODE_NAME}],
                  "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                  "nodeInfo": {"kubeletVersion": KUBERNETES_VERSION,
                               "kubeProxyVersion": KUBERNETES_VERSION,
                               "containerRuntimeVersion": "nasflow-node-agent://1",
                               "operatingSystem": "linux", "architecture": "amd64",
                               "kernelVersion": uname.release, "osImage": uname.version,
                               "machineID": "", "systemUUID": "", "bootID": ""}}
        self.core.patch_node_status(NODE_NAME, {"status": status})

    def _heartbeat(self) -> None:
        node_status_at = 0.0
        while not self.stopping.wait(RENEW_S):
            try:
                self._renew_lease()
                if time.monotonic() - node_status_at > 30:
                    self._node_status()
                    node_status_at = time.monotonic()
            except ApiException as error:
                log.warning("heartbeat: %s", error.reason)

    def _renew_lease(self) -> None:
        # a MicroTime: the client writes datetime.isoformat(), which drops a zero fraction
        stamp = datetime.datetime.now(datetime.UTC)
        stamp = stamp.replace(microsecond=stamp.microsecond or 1)
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": {"name": NODE_NAME, "namespace": "kube-node-lease"},
                 "spec": {"holderIdentity": NODE_NAME, "leaseDurationSeconds": LEASE_S,
                          "renewTime": stamp}}
        try:
            self.leases.patch_namespaced_lease(NODE_NAME, "kube-node-lease", lease)
        except ApiException as error:
            if error.status != 404:
                raise
            self.leases.create_namespaced_lease("kube-node-lease", lease)

    # -- Service names ----------------------------------------------------------------------
    def _names(self) -> None:
        while not self.stopping.wait(1.0):
            try:
                endpoints = names.table(self.discovery)
            except ApiException as error:
                log.warning("names: %s", error.reason)
                continue
            with self.lock:
                pods = list(self.pods.values())
            for pod in pods:
                pod.hosts(names.hosts_lines(endpoints, pod.pod.metadata.namespace))

    # -- pods -------------------------------------------------------------------------------
    def _event(self, kind: str, pod: client.V1Pod) -> None:
        uid = pod.metadata.uid
        with self.lock:
            runner = self.pods.get(uid)
            if runner is None and kind != "DELETED":
                runner = Pod(self.core, pod, self.addresses, CREATED_MOUNT_POINTS)
                self.pods[uid] = runner
                runner.start()
                return
        if runner is None:
            return
        runner.update(pod)
        if kind == "DELETED":
            runner.gone()
            with self.lock:
                self.pods.pop(uid, None)

    def _watch_pods(self) -> None:
        selector = f"spec.nodeName={NODE_NAME}"
        while not self.stopping.is_set():
            try:
                listed = self.core.list_pod_for_all_namespaces(field_selector=selector)
                for pod in listed.items:
                    self._event("ADDED", pod)
                stream = watch.Watch().stream(
                    self.core.list_pod_for_all_namespaces, field_selector=selector,
                    resource_version=listed.metadata.resource_version, timeout_seconds=300)
                for event in stream:
                    if self.stopping.is_set():
                        return
                    self._event(event["type"], event["object"])
            except ApiException as error:
                if error.status != 410:  # 410: the watch expired; list again
                    log.warning("watch: %s", error.reason)
                    time.sleep(1)
            except Exception as error:  # noqa: BLE001 - a dropped connection: list again
                log.warning("watch: %s", error)
                time.sleep(1)

    def run(self) -> None:
        network.ensure_bridge()
        self.register()
        self._renew_lease()
        for target in (self._heartbeat, self._names):
            threading.Thread(target=target, daemon=True).start()
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        watcher = threading.Thread(target=self._watch_pods, daemon=True)
        watcher.start()
        self.stopping.wait()
        with self.lock:
            runners = list(self.pods.values())
        for runner in runners:
            runner.stop()
        for runner in runners:
            runner.join(timeout=40)
        os._exit(0)
