"""Thin Kubernetes I/O for the operator: read one Bakeoff object, merge-patch its status.

kopf writes the status of the object a handler runs for; these helpers are for the other direction,
when a change elsewhere (a GPUClass, a ModelVariant a BakeOff names) means an object's status must be
recomputed. Every write carries the `resourceVersion` it was computed from, so a status computed from
a stale read is refused by the API server (409) instead of overwriting a newer one.

Credentials: in a pod, the ServiceAccount token; elsewhere, `KUBECONFIG` or `~/.kube/config` (the
same order kopf logs in with).
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from kubernetes import client, config

from bakeoff_operator.api.common import GROUP, VERSION

MERGE_PATCH: Final = "application/merge-patch+json"
REQUEST_TIMEOUT_S: Final = 30.0
FIELD_MANAGER: Final = "bakeoff-operator"


class PatchOutcome(StrEnum):
    WRITTEN = "written"
    CONFLICT = "conflict"  # the object changed since it was read; read it again
    GONE = "gone"  # deleted meanwhile


def _load_configuration() -> client.Configuration:
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        # KUBECONFIG is read now, not when the client library was imported.
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=os.environ.get("KUBECONFIG") or None, client_configuration=configuration, persist_config=False
        )
    return configuration


@functools.cache
def custom_objects() -> client.CustomObjectsApi:
    """One client for the process, created on first use; `custom_objects.cache_clear()` forgets it, so
    the next call reads the credentials again."""
    return client.CustomObjectsApi(client.ApiClient(_load_configuration()))


def get_object(plural: str, namespace: str, name: str) -> dict[str, Any] | None:
    """A namespaced `bakeoff.dev` object, or None when it does not exist."""
    try:
        obj = custom_objects().get_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, name, _request_timeout=REQUEST_TIMEOUT_S
        )
    except client.ApiException as err:
        if err.status == 404:
            return None
        raise
    return dict(obj) if isinstance(obj, Mapping) else None


def patch_status(
    plural: str, namespace: str, name: str, status: Mapping[str, Any], resource_version: str
) -> PatchOutcome:
    """Merge-patch the `status` subresource, only if the object is still at `resource_version`."""
    body = {"metadata": {"resourceVersion": resource_version}, "status": dict(status)}
    try:
        custom_objects().patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            plural,
            name,
            body,
            field_manager=FIELD_MANAGER,
            _content_type=MERGE_PATCH,
            _request_timeout=REQUEST_TIMEOUT_S,
        )
    except client.ApiException as err:
        if err.status == 409:
            return PatchOutcome.CONFLICT
        if err.status == 404:
            return PatchOutcome.GONE
        raise
    return PatchOutcome.WRITTEN


# --- children of a ModelVariant ------------------------------------------------------------------------------
APPLY_PATCH: Final = "application/apply-patch+yaml"


class MissingKindError(RuntimeError):
    """The API server does not serve a kind (its CRD is not installed)."""

    def __init__(self, api_version: str, kind: str) -> None:
        self.api_version = api_version
        self.kind = kind
        super().__init__(f"the cluster does not serve {kind} ({api_version}); install its CRD")


@functools.cache
def api_client() -> client.ApiClient:
    """The process's API client; `api_client.cache_clear()` forgets it (as `custom_objects`)."""
    return client.ApiClient(_load_configuration())


def _plural(kind: str) -> str:
    return kind.lower() + "s"


def _split(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


def apply(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Server-side apply of a namespaced custom object with Bakeoff's field manager (conflicts forced:
    the operator owns every field it renders). Raises MissingKindError when the kind is not served."""
    group, version = _split(str(obj["apiVersion"]))
    meta = obj["metadata"]
    try:
        result = custom_objects().patch_namespaced_custom_object(
            group,
            version,
            meta["namespace"],
            _plural(str(obj["kind"])),
            meta["name"],
            dict(obj),
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=APPLY_PATCH,
            _request_timeout=REQUEST_TIMEOUT_S,
        )
    except client.ApiException as err:
        if err.status == 404 and _kind_missing(err):
            raise MissingKindError(str(obj["apiVersion"]), str(obj["kind"])) from None
        raise
    return dict(result) if isinstance(result, Mapping) else {}


def _kind_missing(err: client.ApiException) -> bool:
    """A 404 about the resource type (no CRD), not about one object."""
    try:
        body = json.loads(err.body or "{}")
    except ValueError:
        return True
    details = body.get("details") or {}
    return not details.get("name")


def get_namespaced(api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    """A namespaced custom object, or None when it (or its kind) does not exist."""
    group, version = _split(api_version)
    try:
        obj = custom_objects().get_namespaced_custom_object(
            group, version, namespace, _plural(kind), name, _request_timeout=REQUEST_TIMEOUT_S
        )
    except client.ApiException as err:
        if err.status == 404:
            return None
        raise
    return dict(obj) if isinstance(obj, Mapping) else None


def list_namespaced(api_version: str, kind: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
    group, version = _split(api_version)
    try:
        listed = custom_objects().list_namespaced_custom_object(
            group, version, namespace, _plural(kind), label_selector=label_selector, _request_timeout=REQUEST_TIMEOUT_S
        )
    except client.ApiException as err:
        if err.status == 404:
            return []
        raise
    items = listed.get("items", []) if isinstance(listed, Mapping) else []
    return [dict(i) for i in items]


def delete_namespaced(api_version: str, kind: str, namespace: str, name: str, uid: str) -> bool:
    """Delete one object, only if it is still the one with `uid` (a precondition: never another's)."""
    group, version = _split(api_version)
    body = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid))
    try:
        custom_objects().delete_namespaced_custom_object(
            group, version, namespace, _plural(kind), name, body=body, _request_timeout=REQUEST_TIMEOUT_S
        )
    except client.ApiException as err:
        if err.status in (404, 409):
            return False
        raise
    return True


def get_deployment(namespace: str, name: str) -> dict[str, Any] | None:
    apps = client.AppsV1Api(api_client())
    try:
        deployment = apps.read_namespaced_deployment(name, namespace, _request_timeout=REQUEST_TIMEOUT_S)
    except client.ApiException as err:
        if err.status == 404:
            return None
        raise
    return _plain(deployment)


def list_pods(namespace: str, label_selector: str) -> list[dict[str, Any]]:
    core = client.CoreV1Api(api_client())
    pods = core.list_namespaced_pod(namespace, label_selector=label_selector, _request_timeout=REQUEST_TIMEOUT_S)
    return [_plain(p) for p in pods.items]


def _plain(model: object) -> dict[str, Any]:
    """A client model as the API's own JSON (camelCase keys), like the custom-object calls return."""
    plain = api_client().sanitize_for_serialization(model)  # type: ignore[no-untyped-call]
    return dict(plain) if isinstance(plain, Mapping) else {}


# --- status writes -------------------------------------------------------------------------------------------
class _StatusLocks:
    """One lock per (kind, namespace): a status is computed and written while holding it.

    A status depends on more than its object (the GPU classes, the variants a bake-off names), and
    kopf delivers the events of each kind on its own. Indexes are updated before any handler of the
    event runs, so a computation that starts after another has written reads data at least as new:
    the last write is always computed from the newest data. kopf's own `patch.status` is applied
    after the handler returns, outside any lock, which is why handlers write through the API.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}

    def __call__(self, plural: str, namespace: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault((plural, namespace), threading.Lock())


status_lock = _StatusLocks()


# --- the autoscaler's reads and writes --------------------------------------------------------------------------
def _list_ours(plural: str, namespaces: Sequence[str]) -> list[dict[str, Any]]:
    """Objects of one of Bakeoff's kinds in `namespaces` (every namespace when empty)."""
    api = custom_objects()
    if not namespaces:
        listed = api.list_cluster_custom_object(GROUP, VERSION, plural, _request_timeout=REQUEST_TIMEOUT_S)
        return _items(listed)
    out: list[dict[str, Any]] = []
    for ns in namespaces:
        listed = api.list_namespaced_custom_object(GROUP, VERSION, ns, plural, _request_timeout=REQUEST_TIMEOUT_S)
        out.extend(_items(listed))
    return out


def list_variants(namespaces: Sequence[str]) -> list[dict[str, Any]]:
    """ModelVariants in `namespaces` (every namespace when empty)."""
    return _list_ours("modelvariants", namespaces)


def list_bakeoffs(namespaces: Sequence[str]) -> list[dict[str, Any]]:
    """BakeOffs in `namespaces` (every namespace when empty), with their status."""
    return _list_ours("bakeoffs", namespaces)


def _items(listed: object) -> list[dict[str, Any]]:
    items = listed.get("items", []) if isinstance(listed, Mapping) else []
    return [dict(i) for i in items]


def scale_variant(namespace: str, name: str, replicas: int) -> None:
    """Write a ModelVariant's desired replicas through its scale subresource."""
    custom_objects().patch_namespaced_custom_object_scale(
        GROUP,
        VERSION,
        namespace,
        "modelvariants",
        name,
        {"spec": {"replicas": replicas}},
        field_manager=FIELD_MANAGER,
        _content_type=MERGE_PATCH,
        _request_timeout=REQUEST_TIMEOUT_S,
    )


def list_nodes() -> list[dict[str, Any]]:
    core = client.CoreV1Api(api_client())
    return [_plain(n) for n in core.list_node(_request_timeout=REQUEST_TIMEOUT_S).items]


def list_all_pods() -> list[dict[str, Any]]:
    """Pods of every namespace that hold or wait for resources (not Succeeded or Failed)."""
    core = client.CoreV1Api(api_client())
    pods = core.list_pod_for_all_namespaces(
        field_selector="status.phase!=Succeeded,status.phase!=Failed", _request_timeout=REQUEST_TIMEOUT_S
    )
    return [_plain(p) for p in pods.items]


def hold_lease(namespace: str, name: str, identity: str, lease_s: int) -> bool:
    """Acquire or renew a coordination.k8s.io Lease; True while this identity holds it.

    Optimistic: a write against a stale resourceVersion is refused by the API server, so two
    contenders never both believe they hold it."""
    coordination = client.CoordinationV1Api(api_client())
    now = datetime.now(UTC)
    try:
        lease = coordination.read_namespaced_lease(name, namespace, _request_timeout=REQUEST_TIMEOUT_S)
    except client.ApiException as err:
        if err.status != 404:
            raise
        body = client.V1Lease(
            metadata=client.V1ObjectMeta(name=name, namespace=namespace),
            spec=client.V1LeaseSpec(
                holder_identity=identity, lease_duration_seconds=lease_s, acquire_time=now, renew_time=now
            ),
        )
        try:
            coordination.create_namespaced_lease(namespace, body, _request_timeout=REQUEST_TIMEOUT_S)
        except client.ApiException as create_err:
            if create_err.status == 409:
                return False
            raise
        return True
    spec = lease.spec or client.V1LeaseSpec()
    lease.spec = spec
    held_by_other = spec.holder_identity not in (None, "", identity)
    renewed = spec.renew_time or spec.acquire_time
    expired = renewed is None or (now - renewed).total_seconds() > (spec.lease_duration_seconds or lease_s)
    if held_by_other and not expired:
        return False
    if spec.holder_identity != identity:
        spec.acquire_time = now
        spec.lease_transitions = (spec.lease_transitions or 0) + 1
    spec.holder_identity = identity
    spec.lease_duration_seconds = lease_s
    spec.renew_time = now
    try:
        coordination.replace_namespaced_lease(name, namespace, lease, _request_timeout=REQUEST_TIMEOUT_S)
    except client.ApiException as err:
        if err.status == 409:
            return False
        raise
    return True
