"""The `bakeoff.dev/v1alpha1` API: GPUClass, ModelVariant and BakeOff as strict pydantic models.

Pure: no kopf or Kubernetes client imports. The CRDs in `charts/bakeoff/crds` are generated from
these models (`bakeoff_operator.crdgen`).
"""

from bakeoff_runtime.workloads import LoadMode

from bakeoff_operator.api.bakeoff import BakeOff, BakeOffSpec, BakeOffStatus
from bakeoff_operator.api.common import (
    API_VERSION,
    GROUP,
    VERSION,
    Condition,
    ConditionStatus,
    ConditionType,
    ObjectMeta,
    Reason,
    find_condition,
    set_condition,
)
from bakeoff_operator.api.gpuclass import GPUClass, GPUClassSpec, GPUClassStatus
from bakeoff_operator.api.loader import KINDS, ManifestError, Problem, Resource, load_documents, parse_documents
from bakeoff_operator.api.modelvariant import ModelVariant, ModelVariantSpec, ModelVariantStatus

__all__ = [
    "API_VERSION",
    "GROUP",
    "KINDS",
    "VERSION",
    "BakeOff",
    "BakeOffSpec",
    "BakeOffStatus",
    "Condition",
    "ConditionStatus",
    "ConditionType",
    "GPUClass",
    "GPUClassSpec",
    "GPUClassStatus",
    "LoadMode",
    "ManifestError",
    "ModelVariant",
    "ModelVariantSpec",
    "ModelVariantStatus",
    "ObjectMeta",
    "Problem",
    "Reason",
    "Resource",
    "find_condition",
    "load_documents",
    "parse_documents",
    "set_condition",
]
