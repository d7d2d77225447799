"""`bakeoff predict` through its `main(argv)`."""

from __future__ import annotations

import argparse
import json
import re

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


def _table_columns(out: str, model: str) -> dict[str, str]:
    """The header cells of a predict table mapped to the first row of `model`, cut where the rule under the
    header has its gaps."""
    lines = out.splitlines()
    spans = [(m.start(), m.end()) for m in re.finditer(r"-+", lines[1])]
    row = next(line for line in lines[2:] if line.startswith(model))
    return {lines[0][a:b].strip(): row[a:b].strip() for a, b in spans}


def test_a_plan_across_nodes_prints_its_tensor_and_pipeline_parallel_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    # 405B in BF16 does not fit one node of 8 H100s: the policy runs two pipeline stages of 8.
    args = ["--model", "llama-3.1-405b", "--format", "bf16", "--gpu", "h100", "--workload", "rag", "--mode", "sync"]
    code, out, _ = _run(capsys, *args, "--json")
    assert code == 0
    row = json.loads(out)
    assert (row["gpus"], row["tensor_parallel"], row["pipeline_parallel"]) == (16, 8, 2)
    assert "--pipeline-parallel-size=2" in row["vllm_args"]
    code, out, _ = _run(capsys, *args)
    assert code == 0
    cells = _table_columns(out, "llama-3.1-405b")
    assert (cells["gpus"], cells["TP"], cells["PP"]) == ("16", "8", "2")


def test_a_plan_inside_one_node_has_no_pipeline_column(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        capsys, "--model", "llama-3.1-70b", "--format", "bf16", "--gpu", "h100", "--workload", "rag", "--json"
    )
    assert code == 0
    assert {r["pipeline_parallel"] for r in json.loads(out)} == {1}
    code, out, _ = _run(capsys, "--model", "llama-3.1-70b", "--format", "bf16", "--gpu", "h100", "--workload", "rag")
    assert code == 0
    assert "PP" not in _table_columns(out, "llama-3.1-70b")


def test_a_model_too_large_for_the_largest_plan_is_shown_on_one_gpu_with_the_plans_tried(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # 405B in BF16 needs more than four nodes of 8 L4s: the row is the model on one GPU, refused, and
    # the reason names the largest plan tried.
    code, out, _ = _run(
        capsys,
        "--model",
        "llama-3.1-405b",
        "--format",
        "bf16",
        "--gpu",
        "l4",
        "--workload",
        "rag",
        "--mode",
        "sync",
        "--json",
    )
    assert code == 0
    row = json.loads(out)
    assert row["fits"] is False
    assert (row["gpus"], row["tensor_parallel"], row["pipeline_parallel"]) == (1, 1, 1)
    assert "32x (4 pipeline stages of 8)" in row["reason"]
    assert "at 1 GPU" in row["reason"]


def test_a_gpu_count_of_whole_nodes_is_the_plan_auto_sizing_would_choose(capsys: pytest.CaptureFixture[str]) -> None:
    # 405B BF16 on L40S: auto sizing picks three nodes of 8; asking for 24 GPUs gives the same plan.
    args = ["--model", "llama-3.1-405b", "--format", "bf16", "--gpu", "l40s", "--workload", "rag", "--json"]
    _, auto, _ = _run(capsys, *args)
    code, given, _ = _run(capsys, *args, "--gpus", "24")
    assert code == 0
    assert json.loads(given) == json.loads(auto)
    assert {(r["gpus"], r["tensor_parallel"], r["pipeline_parallel"]) for r in json.loads(given)} == {(24, 8, 3)}


def test_a_gpu_count_that_splits_a_node_exits_2_and_says_what_would_do(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--model", "llama-3.1-405b", "--format", "bf16", "--gpu", "h100", "--workload", "rag", "--gpus", "12"]
    code, out, err = _run(capsys, *argv)
    assert code == EXIT_USAGE
    assert out == ""
    assert "--gpus 12" in err
    assert "multiple of 8" in err


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


def _async_row(capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, object]:
    code, out, err = _run(
        capsys,
        *("--model", "llama-3.1-70b", "--format", "bf16", "--gpus", "4", "--workload", "rag", "--mode", "async"),
        *("--json", *extra),
    )
    assert code == 0, err
    row: dict[str, object] = json.loads(out)
    return row


def test_concurrency_predicts_that_many_requests_in_flight_below_saturation(capsys: pytest.CaptureFixture[str]) -> None:
    saturation = _async_row(capsys)
    assert saturation["clients"] is None
    cap = saturation["concurrency"]
    assert isinstance(cap, int)
    rows = [_async_row(capsys, "--concurrency", str(n)) for n in (1, 8, 32, cap)]
    qps = [r["max_qps"] for r in rows]
    assert qps == sorted(qps), "more requests in flight never serve fewer per second"
    assert [r["concurrency"] for r in rows] == [1, 8, 32, cap]
    assert all(r["limited_by"] == "clients" for r in rows)
    assert rows[-1]["max_qps"] == pytest.approx(saturation["max_qps"], rel=0.02)
    for r in rows:  # Little's law: requests in flight = rate x time in the system
        assert r["clients"] * 1.0 == pytest.approx(r["max_qps"] * r["latency_s"], rel=0.05)


def test_concurrency_beyond_the_engines_cap_queues_the_rest(capsys: pytest.CaptureFixture[str]) -> None:
    saturation = _async_row(capsys)
    cap = saturation["concurrency"]
    assert isinstance(cap, int)
    row = _async_row(capsys, "--concurrency", str(2 * cap))
    assert row["concurrency"] == cap
    assert row["limited_by"] == saturation["limited_by"]
    assert row["max_qps"] == pytest.approx(saturation["max_qps"], rel=0.02)
    assert row["ttft_s"] > saturation["ttft_s"] + 0.9 * cap / saturation["max_qps"]


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (("--concurrency", "0"), "--concurrency 0: give a whole number >= 1"),
        (("--concurrency", "8", "--mode", "sync"), "--concurrency 8 applies to async mode"),
    ],
    ids=["zero", "sync"],
)
def test_bad_concurrency_exits_2_naming_the_flag(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], said: str
) -> None:
    code, out, err = _run(capsys, "--model", "llama-3.1-8b", "--format", "bf16", "--workload", "rag", *argv)
    assert code == EXIT_USAGE
    assert out == ""
    assert said in err


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
