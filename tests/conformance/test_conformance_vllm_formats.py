"""Real vLLM on CPU serves the quantized and hybrid tiny models Bakeoff builds, with exact token counts.

INT8 W8A8 and INT4 W4A16 checkpoints are written in the compressed-tensors format (what vLLM loads
for those formats on GPUs too); the hybrid is a NemotronH (Mamba-2 + attention). FP8 W8A8 is not
covered: vLLM's CPU backend has no FP8 matrix kernels.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conformance.conftest import SERVED, launch_vllm
from tests.conformance.snapshot import families, read_snapshot

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


@pytest.mark.parametrize(
    ("kind", "fmt"),
    [("llama", "int8"), ("llama", "int4"), ("nemotronh", "bf16")],
    ids=["llama-int8-w8a8", "llama-int4-w4a16", "nemotronh-hybrid-bf16"],
)
def test_vllm_serves_the_tiny_model(tmp_path: Path, kind: str, fmt: str) -> None:
    with launch_vllm(tmp_path, kind, fmt) as runtime:
        body = {"model": SERVED, "prompt": "one two three four five", "max_tokens": 4, "ignore_eos": True}
        out = httpx.post(runtime.url + "/v1/completions", json=body, timeout=120)
        assert out.status_code == 200, out.text
        assert out.json()["usage"]["prompt_tokens"] == 5
        assert out.json()["usage"]["completion_tokens"] == 4
        log = runtime.log_tail(2_000_000)
        if fmt != "bf16":
            assert "compressed-tensors" in log or "compressed_tensors" in log
        _, snap = read_snapshot()
        assert set(families(httpx.get(runtime.url + "/metrics", timeout=10).text)) == set(snap)
