"""Kubernetes API failures as one actionable line (exit code 2 or 1 in the CLI)."""

from __future__ import annotations

import json
from typing import Any


class ClusterError(Exception):
    """A cluster operation failed; ``str()`` is the one line to show the user."""


def _api_message(exc: Any) -> str:
    """The ``message`` of a Kubernetes ``Status`` body, else the HTTP reason."""
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    return (message or exc.reason or f"HTTP {exc.status}").strip().splitlines()[0]


def explain(exc: BaseException, action: str, what: str, namespace: str) -> ClusterError:
    """Turn an ApiException or a connection failure into what happened and what to do.

    ``action`` is a verb phrase ("create", "get"), ``what`` e.g. ``experiment "random-digits"``.
    """
    from kubernetes.client.exceptions import ApiException

    if not isinstance(exc, ApiException):
        return ClusterError(f"cannot reach the Kubernetes API to {action} {what}: "
                            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__} "
                            "(check your kubeconfig context and that the cluster is up)")
    message = _api_message(exc)
    where = f"in namespace {namespace!r}"
    # Webhook answers first: a denial can come back as 400 or 403 depending on the webhook.
    if "admission webhook" in message and "denied the request" in message:
        reason = message.split("denied the request:", 1)[1].strip()
        return ClusterError(f"Katib rejected {what}: {reason}")
    if "failed calling webhook" in message:
        return ClusterError(f"Katib's admission webhook is not reachable ({message}); check the "
                            "katib-controller pod in namespace kubeflow")
    if exc.status == 401:
        return ClusterError(f"the cluster refused the credentials ({message}); refresh your "
                            "kubeconfig login")
    if exc.status == 403:
        return ClusterError(f"forbidden to {action} {what} {where}: {message} (apply "
                            "manifests/base for the nasflow Role, or ask for access)")
    if exc.status == 404:
        if "the server could not find the requested resource" in message:
            return ClusterError("Katib is not installed on this cluster (no "
                                "experiments.kubeflow.org API); see the README's cluster section")
        return ClusterError(f"{what} not found {where}")
    if exc.status == 409:
        return ClusterError(f"{what} already exists {where}; delete it with `nasflow delete` or "
                            "give a new name with --name-suffix")
    return ClusterError(f"could not {action} {what} {where}: HTTP {exc.status}: {message}")
