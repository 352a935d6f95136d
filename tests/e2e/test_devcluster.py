"""``make cluster-down`` leaves nothing behind: no process it or a pod started, no network
namespace, bridge or mount, no state. Runs after every other test (it stops the cluster)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.mark.cluster_down
def test_cluster_down_leaves_no_process_namespace_or_mount(cluster):
    from devcluster.host_services import RUN
    from devcluster.layout import BRIDGE, HOME
    from devcluster.node_agent.network import ETC_NETNS, NETNS_PREFIX

    postgres_folder = Path((RUN / "postgres-folder").read_text())
    created = (RUN / "mount-points").read_text().split() if (RUN / "mount-points").exists() \
        else []
    down = subprocess.run([sys.executable, "-m", "devcluster", "down"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert down.returncode == 0, down.stderr
    assert "node-agent" in down.stdout and "kube-apiserver" in down.stdout
    processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    left = [line for line in processes.splitlines()
            if str(HOME) in line or ("devcluster" in line and "pytest" not in line)]
    assert left == []
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert NETNS_PREFIX not in namespaces
    assert not list(ETC_NETNS.glob(f"{NETNS_PREFIX}*"))
    assert subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True).returncode != 0
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(HOME) not in mounts and "/netns/" + NETNS_PREFIX not in mounts
    assert not RUN.exists() and not postgres_folder.exists()
    assert [p for p in created if Path(p).exists()] == []
