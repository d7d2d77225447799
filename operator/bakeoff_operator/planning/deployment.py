"""One typed plan per variant: what a ModelVariant deploys, built once and taken unchanged by every
consumer (the local launcher for the simulator and real vLLM, the KServe renderer, the status).

`plan_deployment(mv, catalog, target)` sizes the variant with the one sizing policy, resolves where
its weights come from for the target (`locate_model`), and renders the vLLM launch (arguments and
environment, extra arguments included, sorted and hashed). Pure: no I/O.

Model sources (`spec.model.source`) and what vLLM is given:
- `hf://org/name`: in a cluster `storageUri: hf://org/name[:revision]` and `--model=/mnt/models`
  (KServe's storage initializer downloads it); on this machine `--model=org/name` (+ `--revision`).
- `pvc://claim/path`, `s3://...`, `gs://...`, `oci://...`: in a cluster the `storageUri` as given and
  `--model=/mnt/models`; on this machine refused for real vLLM (not reachable from here).
- `file:///path`: refused in a cluster (a path on one machine); on this machine `--model=/path`.

The simulator loads no weights, so for it every source is accepted on this machine.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from bakeoff_runtime.gpus import GPUCatalog
from bakeoff_runtime.variant import Variant
from bakeoff_runtime.vllm_args import VLLMArgumentError, VLLMLaunch, render_launch
from bakeoff_runtime.workloads import Workload
from pydantic import BaseModel, ConfigDict, Field

from bakeoff_operator.api.modelvariant import Engine, ModelVariant
from bakeoff_operator.planning.sizing import Cause, Sizing, size_variant

# Where KServe's storage initializer puts the weights of `storageUri` (and where vLLM loads them from).
KSERVE_MODEL_DIR: Final = "/mnt/models"
CLUSTER_SCHEMES: Final = ("hf", "pvc", "s3", "gs", "oci")


class Target(StrEnum):
    """Where a variant is deployed."""

    KSERVE = "kserve"  # a KServe InferenceService in a cluster
    LOCAL = "local"  # a process on this machine (`bakeoff run`)


class ModelSourceError(ValueError):
    """A model source the target cannot load; the message names the field and the fix."""


class ModelLocation(BaseModel):
    """Where the weights are and what vLLM is told to load."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(description="`spec.model.source` as written.")
    scheme: str = Field(description="The source's scheme: hf, pvc, s3, gs, oci or file.")
    storage_uri: str | None = Field(default=None, description="KServe `storageUri` (cluster targets only).")
    model: str = Field(description="What `--model` gets: a hub id, a local path, or KServe's model folder.")
    revision: str | None = Field(default=None, description="What `--revision` gets (hub ids on this machine).")


def locate_model(source: str, revision: str | None, target: Target, engine: Engine = Engine.VLLM) -> ModelLocation:
    """Translate `spec.model.source` for `target` (see the module's table). Raises ModelSourceError."""
    scheme, sep, rest = source.partition("://")
    if not sep or not rest:
        raise ModelSourceError(f"spec.model.source {source!r}: expected scheme://location, e.g. hf://org/name")
    if target is Target.KSERVE:
        if scheme not in CLUSTER_SCHEMES:
            raise ModelSourceError(
                f"spec.model.source {source!r}: a {scheme}:// path exists on one machine only; in a cluster use "
                "hf://, pvc://, s3://, gs:// or oci://"
            )
        uri = f"{source}:{revision}" if scheme == "hf" and revision else source
        return ModelLocation(source=source, scheme=scheme, storage_uri=uri, model=KSERVE_MODEL_DIR)
    if scheme == "file":
        return ModelLocation(source=source, scheme=scheme, model=rest)
    if scheme == "hf":
        return ModelLocation(source=source, scheme=scheme, model=rest, revision=revision)
    if engine is Engine.SIMULATOR:
        return ModelLocation(source=source, scheme=scheme, model=rest)
    raise ModelSourceError(
        f"spec.model.source {source!r}: real vLLM on this machine cannot read {scheme}:// storage; copy the weights "
        "here and use file:///path, or a hub id hf://org/name"
    )


class VariantDeployment(BaseModel):
    """Everything about one deployed variant that the launcher, the KServe renderer and the status use."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="The ModelVariant's name.")
    namespace: str | None = Field(default=None, description="The ModelVariant's namespace.")
    target: Target
    engine: Engine
    sizing: Sizing = Field(description="GPU class, parallelism, memory fit and prediction, or why it does not fit.")
    model: ModelLocation | None = Field(default=None, description="Where the weights are (None: refused).")
    variant: Variant | None = Field(
        default=None, description="The runtime variant, `model_source` as vLLM loads it (None: refused)."
    )
    launch: VLLMLaunch | None = Field(default=None, description="The rendered vLLM launch (None: refused).")
    image: str | None = Field(default=None, description="`spec.serving.image`: this variant's vLLM image.")
    refusal: str | None = Field(default=None, description="Why nothing is deployed: names the field and the fix.")
    cause: Cause = Field(description="Fits, or the kind of refusal (a condition reason names it).")

    @property
    def deployable(self) -> bool:
        return self.refusal is None and self.variant is not None and self.launch is not None

    @property
    def reason(self) -> str:
        return self.refusal or self.sizing.reason


# KServe names the predictor's host `<name>-predictor-<namespace>` (one DNS label, at most 63 characters);
# a longer one gets no Deployment, and only KServe's log says why.
PREDICTOR_INFIX: Final = "-predictor-"
DNS_LABEL_MAX: Final = 63


def _host_name_problem(name: str, namespace: str | None) -> str | None:
    host = f"{name}{PREDICTOR_INFIX}{namespace or ''}"
    if len(host) <= DNS_LABEL_MAX:
        return None
    room = DNS_LABEL_MAX - len(PREDICTOR_INFIX) - len(namespace or "")
    return (
        f"metadata.name: KServe names this variant's predictor host {host!r} ({len(host)} characters), which must fit "
        f"in {DNS_LABEL_MAX}; shorten the variant's name to at most {room} characters in namespace {namespace}"
    )


def plan_deployment(
    mv: ModelVariant,
    catalog: GPUCatalog,
    target: Target,
    *,
    engine: Engine = Engine.VLLM,
    workload: Workload | None = None,
    mode: str = "async",
    spot: bool = False,
) -> VariantDeployment:
    """The plan for `mv` on `target`: sized, its weights located, its launch rendered; or why not."""
    sizing = size_variant(mv, catalog, workload, mode=mode, spot=spot)
    base = {
        "name": mv.metadata.name,
        "namespace": mv.metadata.namespace,
        "target": target,
        "engine": engine,
        "sizing": sizing,
        "image": mv.spec.serving.image,
    }
    if not sizing.fits or sizing.variant is None:
        return VariantDeployment(**base, refusal=sizing.reason, cause=sizing.cause)
    if sizing.variant.multi_node and target is Target.KSERVE:
        stages = sizing.variant.pipeline_parallel
        refusal = (
            f"needs {sizing.variant.num_gpus} GPUs in {stages} pipeline stages across nodes; Bakeoff deploys one "
            "node per replica on KServe (a multi-node replica needs a Ray cluster per replica, e.g. KServe's "
            "LLMInferenceService with worker pods): choose a GPU class with more memory, a smaller format, or "
            "a shorter serving.maxModelLen"
        )
        return VariantDeployment(**base, refusal=refusal, cause=Cause.DOES_NOT_FIT)
    too_long = _host_name_problem(mv.metadata.name, mv.metadata.namespace) if target is Target.KSERVE else None
    if too_long is not None:
        return VariantDeployment(**base, refusal=too_long, cause=Cause.INVALID_SPEC)
    try:
        location = locate_model(mv.spec.model.source, mv.spec.model.revision, target, engine)
    except ModelSourceError as err:
        return VariantDeployment(**base, refusal=str(err), cause=Cause.INVALID_SPEC)
    variant = sizing.variant.model_copy(update={"model_source": location.model, "model_revision": location.revision})
    try:
        launch = render_launch(variant, mv.spec.serving.extra_args)
    except VLLMArgumentError as err:
        return VariantDeployment(
            **base, model=location, refusal=f"spec.serving.extraArgs: {err}", cause=Cause.INVALID_SPEC
        )
    return VariantDeployment(**base, model=location, variant=variant, launch=launch, cause=Cause.FITS)
