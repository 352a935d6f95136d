"""Pod networking without a CNI plugin: one Linux bridge on the host, and per pod a network
namespace with a veth pair into the bridge and one address of ``POD_NETWORK``. Each namespace's
``/etc/netns/<name>/hosts`` and ``resolv.conf`` are what the pod sees in ``/etc``
(``ip netns exec`` bind-mounts them), which is how pods resolve Services (``names.py``)."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

from devcluster.layout import BRIDGE, HOST_IP, POD_NETWORK

NETNS_PREFIX = "nf-"
ETC_NETNS = Path("/etc/netns")


def _ip(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *argv], check=check, capture_output=True, text=True)


def ensure_bridge() -> None:
    if _ip("link", "show", BRIDGE, check=False).returncode != 0:
        _ip("link", "add", BRIDGE, "type", "bridge")
        _ip("addr", "add", f"{HOST_IP}/24", "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "up")


def remove_bridge() -> None:
    _ip("link", "del", BRIDGE, check=False)


def namespaces() -> list[str]:
    """The pod network namespaces left on this machine (``cluster-down`` removes them)."""
    listed = _ip("netns", "list", check=False).stdout.split("\n")
    return [line.split()[0] for line in listed if line.startswith(NETNS_PREFIX)]


class Addresses:
    """Pod addresses .2 to .254 of the pod network, each held by one pod UID."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[int, str] = {}

    def take(self, uid: str) -> str:
        with self._lock:
            for host in range(2, 255):
                if host not in self._held:
                    self._held[host] = uid
                    return f"{POD_NETWORK}.{host}"
        raise RuntimeError("no pod address left in the pod network")

    def give_back(self, address: str) -> None:
        with self._lock:
            self._held.pop(int(address.rsplit(".", 1)[1]), None)


class PodNetwork:
    """One pod's namespace: created before its sandbox starts, deleted after it ends."""

    def __init__(self, uid: str, address: str) -> None:
        self.name = NETNS_PREFIX + uid[:12]
        self.address = address
        self.veth = "vnf" + uid[:12]
        self._hosts = ""

    @property
    def hosts_file(self) -> Path:
        return ETC_NETNS / self.name / "hosts"

    def create(self, hostname: str) -> None:
        self.hosts_file.parent.mkdir(parents=True, exist_ok=True)
        self.write_hosts(hostname, "")
        # No DNS server for pods: a name not in the hosts file fails at once (nothing answers
        # on the pod's own loopback) instead of waiting on the host's resolver, which a pod
        # cannot reach (gRPC's resolver asks for TXT records before it connects).
        (self.hosts_file.parent / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        _ip("netns", "add", self.name)
        _ip("link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.name)
        _ip("link", "set", self.veth, "master", BRIDGE, "up")
        inside = ("netns", "exec", self.name, "ip")
        _ip(*inside, "addr", "add", f"{self.address}/24", "dev", "eth0")
        _ip(*inside, "link", "set", "eth0", "up")
        _ip(*inside, "link", "set", "lo", "up")
        _ip(*inside, "route", "add", "default", "via", HOST_IP)

    def write_hosts(self, hostname: str, services: str) -> None:
        """Rewrite the pod's hosts file in place (a rename would leave the bind mount on the
        old file): its own name, then the Services' names."""
        text = (f"127.0.0.1\tlocalhost\n::1\tlocalhost\n{self.address}\t{hostname}\n"
                f"{services}")
        if text == self._hosts:  # written only on a change: readers never see it half-written
            return
        with open(self.hosts_file, "w") as f:
            f.write(text)
        self._hosts = text

    def delete(self) -> None:
        _ip("netns", "del", self.name, check=False)
        _ip("link", "del", self.veth, check=False)
        shutil.rmtree(self.hosts_file.parent, ignore_errors=True)
