"""Runs inside a pod's namespaces (``nsenter`` into its sandbox): gives one container its own
view of the volumes, then becomes the container's process (``exec``, so that its parent is
outside the pod's PID namespace, as a runtime's container process is: Katib's collector counts
on it).

    python -m devcluster.node_agent.container SPEC.json

SPEC: ``argv``, ``env``, ``cwd``, ``mounts`` (``source``, ``target``, ``read_only``) in mount
order, ``keep_visible`` (host paths the process needs, such as the checkout and its venv,
mounted back if a volume hides them, e.g. an emptyDir on ``/tmp`` when the checkout is under
``/tmp``) and ``created`` (a file that records the mount points made on the host, which
``cluster-down`` removes).
"""

from __future__ import annotations

import ctypes
import json
import os
import sys

CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT = 1, 2, 4, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
O_PATH = 0o10000000
_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def _mount(source: str | None, target: str, flags: int, kind: str | None = None) -> None:
    _check(_libc.mount(source.encode() if source else None, target.encode(),
                       kind.encode() if kind else None, flags, None),
           f"mount {source} on {target}")


def _mount_point(folder: bool, target: str, record) -> None:
    """Create ``target`` (a folder, or a file for a file) and its missing parents."""
    missing = []
    path = target
    while not os.path.lexists(path):
        missing.append(path)
        path = os.path.dirname(path)
    for path in reversed(missing):
        if path == target and not folder:
            open(path, "a").close()
        else:
            try:
                os.mkdir(path)
            except FileExistsError:  # another container of the node made it meanwhile
                continue
        record.write(path + "\n")
    record.flush()


def main(spec_path: str) -> None:
    with open(spec_path) as f:
        spec = json.load(f)
    record = open(spec["created"], "a")  # noqa: SIM115 - open before the mounts hide it
    _check(_libc.unshare(CLONE_NEWNS), "unshare")
    _mount(None, "/", MS_REC | MS_PRIVATE)
    # every path held open before the first mount (in this namespace: the kernel binds only
    # from its own), since a mount on /tmp hides a checkout and its pod folders under /tmp
    kept = [(path, os.open(path, O_PATH)) for path in spec["keep_visible"]]
    sources = [(os.open(m["source"], O_PATH), os.path.isdir(m["source"])) for m in spec["mounts"]]
    # a container's /run is its own, as under a runtime: the service-account token's mount point
    # (/var/run/secrets/...) is made there, not on the host, where its presence would tell
    # programs that they run in a pod
    if any(os.path.realpath(m["target"]).startswith("/run/") for m in spec["mounts"]):
        _mount("tmpfs", "/run", MS_NOSUID | MS_NODEV, "tmpfs")
    for mount, (source, folder) in zip(spec["mounts"], sources, strict=True):
        _mount_point(folder, mount["target"], record)
        _mount(f"/proc/self/fd/{source}", mount["target"], MS_BIND | MS_REC)
        os.close(source)
        if mount["read_only"]:
            _mount(None, mount["target"], MS_BIND | MS_REMOUNT | MS_RDONLY)
    for path, fd in kept:
        before = os.fstat(fd)
        try:
            now = os.stat(path)
            hidden = (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino)
        except FileNotFoundError:
            hidden = True
        if hidden:
            os.makedirs(path, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", path, MS_BIND | MS_REC)
        os.close(fd)
    record.close()
    os.makedirs(spec["cwd"], exist_ok=True)
    os.chdir(spec["cwd"])
    argv = spec["argv"]
    try:
        os.execvpe(argv[0], argv, spec["env"])
    except OSError as error:
        print(f"exec {argv[0]}: {error.strerror}", file=sys.stderr)
        sys.exit(127 if isinstance(error, FileNotFoundError) else 126)


if __name__ == "__main__":
    main(sys.argv[1])
