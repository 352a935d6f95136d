"""A pod's volumes as folders of its pod folder, as the kubelet materialises them: emptyDir,
configMap, secret, downwardAPI and projected (the service-account token by TokenRequest, bound
to the pod), and hostPath as it is. ConfigMap, Secret and projected volumes are written again
when their objects change (``sync``), as the kubelet does: Katib's certificate generator waits
for the Secret it fills to appear in its mounted folder."""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

from kubernetes import client
from kubernetes.client.rest import ApiException

TOKEN_REFRESH_S = 1800


class VolumeError(RuntimeError):
    """A volume cannot be made (a missing ConfigMap or Secret that is not optional, an
    unsupported kind): the pod waits, with this message, as under the kubelet."""


def field_value(pod: client.V1Pod, path: str) -> str:
    """A downward-API ``fieldRef.fieldPath`` of ``pod``."""
    meta = pod.metadata
    simple = {"metadata.name": meta.name, "metadata.namespace": meta.namespace,
              "metadata.uid": meta.uid, "spec.nodeName": pod.spec.node_name,
              "spec.serviceAccountName": pod.spec.service_account_name,
              "status.podIP": pod.status.pod_ip if pod.status else None,
              "status.hostIP": pod.status.host_ip if pod.status else None}
    if path in simple:
        return simple[path] or ""
    for prefix, values in (("metadata.labels", meta.labels), ("metadata.annotations",
                                                               meta.annotations)):
        if path.startswith(prefix + "['") and path.endswith("']"):
            return (values or {}).get(path[len(prefix) + 2:-2], "")
    raise VolumeError(f"fieldRef {path!r} is not supported by the node agent")


class Volumes:
    def __init__(self, core: client.CoreV1Api, pod: client.V1Pod, folder: Path) -> None:
        self.core, self.pod, self.folder = core, pod, folder
        self.paths: dict[str, Path] = {}
        self._token_at: float = 0.0

    def create(self) -> None:
        for volume in self.pod.spec.volumes or []:
            if volume.host_path:
                self.paths[volume.name] = Path(volume.host_path.path)
                continue
            path = self.folder / "volumes" / volume.name
            path.mkdir(parents=True, exist_ok=True)
            self.paths[volume.name] = path
        self.sync()

    def sync(self) -> None:
        """Write every object-backed volume's files (those that changed)."""
        refresh = time.monotonic() - self._token_at > TOKEN_REFRESH_S
        for volume in self.pod.spec.volumes or []:
            files = self._files(volume, refresh)
            if files is not None:
                _write(self.paths[volume.name], files)
        if refresh:
            self._token_at = time.monotonic()

    def _files(self, volume: client.V1Volume, refresh: bool) -> dict[str, tuple[bytes, int]] | None:
        if volume.empty_dir is not None or volume.host_path is not None:
            return None
        if volume.config_map is not None:
            return self._config_map(volume.config_map, volume.config_map.default_mode)
        if volume.secret is not None:
            return self._secret(volume.secret, volume.secret.default_mode)
        if volume.downward_api is not None:
            return self._downward(volume.downward_api.items, volume.downward_api.default_mode)
        if volume.projected is not None:
            return self._projected(volume.projected, refresh)
        kinds = [k for k, v in volume.to_dict().items() if v and k != "name"]
        raise VolumeError(f"volume {volume.name!r}: {', '.join(kinds)} volumes are not "
                          "supported by the node agent")

    def read(self, kind: str, name: str, optional: bool | None) -> dict[str, bytes] | None:
        """A ConfigMap's or Secret's data; None if it is missing and ``optional``."""
        try:
            if kind == "configmap":
                obj = self.core.read_namespaced_config_map(name, self.pod.metadata.namespace)
                data = {k: v.encode() for k, v in (obj.data or {}).items()}
                data.update({k: base64.b64decode(v) for k, v in (obj.binary_data or {}).items()})
                return data
            obj = self.core.read_namespaced_secret(name, self.pod.metadata.namespace)
            return {k: base64.b64decode(v) for k, v in (obj.data or {}).items()}
        except ApiException as error:
            if error.status == 404 and optional:
                return None
            if error.status == 404:
                raise VolumeError(f'{kind} "{name}" not found') from None
            raise

    @staticmethod
    def _select(data: dict[str, bytes] | None, items, mode: int | None
                ) -> dict[str, tuple[bytes, int]]:
        mode = 0o644 if mode is None else mode
        if data is None:
            return {}
        if not items:
            return {k: (v, mode) for k, v in data.items()}
        return {i.path: (data[i.key], i.mode if i.mode is not None else mode)
                for i in items if i.key in data}

    def _config_map(self, source, mode) -> dict[str, tuple[bytes, int]]:
        return self._select(self.read("configmap", source.name, source.optional),
                            source.items, mode)

    def _secret(self, source, mode) -> dict[str, tuple[bytes, int]]:
        return self._select(self.read("secret", source.secret_name, source.optional),
                            source.items, mode)

    def _downward(self, items, mode) -> dict[str, tuple[bytes, int]]:
        mode = 0o644 if mode is None else mode
        return {i.path: (field_value(self.pod, i.field_ref.field_path).encode(), mode)
                for i in items or [] if i.field_ref is not None}

    def _projected(self, projected, refresh: bool) -> dict[str, tuple[bytes, int]] | None:
        files: dict[str, tuple[bytes, int]] = {}
        mode = projected.default_mode
        for source in projected.sources or []:
            if source.service_account_token is not None:
                if not refresh:
                    return None  # the token is still fresh; the rest is immutable enough
                files[source.service_account_token.path] = (self._token(
                    source.service_account_token), 0o600 if mode is None else mode)
            elif source.config_map is not None:
                files.update(self._config_map(source.config_map, mode))
            elif source.secret is not None:
                files.update(self._secret(source.secret, mode))
            elif source.downward_api is not None:
                files.update(self._downward(source.downward_api.items, mode))
        return files

    def _token(self, source) -> bytes:
        meta = self.pod.metadata
        request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
            audiences=[source.audience] if source.audience else [],
            expiration_seconds=source.expiration_seconds or 3600,
            bound_object_ref=client.V1BoundObjectReference(
                api_version="v1", kind="Pod", name=meta.name, uid=meta.uid)))
        answer = self.core.create_namespaced_service_account_token(
            self.pod.spec.service_account_name or "default", meta.namespace, request)
        return answer.status.token.encode()


def _write(folder: Path, files: dict[str, tuple[bytes, int]]) -> None:
    for name, (content, mode) in files.items():
        path = folder / name
        try:
            if path.read_bytes() == content:
                continue
        except OSError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_bytes(content)
        os.chmod(temporary, mode)
        temporary.replace(path)
