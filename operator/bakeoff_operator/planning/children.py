"""What a ModelVariant's children say about it: endpoint, replicas, and whether they are placed.

Pure: functions of the objects as the API server returns them (InferenceService, Deployment, Pods),
so the rules are table-tested without a cluster. Readiness comes from the Deployment and the pods,
not from the InferenceService alone: KServe reports an InferenceService Ready while some of its
replicas are Pending for lack of GPUs (its Deployment counts as available within `maxUnavailable`).
A pod the scheduler cannot place carries `PodScheduled=False, reason=Unschedulable` and the
scheduler's message (`0/4 nodes are available: ... Insufficient nvidia.com/gpu ...`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

# KServe labels every predictor pod with its InferenceService's name (the variant's name).
KSERVE_POD_LABEL: Final = "serving.kserve.io/inferenceservice"
# Container waiting reasons that will not resolve by waiting.
FAILED_WAITING_REASONS: Final = ("CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "CreateContainerError")


class ChildrenState(BaseModel):
    """The observed state of a variant's InferenceService, Deployment and pods."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    deployed: bool = Field(description="The InferenceService exists.")
    dependency_missing: str | None = Field(default=None, description="A kind the cluster does not serve (KServe).")
    apply_error: str | None = Field(default=None, description="The API server refused a child: its message.")
    endpoint: str | None = None
    desired_replicas: int = 0
    replicas: int = Field(default=0, description="Pods of the Deployment (any state).")
    ready_replicas: int = 0
    updated_replicas: int = 0
    rolled_out: bool = Field(default=False, description="The Deployment's controller has seen its newest spec.")
    unschedulable: list[str] = Field(default_factory=list, description="Scheduler messages of unplaced pods.")
    insufficient_gpu: bool = Field(default=False, description="A pod waits for GPUs (`Insufficient <gpu>`).")
    failed_containers: list[str] = Field(default_factory=list, description="Container waiting reasons (CrashLoop...).")


def _conditions(obj: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    return list(((obj or {}).get("status") or {}).get("conditions") or [])


def endpoint_of(isvc: Mapping[str, Any] | None) -> str | None:
    """The InferenceService's address (cluster-local URL), as KServe reports it."""
    status = (isvc or {}).get("status") or {}
    address = (status.get("address") or {}).get("url")
    return str(address or status.get("url") or "") or None


def observe_children(
    isvc: Mapping[str, Any] | None,
    deployment: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
    *,
    desired_replicas: int,
    gpu_resource: str = "nvidia.com/gpu",
    dependency_missing: str | None = None,
    apply_error: str | None = None,
) -> ChildrenState:
    """Read the children as the API server returned them."""
    unschedulable: list[str] = []
    insufficient = False
    failed: list[str] = []
    for pod in pods:
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        for c in _conditions(pod):
            if c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable":
                message = str(c.get("message") or "unschedulable")
                unschedulable.append(message)
                insufficient = insufficient or f"Insufficient {gpu_resource}" in message
        for cs in ((pod.get("status") or {}).get("containerStatuses")) or []:
            waiting = ((cs.get("state") or {}).get("waiting")) or {}
            if waiting.get("reason") in (
                "CrashLoopBackOff",
                "ErrImagePull",
                "ImagePullBackOff",
                "CreateContainerError",
            ):
                failed.append(f"{cs.get('name')}: {waiting.get('reason')}: {waiting.get('message', '')}".strip(": "))
    status = (deployment or {}).get("status") or {}
    meta = (deployment or {}).get("metadata") or {}
    rolled_out = deployment is not None and int(status.get("observedGeneration") or 0) >= int(
        meta.get("generation") or 0
    )
    return ChildrenState(
        deployed=isvc is not None,
        dependency_missing=dependency_missing,
        apply_error=apply_error,
        endpoint=endpoint_of(isvc),
        desired_replicas=desired_replicas,
        replicas=int(status.get("replicas") or 0),
        ready_replicas=int(status.get("readyReplicas") or 0),
        updated_replicas=int(status.get("updatedReplicas") or 0),
        rolled_out=rolled_out,
        unschedulable=sorted(set(unschedulable)),
        insufficient_gpu=insufficient,
        failed_containers=sorted(set(failed)),
    )
