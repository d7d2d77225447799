"""A simulated vLLM replica and the operator's registry, both scraped by a real Prometheus loaded with
the chart's rule file: the stack the live observability tests query."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bakeoff_operator.api.modelvariant import ModelVariant
from bakeoff_operator.io.metrics import OperatorMetrics
from bakeoff_runtime.architectures import get_architecture
from bakeoff_runtime.formats import Format
from bakeoff_runtime.gpus import get_gpu
from bakeoff_runtime.launcher import RunningRuntime, RuntimeSpec, launch
from bakeoff_runtime.variant import make_variant
from prometheus_client import start_http_server

from tests.observability.promql import RULE_FILE
from tests.support.fixtures import unavailable
from tests.support.prometheus import Prometheus, TargetGroup, missing_prometheus_tools


@contextmanager
def scraped_simulator(
    tmp: Path, metrics: OperatorMetrics, *, namespace: str, variant: str, fmt: Format, seed: int
) -> Iterator[tuple[RunningRuntime, Prometheus]]:
    """Llama 3.1 8B in `fmt` on an H100, simulated and served as `variant` (its served model name too), and
    a Prometheus scraping it (labelled with `namespace` and `variant`) and `metrics`; the test skips, or
    fails under CI=true, without the Prometheus binaries."""
    missing = missing_prometheus_tools()
    if missing:
        unavailable("; ".join(missing))
    server, _ = start_http_server(0, addr="127.0.0.1", registry=metrics.registry)
    simulated = make_variant(
        get_architecture("llama-3.1-8b"),
        fmt,
        get_gpu("h100"),
        served_model_name=variant,
        max_model_len=1024,
        max_num_seqs=16,
        max_num_batched_tokens=1024,
    )
    try:
        with (
            launch(
                RuntimeSpec(engine="sim", variant=simulated, log_path=tmp / "sim.log", sim_args=("--seed", str(seed)))
            ) as sim,
            Prometheus(
                tmp / "prometheus",
                static_targets={"bakeoff-operator": [f"127.0.0.1:{server.server_port}"]},
                rule_files=[RULE_FILE],
            ) as prom,
        ):
            prom.write_targets(
                [TargetGroup([sim.url.removeprefix("http://")], {"namespace": namespace, "variant": variant})]
            )
            yield sim, prom
    finally:
        server.shutdown()
        server.server_close()


def placed_variant(namespace: str, name: str, fmt: Format, gpus: int, **spec: Any) -> ModelVariant:
    """Llama 3.1 8B in `fmt` on H100s as the operator's status has placed it (`gpus` per replica), served
    as `name`: what the autoscaler exports `bakeoff_variant_spec` from."""
    return ModelVariant.model_validate(
        {
            "apiVersion": "bakeoff.dev/v1alpha1",
            "kind": "ModelVariant",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "model": {"source": "hf://org/llama", "servedName": name},
                "architecture": {"catalog": "llama-3.1-8b"},
                "format": fmt.value,
                "gpuClass": "h100",
                **spec,
            },
            "status": {"resolvedGPUClass": "h100", "tensorParallelSize": gpus},
        }
    )
