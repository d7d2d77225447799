"""The Kubernetes children of a ModelVariant: a KServe ServingRuntime and InferenceService running vLLM
(or Bakeoff's simulator), and a PodMonitor for vLLM's `/metrics`.

Pure and deterministic: `render_children(deployment, settings, owner)` is a function of the variant's
deployment plan (`planning.deployment`), the operator's settings and the owning ModelVariant. Keys,
arguments, environment and labels come out sorted, so the same plan renders the same bytes; the hash
of the rendered specs (`bakeoff.dev/spec-hash`) sits on the children and on the replicas' pods, so a
change of the spec rolls the replicas exactly once and nothing else does.

KServe merges the ServingRuntime's container with the InferenceService's `model` container: the
runtime carries the command, arguments, environment, port and probes and no resources (limits in the
runtime plus larger requests in the InferenceService make an invalid Deployment); the InferenceService
carries the full requests and limits, `storageUri`, placement and replica bounds. The deployment mode
is KServe's Standard (raw Deployment) mode and the autoscaler class is set explicitly: `none` (KServe
sets the Deployment's replicas to `minReplicas`, which the operator writes from the desired count).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final

from bakeoff_runtime.gpus import GPUCatalog
from bakeoff_runtime.vllm_version import VLLM_IMAGE
from pydantic import BaseModel, ConfigDict, Field

from bakeoff_operator.api.common import API_VERSION
from bakeoff_operator.api.gpuclass import GPUClass, Toleration
from bakeoff_operator.api.modelvariant import Engine
from bakeoff_operator.planning.children import KSERVE_POD_LABEL
from bakeoff_operator.planning.deployment import VariantDeployment

KSERVE_GROUP: Final = "serving.kserve.io"
SERVING_RUNTIME_API: Final = "serving.kserve.io/v1alpha1"
INFERENCE_SERVICE_API: Final = "serving.kserve.io/v1beta1"
POD_MONITOR_API: Final = "monitoring.coreos.com/v1"
CONTAINER_NAME: Final = "kserve-container"  # the name KServe merges the runtime's and the model's containers by
PORT: Final = 8080
LISTEN_HOST: Final = "0.0.0.0"
MODEL_FORMAT: Final = "vLLM"
PRODUCT_LABEL: Final = "nvidia.com/gpu.product"

LABEL_VARIANT: Final = "bakeoff.dev/variant"
LABEL_MODEL: Final = "bakeoff.dev/model"
LABEL_FORMAT: Final = "bakeoff.dev/format"
LABEL_ENGINE: Final = "bakeoff.dev/engine"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "bakeoff-operator"
ANNOTATION_SPEC_HASH: Final = "bakeoff.dev/spec-hash"
ANNOTATION_DEPLOYMENT_MODE: Final = "serving.kserve.io/deploymentMode"
ANNOTATION_AUTOSCALER_CLASS: Final = "serving.kserve.io/autoscalerClass"
SIM_VARIANT_ENV: Final = "BAKEOFF_SIM_VARIANT"


class HostResources(BaseModel):
    """CPU and memory per GPU of a replica (requests equal limits: the replica's QoS is Guaranteed)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu_per_gpu: int = Field(default=8, ge=1, le=512, description="CPU cores per GPU of a vLLM replica.")
    memory_gib_per_gpu: int = Field(default=64, ge=1, le=4096, description="Host memory per GPU, GiB.")
    simulator_cpu: str = Field(default="500m", description="CPU of one simulated replica.")
    simulator_memory: str = Field(default="512Mi", description="Memory of one simulated replica.")


class RenderSettings(BaseModel):
    """The operator's settings that shape the children (chart values, environment)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vllm_image: str = Field(default=VLLM_IMAGE, description="vLLM image (the release whose flags Bakeoff checks).")
    simulator_image: str = Field(default="bakeoff:latest", description="Bakeoff's image, which runs `bakeoff sim`.")
    default_engine: Engine = Field(default=Engine.VLLM, description="Engine of variants that do not name one.")
    simulator_requests_gpus: bool = Field(
        default=True,
        description="Simulated replicas still request the GPUs of their class (so placement, capacity and "
        "`InsufficientGPU` behave as with vLLM); false runs them on any node, for clusters without GPUs.",
    )
    pod_monitor: bool = Field(
        default=True, description="Render a PodMonitor (when the prometheus-operator CRD exists)."
    )
    host: HostResources = Field(default_factory=HostResources)


class GPUPlacement(BaseModel):
    """Where replicas of a GPU class may run: node product labels, the extended resource, tolerations."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    resource_name: str = "nvidia.com/gpu"
    products: tuple[str, ...] = Field(min_length=1, description="`nvidia.com/gpu.product` values, first the main one.")
    tolerations: tuple[Toleration, ...] = ()


class Owner(BaseModel):
    """The ModelVariant that owns the children (garbage collection deletes them with it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    uid: str
    kind: str = "ModelVariant"
    api_version: str = API_VERSION

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


class Replicas(BaseModel):
    """How many replicas the InferenceService runs now, and its bounds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    desired: int = Field(ge=0)
    maximum: int = Field(ge=1)


class Children(BaseModel):
    """The rendered objects, in apply order, and the hash that names this rendering."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    objects: list[dict[str, Any]]
    spec_hash: str

    def of_kind(self, kind: str) -> dict[str, Any] | None:
        return next((o for o in self.objects if o["kind"] == kind), None)


def _sorted(obj: Any) -> Any:
    """Dicts with sorted keys all the way down (lists keep their order: they are already sorted or ordered)."""
    if isinstance(obj, Mapping):
        return {k: _sorted(obj[k]) for k in sorted(obj)}
    if isinstance(obj, list | tuple):
        return [_sorted(v) for v in obj]
    return obj


def spec_hash(*specs: Mapping[str, Any]) -> str:
    blob = json.dumps([_sorted(s) for s in specs], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


RUNTIME_HASH_CHARS: Final = 10


def runtime_name(variant: str, digest: str) -> str:
    """The ServingRuntime of one rendering of a variant: the variant's name and the spec hash.

    KServe re-renders an InferenceService's Deployment when its ServingRuntime changes, and again when
    the InferenceService changes: editing one runtime in place would roll the replicas twice. A new
    runtime per spec, named in the InferenceService together with the new pod annotation, is one
    change, one rollout; the operator then deletes the runtimes of earlier renderings.
    """
    return f"{variant[: 62 - RUNTIME_HASH_CHARS]}-{digest[:RUNTIME_HASH_CHARS]}"


def labels_for(deployment: VariantDeployment, model_label: str | None, engine: Engine) -> dict[str, str]:
    assert deployment.variant is not None
    labels = {
        LABEL_VARIANT: deployment.name,
        LABEL_FORMAT: deployment.variant.format.value,
        LABEL_ENGINE: engine.value,
        LABEL_MANAGED_BY: MANAGED_BY,
    }
    if model_label:
        labels[LABEL_MODEL] = model_label
    return dict(sorted(labels.items()))


def _probes() -> dict[str, Any]:
    health = {"httpGet": {"path": "/health", "port": PORT}}
    return {
        # Loading weights takes minutes: the startup probe allows 30 min before liveness takes over.
        "startupProbe": {**health, "periodSeconds": 10, "failureThreshold": 180},
        "readinessProbe": {**health, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {**health, "periodSeconds": 15, "failureThreshold": 4},
    }


def _runtime_container(deployment: VariantDeployment, settings: RenderSettings, engine: Engine) -> dict[str, Any]:
    assert deployment.launch is not None
    assert deployment.variant is not None
    if engine is Engine.SIMULATOR:
        image = settings.simulator_image
        command = ["bakeoff", "sim"]
        args = [f"--host={LISTEN_HOST}", f"--port={PORT}", f"--variant-env={SIM_VARIANT_ENV}"]
        env = {SIM_VARIANT_ENV: deployment.variant.model_dump_json()}
    else:
        image = deployment.image or settings.vllm_image
        command = ["vllm", "serve"]
        args = deployment.launch.serve_args(LISTEN_HOST, PORT)
        env = dict(deployment.launch.env)
    return {
        "name": CONTAINER_NAME,
        "image": image,
        "command": command,
        "args": args,
        "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
        "ports": [{"containerPort": PORT, "name": "http", "protocol": "TCP"}],
        **_probes(),
    }


def _resources(
    deployment: VariantDeployment, settings: RenderSettings, placement: GPUPlacement, engine: Engine
) -> dict[str, Any]:
    assert deployment.variant is not None
    gpus = deployment.variant.tensor_parallel
    host = settings.host
    if engine is Engine.SIMULATOR:
        amounts = {"cpu": host.simulator_cpu, "memory": host.simulator_memory}
        if settings.simulator_requests_gpus:
            amounts[placement.resource_name] = str(gpus)
    else:
        amounts = {
            "cpu": str(host.cpu_per_gpu * gpus),
            "memory": f"{host.memory_gib_per_gpu * gpus}Gi",
            placement.resource_name: str(gpus),
        }
    amounts = dict(sorted(amounts.items()))
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _placement(placement: GPUPlacement, with_gpus: bool) -> dict[str, Any]:
    if not with_gpus:
        return {}
    out: dict[str, Any] = {}
    if len(placement.products) == 1:
        out["nodeSelector"] = {PRODUCT_LABEL: placement.products[0]}
    else:
        term = {"matchExpressions": [{"key": PRODUCT_LABEL, "operator": "In", "values": sorted(placement.products)}]}
        out["affinity"] = {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}
        }
    if placement.tolerations:
        out["tolerations"] = [t.model_dump(by_alias=True, exclude_none=True) for t in placement.tolerations]
    return out


def render_children(
    deployment: VariantDeployment,
    settings: RenderSettings,
    owner: Owner,
    placement: GPUPlacement,
    replicas: Replicas,
    *,
    engine: Engine | None = None,
    model_label: str | None = None,
) -> Children:
    """The ServingRuntime, InferenceService and (optionally) PodMonitor of a deployable variant."""
    if not deployment.deployable or deployment.variant is None or deployment.model is None:
        raise ValueError(f"ModelVariant {deployment.name} is not deployable: {deployment.reason}")
    engine = engine or settings.default_engine
    namespace = deployment.namespace
    labels = labels_for(deployment, model_label, engine)
    runtime_spec: dict[str, Any] = {
        "supportedModelFormats": [{"name": MODEL_FORMAT, "version": "1", "autoSelect": False}],
        "annotations": {"prometheus.kserve.io/path": "/metrics", "prometheus.kserve.io/port": str(PORT)},
        "containers": [_runtime_container(deployment, settings, engine)],
    }
    model: dict[str, Any] = {
        "modelFormat": {"name": MODEL_FORMAT},
        "resources": _resources(deployment, settings, placement, engine),
    }
    if engine is Engine.VLLM and deployment.model.storage_uri:
        model["storageUri"] = deployment.model.storage_uri
    with_gpus = engine is Engine.VLLM or settings.simulator_requests_gpus
    predictor: dict[str, Any] = {
        "minReplicas": replicas.desired,
        "maxReplicas": max(replicas.maximum, replicas.desired, 1),
        "model": model,
        **_placement(placement, with_gpus),
    }
    digest = spec_hash(runtime_spec, {k: v for k, v in predictor.items() if k not in ("minReplicas", "maxReplicas")})
    # The predictor's own labels and annotations go onto its pods: a new hash is a new pod template (one
    # rollout); a change of the replica count is not.
    predictor["labels"] = labels
    predictor["annotations"] = {ANNOTATION_SPEC_HASH: digest}
    model["runtime"] = runtime_name(deployment.name, digest)
    annotations = {
        ANNOTATION_AUTOSCALER_CLASS: "none",
        ANNOTATION_DEPLOYMENT_MODE: "Standard",
        ANNOTATION_SPEC_HASH: digest,
    }
    meta = {"namespace": namespace, "labels": labels, "ownerReferences": [owner.reference()]}
    serving_runtime = {
        "apiVersion": SERVING_RUNTIME_API,
        "kind": "ServingRuntime",
        "metadata": {
            "name": runtime_name(deployment.name, digest),
            **meta,
            "annotations": {ANNOTATION_SPEC_HASH: digest},
        },
        "spec": runtime_spec,
    }
    inference_service = {
        "apiVersion": INFERENCE_SERVICE_API,
        "kind": "InferenceService",
        "metadata": {"name": deployment.name, **meta, "annotations": annotations},
        "spec": {"predictor": predictor},
    }
    objects: list[dict[str, Any]] = [serving_runtime, inference_service]
    if settings.pod_monitor:
        objects.append(
            {
                "apiVersion": POD_MONITOR_API,
                "kind": "PodMonitor",
                "metadata": {"name": deployment.name, **meta},
                "spec": {
                    "selector": {"matchLabels": {KSERVE_POD_LABEL: deployment.name}},
                    "podMetricsEndpoints": [
                        {
                            "port": "http",
                            "path": "/metrics",
                            "interval": "15s",
                            # The autoscaler, rules and dashboards select a variant's series by `variant`.
                            "relabelings": [
                                {
                                    "sourceLabels": ["__meta_kubernetes_pod_label_bakeoff_dev_variant"],
                                    "targetLabel": "variant",
                                    "action": "replace",
                                }
                            ],
                        }
                    ],
                },
            }
        )
    cleaned = [_sorted(_drop_none(o)) for o in objects]
    return Children(objects=cleaned, spec_hash=digest)


def _drop_none(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _drop_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_drop_none(v) for v in obj]
    return obj


def gpu_placement(gpu_class: str, gpu_classes: Mapping[str, GPUClass], catalog: GPUCatalog) -> GPUPlacement:
    """Where replicas of `gpu_class` may run: its GPUClass object's products and tolerations, or the
    built-in catalog's product when the cluster has no object of that name."""
    obj = gpu_classes.get(gpu_class)
    if obj is not None:
        spec = obj.spec
        return GPUPlacement(
            resource_name=spec.resource_name,
            products=(spec.product, *spec.other_products),
            tolerations=tuple(spec.tolerations),
        )
    gpu = catalog.get(gpu_class)
    return GPUPlacement(resource_name=gpu.resource_name, products=(gpu.product,))
