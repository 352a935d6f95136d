"""The cluster's own ``kubectl`` (built with it), as its admin."""

from __future__ import annotations

import subprocess

from devcluster.layout import BIN, KUBECONFIG


def kubectl(*argv: str, stdin: str | None = None, check: bool = True,
            timeout: float | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run([str(BIN / "kubectl"), f"--kubeconfig={KUBECONFIG}", *argv],
                          input=stdin, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(argv)}:\n{done.stderr.strip()}")
    return done
