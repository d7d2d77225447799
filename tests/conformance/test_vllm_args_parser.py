"""The vLLM arguments Bakeoff renders, checked by the installed vLLM's own argument parser.

The core environment has no vLLM, so the check runs under the vLLM environment's interpreter
(hack/install-vllm-cpu.sh); under CI=true a missing vLLM fails, elsewhere the tests are skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from bakeoff_runtime.architectures import get_architecture
from bakeoff_runtime.formats import Format
from bakeoff_runtime.gpus import get_gpu
from bakeoff_runtime.variant import Variant
from bakeoff_runtime.vllm_args import MANAGED_FLAGS, known_vllm_flags, vllm_args

from tests.conformance.conftest import vllm_python

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

RUNTIME_DIR = Path(__file__).resolve().parents[2] / "runtime"

CHECK = """
import json, sys
from bakeoff_runtime.vllm_args import check_with_vllm_parser, installed_vllm_flags
cases = json.loads(sys.stdin.read())
flags = installed_vllm_flags()
print(json.dumps({
    "errors": {name: check_with_vllm_parser(args) for name, args in cases.items()},
    "version": flags.vllm_version,
    "flags": sorted(flags.all_flags),
}))
"""


def run_in_vllm_env(cases: dict[str, list[str]]) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(RUNTIME_DIR)}
    proc = subprocess.run(
        [vllm_python(), "-c", CHECK],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def variant(model: str, fmt: str, gpu: str, tp: int = 1) -> Variant:
    return Variant(
        name=f"{model}-{fmt}",
        served_model_name=f"{model}-{fmt}",
        architecture=get_architecture(model),
        format=Format(fmt),
        gpu=get_gpu(gpu),
        tensor_parallel=tp,
    )


def cases() -> dict[str, list[str]]:
    return {
        "llama-70b-fp8": vllm_args(variant("llama-3.1-70b", "fp8", "h100", 2), ["--disable-log-stats"]),
        "llama-8b-int4": vllm_args(variant("llama-3.1-8b", "int4", "l40s")),
        "apriel-h30": vllm_args(variant("apriel-h1-h30", "bf16", "h100")),
        "unknown-flag": [*vllm_args(variant("llama-3.1-8b", "bf16", "h100")), "--no-such-flag"],
    }


@pytest.fixture(scope="module")
def checked() -> dict[str, object]:
    """One run of the vLLM interpreter (importing vLLM takes tens of seconds) for every check."""
    return run_in_vllm_env(cases())


def test_vllms_own_parser_accepts_what_bakeoff_renders_and_refuses_an_unknown_flag(
    checked: dict[str, object],
) -> None:
    errors = checked["errors"]
    assert isinstance(errors, dict)
    for name in ("llama-70b-fp8", "llama-8b-int4", "apriel-h30"):
        assert errors[name] == [], (name, cases()[name])
    assert errors["unknown-flag"], "vLLM's parser must refuse a flag it does not know"


def test_the_checked_in_flag_list_is_the_installed_vllms(checked: dict[str, object]) -> None:
    result = checked
    known = known_vllm_flags()
    installed = set(result["flags"])  # type: ignore[arg-type]
    if result["version"] != known.vllm_version:
        assert set(MANAGED_FLAGS) <= installed  # another release: Bakeoff's own flags must still exist
    else:
        assert installed == known.all_flags
