"""Simulator fidelity: load measured against the simulator vs the performance model's prediction.

    .venv/bin/python benchmarks/sim_fidelity.py [--model llama-3.1-8b --format bf16 --gpu l40s]

Closed-loop streaming clients at three concurrencies (1, 16, 64 by default), prompt 512 and output
128 tokens, starts staggered over one request's duration so that the sequences are spread over
the decode phase as in a steady state. Each client's first request is warm-up. Printed per level:
TTFT, ITL and output throughput measured at the client, the prediction, and the error (target:
within 10%).

Predictions (from `PerformanceModel`):
- concurrency 1: `sync_latency(P, O)` gives TTFT (the prefill) and ITL (the mean decode step).
- concurrency c > 1: `steady_state(c, P, O)`: the rate-weighted mix of steps that carry a prompt
  chunk and decode-only steps, as the scheduler runs them, gives ITL (the mean of the steps a
  sequence decodes in) and throughput. TTFT = the wait for the step in flight (a closed-loop client
  sends its next request just after a step began: one mean step) plus the steps carrying its prompt.
  The "avg shape" columns show the step of the average shape, which the convex roofline makes too
  fast; "TTFT srv" is the server's own TTFT histogram (no client HTTP path).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bakeoff_runtime.architectures import get_architecture
from bakeoff_runtime.formats import Format
from bakeoff_runtime.gpus import get_gpu
from bakeoff_runtime.launcher import RuntimeSpec, launch
from bakeoff_runtime.perf import PerformanceModel, StepShape
from bakeoff_runtime.variant import Variant, make_variant
from sim_client import StreamResult, mean, stream_completion


def predict(model: PerformanceModel, c: int, p: int, o: int) -> tuple[float, float, float]:
    """(TTFT s, ITL s, output tokens/s): the performance model's steady state at concurrency c."""
    if c == 1:
        sync = model.sync_latency(p, o)
        cycle = sync.ttft_s + (o - 1) * sync.itl_s
        return sync.ttft_s, sync.itl_s, o / cycle
    state = model.steady_state(c, p, o)
    # A closed-loop client sends its next request just after a step began: it waits about one step.
    return state.mean_step_s + state.ttft_s, state.itl_s, state.output_tokens_per_s


def predict_average_shape(model: PerformanceModel, c: int, p: int, o: int) -> tuple[float, float, float]:
    """The same quantities from the step of the AVERAGE shape (c decodes plus c/o of a prompt).

    Step time is a roofline (convex in the shape), so this underestimates the mean step whenever
    some steps carry a prompt and others do not; printed to show what the step mix corrects.
    """
    if c == 1:
        return predict(model, c, p, o)
    arrivals = c / o
    step = model.step_time(
        StepShape(
            prefill_tokens=round(arrivals * p),
            prefill_attention_pairs=arrivals * p * (p + 1) / 2,
            decode_sequences=c,
            decode_context_tokens=int(c * (p + o / 2)),
        )
    )
    chunk = model.step_time(
        StepShape(
            prefill_tokens=p,
            prefill_attention_pairs=p * (p + 1) / 2,
            decode_sequences=c - 1,
            decode_context_tokens=int((c - 1) * (p + o / 2)),
        )
    )
    return step + chunk, step, c / step


def server_ttft(url: str) -> tuple[float, float]:
    """(sum, count) of the server's own TTFT histogram: TTFT without the client's HTTP path."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("vllm:time_to_first_token_seconds_sum"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith("vllm:time_to_first_token_seconds_count"):
            count += float(line.rsplit(" ", 1)[1])
    return total, count


async def closed_loop(
    url: str, c: int, shape: tuple[int, int], duration_s: float, stagger_s: float
) -> list[tuple[int, StreamResult]]:
    """(client, result) of every request after each client's first (warm-up) one."""
    p, o = shape
    body = {"model": "bench", "prompt": " ".join(["word"] * p), "max_tokens": o}
    results: list[tuple[int, StreamResult]] = []
    end = time.perf_counter() + duration_s

    async def client(i: int) -> None:
        await asyncio.sleep(stagger_s * i / c)
        first = True
        while time.perf_counter() < end:
            r = await stream_completion(url, body)
            if not r.ok:
                raise RuntimeError(f"request failed: {r.error}")
            if not first:
                results.append((i, r))
            first = False

    await asyncio.gather(*(client(i) for i in range(c)))
    return results


def throughput(tagged: list[tuple[int, StreamResult]]) -> float:
    """Output tokens/s: each client's tokens over the time its measured requests span, summed."""
    total = 0.0
    for client in {i for i, _ in tagged}:
        mine = [r for i, r in tagged if i == client]
        span = max(r.start + r.e2e_s for r in mine) - min(r.start for r in mine)
        if span > 0:
            total += sum(r.completion_tokens for r in mine) / span
    return total


def err(measured: float, predicted: float) -> str:
    return f"{100 * (measured - predicted) / predicted:+6.1f}%"


def run(variant: Variant, levels: list[int], p: int, o: int, duration_s: float) -> int:
    model = PerformanceModel(variant)
    log = Path(tempfile.mkdtemp(prefix="sim-fidelity-")) / "sim.log"
    worst = 0.0
    print(f"simulator fidelity: {variant.name} on {variant.tensor_parallel}x {variant.gpu.name}, P={p} O={o}")
    print(f"{'':>5} {'':>10} {'':>11} {'model':>11} {'':>7} {'avg shape':>11}")
    print(f"{'conc':>5} {'metric':>10} {'measured':>11} {'predicted':>11} {'error':>7} {'predicted':>11} {'error':>7}")
    with launch(RuntimeSpec(engine="sim", variant=variant, log_path=log)) as runtime:
        with_pin = (os.cpu_count() or 1) >= 2
        if with_pin:
            try:
                os.sched_setaffinity(runtime.process.pid, {0})
                os.sched_setaffinity(0, {1})
            except OSError:
                pass
        for c in levels:
            ttft_p, itl_p, tput_p = predict(model, c, p, o)
            ttft_a, itl_a, tput_a = predict_average_shape(model, c, p, o)
            stagger = ttft_p + (o - 1) * itl_p
            t0 = time.perf_counter()
            before = server_ttft(runtime.url)
            tagged = asyncio.run(closed_loop(runtime.url, c, (p, o), duration_s, stagger))
            after = server_ttft(runtime.url)
            results = [r for _, r in tagged]
            measured = {
                "TTFT ms": 1000 * mean([r.ttft_s for r in results]),
                "ITL ms": 1000 * mean([x for r in results for x in r.itl_s]),
                "tok/s": throughput(tagged),
            }
            predicted = {"TTFT ms": 1000 * ttft_p, "ITL ms": 1000 * itl_p, "tok/s": tput_p}
            average = {"TTFT ms": 1000 * ttft_a, "ITL ms": 1000 * itl_a, "tok/s": tput_a}
            for name, value in measured.items():
                e = abs(value - predicted[name]) / predicted[name]
                worst = max(worst, e)
                print(
                    f"{c:>5} {name:>10} {value:>11.2f} {predicted[name]:>11.2f} {err(value, predicted[name])} "
                    f"{average[name]:>11.2f} {err(value, average[name])}"
                )
            served = after[1] - before[1]
            if served > 0:
                # Includes each client's warm-up request; the client's TTFT adds its own HTTP path.
                server_ms = 1000 * (after[0] - before[0]) / served
                print(
                    f"{'':>5} {'TTFT srv':>10} {server_ms:>11.2f} {1000 * ttft_p:>11.2f} "
                    f"{err(server_ms, 1000 * ttft_p)}   (server-side, not in the worst error)"
                )
            print(f"{'':>5} {'requests':>10} {len(results):>11} ({time.perf_counter() - t0:.0f} s)")
    print(f"worst error against the model {100 * worst:.1f}% (target within 10%)")
    return 0 if worst <= 0.10 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="llama-3.1-8b")
    parser.add_argument("--format", default="bf16")
    parser.add_argument("--gpu", default="l40s")
    parser.add_argument("--tensor-parallel", type=int, default=1)
    parser.add_argument("--levels", default="1,16,64", help="comma-separated concurrencies")
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--output-tokens", type=int, default=128)
    parser.add_argument("--duration-s", type=float, default=15.0, help="per concurrency level")
    args = parser.parse_args()
    variant = make_variant(
        get_architecture(args.model),
        Format(args.format),
        get_gpu(args.gpu),
        args.tensor_parallel,
        served_model_name="bench",
        max_model_len=4096,
    )
    levels = [int(x) for x in args.levels.split(",")]
    return run(variant, levels, args.prompt_tokens, args.output_tokens, args.duration_s)


if __name__ == "__main__":
    sys.exit(main())
