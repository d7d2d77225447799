"""`bakeoff run --engine vllm` end to end with real vLLM on CPU and the tiny models `bakeoff tiny-models` builds.

The real-vLLM tests run the one-stream BakeOff of examples/tiny-vllm-cpu.yaml (a dense Llama in BF16, INT8 W8A8 and INT4
W4A16, and a NemotronH hybrid) with short bounds: four vLLM starts dominate its time. Without the
real-vLLM environment (hack/install-vllm-cpu.sh) it is skipped, and fails under CI=true.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from bakeoff_operator.api.loader import load_documents
from bakeoff_operator.api.modelvariant import ModelVariant
from bakeoff_operator.local import EXIT_OK
from bakeoff_runtime.architectures import from_hf_config
from bakeoff_runtime.launcher import find_vllm_python
from bakeoff_runtime.tinymodels import BUILT, placeholder

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "examples" / "tiny-vllm-cpu.yaml"
BAKEOFF = "tiny-cpu-sync"
VARIANTS = {"tiny-llama-bf16", "tiny-llama-int8", "tiny-llama-int4", "tiny-nemotronh-bf16"}
MAX_REQUESTS = 4
PROMPT_TOKENS, OUTPUT_TOKENS = 64, 32  # the BakeOff's workload
INSTALL_HINT = "install real vLLM on CPU with: bash hack/install-vllm-cpu.sh (or set BAKEOFF_VLLM_PYTHON)"
SHAPE_FIELDS = (
    "hidden_size",
    "num_layers",
    "attention_layers",
    "mamba_layers",
    "mlp_layers",
    "num_attention_heads",
    "num_kv_heads",
    "head_dim",
    "intermediate_size",
    "vocab_size",
    "tie_word_embeddings",
    "mamba_d_inner",
    "mamba_d_state",
    "mamba_d_conv",
    "mamba_n_groups",
)


def bakeoff_cli(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bakeoff_operator.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO_ROOT,
    )


@pytest.fixture(scope="module")
def set_flags() -> list[str]:
    """`bakeoff tiny-models` output: `--set NAME=PATH` per model (built once, then cached)."""
    if find_vllm_python() is None:
        reason = f"real vLLM is not installed; {INSTALL_HINT}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    proc = bakeoff_cli("tiny-models", timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    flags = proc.stdout.split()
    assert flags[::2] == ["--set"] * len(BUILT), proc.stdout
    assert {f.split("=", 1)[0] for f in flags[1::2]} == {placeholder(k, f) for k, f in BUILT}
    return flags


def substitutions(flags: list[str]) -> dict[str, str]:
    return dict(f.split("=", 1) for f in flags[1::2])


@pytest.mark.vllm
@pytest.mark.slow
def test_the_example_shapes_are_those_of_the_built_models(set_flags: list[str]) -> None:
    # The inline shapes drive the predicted figures and the sizing: they must describe what vLLM serves.
    variants = [
        r for r in load_documents(EXAMPLE, substitutions=substitutions(set_flags)) if isinstance(r, ModelVariant)
    ]
    assert {v.metadata.name for v in variants} >= VARIANTS
    for v in variants:
        checkpoint = Path(v.spec.model.source.removeprefix("file://"))
        built = from_hf_config(checkpoint / "config.json", name=v.metadata.name)
        declared = v.to_architecture()
        mismatched = {f: (getattr(declared, f), getattr(built, f)) for f in SHAPE_FIELDS}
        mismatched = {f: pair for f, pair in mismatched.items() if pair[0] != pair[1]}
        assert not mismatched, f"{v.metadata.name}: (example, config.json) differ: {mismatched}"


@pytest.mark.vllm
@pytest.mark.slow
def test_bakeoff_run_with_real_vllm_measures_every_variant_and_recommends_one(
    tmp_path: Path, set_flags: list[str]
) -> None:
    proc = bakeoff_cli(
        "run",
        "--engine",
        "vllm",
        str(EXAMPLE),
        "--bakeoff",
        BAKEOFF,
        "--duration",
        "20",
        "--max-requests",
        str(MAX_REQUESTS),
        "--out",
        str(tmp_path / "runs"),
        *set_flags,
        timeout=600,
    )
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    (run_dir,) = list((tmp_path / "runs").iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["complete"] is True
    assert summary["engine"] == "vllm"
    (outcome,) = summary["bakeoffs"]
    assert outcome["recommendation"] in VARIANTS, outcome
    assert "Recommendation" in proc.stdout

    out = run_dir / BAKEOFF
    status = json.loads((out / "status.json").read_text())
    assert status["complete"] is True
    assert status["failures"] == {}
    results = {r["variant"]: r for r in status["status"]["results"]}
    assert set(results) == VARIANTS
    for name, r in results.items():
        assert r["requests"] == MAX_REQUESTS, (name, r)
        assert r["e2eMs"]["p50"] > 0, (name, r)
        assert r["costPer1MOutputTokensUSD"] > 0, (name, r)

    # Token counts come from vLLM's usage and match the workload exactly: the tiny models' tokenizer
    # has one token per word, as the load harness counts them.
    request_files = sorted((out / "results").glob("*.requests.csv"))
    assert len(request_files) == len(VARIANTS)
    for path in request_files:
        rows = list(csv.DictReader(path.read_text().splitlines()))
        assert len(rows) == MAX_REQUESTS, path.name
        for row in rows:
            assert row["ok"] == "True", (path.name, row)
            assert int(row["prompt_tokens"]) == PROMPT_TOKENS == int(row["requested_prompt_tokens"]), row
            assert int(row["output_tokens"]) == OUTPUT_TOKENS == int(row["requested_output_tokens"]), row
    for path in (out / "results").glob("*-sync.json"):
        (point,) = json.loads(path.read_text())["points"]
        assert point["output_length_mismatches"] == 0, path.name
        assert point["output_tokens"] == MAX_REQUESTS * OUTPUT_TOKENS, path.name

    assert (out / "report.html").read_text().count("<svg") >= 3
    for name in VARIANTS:
        log = (out / "logs" / f"{name}.log").read_text()
        assert "vllm.entrypoints.openai.api_server" in log.splitlines()[0]
        assert "--enforce-eager" in log.splitlines()[0]
        if "int" in name:  # INT8 W8A8 and INT4 W4A16 load through vLLM's compressed-tensors scheme
            assert "compressed-tensors" in log or "compressed_tensors" in log, name


def test_tiny_models_without_a_vllm_python_names_the_install_command(tmp_path: Path) -> None:
    proc = bakeoff_cli("tiny-models", "--python", str(tmp_path / "missing-python"), "--out", str(tmp_path), timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "hack/install-vllm-cpu.sh" in proc.stderr
    assert not list(tmp_path.iterdir())
