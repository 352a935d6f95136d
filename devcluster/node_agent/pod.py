"""One pod bound to this node, from its sandbox to its final deletion, as the kubelet runs it:
network namespace and address, volumes, a sandbox process that is PID 1 of the pod's PID
namespace (so Katib's collector sees the training process as a container's main process), init
containers in order, then the containers; restart policy, readiness, ``activeDeadlineSeconds``;
deletion by SIGTERM, the grace period, SIGKILL; the status in the API's words."""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from kubernetes import client
from kubernetes.client.rest import ApiException

from devcluster.layout import API_PORT, HOST_IP, PODS
from devcluster.node_agent import images
from devcluster.node_agent.containers import Container, command, expand, keep_visible, now
from devcluster.node_agent.network import Addresses, PodNetwork
from devcluster.node_agent.volumes import VolumeError, Volumes, field_value

log = logging.getLogger("node-agent")
TICK_S = 0.5
SYNC_VOLUMES_S = 3.0
BACKOFF_S = (1, 2, 5, 10, 20)


class Pod(threading.Thread):
    def __init__(self, core: client.CoreV1Api, pod: client.V1Pod, addresses: Addresses,
                 created: Path) -> None:
        super().__init__(name=f"pod-{pod.metadata.namespace}/{pod.metadata.name}", daemon=True)
        self.core, self.pod, self.addresses, self.created = core, pod, addresses, created
        meta = pod.metadata
        self.folder = PODS / f"{meta.namespace}_{meta.name}_{meta.uid[:8]}"
        self.address = ""
        self.network: PodNetwork | None = None
        self.sandbox: subprocess.Popen | None = None
        self.sandbox_pid = 0
        self.volumes = Volumes(core, pod, self.folder)
        self.init_containers = [Container(c, self.folder / f"{c.name}.log", init=True)
                                for c in pod.spec.init_containers or []]
        self.containers = [Container(c, self.folder / f"{c.name}.log")
                           for c in pod.spec.containers]
        self.phase = "Pending"
        self.reason: str | None = None
        self.message: str | None = None
        self.started = time.monotonic()
        self.start_time = now()
        self._deleted = threading.Event()
        self._shutdown = False
        self._gone = False
        self._last_status: dict | None = None
        self._transitions: dict[str, tuple[str, str]] = {}

    # -- events from the agent's watch --------------------------------------------------
    def update(self, pod: client.V1Pod) -> None:
        self.pod = pod
        self.volumes.pod = pod
        if pod.metadata.deletion_timestamp is not None:
            self._deleted.set()

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")

    def hosts(self, services: str) -> None:
        if self.network is not None and not self.finished:
            self.network.write_hosts(self.pod.metadata.name, services)

    # -- the lifecycle --------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        except Exception as error:
            log.exception("pod %s", self.name)
            self.phase, self.reason, self.message = "Failed", "NodeAgentError", str(error)
        finally:
            self._kill_all(grace=self._grace() if self._deleted.is_set() else 0)
            self._teardown()
            if not self.finished and self._deleted.is_set():
                self._terminal_phase()
            self._report()
        self._deleted.wait()
        if not (self._shutdown or self._gone):
            self._finalize()

    def _run(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if not self._prepare():
            return
        for container in self.init_containers:
            if container.sidecar:
                self._start(container)
                continue
            if not self._run_to_completion(container):
                return
        for container in self.containers:
            self._start(container)
        self._supervise()

    def _prepare(self) -> bool:
        """Address, namespace, volumes and sandbox; False if the pod was deleted first."""
        self.address = self.addresses.take(self.pod.metadata.uid)
        self.network = PodNetwork(self.pod.metadata.uid, self.address)
        self.network.create(self.pod.metadata.name)
        while True:
            try:
                self.volumes.create()
                break
            except VolumeError as error:
                for container in self.init_containers + self.containers:
                    container.waiting = ("CreateContainerConfigError", str(error))
                self._report()
                if self._deleted.wait(2.0):
                    return False
        self.sandbox = subprocess.Popen(
            ["ip", "netns", "exec", self.network.name, "unshare", "--pid", "--fork",
             "--mount-proc", "--kill-child", "sleep", "infinity"],
            start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        self.sandbox_pid = self._sandbox_child()
        self._report()
        return True

    def _sandbox_child(self) -> int:
        """The sandbox's PID 1 as the host sees it: the child ``unshare --fork`` made."""
        children = Path(f"/proc/{self.sandbox.pid}/task/{self.sandbox.pid}/children")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            text = children.read_text().split() if children.exists() else []
            if text:
                return int(text[0])
            time.sleep(0.02)
        raise RuntimeError("the pod sandbox did not start")

    def _start(self, container: Container) -> None:
        try:
            image = images.resolve(container.spec.image)
        except images.UnknownImage as error:
            container.waiting = ("ErrImagePull", str(error))
            return
        try:
            env = self._env(container.spec, image)
        except VolumeError as error:
            container.waiting = ("CreateContainerConfigError", str(error))
            return
        argv = [expand(a, env) for a in command(container.spec, image)]
        spec = {"argv": argv, "env": env, "cwd": container.spec.working_dir or image.workdir,
                "mounts": self._image_files(image) + self._mounts(container.spec),
                "keep_visible": keep_visible(),
                "created": str(self.created)}
        container.start(self.sandbox_pid, spec, self.folder / f"{container.name}.json")

    def _env(self, spec: client.V1Container, image: images.Image) -> dict[str, str]:
        env = dict(image.env)
        env.update(HOSTNAME=self.pod.metadata.name, KUBERNETES_SERVICE_HOST=HOST_IP,
                   KUBERNETES_SERVICE_PORT=str(API_PORT))
        for source in spec.env_from or []:
            ref = source.config_map_ref or source.secret_ref
            kind = "configmap" if source.config_map_ref else "secret"
            data = self.volumes.read(kind, ref.name, ref.optional) or {}
            env.update({(source.prefix or "") + k: v.decode() for k, v in data.items()})
        for variable in spec.env or []:
            if variable.value_from is None:
                env[variable.name] = expand(variable.value or "", env)
                continue
            found = self._value_from(variable.value_from)
            if found is not None:
                env[variable.name] = found
        return env

    def _value_from(self, source: client.V1EnvVarSource) -> str | None:
        if source.field_ref is not None:
            return field_value(self.pod, source.field_ref.field_path)
        for ref, kind in ((source.config_map_key_ref, "configmap"),
                          (source.secret_key_ref, "secret")):
            if ref is not None:
                data = self.volumes.read(kind, ref.name, ref.optional)
                if data is None:
                    return None
                if ref.key not in data:
                    if ref.optional:
                        return None
                    raise VolumeError(f"couldn't find key {ref.key} in {kind} {ref.name}")
                return data[ref.key].decode()
        raise VolumeError("only fieldRef, configMapKeyRef and secretKeyRef are supported by the "
                          "node agent in env valueFrom")

    @staticmethod
    def _image_files(image: images.Image) -> list[dict]:
        return [{"source": source, "target": target, "read_only": True}
                for target, source in sorted(image.files.items())]

    def _mounts(self, spec: client.V1Container) -> list[dict]:
        mounts = []
        for mount in spec.volume_mounts or []:
            source = self.volumes.paths[mount.name]
            if mount.sub_path:
                source = source / mount.sub_path
                if not source.exists():
                    source.mkdir(parents=True)
            mounts.append({"source": str(source), "target": mount.mount_path,
                           "read_only": bool(mount.read_only)})
        return sorted(mounts, key=lambda m: m["target"].rstrip("/").count("/"))

    def _run_to_completion(self, container: Container) -> bool:
        """An init container: True once it exited 0, False when the pod is over."""
        while True:
            self._start(container)
            while container.poll() is None:
                if container.process is None:  # could not start (image, config)
                    self._report()
                    if self._deleted.wait(2.0):
                        return False
                    break
                if self._deleted.wait(TICK_S) or self._past_deadline():
                    return False
                self._report()
            else:
                if container.terminated["exitCode"] == 0:
                    self._report()
                    return True
                if self.pod.spec.restart_policy == "Never":
                    self.phase = "Failed"
                    self._report()
                    return False
                container.last_terminated = container.terminated
                container.restarts += 1
                time.sleep(BACKOFF_S[min(container.restarts, len(BACKOFF_S)) - 1])

    def _supervise(self) -> None:
        self.phase = "Running"
        next_sync = time.monotonic() + SYNC_VOLUMES_S
        while not self.finished:
            if self._deleted.wait(TICK_S) or self._past_deadline():
                return
            everything = self.init_containers + self.containers
            for container in everything:
                if container.process is None and container.waiting and \
                        container.waiting[0] in ("ErrImagePull", "CreateContainerConfigError"):
                    self._start(container)
                code = container.poll()
                if code is not None or (container.terminated and container.restart_after):
                    self._restart_if_due(container)
                container.probe(self.address)
            if time.monotonic() > next_sync:
                next_sync = time.monotonic() + SYNC_VOLUMES_S
                try:
                    self.volumes.sync()
                except (VolumeError, ApiException) as error:
                    log.warning("pod %s: volumes: %s", self.name, error)
            if all(c.terminated is not None and not c.restart_after for c in self.containers):
                failed = any(c.terminated["exitCode"] != 0 for c in self.containers)
                self.phase = "Failed" if failed else "Succeeded"
            self._report()

    def _terminal_phase(self) -> None:
        """A deleted pod's last phase, as the kubelet sets it: Succeeded only if every
        container that ran exited 0."""
        ran = [c for c in self.containers if c.terminated is not None]
        ok = ran and all(c.terminated["exitCode"] == 0 for c in ran)
        self.phase = "Succeeded" if ok and len(ran) == len(self.containers) else "Failed"

    def _restart_if_due(self, container: Container) -> None:
        policy = self.pod.spec.restart_policy or "Always"
        if container.sidecar:
            policy = "Always"
        code = container.terminated["exitCode"]
        if policy == "Never" or (policy == "OnFailure" and code == 0):
            return
        if not container.restart_after:
            delay = BACKOFF_S[min(container.restarts, len(BACKOFF_S) - 1)]
            container.restart_after = time.monotonic() + delay
            return
        if time.monotonic() >= container.restart_after:
            container.last_terminated, container.restart_after = container.terminated, 0.0
            container.restarts += 1
            self._start(container)

    def _past_deadline(self) -> bool:
        deadline = self.pod.spec.active_deadline_seconds
        if deadline is None or time.monotonic() - self.started < deadline:
            return False
        self._kill_all(grace=self.pod.spec.termination_grace_period_seconds or 30)
        self.phase, self.reason = "Failed", "DeadlineExceeded"
        self.message = "Pod was active on the node longer than the specified deadline"
        self._report()
        return True

    # -- the end --------------------------------------------------------------------------
    def _kill_all(self, grace: float) -> None:
        """SIGTERM to every running container, SIGKILL after ``grace`` seconds."""
        running = [c for c in self.init_containers + self.containers
                   if c.process is not None and c.terminated is None]
        for container in running:
            container.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(c.process.poll() is None for c in running):
            time.sleep(0.1)
        for container in running:
            container.signal(signal.SIGKILL)
            container.reap()

    def _teardown(self) -> None:
        if self.sandbox is not None:
            self.sandbox.kill()
            self.sandbox.wait()
            self.sandbox = None
        if self.network is not None:
            self.network.delete()
            self.addresses.give_back(self.address)
            self.network = None

    def _finalize(self) -> None:
        """After deletion: the containers were stopped within the grace period (the watch saw
        ``deletionTimestamp``); the pod object goes, as the kubelet's final delete does."""
        try:
            self.core.delete_namespaced_pod(
                self.pod.metadata.name, self.pod.metadata.namespace,
                body=client.V1DeleteOptions(grace_period_seconds=0, preconditions=
                                            client.V1Preconditions(uid=self.pod.metadata.uid)))
        except ApiException as error:
            if error.status not in (404, 409):
                raise
        shutil.rmtree(self.folder / "volumes", ignore_errors=True)

    def stop(self) -> None:
        """The agent is going down: end the pod's processes (its object stays)."""
        self._shutdown = True
        self._deleted.set()

    def gone(self) -> None:
        """The object was deleted outright (a force delete, or ours): stop at once."""
        self._gone = True
        self._deleted.set()

    def _grace(self) -> float:
        if self._gone:
            return 0.0
        grace = self.pod.metadata.deletion_grace_period_seconds
        if grace is None:
            grace = self.pod.spec.termination_grace_period_seconds
        return float(30 if grace is None else grace)

    @property
    def name(self) -> str:
        return f"{self.pod.metadata.namespace}/{self.pod.metadata.name}"

    # -- status ---------------------------------------------------------------------------
    def _report(self) -> None:
        containers = [c.status() for c in self.containers]
        initialized = all((c.terminated is not None and c.terminated["exitCode"] == 0)
                          or (c.sidecar and c.process is not None)
                          for c in self.init_containers)
        ready = initialized and all(c.ready for c in self.containers) and not self.finished
        stamp = now()
        conditions = [{"type": "Initialized", "status": str(initialized)},
                      {"type": "ContainersReady", "status": str(ready)},
                      {"type": "Ready", "status": str(ready)}]
        status = {"phase": self.phase, "hostIP": HOST_IP, "hostIPs": [{"ip": HOST_IP}],
                  "startTime": self.start_time, "containerStatuses": containers,
                  "conditions": conditions}
        if self.address:
            status.update(podIP=self.address, podIPs=[{"ip": self.address}])
        if self.init_containers:
            status["initContainerStatuses"] = [c.status() for c in self.init_containers]
        if self.reason:
            status.update(reason=self.reason, message=self.message)
        if status == self._last_status:
            return
        self._last_status = status
        for condition in conditions:  # a transition time moves only when the status does
            before = self._transitions.get(condition["type"])
            if before is None or before[0] != condition["status"]:
                self._transitions[condition["type"]] = (condition["status"], stamp)
        body = {"status": {**status, "conditions": [
            {**c, "lastTransitionTime": self._transitions[c["type"]][1], "lastProbeTime": None}
            for c in conditions]}}
        try:
            self.core.patch_namespaced_pod_status(self.pod.metadata.name,
                                                  self.pod.metadata.namespace, body)
        except ApiException as error:
            if error.status != 404:
                log.warning("pod %s: status: %s", self.name, error.reason)

