"""``python -m devcluster up|down|status`` (``make cluster-up`` / ``make cluster-down``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

from devcluster import control_plane, host_services, katib, pki, processes, trainer
from devcluster.kubectl import kubectl
from devcluster.layout import BIN, HOME, KUBECONFIG, NODE_NAME, ROOT, RUN, VENV
from devcluster.node_agent import network
from devcluster.node_agent.agent import CREATED_MOUNT_POINTS

BUILT = BIN / ".built"


def up() -> int:
    if os.geteuid() != 0:
        print("cluster-up: the node agent makes network namespaces and mounts: run it as root",
              file=sys.stderr)
        return 2
    if not BUILT.exists():
        print("cluster-up: build first: make cluster-build", file=sys.stderr)
        return 2
    if processes.running("kube-apiserver"):
        print(f"already up\nexport KUBECONFIG={KUBECONFIG}")
        return 0
    started = time.monotonic()
    down(quiet=True)
    RUN.mkdir(parents=True)
    pki.create()
    pki.kubeconfig(KUBECONFIG)
    network.ensure_bridge()
    host_services.start_postgres()
    control_plane.start()
    processes.start("node-agent", [VENV / "bin" / "python", "-m", "devcluster.node_agent",
                                   KUBECONFIG])
    processes.wait_until("node-agent", lambda: "True" in kubectl(
        "get", "node", NODE_NAME, "-o",
        "jsonpath={.status.conditions[?(@.type=='Ready')].status}").stdout, timeout=60)
    trainer.apply()  # before Katib: its controller watches TrainJobs only if their CRD exists
    katib.apply()
    kubectl("apply", "-k", str(ROOT / "manifests" / "base"))
    uri = host_services.start_mlflow()
    host_services.expose_mlflow()
    processes.wait_until("node-agent", lambda: kubectl(
        "-n", "kubeflow", "wait", "--for=condition=Available", "deployment",
        "katib-controller", "katib-db-manager", "--timeout=5s", check=False).returncode == 0,
        timeout=240)
    trainer.wait()
    print(f"cluster up in {time.monotonic() - started:.0f} s: Kubernetes, Katib, Trainer, "
          f"MLflow at {uri}")
    print(f"export KUBECONFIG={KUBECONFIG}")
    return 0


def down(quiet: bool = False) -> int:
    """Stop every process ``up`` started, then whatever a pod left: processes in a pod network
    namespace, the namespaces, the bridge, the mount points made on the host; then the state."""
    stopped = processes.stop_all()
    for name in network.namespaces():
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True,
                              text=True).stdout.split()
        for pid in pids:
            subprocess.run(["kill", "-9", pid], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        shutil.rmtree(network.ETC_NETNS / name, ignore_errors=True)
    network.remove_bridge()
    _remove_mount_points()
    host_services.remove_postgres_folder()
    shutil.rmtree(RUN, ignore_errors=True)
    if not quiet:
        print(f"cluster down: stopped {', '.join(stopped) or 'nothing'}")
    return 0


def _remove_mount_points() -> None:
    """The empty files and folders containers' mounts needed on the host, deepest first."""
    if not CREATED_MOUNT_POINTS.exists():
        return
    paths = set(CREATED_MOUNT_POINTS.read_text().split())
    for path in sorted(paths, key=lambda p: p.count("/"), reverse=True):
        try:
            if os.path.isdir(path):
                os.rmdir(path)
            elif os.path.getsize(path) == 0:
                os.unlink(path)
        except OSError:
            pass


def status() -> int:
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                 "postgres", "node-agent", "mlflow"):
        pid = processes.running(name)
        print(f"{name:24} {'running, pid ' + str(pid) if pid else 'stopped'}")
    return 0


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    commands = {"up": up, "down": down, "status": status}
    if command not in commands:
        print(f"usage: python -m devcluster {{{'|'.join(commands)}}}  ({HOME})", file=sys.stderr)
        sys.exit(2)
    try:
        sys.exit(commands[command]())
    except (processes.StartError, RuntimeError, FileNotFoundError) as error:
        print(f"cluster-{command}: {error}", file=sys.stderr)
        sys.exit(1)
