"""The performance model's continuous-batching steady state against the simulator's scheduler.

The scheduler (`bakeoff_runtime.sim.scheduler`) runs in-process on a virtual clock: every step
lasts `PerformanceModel.step_time` of the shape it scheduled, with no HTTP and no sleeping. Closed
loop: each of c clients sends its next request the moment its previous one finishes, first
requests staggered evenly over one request's lifetime. The model's TTFT, ITL and throughput must
agree within `FIDELITY_TOLERANCE` at three concurrencies per configuration.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from bakeoff_runtime.perf import PerformanceModel, StepShape
from bakeoff_runtime.sim.scheduler import Scheduler, SimRequest
from bakeoff_runtime.sim.server import scheduler_limits
from bakeoff_runtime.variant import Variant
from runtime_builders import variant

FIDELITY_TOLERANCE = 0.10  # the simulator fidelity target (benchmarks/sim_fidelity.py)
WARM_CYCLES = 2  # request lifetimes before measuring: the stagger has settled into a steady pattern
MEASURED_CYCLES = 3


@dataclass
class Measured:
    ttft_s: float
    itl_s: float
    output_tokens_per_s: float


def closed_loop(v: Variant, concurrency: int, prompt: int, output: int) -> Measured:
    model = PerformanceModel(v)
    scheduler = Scheduler(scheduler_limits(v))
    lifetime = model.steady_state(concurrency, prompt, output).prefill_steps + output - 1
    first_requests = sorted(i * lifetime // concurrency for i in range(concurrency))
    arrivals: dict[str, float] = {}
    tokens: dict[str, list[float]] = {}
    clock = 0.0
    step = 0
    measure_from = 0.0

    def send(now: float) -> None:
        rid = str(len(arrivals))
        arrivals[rid] = now
        tokens[rid] = []
        scheduler.add(SimRequest(request_id=rid, prompt_tokens=prompt, max_output_tokens=output, arrival=now))

    while step < (WARM_CYCLES + MEASURED_CYCLES) * lifetime:
        while first_requests and first_requests[0] <= step:
            first_requests.pop(0)
            send(clock)
        plan = scheduler.schedule(clock)
        step += 1
        if plan.empty:
            continue
        c = plan.counts
        clock += model.step_time(
            StepShape(
                prefill_tokens=c.prefill_tokens,
                prefill_attention_pairs=c.prefill_attention_pairs,
                decode_sequences=c.decode_sequences,
                decode_context_tokens=c.decode_context_tokens,
            )
        )
        if step == WARM_CYCLES * lifetime:
            measure_from = clock
        result = scheduler.complete(plan)
        for req in result.sampled:
            tokens[req.request_id].append(clock)
        for _ in result.finished:
            send(clock)

    done = [rid for rid, at in arrivals.items() if at >= measure_from and len(tokens[rid]) == output]
    assert done, "no request completed inside the measured window"
    ttft = sum(tokens[r][0] - arrivals[r] for r in done) / len(done)
    gaps = [b - a for r in done for a, b in zip(tokens[r], tokens[r][1:], strict=False)]
    sampled = sum(1 for times in tokens.values() for t in times if t > measure_from)
    return Measured(ttft_s=ttft, itl_s=sum(gaps) / len(gaps), output_tokens_per_s=sampled / (clock - measure_from))


CONFIGS = {
    # The fidelity benchmark's default: a whole prompt fits one step beside the decodes.
    "8b-bf16-l40s-512-128": (("llama-3.1-8b", "bf16", "l40s", 1), {"max_model_len": 4096}, (512, 128), (1, 16, 64)),
    # vLLM 0.6's 512-token chunked-prefill budget: long prompts take nine chunks each.
    "70b-bf16-4xh100-4096-512": (
        ("llama-3.1-70b", "bf16", "h100", 4),
        {"max_model_len": 8192, "max_num_batched_tokens": 512},
        (4096, 512),
        (1, 20, 57),
    ),
    # The same budget with short prompts: at 150 sequences prompts share steps and spill into the next.
    "70b-fp8-4xh100-256-128": (
        ("llama-3.1-70b", "fp8", "h100", 4),
        {"max_model_len": 8192, "max_num_batched_tokens": 512},
        (256, 128),
        (1, 64, 150),
    ),
}
CASES = [(name, c) for name, (_, _, _, levels) in CONFIGS.items() for c in levels]


@pytest.mark.parametrize(("config", "concurrency"), CASES, ids=[f"{n}-c{c}" for n, c in CASES])
def test_steady_state_matches_the_scheduler_step_by_step(config: str, concurrency: int) -> None:
    (model, fmt, gpu, tp), knobs, (prompt, output), _ = CONFIGS[config]
    v = variant(model, fmt, gpu, tp, **knobs)
    predicted = PerformanceModel(v).steady_state(concurrency, prompt, output)
    measured = closed_loop(v, concurrency, prompt, output)
    assert predicted.output_tokens_per_s == pytest.approx(measured.output_tokens_per_s, rel=FIDELITY_TOLERANCE)
    assert predicted.itl_s == pytest.approx(measured.itl_s, rel=FIDELITY_TOLERANCE)
    assert predicted.ttft_s == pytest.approx(measured.ttft_s, rel=FIDELITY_TOLERANCE)


def test_mean_step_is_the_mean_of_steps_not_the_step_of_the_mean_shape() -> None:
    # Half the steps carry a 512-token prompt and half do not: the roofline makes the mix slower than
    # a step carrying half a prompt, which is what an average-shape model would predict.
    pm = PerformanceModel(variant("llama-3.1-8b", "bf16", "l40s", max_model_len=4096))
    state = pm.steady_state(64, 512, 128)
    assert state.chunks_per_step == pytest.approx(0.5)
    average_shape = pm.step_time(
        StepShape(
            prefill_tokens=256,
            prefill_attention_pairs=256 * 513 / 2,
            decode_sequences=64,
            decode_context_tokens=64 * (512 + 64),
        )
    )
    assert state.mean_step_s > 1.05 * average_shape


def test_saturation_reports_the_steady_state_at_its_concurrency() -> None:
    pm = PerformanceModel(variant("llama-3.1-70b", "fp8", "h100", 4, max_num_batched_tokens=512))
    sat = pm.saturation(256, 128)
    state = pm.steady_state(sat.concurrency, 256, 128)
    assert sat.limited_by == "token_budget"
    assert not state.budget_bound
    assert sat.max_qps == pytest.approx(state.requests_per_s)
    assert sat.itl_s == pytest.approx(state.itl_s)
    # One more sequence would ask for more tokens per step than the budget holds.
    assert pm.steady_state(sat.concurrency + 1, 256, 128).budget_bound


def test_a_budget_bound_steady_state_runs_every_step_full() -> None:
    pm = PerformanceModel(variant("llama-3.1-70b", "bf16", "h100", 4, max_num_batched_tokens=512))
    state = pm.steady_state(200, 256, 128)
    assert state.budget_bound
    assert state.requests_per_step * (256 + 127) == pytest.approx(512)
    assert state.mean_step_s == pytest.approx(state.itl_s)
