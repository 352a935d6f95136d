"""Service names for pods, without cluster DNS or kube-proxy: every pod's hosts file carries
each Service's names (``name.namespace``, ``…svc``, ``…svc.cluster.local``, and the bare
``name`` inside its own namespace) at the address of its first ready endpoint, from the
EndpointSlices Kubernetes' own controller keeps. So a Service is reached at its endpoint's
address on the target port: the port must equal the target port, as it does for every Service
Katib and nasflow create (webhooks are called by the API server at their endpoints). A headless
Service's pods with a ``hostname`` and ``subdomain`` get their own names too (JobSet's)."""

from __future__ import annotations

from kubernetes import client

DOMAIN = "svc.cluster.local"


def table(discovery: client.DiscoveryV1Api) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """(namespace, service) -> [(address, hostname or "")] of ready endpoints."""
    out: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for item in discovery.list_endpoint_slice_for_all_namespaces().items:
        service = (item.metadata.labels or {}).get("kubernetes.io/service-name")
        if not service:
            continue
        for endpoint in item.endpoints or []:
            if endpoint.conditions is not None and endpoint.conditions.ready is False:
                continue
            for address in endpoint.addresses[:1]:
                out.setdefault((item.metadata.namespace, service), []).append(
                    (address, endpoint.hostname or ""))
    return out


def hosts_lines(endpoints: dict[tuple[str, str], list[tuple[str, str]]], namespace: str) -> str:
    """The Services' lines of a hosts file for a pod of ``namespace``."""
    lines = []
    for (ns, service), addresses in sorted(endpoints.items()):
        first = sorted(addresses)[0][0]
        names = [f"{service}.{ns}", f"{service}.{ns}.svc", f"{service}.{ns}.{DOMAIN}"]
        if ns == namespace:
            names.insert(0, service)
        lines.append(f"{first}\t{' '.join(names)}")
        for address, hostname in sorted(addresses):
            if hostname:
                lines.append(f"{address}\t{hostname}.{service}.{ns}.svc "
                             f"{hostname}.{service}.{ns}.{DOMAIN}"
                             + (f" {hostname}.{service}" if ns == namespace else ""))
    return "".join(line + "\n" for line in lines)
