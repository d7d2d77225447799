"""Kubernetes I/O of bake-off runs: the run Jobs and result ConfigMaps of a BakeOff, the identity its
Jobs run as, and the Events posted on the BakeOff.

Thin: list, create and delete, each request bounded by a timeout; what to create or delete is decided
in `planning.runs` and rendered in `render.jobs`. Creation is idempotent (a name that exists is
adopted, never overwritten) and deletion names one object with its UID as a precondition, so the
operator never removes what it does not own.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from kubernetes import client

from bakeoff_operator.io.kube import REQUEST_TIMEOUT_S, _plain, api_client
from bakeoff_operator.planning.runs import COMPONENT_RESULT, COMPONENT_RUN, LABEL_BAKEOFF, LABEL_COMPONENT

BACKGROUND: Final = "Background"  # a Job's pods go with it
EVENT_SOURCE: Final = "bakeoff-operator"


def _selector(bakeoff: str, component: str) -> str:
    return f"{LABEL_BAKEOFF}={bakeoff},{LABEL_COMPONENT}={component}"


def list_run_jobs(namespace: str, bakeoff: str) -> list[dict[str, Any]]:
    """The run Jobs of a BakeOff (by label; the planner checks the owner)."""
    batch = client.BatchV1Api(api_client())
    jobs = batch.list_namespaced_job(
        namespace, label_selector=_selector(bakeoff, COMPONENT_RUN), _request_timeout=REQUEST_TIMEOUT_S
    )
    return [_plain(j) for j in jobs.items]


def list_results(namespace: str, bakeoff: str) -> list[dict[str, Any]]:
    """The result ConfigMaps of a BakeOff's runs."""
    core = client.CoreV1Api(api_client())
    maps = core.list_namespaced_config_map(
        namespace, label_selector=_selector(bakeoff, COMPONENT_RESULT), _request_timeout=REQUEST_TIMEOUT_S
    )
    return [_plain(m) for m in maps.items]


def _created(call: Any, *args: Any) -> bool:
    """Run a create call; False when the object exists already (it is adopted as it is)."""
    try:
        call(*args, _request_timeout=REQUEST_TIMEOUT_S)
    except client.ApiException as err:
        if err.status == 409:
            return False
        raise
    return True


def ensure_identity(namespace: str, objects: Iterable[Mapping[str, Any]]) -> None:
    """Create the runs' ServiceAccount and RoleBinding where they do not exist yet."""
    core = client.CoreV1Api(api_client())
    rbac = client.RbacAuthorizationV1Api(api_client())
    for obj in objects:
        body = {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}
        if obj["kind"] == "ServiceAccount":
            _created(core.create_namespaced_service_account, namespace, body)
        elif obj["kind"] == "RoleBinding":
            _created(rbac.create_namespaced_role_binding, namespace, body)
        else:
            raise ValueError(f"not a run identity object: {obj['kind']}")


def create_job(job: Mapping[str, Any]) -> bool:
    """Create a run's Job; False when a Job of that name exists (a restart adopts it)."""
    batch = client.BatchV1Api(api_client())
    return _created(batch.create_namespaced_job, job["metadata"]["namespace"], dict(job))


def _delete(call: Any, name: str, namespace: str, uid: str | None) -> bool:
    options = client.V1DeleteOptions(
        propagation_policy=BACKGROUND, preconditions=client.V1Preconditions(uid=uid) if uid else None
    )
    try:
        call(name, namespace, body=options, _request_timeout=REQUEST_TIMEOUT_S)
    except client.ApiException as err:
        if err.status in (404, 409):
            return False
        raise
    return True


def delete_job(namespace: str, name: str, uid: str | None) -> bool:
    """Delete a run's Job and its pod, only if it is still the one with `uid`."""
    return _delete(client.BatchV1Api(api_client()).delete_namespaced_job, name, namespace, uid)


def delete_result(namespace: str, name: str, uid: str | None) -> bool:
    """Delete a result ConfigMap, only if it is still the one with `uid`."""
    return _delete(client.CoreV1Api(api_client()).delete_namespaced_config_map, name, namespace, uid)


def post_event(body: Mapping[str, Any], *, warning: bool, reason: str, message: str, at: datetime) -> None:
    """Post a core/v1 Event about `body` (the BakeOff) as the operator. Direct, not through kopf's poster,
    which exists only inside kopf's handler tasks and not in the runs loop's thread."""
    meta = body["metadata"]
    stamp = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    event: Any = {  # the client sends a plain dict as it is
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": body["apiVersion"],
            "kind": body["kind"],
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "reason": reason,
        "message": message,
        "type": "Warning" if warning else "Normal",
        "source": {"component": EVENT_SOURCE},
        "reportingComponent": EVENT_SOURCE,
        "reportingInstance": socket.gethostname()[:128],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
    client.CoreV1Api(api_client()).create_namespaced_event(meta["namespace"], event, _request_timeout=REQUEST_TIMEOUT_S)


def claim_exists(namespace: str, name: str) -> bool:
    """Whether the PersistentVolumeClaim a run keeps its full results on exists."""
    try:
        client.CoreV1Api(api_client()).read_namespaced_persistent_volume_claim(
            name, namespace, _request_timeout=REQUEST_TIMEOUT_S
        )
    except client.ApiException as err:
        if err.status == 404:
            return False
        raise
    return True
