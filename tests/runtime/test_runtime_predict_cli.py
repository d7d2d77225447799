"""`bakeoff predict` through its `main(argv)`."""

from __future__ import annotations

import argparse
import json

import pytest
from bakeoff_runtime.cli import EXIT_USAGE, add_parser, main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["predict", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_one_variant_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        capsys,
        "--model",
        "llama-3.1-70b",
        "--format",
        "fp8",
        "--gpu",
        "h100",
        "--gpus",
        "1",
        "--workload",
        "code-completion",
        "--mode",
        "sync",
        "--json",
    )
    assert code == 0
    row = json.loads(out)
    for key in (
        "fits",
        "tensor_parallel",
        "latency_s",
        "max_qps",
        "output_tokens_per_s",
        "cost_per_1m_output_tokens_usd",
    ):
        assert key in row
    assert row["fits"] is True
    assert row["tensor_parallel"] == 1
    assert 25 < row["latency_s"] < 40
    assert "--tensor-parallel-size=1" in row["vllm_args"]
    assert row["cost_per_1m_output_tokens_usd"] == pytest.approx(3.29 * row["latency_s"] / 3600 / 1024 * 1e6)


def test_minimal_tensor_parallel_when_gpus_is_omitted(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        capsys,
        "--model",
        "llama-3.1-70b",
        "--format",
        "bf16",
        "--gpu",
        "h100",
        "--workload",
        "rag",
        "--mode",
        "async",
        "--json",
    )
    assert code == 0
    assert json.loads(out)["tensor_parallel"] == 2


def test_comparison_table_over_everything(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        capsys, "--model", "llama-3.1-8b", "--format", "all", "--gpu", "all", "--workload", "all", "--json"
    )
    rows = json.loads(out)
    assert code == 0
    assert len(rows) == 4 * 7 * 9 * 2
    assert {r["mode"] for r in rows} == {"sync", "async"}
    assert all(r["fits"] for r in rows if r["gpu"] == "h100")


def test_table_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        capsys,
        "--model",
        "apriel-h1-teacher,apriel-h1-h30",
        "--format",
        "bf16",
        "--gpu",
        "h100",
        "--workload",
        "reasoning",
        "--mode",
        "async",
        "--ttft-slo",
        "2",
        "--itl-slo",
        "0.05",
    )
    assert code == 0
    assert "QPS@SLO" in out
    assert "apriel-h1-h30" in out


def test_price_override(capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "--model",
        "llama-3.1-8b",
        "--format",
        "int4",
        "--gpu",
        "l4",
        "--workload",
        "rag",
        "--mode",
        "async",
        "--json",
    ]
    _, base, _ = _run(capsys, *args)
    _, cheap, _ = _run(capsys, *args, "--price-per-gpu-hour", "0.35")
    ratio = json.loads(cheap)["cost_per_1m_output_tokens_usd"] / json.loads(base)["cost_per_1m_output_tokens_usd"]
    assert ratio == pytest.approx(0.35 / 0.70)


@pytest.mark.parametrize(
    ("flag", "value", "listed"),
    [
        ("--model", "llama-9b", "llama-3.1-8b"),
        ("--format", "int3", "int4"),
        ("--gpu", "x100", "h100"),
        ("--workload", "poetry", "code-completion"),
        ("--gpus", "3", "1, 2, 4"),
    ],
    ids=["model", "format", "gpu", "workload", "gpus"],
)
def test_unknown_names_exit_2_and_list_the_valid_ones(
    capsys: pytest.CaptureFixture[str], flag: str, value: str, listed: str
) -> None:
    argv = {"--model": "llama-3.1-8b", "--format": "bf16", "--gpu": "h100", "--workload": "rag"}
    argv[flag] = value
    code, out, err = _run(capsys, *[x for kv in argv.items() for x in kv])
    assert code == EXIT_USAGE
    assert out == ""
    assert value in err
    assert listed in err


def test_add_parser_registers_predict_on_a_host_command() -> None:
    parser = argparse.ArgumentParser(prog="bakeoff")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["predict", "--model", "llama-3.1-8b"])
    assert args.command == "predict"
    assert callable(args.func)
