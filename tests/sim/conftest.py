"""Fixtures of the simulator tests: a real simulator process started by the launcher on 127.0.0.1:0."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from bakeoff_runtime.architectures import get_architecture
from bakeoff_runtime.formats import Format
from bakeoff_runtime.gpus import get_gpu
from bakeoff_runtime.launcher import RunningRuntime, RuntimeSpec, launch
from bakeoff_runtime.variant import Variant, make_variant

SERVED = "tiny"


def sim_variant(model: str = "llama-3.1-8b", fmt: Format = Format.BF16, gpu: str = "h100", **knobs: object) -> Variant:
    base: dict[str, object] = {
        "served_model_name": SERVED,
        "max_model_len": 1024,
        "max_num_seqs": 8,
        "max_num_batched_tokens": 1024,
    }
    base.update(knobs)
    return make_variant(get_architecture(model), fmt, get_gpu(gpu), **base)


def start_sim(tmp: Path, *args: str, variant: Variant | None = None) -> RunningRuntime:
    spec = RuntimeSpec(engine="sim", variant=variant or sim_variant(), log_path=tmp / "sim.log", sim_args=args)
    return launch(spec)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRuntime]:
    with start_sim(tmp_path_factory.mktemp("sim"), "--seed", "7") as runtime:
        yield runtime
