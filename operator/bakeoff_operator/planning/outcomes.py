"""What a Bakeoff object's status should be, from its stored body: the kopf-free part of the handlers.

Pure: functions of the object as the API server returns it, the GPU class catalog, what the cluster
shows of a variant's children and the time. The handlers read and write; these decide.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, TypeVar

from bakeoff_runtime.gpus import GPUCatalog
from pydantic import BaseModel, ValidationError

from bakeoff_operator.api.bakeoff import BakeOff, BakeOffStatus
from bakeoff_operator.api.common import Condition
from bakeoff_operator.api.modelvariant import Engine, ModelVariant, ModelVariantStatus
from bakeoff_operator.planning import status as plan
from bakeoff_operator.planning.children import ChildrenState

# Metadata the models read; the rest (managedFields, annotations, owner references) is not theirs.
_PARSED_METADATA: Final = ("name", "namespace", "labels", "uid", "generation", "resourceVersion")

StatusT = TypeVar("StatusT", bound=BaseModel)


@dataclass(frozen=True)
class Outcome:
    """The status an object should have, what it has, and what is wrong with its spec (if anything)."""

    desired: BaseModel
    stored: BaseModel | None
    invalid: str | None = None

    @property
    def changed(self) -> bool:
        return plan.status_changed(self.stored, self.desired)


def wire(body: Mapping[str, Any], *, status: bool = False) -> dict[str, Any]:
    """An object as the API models read it: the metadata they know, the spec, and (with `status`) the
    stored status; managedFields, annotations and owner references left out."""
    metadata = body.get("metadata") or {}
    out: dict[str, Any] = {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {k: metadata[k] for k in _PARSED_METADATA if metadata.get(k) is not None},
        "spec": body.get("spec") or {},
    }
    if status and body.get("status"):
        out["status"] = body["status"]
    return out


def _stored_status(model: type[StatusT], body: Mapping[str, Any]) -> StatusT | None:
    """The stored status, or None when there is none or it is not one this version can read (it is
    then rewritten whole)."""
    raw = body.get("status")
    if not raw:
        return None
    try:
        return model.model_validate(raw)
    except ValidationError:
        return None


def problems(err: ValidationError) -> str:
    """A validation error as `field: message` pairs, in the object's own (camelCase) field names."""
    parts = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"])
        message = str(e["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def _generation(body: Mapping[str, Any]) -> int | None:
    generation = (body.get("metadata") or {}).get("generation")
    return generation if isinstance(generation, int) else None


def variant_outcome(
    body: Mapping[str, Any],
    catalog: GPUCatalog,
    now: datetime,
    children: ChildrenState | None = None,
    default_engine: Engine = Engine.VLLM,
) -> Outcome:
    """What a ModelVariant's status should be, given its stored body, the GPU class catalog and what the
    cluster shows of its children (nothing deployed when None)."""
    stored = _stored_status(ModelVariantStatus, body)
    try:
        mv = ModelVariant.model_validate(wire(body))
    except ValidationError as err:
        message = problems(err)
        desired = plan.invalid_variant_status(stored, message, _generation(body), now)
        return Outcome(desired=desired, stored=stored, invalid=message)
    mv = mv.model_copy(update={"status": stored})
    deployment = plan.plan_for_status(mv, catalog, default_engine)
    observed = children if children is not None else ChildrenState(deployed=False)
    return Outcome(desired=plan.variant_status(mv, deployment, observed, _generation(body), now), stored=stored)


def observed_variant(body: Mapping[str, Any]) -> plan.ObservedVariant:
    """The name, labels and readable conditions of a ModelVariant, whatever the rest of it holds."""
    metadata = body.get("metadata") or {}
    conditions = []
    for raw in (body.get("status") or {}).get("conditions") or []:
        try:
            conditions.append(Condition.model_validate(raw))
        except ValidationError:
            continue  # a condition this version cannot read says nothing it could act on
    return plan.ObservedVariant(name=metadata["name"], labels=dict(metadata.get("labels") or {}), conditions=conditions)


def bakeoff_outcome(body: Mapping[str, Any], variants: Iterable[plan.ObservedVariant], now: datetime) -> Outcome:
    """What a BakeOff's status should be, given the ModelVariants of its namespace."""
    stored = _stored_status(BakeOffStatus, body)
    try:
        bo = BakeOff.model_validate(wire(body))
    except ValidationError as err:
        message = problems(err)
        desired = plan.invalid_bakeoff_status(stored, message, _generation(body), now)
        return Outcome(desired=desired, stored=stored, invalid=message)
    bo = bo.model_copy(update={"status": stored})
    return Outcome(desired=plan.bakeoff_status(bo, list(variants), _generation(body), now), stored=stored)
