"""The one plan per variant (`planning.deployment`) and the KServe children rendered from it.

Goldens start from the ModelVariant YAML of `examples/`: each example's variants are planned for a
cluster and rendered; `UPDATE_GOLDENS=1` rewrites the files and still fails the run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from bakeoff_operator.api.loader import load_documents
from bakeoff_operator.api.modelvariant import Engine, ModelVariant
from bakeoff_operator.planning.deployment import (
    KSERVE_MODEL_DIR,
    ModelSourceError,
    Target,
    locate_model,
    plan_deployment,
)
from bakeoff_operator.planning.sizing import Cause
from bakeoff_operator.render.kserve import (
    ANNOTATION_SPEC_HASH,
    GPUPlacement,
    Owner,
    RenderSettings,
    Replicas,
    render_children,
)
from bakeoff_runtime import launcher
from bakeoff_runtime.gpus import default_catalog
from bakeoff_runtime.launcher import RuntimeSpec
from bakeoff_runtime.vllm_version import VLLM_IMAGE

from tests.api.api_builders import variant

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
GOLDENS = Path(__file__).parent / "goldens"
CLUSTER_EXAMPLES = (
    "llama-8b-formats.yaml",
    "llama-70b-sync-vs-async.yaml",
    "apriel-h1-hybrids.yaml",
    "quickstart.yaml",
)
OWNER_UID = "00000000-0000-0000-0000-000000000001"


def model_variant(**spec: Any) -> ModelVariant:
    return ModelVariant.model_validate(variant(**spec))


def render(mv: ModelVariant, settings: RenderSettings | None = None, **kw: Any) -> Any:
    engine = kw.pop("engine", Engine.VLLM)
    deployment = plan_deployment(mv, default_catalog(), Target.KSERVE, engine=engine)
    assert deployment.deployable, deployment.reason
    assert deployment.variant is not None
    gpu = deployment.variant.gpu
    return render_children(
        deployment,
        settings or RenderSettings(),
        Owner(name=mv.metadata.name, uid=OWNER_UID),
        GPUPlacement(resource_name=gpu.resource_name, products=(gpu.product,)),
        Replicas(desired=kw.pop("desired", 1), maximum=kw.pop("maximum", 1)),
        engine=engine,
        model_label=(mv.metadata.labels or {}).get("bakeoff.dev/model"),
        **kw,
    )


# --- model sources -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("source", "revision", "target", "engine", "storage_uri", "model", "cli_revision"),
    [
        (
            "hf://meta-llama/Llama-3.1-8B",
            None,
            Target.KSERVE,
            Engine.VLLM,
            "hf://meta-llama/Llama-3.1-8B",
            KSERVE_MODEL_DIR,
            None,
        ),
        ("hf://org/m", "abc123", Target.KSERVE, Engine.VLLM, "hf://org/m:abc123", KSERVE_MODEL_DIR, None),
        ("pvc://models/llama", None, Target.KSERVE, Engine.VLLM, "pvc://models/llama", KSERVE_MODEL_DIR, None),
        ("s3://bucket/llama", None, Target.KSERVE, Engine.VLLM, "s3://bucket/llama", KSERVE_MODEL_DIR, None),
        ("gs://bucket/llama", None, Target.KSERVE, Engine.VLLM, "gs://bucket/llama", KSERVE_MODEL_DIR, None),
        ("hf://org/m", "v1", Target.LOCAL, Engine.VLLM, None, "org/m", "v1"),
        ("file:///models/tiny", None, Target.LOCAL, Engine.VLLM, None, "/models/tiny", None),
        ("s3://bucket/llama", None, Target.LOCAL, Engine.SIMULATOR, None, "bucket/llama", None),
    ],
    ids=["hf", "hf-revision", "pvc", "s3", "gs", "local-hf", "local-file", "local-sim-s3"],
)
def test_model_sources_translate_per_target(  # noqa: PLR0917
    source: str,
    revision: str | None,
    target: Target,
    engine: Engine,
    storage_uri: str | None,
    model: str,
    cli_revision: str | None,
) -> None:
    loc = locate_model(source, revision, target, engine)
    assert (loc.storage_uri, loc.model, loc.revision) == (storage_uri, model, cli_revision)


@pytest.mark.parametrize(
    ("source", "target", "fix"),
    [
        ("file:///models/x", Target.KSERVE, "in a cluster use hf://"),
        ("s3://bucket/x", Target.LOCAL, "use file:///path"),
    ],
    ids=["file-in-cluster", "s3-on-this-machine"],
)
def test_unusable_sources_are_refused_with_the_fix(source: str, target: Target, fix: str) -> None:
    with pytest.raises(ModelSourceError, match=r"spec\.model\.source") as err:
        locate_model(source, None, target)
    assert fix in str(err.value)


def test_a_refused_source_deploys_nothing_and_says_why() -> None:
    mv = model_variant(model={"source": "file:///models/llama"}, gpuClass="h100")
    d = plan_deployment(mv, default_catalog(), Target.KSERVE)
    assert not d.deployable
    assert d.cause is Cause.INVALID_SPEC
    assert d.refusal is not None
    assert "spec.model.source" in d.refusal


def test_a_name_too_long_for_kserves_host_name_deploys_nothing() -> None:
    body = variant(name="a-very-long-variant-name-for-llama-8b-fp8-h100")
    body["metadata"]["namespace"] = "team-inference-prod"
    d = plan_deployment(ModelVariant.model_validate(body), default_catalog(), Target.KSERVE)
    assert not d.deployable
    assert d.refusal is not None
    assert "shorten the variant's name to at most 33 characters" in d.refusal
    assert plan_deployment(ModelVariant.model_validate(body), default_catalog(), Target.LOCAL).deployable


# --- the launch ---------------------------------------------------------------------------------------------
def test_extra_args_reach_the_launch_and_the_model_is_what_vllm_loads() -> None:
    mv = model_variant(gpuClass="h100", serving={"extraArgs": ["--long-prefill-token-threshold", "512"]})
    d = plan_deployment(mv, default_catalog(), Target.KSERVE)
    assert d.launch is not None
    assert "--long-prefill-token-threshold=512" in d.launch.args
    assert f"--model={KSERVE_MODEL_DIR}" in d.launch.args
    assert "--tensor-parallel-size=1" in d.launch.args
    assert "--dtype=bfloat16" in d.launch.args


def test_an_extra_arg_that_vllm_does_not_know_deploys_nothing() -> None:
    mv = model_variant(gpuClass="h100", serving={"extraArgs": ["--enable-prefix-cachng"]})
    d = plan_deployment(mv, default_catalog(), Target.KSERVE)
    assert not d.deployable
    assert d.refusal is not None
    assert "spec.serving.extraArgs" in d.refusal
    assert "--enable-prefix-caching" in d.refusal


def test_hybrid_launch_carries_the_mamba_cache_dtype_and_no_prefix_caching() -> None:
    mv = model_variant(architecture={"catalog": "apriel-h1-h30"}, gpuClass="h100", format="bf16")
    d = plan_deployment(mv, default_catalog(), Target.KSERVE)
    assert d.launch is not None
    assert "--no-enable-prefix-caching" in d.launch.args
    assert any(a.startswith("--mamba-ssm-cache-dtype=") for a in d.launch.args)
    asked = model_variant(
        architecture={"catalog": "apriel-h1-h30"},
        gpuClass="h100",
        format="bf16",
        serving={"enablePrefixCaching": True, "mambaSSMCacheDtype": "float16"},
    )
    d = plan_deployment(asked, default_catalog(), Target.KSERVE)
    assert d.launch is not None
    assert "--enable-prefix-caching" in d.launch.args
    assert "--mamba-ssm-cache-dtype=float16" in d.launch.args


def test_real_vllm_runs_exactly_the_rendered_launch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The local launcher's vLLM command is the deployment's launch plus the listener, nothing else."""
    mv = model_variant(
        model={"source": "file:///models/tiny"}, gpuClass="h100", serving={"extraArgs": ["--enforce-eager"]}
    )
    d = plan_deployment(mv, default_catalog(), Target.LOCAL)
    assert d.variant is not None
    assert d.launch is not None
    monkeypatch.setattr(launcher, "find_vllm_python", lambda explicit=None: sys.executable)
    spec = RuntimeSpec(engine="vllm", variant=d.variant, launch=d.launch, log_path=tmp_path / "v.log")
    argv = launcher.command(spec, port=8123)
    assert argv == [sys.executable, "-m", "vllm.entrypoints.openai.api_server", *d.launch.serve_args("127.0.0.1", 8123)]
    assert "--model=/models/tiny" in argv
    assert "--enforce-eager" in argv


# --- the children -------------------------------------------------------------------------------------------
def test_children_are_deterministic_and_owned() -> None:
    mv = model_variant(gpuClass="h100")
    a, b = render(mv), render(mv)
    assert a == b
    for obj in a.objects:
        assert obj["metadata"]["ownerReferences"][0]["uid"] == OWNER_UID
        assert obj["metadata"]["ownerReferences"][0]["controller"] is True


def test_serving_runtime_runs_the_launch_without_resources() -> None:
    mv = model_variant(gpuClass="h100")
    children = render(mv)
    runtime = children.of_kind("ServingRuntime")
    assert runtime is not None
    container = runtime["spec"]["containers"][0]
    deployment = plan_deployment(mv, default_catalog(), Target.KSERVE)
    assert deployment.launch is not None
    assert container["args"] == deployment.launch.serve_args("0.0.0.0", 8080)
    assert container["image"] == VLLM_IMAGE
    assert "resources" not in container
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["ports"] == [{"containerPort": 8080, "name": "http", "protocol": "TCP"}]


def test_inference_service_asks_for_gpus_times_parallelism_on_its_class() -> None:
    mv = model_variant(name="llama-70b-bf16", architecture={"catalog": "llama-3.1-70b"}, format="bf16", gpuClass="h100")
    isvc = render(mv, desired=2, maximum=4).of_kind("InferenceService")
    assert isvc is not None
    predictor = isvc["spec"]["predictor"]
    resources = predictor["model"]["resources"]
    assert resources["requests"] == resources["limits"]
    assert resources["limits"]["nvidia.com/gpu"] == "2"
    assert predictor["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (2, 4)
    assert isvc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "none"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    assert predictor["model"]["storageUri"] == mv.spec.model.source
    assert predictor["annotations"][ANNOTATION_SPEC_HASH] == isvc["metadata"]["annotations"][ANNOTATION_SPEC_HASH]


def test_a_class_with_several_products_uses_node_affinity() -> None:
    mv = model_variant(gpuClass="h100")
    deployment = plan_deployment(mv, default_catalog(), Target.KSERVE)
    children = render_children(
        deployment,
        RenderSettings(),
        Owner(name=mv.metadata.name, uid=OWNER_UID),
        GPUPlacement(products=("NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe")),
        Replicas(desired=1, maximum=1),
    )
    predictor = children.of_kind("InferenceService")["spec"]["predictor"]  # type: ignore[index]
    assert "nodeSelector" not in predictor
    terms = predictor["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0]["values"] == ["NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe"]


def test_the_spec_hash_moves_with_the_spec_and_not_with_replicas() -> None:
    mv = model_variant(gpuClass="h100")
    base = render(mv, desired=1, maximum=4)
    assert render(mv, desired=3, maximum=4).spec_hash == base.spec_hash
    edited = model_variant(gpuClass="h100", serving={"maxNumSeqs": 64})
    assert render(edited, desired=1, maximum=4).spec_hash != base.spec_hash


@pytest.mark.parametrize("gpus", [True, False], ids=["keeps-gpus", "drops-gpus"])
def test_simulated_engine_runs_bakeoff_sim_with_the_variant(gpus: bool) -> None:
    mv = model_variant(gpuClass="h100")
    settings = RenderSettings(simulator_image="bakeoff:test", simulator_requests_gpus=gpus)
    children = render(mv, settings, engine=Engine.SIMULATOR)
    runtime = children.of_kind("ServingRuntime")
    isvc = children.of_kind("InferenceService")
    assert runtime is not None
    assert isvc is not None
    container = runtime["spec"]["containers"][0]
    assert container["command"] == ["bakeoff", "sim"]
    assert "--variant-env=BAKEOFF_SIM_VARIANT" in container["args"]
    assert container["image"] == "bakeoff:test"
    predictor = isvc["spec"]["predictor"]
    assert "storageUri" not in predictor["model"]
    assert ("nvidia.com/gpu" in predictor["model"]["resources"]["limits"]) is gpus
    assert ("nodeSelector" in predictor) is gpus


@pytest.mark.parametrize("example", CLUSTER_EXAMPLES)
def test_example_children_match_golden(example: str) -> None:
    docs = []
    for resource in load_documents(EXAMPLES / example):
        if not isinstance(resource, ModelVariant):
            continue
        deployment = plan_deployment(resource, default_catalog(), Target.KSERVE)
        if not deployment.deployable:
            docs.append({"variant": resource.metadata.name, "refused": deployment.reason})
            continue
        children = render(resource, desired=resource.spec.desired_replicas, maximum=_max(resource))
        docs.extend(children.objects)
    text = yaml.safe_dump_all(docs, sort_keys=True, width=200)
    path = GOLDENS / f"kserve-{Path(example).stem}.yaml"
    if os.environ.get("UPDATE_GOLDENS") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        pytest.fail(f"UPDATE_GOLDENS=1 rewrote {path.name}; review the diff and run again without it")
    assert path.exists(), f"missing golden {path.name}: run with UPDATE_GOLDENS=1"
    assert text == path.read_text()


def _max(mv: ModelVariant) -> int:
    return mv.spec.autoscaling.max_replicas if mv.spec.autoscaling else mv.spec.desired_replicas
