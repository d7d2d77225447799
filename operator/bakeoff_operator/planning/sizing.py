"""Size and place a ModelVariant: which GPU class, how many GPUs, does the format fit that GPU.

Pure: a function of the ModelVariant, the GPU class catalog and the workload it is judged on. The
operator writes the answer into status (`Fits`, resolved GPU class and parallelism, predicted
capacity and cost); `bakeoff run` starts one runtime per sized variant.
"""

from __future__ import annotations

from enum import StrEnum

from bakeoff_runtime.formats import ExecutionMode, resolve_execution
from bakeoff_runtime.gpus import GPUCatalog, GPUSpec
from bakeoff_runtime.memory import MemoryPlan
from bakeoff_runtime.perf import PerformanceModel, Prediction
from bakeoff_runtime.placement import default_max_model_len, default_max_num_batched_tokens, place
from bakeoff_runtime.variant import Variant
from bakeoff_runtime.workloads import Workload
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bakeoff_operator.api.modelvariant import AUTO, ModelVariant


class Cause(StrEnum):
    """Why a placement was refused, in terms a condition reason can name."""

    FITS = "fits"
    UNKNOWN_GPU_CLASS = "unknown-gpu-class"
    FORMAT_UNSUPPORTED = "format-unsupported"  # no kernels, or only a weight-only fallback not accepted
    DOES_NOT_FIT = "does-not-fit"  # memory, or a tensor-parallel size the model cannot take
    INVALID_SPEC = "invalid-spec"  # sized, but a field the target cannot use (a model source, an extra argument)


class Candidate(BaseModel):
    """One GPU class the planner looked at, and what it found there."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpu_class: str
    fits: bool
    cause: Cause
    tensor_parallel: int | None = None
    cost_per_1m_output_tokens_usd: float | None = None
    reason: str


class Sizing(BaseModel):
    """The placement of one variant, or why it has none."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    variant_name: str
    fits: bool
    cause: Cause = Field(description="Fits, or the kind of refusal: every GPU class tried refused for it.")
    reason: str = Field(description="Why this placement, or why none fits; names the fix.")
    variant: Variant | None = Field(default=None, description="The resolved runtime variant when it fits.")
    memory: MemoryPlan | None = None
    prediction: Prediction | None = None
    execution: ExecutionMode | None = None
    candidates: list[Candidate] = Field(default_factory=list)

    @property
    def gpu_class(self) -> str | None:
        return self.variant.gpu.name if self.variant else None

    @property
    def tensor_parallel(self) -> int | None:
        return self.variant.tensor_parallel if self.variant else None


def max_model_len_for(mv: ModelVariant) -> int:
    """`serving.maxModelLen`, else the sizing policy's length for a deployed variant (`placement`)."""
    if mv.spec.serving.max_model_len is not None:
        return mv.spec.serving.max_model_len
    return default_max_model_len(None)


def _variant_on(mv: ModelVariant, gpu: GPUSpec, tensor_parallel: int, max_model_len: int) -> Variant:
    """The runtime's variant for `mv` on `gpu`: every serving knob the spec sets, the policy's defaults
    for the rest. `model_source` is the spec's URI; the deployment plan turns it into what vLLM loads."""
    serving = mv.spec.serving
    updates: dict[str, object] = {}
    if serving.max_num_seqs is not None:
        updates["max_num_seqs"] = serving.max_num_seqs
    if serving.enable_prefix_caching is not None:
        updates["enable_prefix_caching"] = serving.enable_prefix_caching
    if serving.mamba_ssm_cache_dtype is not None:
        updates["mamba_ssm_cache_dtype"] = serving.mamba_ssm_cache_dtype
    return Variant(
        name=mv.metadata.name,
        served_model_name=mv.served_name,
        model_source=mv.spec.model.source,
        model_revision=mv.spec.model.revision,
        architecture=mv.to_architecture(),
        format=mv.spec.format,
        kv_cache_dtype=mv.spec.kv_cache_dtype,
        gpu=gpu,
        tensor_parallel=tensor_parallel,
        max_model_len=max_model_len,
        max_num_batched_tokens=serving.max_num_batched_tokens or default_max_num_batched_tokens(max_model_len),
        gpu_memory_utilization=serving.gpu_memory_utilization,
        **updates,
    )


def _first_error(err: ValueError) -> str:
    if isinstance(err, ValidationError):
        return "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in err.errors())
    return str(err)


def _try_gpu(
    mv: ModelVariant, gpu: GPUSpec, *, workload: Workload | None, mode: str, spot: bool, max_model_len: int
) -> tuple[Candidate, Variant | None, MemoryPlan | None, Prediction | None]:
    execution = resolve_execution(mv.spec.format, gpu.compute_capability, gpu.name)
    if execution.mode is ExecutionMode.UNSUPPORTED:
        refused = Candidate(gpu_class=gpu.name, fits=False, cause=Cause.FORMAT_UNSUPPORTED, reason=execution.reason)
        return refused, None, None, None
    if execution.mode is ExecutionMode.WEIGHT_ONLY_FALLBACK and not mv.spec.allow_weight_only_fallback:
        reason = f"{execution.reason}; set allowWeightOnlyFallback: true to accept it"
        return (
            Candidate(gpu_class=gpu.name, fits=False, cause=Cause.FORMAT_UNSUPPORTED, reason=reason),
            None,
            None,
            None,
        )
    requested = mv.spec.tensor_parallel_size
    try:
        probe = _variant_on(mv, gpu, 1, max_model_len)
    except ValueError as err:  # serving knobs vLLM would reject together, e.g. a step budget below maxNumSeqs
        reason = f"spec.serving: {_first_error(err)}"
        return Candidate(gpu_class=gpu.name, fits=False, cause=Cause.DOES_NOT_FIT, reason=reason), None, None, None
    try:
        placement = place(probe, None if requested == AUTO else int(requested))
    except ValueError as err:
        reason = f"tensorParallelSize: {_first_error(err)}"
        return Candidate(gpu_class=gpu.name, fits=False, cause=Cause.DOES_NOT_FIT, reason=reason), None, None, None
    variant, plan = placement.variant, placement.memory
    tp = variant.tensor_parallel
    if not placement.fits:
        reason = (
            placement.reason if placement.auto else f"{placement.reason}; raise tensorParallelSize or set it to auto"
        )
        refused = Candidate(
            gpu_class=gpu.name,
            fits=False,
            cause=Cause.DOES_NOT_FIT,
            tensor_parallel=None if placement.auto else tp,
            reason=reason,
        )
        return refused, None, None if placement.auto else plan, None
    prediction = None
    cost = None
    if workload is not None:
        price = gpu.hourly_price(spot=spot)
        prediction = PerformanceModel(variant).predict(workload, mode, price_per_gpu_hour=price)
        cost = prediction.cost_per_1m_output_tokens_usd
    reason = placement.reason
    candidate = Candidate(
        gpu_class=gpu.name,
        fits=True,
        cause=Cause.FITS,
        tensor_parallel=tp,
        cost_per_1m_output_tokens_usd=cost,
        reason=reason,
    )
    return candidate, variant, plan, prediction


def size_variant(
    mv: ModelVariant,
    catalog: GPUCatalog,
    workload: Workload | None = None,
    *,
    mode: str = "async",
    spot: bool = False,
) -> Sizing:
    """Place `mv` on its GPU class (or the cheapest class that fits, for `gpuClass: auto`)."""
    name = mv.metadata.name
    max_model_len = max_model_len_for(mv)
    if workload is not None and workload.context_tokens > max_model_len:
        given = "serving.maxModelLen" if mv.spec.serving.max_model_len is not None else "the default maxModelLen"
        reason = (
            f"{given} {max_model_len} is shorter than the {workload.name} requests ({workload.context_tokens} prompt + "
            f"output tokens): vLLM would refuse every one; set spec.serving.maxModelLen to at least "
            f"{workload.context_tokens}"
        )
        return Sizing(variant_name=name, fits=False, cause=Cause.DOES_NOT_FIT, reason=reason)
    if mv.spec.gpu_class == AUTO:
        gpus = list(catalog.gpus)
    else:
        try:
            gpus = [catalog.get(mv.spec.gpu_class)]
        except KeyError as err:
            reason = f"spec.gpuClass: {err}; create the GPUClass or fix the name"
            return Sizing(variant_name=name, fits=False, cause=Cause.UNKNOWN_GPU_CLASS, reason=reason)
    tried = [_try_gpu(mv, gpu, workload=workload, mode=mode, spot=spot, max_model_len=max_model_len) for gpu in gpus]
    candidates = [t[0] for t in tried]
    fitting = [t for t in tried if t[1] is not None]
    if not fitting:
        detail = "; ".join(f"{c.gpu_class}: {c.reason}" for c in candidates)
        # The format is the fix only when it is what every GPU class refused.
        format_only = bool(candidates) and all(c.cause is Cause.FORMAT_UNSUPPORTED for c in candidates)
        cause = Cause.FORMAT_UNSUPPORTED if format_only else Cause.DOES_NOT_FIT
        return Sizing(
            variant_name=name, fits=False, cause=cause, reason=f"no GPU class fits: {detail}", candidates=candidates
        )

    def rank(t: tuple[Candidate, Variant | None, MemoryPlan | None, Prediction | None]) -> tuple[float, str]:
        cand, variant, _, _ = t
        assert variant is not None
        cost = cand.cost_per_1m_output_tokens_usd
        # Without a workload to price, the cheapest hourly footprint wins.
        key = cost if cost is not None else variant.gpu.hourly_price(spot) * variant.tensor_parallel
        return (key, cand.gpu_class)

    best = min(fitting, key=rank)
    cand, variant, plan, prediction = best
    assert variant is not None
    execution = resolve_execution(variant.format, variant.gpu.compute_capability, variant.gpu.name)
    if mv.spec.gpu_class == AUTO and len(fitting) > 1 and cand.cost_per_1m_output_tokens_usd is not None:
        why = (
            f"cheapest of {len(fitting)} fitting GPU classes at ${cand.cost_per_1m_output_tokens_usd:.2f} per 1M "
            f"output tokens; {cand.reason}"
        )
    else:
        why = cand.reason
    return Sizing(
        variant_name=name,
        fits=True,
        cause=Cause.FITS,
        reason=why,
        variant=variant,
        memory=plan,
        prediction=prediction,
        execution=execution.mode,
        candidates=candidates,
    )
