"""Types shared by every `bakeoff.dev/v1alpha1` kind: the wire-format base model, metadata,
conditions, durations, the SLO (the load harness's, in the wire format), and the label selector.

The models are the one source of truth for the CRD schemas (`bakeoff_operator.crdgen`), so every
field carries a description and bounds, and every string and list a maximum size: the API server
needs those to cost CEL rules, and `kubectl explain` prints the descriptions.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Final, Literal

from bakeoff_loadtest import slo
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, model_validator
from pydantic.alias_generators import to_camel

GROUP: Final = "bakeoff.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = "bakeoff.dev/v1alpha1"  # GROUP/VERSION, spelled out for the Literal fields

# DNS-1123 label: names of GPU classes and of objects referenced by name.
DNS_LABEL: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# DNS-1035 label: a ModelVariant's name becomes a KServe InferenceService and Service name.
DNS_1035_LABEL: Final = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
MAX_NAME: Final = 63
MAX_DESCRIPTION: Final = 1024
MAX_MESSAGE: Final = 32768
MAX_VARIANTS: Final = 16
MAX_REPLICAS: Final = 1000


class ApiModel(BaseModel):
    """Wire format of the Kubernetes API: camelCase keys, unknown fields rejected.

    Python code uses snake_case names; YAML and the API server use the camelCase aliases. Both are
    accepted on input, the aliases are written on output.
    """

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        use_enum_values=False,
        validate_default=False,
    )

    def to_wire(self) -> dict[str, Any]:
        """The object as the API server stores it: aliases, no unset optional fields."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def cel(rule: str, message: str, field_path: str | None = None, reason: str | None = None) -> dict[str, Any]:
    """One `x-kubernetes-validations` entry; the pydantic validator of the same model mirrors it."""
    out: dict[str, Any] = {"rule": rule, "message": message}
    if field_path and not field_path.startswith("."):
        raise ValueError(f"fieldPath {field_path!r} must start with '.' (relative to the object the rule is on)")
    if field_path:
        out["fieldPath"] = field_path
    if reason:
        out["reason"] = reason
    return out


def cel_rules(*rules: dict[str, Any]) -> dict[str, Any]:
    """`json_schema_extra` carrying CEL rules into the generated CRD schema."""
    return {"x-kubernetes-validations": list(rules)}


# --- durations ----------------------------------------------------------------------------------------
DURATION_PATTERN: Final = r"^([0-9]{1,6}(\.[0-9]{1,3})?(ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

Duration = Annotated[
    str,
    Field(
        pattern=DURATION_PATTERN,
        max_length=32,
        description="A duration in Go syntax: a sequence of numbers with units ms, s, m, h (e.g. `90s`, `1h30m`).",
    ),
]


def duration_seconds(text: str) -> float:
    """Seconds in a Go-style duration such as `1h30m` or `250ms`."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration; write it like 90s, 5m or 1h30m")
    return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))


# --- metadata -----------------------------------------------------------------------------------------
class ObjectMeta(ApiModel):
    """The part of Kubernetes object metadata Bakeoff reads and writes."""

    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="Object name (DNS-1123 subdomain).",
    )
    namespace: str | None = Field(
        default=None, max_length=MAX_NAME, pattern=DNS_LABEL, description="Namespace of namespaced kinds."
    )
    labels: dict[str, str] = Field(default_factory=dict, max_length=64, description="Labels.")
    annotations: dict[str, str] = Field(default_factory=dict, max_length=64, description="Annotations.")
    uid: str | None = Field(default=None, max_length=64, description="Set by the API server.")
    generation: int | None = Field(default=None, ge=0, description="Set by the API server.")
    resource_version: str | None = Field(default=None, max_length=64, description="Set by the API server.")
    creation_timestamp: datetime | None = Field(default=None, description="Set by the API server.")


# --- conditions ---------------------------------------------------------------------------------------
class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class ConditionType(StrEnum):
    """Condition types written by the operator."""

    # ModelVariant
    READY = "Ready"  # the endpoint serves requests with at least one ready replica
    FITS = "Fits"  # weights, KV cache and state fit the resolved GPU class at the parallelism chosen
    SCHEDULED = "Scheduled"  # GPUs of the resolved class are available for the replicas wanted
    DEGRADED = "Degraded"  # serving, but below the SLO, below the replicas wanted, or on a fallback
    SCALING_LIMITED = "ScalingLimited"  # the autoscaler wants more replicas than it can have, or holds blind
    # BakeOff
    VARIANTS_RESOLVED = "VariantsResolved"  # every listed or selected variant exists and is Ready
    RUNNING = "Running"  # a load-test run is in progress
    COMPLETE = "Complete"  # the last run finished and the results and recommendation are current


class Reason:
    """Condition reasons: CamelCase constants, one per distinct cause a user can act on."""

    # Fits
    FITS_IN_MEMORY: Final = "FitsInMemory"
    DOES_NOT_FIT: Final = "DoesNotFit"
    FORMAT_UNSUPPORTED: Final = "FormatUnsupported"
    WEIGHT_ONLY_FALLBACK: Final = "WeightOnlyFallback"
    UNKNOWN_GPU_CLASS: Final = "UnknownGPUClass"
    UNKNOWN_ARCHITECTURE: Final = "UnknownArchitecture"
    # Scheduled
    GPUS_AVAILABLE: Final = "GPUsAvailable"
    INSUFFICIENT_GPU: Final = "InsufficientGPU"
    UNSCHEDULABLE: Final = "Unschedulable"
    # Ready
    ENDPOINT_READY: Final = "EndpointReady"
    PROGRESSING: Final = "Progressing"
    SCALED_TO_ZERO: Final = "ScaledToZero"
    RUNTIME_FAILED: Final = "RuntimeFailed"
    DEPENDENCY_MISSING: Final = "DependencyMissing"
    CHILD_REJECTED: Final = "ChildRejected"
    # ScalingLimited
    METRICS_MISSING: Final = "MetricsMissing"
    MAX_REPLICAS: Final = "MaxReplicas"
    BAKEOFF_RUN: Final = "BakeOffRun"
    # Degraded
    AS_EXPECTED: Final = "AsExpected"
    SLO_VIOLATED: Final = "SLOViolated"
    REPLICAS_UNAVAILABLE: Final = "ReplicasUnavailable"
    # BakeOff
    VARIANTS_FOUND: Final = "VariantsFound"
    VARIANT_NOT_FOUND: Final = "VariantNotFound"
    VARIANT_NOT_READY: Final = "VariantNotReady"
    NO_VARIANTS_SELECTED: Final = "NoVariantsSelected"
    RUN_STARTED: Final = "RunStarted"
    RUN_SUCCEEDED: Final = "RunSucceeded"
    RUN_FAILED: Final = "RunFailed"
    WAITING_FOR_SCHEDULE: Final = "WaitingForSchedule"
    INVALID_SPEC: Final = "InvalidSpec"

    ALL: ClassVar[tuple[str, ...]]


Reason.ALL = tuple(v for k, v in vars(Reason).items() if k.isupper() and isinstance(v, str))

RFC3339 = Annotated[
    datetime,
    PlainSerializer(lambda t: t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), return_type=str, when_used="json"),
]


class Condition(ApiModel):
    """One observation of the object's state, the Kubernetes way (`metav1.Condition`)."""

    type: str = Field(
        max_length=316,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$",
        description="Condition type in CamelCase: Ready, Fits, Scheduled, Degraded, VariantsResolved, Running, "
        "Complete.",
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="Machine-readable CamelCase cause of the last transition.",
    )
    message: str = Field(default="", max_length=MAX_MESSAGE, description="Human-readable details, with the fix.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="`metadata.generation` the condition was computed from."
    )
    last_transition_time: RFC3339 = Field(description="When `status` last changed (RFC 3339).")


def set_condition(conditions: list[Condition], new: Condition) -> list[Condition]:
    """Conditions with `new` in place of the one of its type, keeping the transition time when the
    status did not change (so a status write with the same facts is a no-op)."""
    out: list[Condition] = []
    replaced = False
    for c in conditions:
        if c.type == new.type:
            keep_time = c.status == new.status
            out.append(new.model_copy(update={"last_transition_time": c.last_transition_time}) if keep_time else new)
            replaced = True
        else:
            out.append(c)
    if not replaced:
        out.append(new)
    return out


def find_condition(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


CONDITIONS_FIELD_EXTRA: Final[dict[str, Any]] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}


def conditions_field() -> Any:
    return Field(
        default_factory=list,
        max_length=16,
        description="Latest observations of the object's state, one per type.",
        json_schema_extra=CONDITIONS_FIELD_EXTRA,
    )


# --- SLO ----------------------------------------------------------------------------------------------
class SLO(ApiModel, slo.SLO):
    """Latency objective a request must meet; at least one bound is required.

    The load harness's SLO in the API's wire format, with the API server's copy of its rule.
    """

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "has(self.ttftMs) || has(self.itlMs) || has(self.e2eMs)",
                "an SLO needs at least one of ttftMs, itlMs or e2eMs",
            )
        )
    )

    # The harness's field with the wire name spelled out (to_camel would write e2EMs).
    e2e_ms: Annotated[float | None, slo.SLO.model_fields["e2e_ms"], Field(alias="e2eMs")] = None

    @model_validator(mode="after")
    def _one_bound(self) -> SLO:
        if self.ttft_ms is None and self.itl_ms is None and self.e2e_ms is None:
            raise ValueError("an SLO needs at least one of ttftMs, itlMs or e2eMs; add e.g. `ttftMs: 500`")
        return self

    def objective(self) -> slo.SLO:
        """The same objective as the load harness's own model."""
        return slo.SLO.model_validate(dict(self))


# --- label selector -----------------------------------------------------------------------------------
class SelectorOperator(StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


class LabelSelectorRequirement(ApiModel):
    """One `matchExpressions` term."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "(self.operator in ['In', 'NotIn']) == (has(self.values) && size(self.values) > 0)",
                "In and NotIn need values; Exists and DoesNotExist take none",
            )
        )
    )

    key: str = Field(min_length=1, max_length=317, description="Label key.")
    operator: SelectorOperator = Field(description="In, NotIn, Exists or DoesNotExist.")
    values: list[Annotated[str, Field(max_length=MAX_NAME)]] | None = Field(
        default=None, max_length=32, description="Label values (In and NotIn only)."
    )

    @model_validator(mode="after")
    def _values_match_operator(self) -> LabelSelectorRequirement:
        needs = self.operator in (SelectorOperator.IN, SelectorOperator.NOT_IN)
        if needs != bool(self.values):
            raise ValueError("In and NotIn need values; Exists and DoesNotExist take none")
        return self

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        match self.operator:
            case SelectorOperator.EXISTS:
                return present
            case SelectorOperator.DOES_NOT_EXIST:
                return not present
            case SelectorOperator.IN:
                return present and labels[self.key] in (self.values or [])
            case SelectorOperator.NOT_IN:
                return not present or labels[self.key] not in (self.values or [])


class LabelSelector(ApiModel):
    """Selects objects by labels (`metav1.LabelSelector`); all terms must match."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "(has(self.matchLabels) && size(self.matchLabels) > 0) || "
                "(has(self.matchExpressions) && size(self.matchExpressions) > 0)",
                "a selector needs matchLabels or matchExpressions; an empty selector would select every variant",
            )
        )
    )

    match_labels: dict[Annotated[str, Field(max_length=317)], Annotated[str, Field(max_length=MAX_NAME)]] | None = (
        Field(default=None, max_length=32, description="Labels that must all be present with these values.")
    )
    match_expressions: list[LabelSelectorRequirement] | None = Field(
        default=None, max_length=32, description="Requirements that must all hold."
    )

    @model_validator(mode="after")
    def _not_empty(self) -> LabelSelector:
        if not self.match_labels and not self.match_expressions:
            raise ValueError(
                "a selector needs matchLabels or matchExpressions; an empty selector would select every variant"
            )
        return self

    def matches(self, labels: dict[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in (self.match_labels or {}).items()):
            return False
        return all(r.matches(labels) for r in self.match_expressions or [])


ResourceKind = Literal["GPUClass", "ModelVariant", "BakeOff"]
