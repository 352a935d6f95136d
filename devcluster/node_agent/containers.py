"""One container of a pod as the node agent runs it: a process in the pod's sandbox, its log,
its readiness, and its status in the Pod API's words."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client

from devcluster.layout import ROOT
from devcluster.node_agent import images

HELPER = Path(__file__).with_name("container.py")
MESSAGE_BYTES = 4096


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Container:
    spec: client.V1Container
    log: Path
    init: bool = False
    process: subprocess.Popen | None = None
    restarts: int = 0
    started_at: str | None = None
    terminated: dict | None = None
    last_terminated: dict | None = None
    waiting: tuple[str, str] | None = ("ContainerCreating", "")
    ready: bool = False
    next_probe: float = 0.0
    restart_after: float = 0.0
    probe_failures: int = 0

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def sidecar(self) -> bool:
        """A native sidecar: an init container with ``restartPolicy: Always``."""
        return self.init and self.spec.restart_policy == "Always"

    def start(self, sandbox_pid: int, spec: dict, spec_file: Path) -> None:
        spec_file.write_text(json.dumps(spec))
        log = open(self.log, "ab")  # noqa: SIM115 - the child keeps it; ours closes below
        self.process = subprocess.Popen(
            ["nsenter", "-t", str(sandbox_pid), "-p", "-m", "-n", "--", sys.executable,
             str(HELPER), str(spec_file)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        log.close()
        self.started_at, self.terminated, self.waiting = now(), None, None
        self.ready, self.probe_failures = False, 0
        self.next_probe = time.monotonic() + ((self.spec.readiness_probe.initial_delay_seconds
                                               or 0) if self.spec.readiness_probe else 0)

    def poll(self) -> int | None:
        """The exit code once the process ended (128 + signal when killed), else None."""
        if self.process is None or self.terminated is not None:
            return None
        code = self.process.poll()
        if code is None:
            return None
        code = 128 - code if code < 0 else code
        policy = self.spec.termination_message_policy or "File"
        message = self._log_tail() if code != 0 and policy == "FallbackToLogsOnError" else ""
        self.terminated = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                           "message": message or None, "startedAt": self.started_at,
                           "finishedAt": now()}
        self.ready = False
        return code

    def signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def reap(self) -> None:
        """Wait for a killed container's process and record how it ended."""
        if self.process is not None:
            self.process.wait()
            self.poll()

    def _log_tail(self) -> str:
        try:
            with open(self.log, "rb") as f:
                f.seek(max(0, self.log.stat().st_size - MESSAGE_BYTES))
                return f.read().decode(errors="replace").strip()
        except OSError:
            return ""

    def probe(self, pod_ip: str) -> None:
        """Readiness: ``httpGet`` and ``tcpSocket`` as the kubelet does them; ``grpc`` as a TCP
        connection to its port, ``exec`` not at all (ready while running)."""
        probe = self.spec.readiness_probe
        running = self.process is not None and self.terminated is None
        if not running:
            self.ready = False
            return
        if probe is None:
            self.ready = True
            return
        if time.monotonic() < self.next_probe:
            return
        self.next_probe = time.monotonic() + (probe.period_seconds or 10)
        timeout = probe.timeout_seconds or 1
        try:
            if probe.http_get is not None:
                port = self._port(probe.http_get.port)
                scheme = (probe.http_get.scheme or "HTTP").lower()
                url = f"{scheme}://{pod_ip}:{port}{probe.http_get.path or '/'}"
                context = ssl._create_unverified_context() if scheme == "https" else None
                with urllib.request.urlopen(url, timeout=timeout, context=context) as answer:
                    ok = 200 <= answer.status < 400
            elif probe.tcp_socket is not None or probe.grpc is not None:
                port = self._port((probe.tcp_socket or probe.grpc).port)
                socket.create_connection((pod_ip, port), timeout=timeout).close()
                ok = True
            else:
                ok = True
        except OSError:
            ok = False
        if ok:
            self.ready, self.probe_failures = True, 0
        else:
            self.probe_failures += 1
            if self.probe_failures >= (probe.failure_threshold or 3):
                self.ready = False

    def _port(self, port: int | str) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for declared in self.spec.ports or []:
            if declared.name == port:
                return declared.container_port
        raise OSError(f"no port named {port}")

    def status(self) -> dict:
        state: dict
        if self.terminated is not None:
            state = {"terminated": self.terminated}
        elif self.waiting is not None:
            reason, message = self.waiting
            state = {"waiting": {"reason": reason, "message": message or None}}
        else:
            state = {"running": {"startedAt": self.started_at}}
        out = {"name": self.name, "image": self.spec.image,
               "imageID": f"nasflow-devcluster://{images.repository(self.spec.image)}",
               "ready": self.ready, "restartCount": self.restarts, "state": state,
               "started": self.terminated is None and self.waiting is None}
        if self.last_terminated:
            out["lastState"] = {"terminated": self.last_terminated}
        return out


def command(spec: client.V1Container, image: images.Image) -> list[str]:
    """Kubernetes' rule: ``command`` replaces the ENTRYPOINT (and drops the CMD), ``args``
    replaces the CMD; ``$(VAR)`` references are the container's environment's."""
    if spec.command:
        return list(spec.command) + list(spec.args or [])
    return image.entrypoint + list(spec.args if spec.args is not None else image.cmd)


def expand(value: str, env: dict[str, str]) -> str:
    """``$(VAR)`` to its value, ``$$(VAR)`` to a literal ``$(VAR)``, as the kubelet expands."""
    out, i = [], 0
    while i < len(value):
        if value.startswith("$$", i):
            out.append("$")
            i += 2
        elif value.startswith("$(", i) and ")" in value[i:]:
            end = value.index(")", i)
            name = value[i + 2:end]
            out.append(env[name] if name in env else value[i:end + 1])
            i = end + 1
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def keep_visible() -> list[str]:
    """The host paths every container needs whatever its volumes hide: the checkout (its
    ``.venv`` and the binaries under ``.devcluster``)."""
    return [str(ROOT)]
