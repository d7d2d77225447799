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
import os
from collections.abc import Mapping
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
