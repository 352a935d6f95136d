"""A stand-in Kubernetes API server for Katib's custom resources and ``batch/v1`` Jobs, at the
HTTP layer.

The real ``kubernetes`` client (CustomObjectsApi, BatchV1Api, ApiClient, Watch) builds the
requests and parses the responses; only ``rest_client.request`` is replaced. Errors come back as
the API server's ``Status`` bodies (404 NotFound, 409 AlreadyExists, 403 Forbidden, webhook
denials), watches as chunked JSON event lines, and a watch can be scripted to drop its connection
or to answer 410. ``on_create`` hooks play the controllers (e.g. a kubelet running a Job).
"""

from __future__ import annotations

import copy
import io
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlparse

import urllib3
from kubernetes import client
from kubernetes.client.rest import RESTResponse
from urllib3.exceptions import ProtocolError

PATH = re.compile(r"/(?:apis/(?P<group>[^/]+)|api)/[^/]+/namespaces/(?P<namespace>[^/]+)/"
                  r"(?P<plural>[^/]+)(?:/(?P<name>[^/]+)(?P<status>/status)?)?$")
DROP = "drop the connection"


def status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


class _Body(io.BytesIO):
    """A response body that reports itself closed once read, as a socket's does."""

    def isclosed(self) -> bool:
        return self.tell() >= len(self.getbuffer())


class _Dropping(io.RawIOBase):
    """A response body that sends some bytes, then the connection breaks."""

    def __init__(self, data: bytes) -> None:
        self.data, self.sent = data, False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.sent:
            raise ProtocolError("Connection broken: IncompleteRead")
        self.sent = True
        buffer[:len(self.data)] = self.data
        return len(self.data)


class FakeKubeApi:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, list[str]]]] = []
        # One entry per watch request: events, DROP, or a callable (fake, name) -> events.
        self.watch_script: list[Any] = []
        self.deny: dict[str, dict[str, Any]] = {}  # experiment name -> Status body on create
        self.forbidden: set[str] = set()  # HTTP methods refused with 403
        self.katib_installed = True
        self.version = 100
        # plural -> hook(fake, created object), called after a create succeeded
        self.on_create: dict[str, Callable[[FakeKubeApi, dict[str, Any]], None]] = {}

    def add(self, plural: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        self.objects[(plural, meta["namespace"], meta["name"])] = copy.deepcopy(obj)

    def api(self) -> client.CustomObjectsApi:
        api_client = client.ApiClient(client.Configuration(host="https://kube.test:6443"))
        api_client.rest_client.request = self.request
        return client.CustomObjectsApi(api_client)

    # ---- HTTP --------------------------------------------------------------------------------

    def request(self, method: str, url: str, headers=None, body=None, post_params=None,
                _request_timeout=None) -> RESTResponse:
        parsed = urlparse(url)
        query = parse_qs(parsed.query)
        self.requests.append((method, parsed.path, query))
        if not self.katib_installed:
            return self._respond(404, status_body(404, "NotFound",
                                                  "the server could not find the requested "
                                                  "resource"))
        if method in self.forbidden:
            return self._respond(403, status_body(
                403, "Forbidden", 'experiments.kubeflow.org is forbidden: User "system:'
                'serviceaccount:nasflow:default" cannot create resource "experiments" in API '
                'group "kubeflow.org" in the namespace "nasflow"'))
        match = PATH.match(parsed.path)
        if match is None:
            raise AssertionError(f"unexpected path {parsed.path}")
        group, namespace, plural, name = match.group("group", "namespace", "plural", "name")
        group = group or "core"
        if method == "PATCH" and match.group("status"):
            return self._patch_status(namespace, plural, group, name,
                                      json.loads(body) if isinstance(body, str) else body)
        if method == "POST":
            return self._create(namespace, plural, group, json.loads(body)
                                if isinstance(body, str) else body)
        if method == "GET" and name:
            obj = self.objects.get((plural, namespace, name))
            if obj is None:
                return self._respond(404, status_body(
                    404, "NotFound", f'{plural}.{group} "{name}" not found'))
            return self._respond(200, obj)
        if method == "GET" and query.get("watch") == ["true"]:
            return self._watch(query)
        if method == "GET":
            return self._respond(200, {"apiVersion": "kubeflow.org/v1beta1", "kind": "List",
                                       "metadata": {"resourceVersion": str(self.version)},
                                       "items": self._select(plural, namespace, query)})
        if method == "DELETE":
            if self.objects.pop((plural, namespace, name), None) is None:
                return self._respond(404, status_body(
                    404, "NotFound", f'{plural}.{group} "{name}" not found'))
            return self._respond(200, {"kind": "Status", "status": "Success"})
        raise AssertionError(f"unexpected {method} {url}")

    def _create(self, namespace: str, plural: str, group: str, obj: dict[str, Any]
                ) -> RESTResponse:
        name = obj["metadata"]["name"]
        if name in self.deny:
            denial = self.deny[name]
            return self._respond(denial["code"], denial)
        if (plural, namespace, name) in self.objects:
            return self._respond(409, status_body(
                409, "AlreadyExists", f'{plural}.{group} "{name}" already exists'))
        self.version += 1
        obj = copy.deepcopy(obj)
        obj["metadata"].update({"namespace": namespace, "resourceVersion": str(self.version),
                                "uid": f"uid-{self.version}", "generation": 1,
                                "creationTimestamp": "2026-11-28T03:00:00Z"})
        self.objects[(plural, namespace, name)] = obj
        if plural in self.on_create:
            self.on_create[plural](self, copy.deepcopy(obj))
        return self._respond(201, obj)

    def _patch_status(self, namespace: str, plural: str, group: str, name: str,
                      patch: dict[str, Any]) -> RESTResponse:
        """A merge patch of the status subresource; a ``metadata.resourceVersion`` in it must
        be the object's (409 Conflict otherwise), as the API server checks."""
        obj = self.objects.get((plural, namespace, name))
        if obj is None:
            return self._respond(404, status_body(404, "NotFound",
                                                  f'{plural}.{group} "{name}" not found'))
        wanted = patch.get("metadata", {}).get("resourceVersion")
        if wanted is not None and wanted != obj["metadata"].get("resourceVersion"):
            return self._respond(409, status_body(
                409, "Conflict", f'Operation cannot be fulfilled on {plural}.{group} "{name}": '
                "the object has been modified; please apply your changes to the latest version "
                "and try again"))
        self.version += 1
        obj.setdefault("status", {}).update(patch.get("status", {}))
        obj["metadata"]["resourceVersion"] = str(self.version)
        return self._respond(200, obj)

    def _select(self, plural: str, namespace: str, query: dict[str, list[str]]) -> list[dict]:
        items = [o for (p, ns, _), o in sorted(self.objects.items())
                 if p == plural and ns == namespace]
        for selector in query.get("labelSelector", []):
            key, _, value = selector.partition("=")
            items = [o for o in items if o["metadata"].get("labels", {}).get(key) == value]
        for selector in query.get("fieldSelector", []):
            _, _, value = selector.partition("=")
            items = [o for o in items if o["metadata"]["name"] == value]
        return items

    def _watch(self, query: dict[str, list[str]]) -> RESTResponse:
        session = self.watch_script.pop(0) if self.watch_script else []
        if callable(session):
            session = session(self, query["fieldSelector"][0].partition("=")[2])
        if session == DROP:
            return self._stream(b"", drop=True)
        lines = b"".join(json.dumps(event).encode() + b"\n" for event in session)
        return self._stream(lines)

    def _stream(self, data: bytes, drop: bool = False) -> RESTResponse:
        raw = _Dropping(data) if drop else _Body(data)
        return RESTResponse(urllib3.HTTPResponse(body=raw, status=200, reason="OK",
                                                 headers={"Content-Type": "application/json"},
                                                 preload_content=False))

    def _respond(self, code: int, payload: dict[str, Any]) -> RESTResponse:
        data = json.dumps(payload).encode()
        return RESTResponse(urllib3.HTTPResponse(
            body=_Body(data), status=code, reason={
                200: "OK", 201: "Created", 400: "Bad Request", 403: "Forbidden",
                404: "Not Found", 409: "Conflict"}.get(code, "Error"),
            headers={"Content-Type": "application/json"}, preload_content=False))

    def watch_requests(self) -> list[dict[str, list[str]]]:
        return [q for m, _, q in self.requests if m == "GET" and q.get("watch") == ["true"]]


def event(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "object": obj}


def gone() -> dict[str, Any]:
    return {"type": "ERROR", "object": status_body(
        410, "Expired", "too old resource version: 101 (205)")}
