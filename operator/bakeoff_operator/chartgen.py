"""Generate the Helm chart's `values.yaml` and `values.schema.json` from one pydantic model, and the
files it ships under `files/`: Prometheus rules and Grafana dashboards (`bakeoff_operator.observability`).

`values.yaml` is the model's defaults with each field's description as a comment above it; the
default GPU class catalog (`bakeoff_runtime/data/gpu_catalog.json`) becomes the `gpuClasses` list,
so prices are chart values. `values.schema.json` is the model's JSON schema, refs inlined: `helm
lint`, `helm install` and `helm template` reject values the operator could not use.
"""

from __future__ import annotations

import argparse
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import yaml
from bakeoff_loadtest.spec import STREAMS_PER_PROCESS
from bakeoff_runtime.gpus import default_catalog
from bakeoff_runtime.vllm_version import VLLM_IMAGE
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from bakeoff_operator.api.common import DNS_LABEL, MAX_NAME
from bakeoff_operator.api.gpuclass import GPUClassSpec, gpu_class_spec
from bakeoff_operator.crdgen import REPO_ROOT, stale_files, write_files
from bakeoff_operator.observability.files import chart_files

CHART_DIR: Final = Path("charts/bakeoff")
QUANTITY: Final = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$"
Quantity = Annotated[str, Field(pattern=QUANTITY, max_length=32)]


class Values(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, validate_by_name=True, validate_by_alias=True)


class PullPolicy(StrEnum):
    ALWAYS = "Always"
    IF_NOT_PRESENT = "IfNotPresent"
    NEVER = "Never"


class Image(Values):
    repository: str = Field(
        default="ghcr.io/bakeoff-dev/bakeoff", min_length=1, max_length=512, description="Operator image repository."
    )
    tag: str = Field(default="", max_length=128, description="Image tag; empty means the chart's appVersion.")
    pull_policy: PullPolicy = Field(default=PullPolicy.IF_NOT_PRESENT, description="Image pull policy.")
    pull_secrets: list[Annotated[str, Field(pattern=DNS_LABEL, max_length=253)]] = Field(
        default_factory=list, max_length=16, description="Names of image pull secrets in the release namespace."
    )


class ResourceList(Values):
    cpu: Quantity = Field(description="CPU, e.g. 100m.")
    memory: Quantity = Field(description="Memory, e.g. 256Mi.")


class Resources(Values):
    requests: ResourceList = Field(
        default_factory=lambda: ResourceList(cpu="100m", memory="256Mi"), description="What the scheduler reserves."
    )
    limits: ResourceList = Field(
        default_factory=lambda: ResourceList(cpu="1", memory="512Mi"), description="The most the operator may use."
    )


class Operator(Values):
    replicas: int = Field(
        default=1,
        ge=0,
        le=1,
        description="0 or 1: the operator runs kopf in standalone mode (no peering), so one replica at most.",
    )
    module: str = Field(
        default="bakeoff_operator.handlers",
        pattern=r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*$",
        max_length=128,
        description="Python module with the kopf handlers (`kopf run -m`).",
    )
    log_level: Literal["debug", "info", "warning"] = Field(default="info", description="debug, info or warning.")
    watch_namespaces: list[Annotated[str, Field(pattern=DNS_LABEL, max_length=MAX_NAME)]] = Field(
        default_factory=list,
        max_length=64,
        description="Namespaces whose ModelVariants and BakeOffs the operator handles; empty: all. With a list, "
        "namespaced permissions are granted by RoleBindings in those namespaces only.",
    )
    health_port: int = Field(default=8080, ge=1024, le=65535, description="Port of kopf's /healthz endpoint.")
    metrics_port: int = Field(default=9090, ge=1024, le=65535, description="Port of the bakeoff_* metrics.")
    resources: Resources = Field(default_factory=Resources, description="Operator container resources.")
    node_selector: dict[str, str] = Field(default_factory=dict, max_length=32, description="Pod node selector.")
    tolerations: list[dict[str, Any]] = Field(default_factory=list, max_length=32, description="Pod tolerations.")
    affinity: dict[str, Any] = Field(default_factory=dict, description="Pod affinity.")
    priority_class_name: str = Field(default="", max_length=253, description="Pod priority class.")
    pod_annotations: dict[str, str] = Field(default_factory=dict, max_length=32, description="Extra pod annotations.")
    pod_labels: dict[str, str] = Field(default_factory=dict, max_length=32, description="Extra pod labels.")


class Serving(Values):
    vllm_image: str = Field(
        default=VLLM_IMAGE,
        min_length=1,
        max_length=512,
        description="Default vLLM image of the ServingRuntimes (a ModelVariant's serving.image overrides it); the "
        "release whose flags Bakeoff checks.",
    )
    default_engine: Literal["vllm", "simulator"] = Field(
        default="vllm",
        description="Engine of ModelVariants that do not set spec.engine: vllm, or simulator (Bakeoff's image runs "
        "`bakeoff sim`, timed by the performance model; for clusters without GPUs and dry runs).",
    )
    simulator_requests_gpus: bool = Field(
        default=True,
        alias="simulatorRequestsGPUs",
        description="Simulated replicas request their GPU class's GPUs and land on its nodes (placement and "
        "InsufficientGPU behave as with vLLM); false runs them on any node.",
    )
    cpu_per_gpu: int = Field(
        default=8, ge=1, le=512, alias="cpuPerGPU", description="CPU cores a vLLM replica requests per GPU."
    )
    memory_gib_per_gpu: int = Field(
        default=64, ge=1, le=4096, alias="memoryGiBPerGPU", description="Host memory a vLLM replica requests per GPU."
    )


class BakeOffRuns(Values):
    streams_per_process: int = Field(
        default=STREAMS_PER_PROCESS,
        ge=1,
        le=100_000,
        description="Concurrent streams one load-test process drives with accurate timings; a run that needs more "
        "runs Locust as a master and workers in its Job's pod.",
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, max_length=32, description="Node selector of the load-test pods, e.g. a CPU pool."
    )
    tolerations: list[dict[str, Any]] = Field(
        default_factory=list, max_length=32, description="Tolerations of the load-test pods."
    )


class Prometheus(Values):
    url: str = Field(
        default="http://prometheus-operated.monitoring.svc:9090",
        pattern=r"^https?://[^\s]+$",
        max_length=2048,
        description="Prometheus the autoscaler and the live cost per 1M tokens read vLLM metrics from.",
    )


class ServiceMonitor(Values):
    enabled: bool = Field(default=False, description="Create a ServiceMonitor (needs prometheus-operator).")
    interval: str = Field(default="30s", pattern=r"^[0-9]+(ms|s|m|h)$", max_length=16, description="Scrape interval.")
    labels: dict[str, str] = Field(
        default_factory=dict, max_length=32, description="Labels your Prometheus selects ServiceMonitors by."
    )


class Metrics(Values):
    service_monitor: ServiceMonitor = Field(default_factory=ServiceMonitor, description="Scraping the operator.")


class PrometheusRuleValues(Values):
    enabled: bool = Field(
        default=False,
        description="Create a PrometheusRule with Bakeoff's recording and alerting rules (needs prometheus-operator's "
        "CRD). Without prometheus-operator, load the chart's files/bakeoff-rules.yaml with Prometheus's rule_files.",
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        max_length=32,
        description="Labels your Prometheus selects PrometheusRules by, e.g. release: kube-prometheus-stack.",
    )


class DashboardsValues(Values):
    enabled: bool = Field(
        default=True, description="Create one ConfigMap per Grafana dashboard for Grafana's dashboard sidecar."
    )
    label: str = Field(
        default="grafana_dashboard",
        min_length=1,
        max_length=253,
        pattern=r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
        description="Label the Grafana sidecar finds dashboard ConfigMaps by (kube-prometheus-stack: "
        "grafana_dashboard).",
    )
    label_value: str = Field(
        default="1", max_length=63, description='Value of that label (kube-prometheus-stack: "1").'
    )
    namespace: str = Field(
        default="",
        max_length=MAX_NAME,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$",
        description="Namespace of the ConfigMaps; empty: the release namespace. The sidecar must watch it.",
    )
    annotations: dict[str, str] = Field(
        default_factory=dict,
        max_length=32,
        description="Annotations of the ConfigMaps, e.g. grafana_folder: Bakeoff for a sidecar with folder support.",
    )


class Observability(Values):
    prometheus_rule: PrometheusRuleValues = Field(
        default_factory=PrometheusRuleValues, description="Recording and alerting rules as a PrometheusRule."
    )
    dashboards: DashboardsValues = Field(
        default_factory=DashboardsValues, description="Grafana dashboards (overview and per variant) as ConfigMaps."
    )


class ServiceAccount(Values):
    create: bool = Field(default=True, description="Create the operator's ServiceAccount.")
    name: str = Field(default="", max_length=253, description="Name; empty: the release's full name.")
    annotations: dict[str, str] = Field(default_factory=dict, max_length=32, description="Annotations.")


class Rbac(Values):
    create: bool = Field(default=True, description="Create the ClusterRoles and bindings the operator needs.")


class GPUClassValue(GPUClassSpec):
    """A GPUClass object the chart creates: its name and spec."""

    name: str = Field(pattern=DNS_LABEL, max_length=MAX_NAME, description="GPU class id, e.g. h100.")


# `helm --set gpuClassPrices.h100.onDemand=2.99` passes the price as a string (Helm types only whole
# numbers and booleans); the template turns a numeric string into a number.
PRICE_TEXT: Final = r"^[0-9]{1,4}(\.[0-9]{1,6})?$"
PriceValue = Annotated[float, Field(ge=0, le=1000)] | Annotated[str, Field(pattern=PRICE_TEXT, max_length=12)]


class GPUClassPrice(Values):
    """New prices of one GPU class of `gpuClasses`, in USD per GPU-hour; an absent price is kept."""

    on_demand: PriceValue | None = Field(default=None, description="On-demand price.")
    spot: PriceValue | None = Field(default=None, description="Spot price (at most the on-demand price).")


def default_gpu_classes() -> list[GPUClassValue]:
    return [GPUClassValue(name=g.name, **gpu_class_spec(g).model_dump(by_alias=False)) for g in default_catalog().gpus]


class ChartValues(Values):
    """Values of the Bakeoff chart."""

    image: Image = Field(default_factory=Image, description="Operator image.")
    operator: Operator = Field(default_factory=Operator, description="The operator Deployment.")
    serving: Serving = Field(default_factory=Serving, description="Defaults of the vLLM runtimes.")
    runs: BakeOffRuns = Field(
        default_factory=BakeOffRuns, description="The Jobs of BakeOff runs (`bakeoff loadtest` against each variant)."
    )
    prometheus: Prometheus = Field(default_factory=Prometheus, description="Prometheus the operator queries.")
    metrics: Metrics = Field(default_factory=Metrics, description="The operator's own metrics.")
    observability: Observability = Field(
        default_factory=Observability, description="Prometheus rules and Grafana dashboards for every variant."
    )
    service_account: ServiceAccount = Field(default_factory=ServiceAccount, description="ServiceAccount.")
    rbac: Rbac = Field(default_factory=Rbac, description="RBAC.")
    gpu_classes: list[GPUClassValue] = Field(
        default_factory=default_gpu_classes,
        max_length=64,
        alias="gpuClasses",
        description="GPUClass objects to create: the default catalog with on-demand and spot prices in USD per "
        "GPU-hour. Replace the list to define your own classes; an empty list creates none.",
    )
    gpu_class_prices: dict[Annotated[str, Field(pattern=DNS_LABEL, max_length=MAX_NAME)], GPUClassPrice] = Field(
        default_factory=dict,
        max_length=64,
        alias="gpuClassPrices",
        description="New prices of the GPU classes in gpuClasses, by name, merged over their prices: "
        "`--set gpuClassPrices.h100.onDemand=2.99` changes one price and keeps the rest of the catalog.",
        json_schema_extra={"additionalProperties": False},
    )
    global_: dict[str, Any] = Field(
        default_factory=dict, alias="global", description="Helm's global values (unused by this chart)."
    )


# --- values.yaml ----------------------------------------------------------------------------------------
VALUES_HEADER: Final = """\
# Values of the Bakeoff chart. Generated by hack/generate.sh from
# bakeoff_operator.chartgen.ChartValues (the same model generates values.schema.json); do not edit.
# Every field is described above it; `helm install` rejects values the schema does not allow.
"""


def _comment(text: str, indent: str) -> list[str]:
    words = " ".join(text.split()).split(" ")
    lines: list[str] = []
    line = ""
    for w in words:
        if len(indent) + 2 + len(line) + len(w) + 1 > 100 and line:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    if line:
        lines.append(line)
    return [f"{indent}# {ln}" for ln in lines]


def _scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("...").strip()


def _name_first(item: dict[str, Any]) -> dict[str, Any]:
    return {"name": item["name"], **{k: v for k, v in item.items() if k != "name"}} if "name" in item else item


def _render(model: BaseModel, indent: str) -> list[str]:
    out: list[str] = []
    for name, field in type(model).model_fields.items():
        key = field.alias or name
        value = getattr(model, name)
        if key == "global":
            continue
        if not indent:
            out.append("")
        out += _comment(field.description or "", indent)
        if isinstance(value, BaseModel):
            out.append(f"{indent}{key}:")
            out += _render(value, indent + "  ")
        elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
            # The name first: it is what a reader looks for in a list of objects.
            items = [_name_first(v.model_dump(mode="json", by_alias=True, exclude_none=True)) for v in value]
            block = yaml.safe_dump(items, sort_keys=False, default_flow_style=False, width=1000)
            out.append(f"{indent}{key}:")
            out += [f"{indent}  {ln}" for ln in block.rstrip().splitlines()]
        else:
            dumped = value.value if isinstance(value, StrEnum) else value
            out.append(f"{indent}{key}: {_scalar(dumped)}")
    return out


def render_values_yaml() -> str:
    return VALUES_HEADER + "\n".join(_render(ChartValues(), "")) + "\n"


# --- values.schema.json ---------------------------------------------------------------------------------
def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target = _inline(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
            rest = {k: _inline(v, defs) for k, v in node.items() if k != "$ref"}
            return {**target, **rest}
        return {
            k: _inline(v, defs)
            for k, v in node.items()
            if k not in {"$defs", "title"} and not k.startswith("x-kubernetes-")
        }
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def values_schema() -> dict[str, Any]:
    raw = ChartValues.model_json_schema(by_alias=True, mode="validation")
    schema: dict[str, Any] = _inline(raw, raw.get("$defs", {}))
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    schema["title"] = "Bakeoff chart values"
    return schema


def render_values_schema() -> str:
    return json.dumps(values_schema(), indent=2, sort_keys=True) + "\n"


def generated_files() -> dict[Path, str]:
    return {
        CHART_DIR / "values.yaml": render_values_yaml(),
        CHART_DIR / "values.schema.json": render_values_schema(),
        **{CHART_DIR / "files" / name: text for name, text in chart_files().items()},
    }


def main(argv: list[str] | None = None) -> int:
    """`python -m bakeoff_operator.chartgen [--write]`: used by hack/generate.sh."""
    parser = argparse.ArgumentParser(prog="python -m bakeoff_operator.chartgen")
    parser.add_argument("--write", action="store_true", help="rewrite the generated chart files")
    args = parser.parse_args(argv)
    files = generated_files()
    if args.write:
        for rel in write_files(files, REPO_ROOT):
            print(f"wrote {rel}")
        return 0
    stale = stale_files(files, REPO_ROOT)
    for rel in stale:
        print(f"stale: {rel}", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
