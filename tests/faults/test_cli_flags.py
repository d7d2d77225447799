"""Bad flags of every command that takes them: exit 2 before anything starts, with a message that
names the flag and what it should be; no traceback, no process started, no file left behind.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from bakeoff_operator.cli import main

from tests.faults.test_endpoint_faults import TWO_VARIANTS

CONFIG_ZERO_HEADS = (
    '{"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 0, '
    '"num_key_value_heads": 1, "intermediate_size": 128, "vocab_size": 100}'
)

LOADTEST = ["loadtest", "--endpoint", "http://127.0.0.1:9", "--model", "m"]

# (id, argv after `bakeoff`, what the message says: the flag, then the fix). `{tmp}` is the test's
# folder (holding b.yaml, a regular file `afile` and cfg0.json); `{busy}` a port something listens on.
CASES: list[tuple[str, list[str], tuple[str, ...]]] = [
    # bakeoff run
    ("run-duration-zero", ["run", "{tmp}/b.yaml", "--duration", "0"], ("--duration", "a positive number")),
    ("run-duration-over-a-day", ["run", "{tmp}/b.yaml", "--duration", "100000"], ("--duration", "up to 86,400")),
    ("run-negative-seed", ["run", "{tmp}/b.yaml", "--seed", "-1"], ("--seed", "from 0")),
    ("run-max-requests-zero", ["run", "{tmp}/b.yaml", "--max-requests", "0"], ("--max-requests", "from 1")),
    ("run-set-without-value", ["run", "{tmp}/b.yaml", "--set", "NOEQUALS"], ("--set expects NAME=VALUE",)),
    ("run-unknown-bakeoff", ["run", "{tmp}/b.yaml", "--bakeoff", "nope"], ("--bakeoff nope", "they define one-stream")),
    ("run-unknown-engine", ["run", "{tmp}/b.yaml", "--engine", "gpu"], ("--engine", "'sim', 'vllm'")),
    ("run-missing-file", ["run", "{tmp}/none.yaml"], ("no such file", "try examples/*.yaml")),
    (
        "run-out-under-a-file",
        ["run", "{tmp}/b.yaml", "--out", "{tmp}/afile/runs"],
        ("--out", "cannot create the run directory", "choose a writable directory"),
    ),
    # bakeoff loadtest
    (
        "loadtest-out-under-a-file",
        [*LOADTEST, "--out", "{tmp}/afile/out"],
        ("--out", "cannot write results there", "choose a writable directory"),
    ),
    (
        "loadtest-busy-metrics-port",
        [*LOADTEST, "--out", "{tmp}/o", "--metrics-port", "{busy}"],
        ("--metrics-port", "cannot listen there", "choose a free port, or 0"),
    ),
    (
        "loadtest-metrics-port-out-of-range",
        [*LOADTEST, "--out", "{tmp}/o", "--metrics-port", "99999"],
        ("--metrics-port 99999", "from 0 to 65535"),
    ),
    (
        "loadtest-duration-zero",
        [*LOADTEST, "--duration", "0"],
        ("--duration", "greater than 0"),
    ),
    (
        "loadtest-negative-workers",
        [*LOADTEST, "--workers", "-1"],
        ("--workers", "greater than or equal to 0"),
    ),
    (
        "loadtest-endpoint-without-scheme",
        ["loadtest", "--endpoint", "127.0.0.1:8000", "--model", "m"],
        ("--endpoint", "http://127.0.0.1:8000"),
    ),
    (
        "loadtest-zero-timeout",
        [*LOADTEST, "--timeout", "0"],
        ("--timeout", "greater than 0"),
    ),
    (
        "loadtest-workers-in-sync-mode",
        [*LOADTEST, "--workers", "2"],
        ("sync", "at most 1 worker"),
    ),
    # bakeoff predict
    ("predict-zero-sequences", ["predict", "--model", "llama-3.1-8b", "--max-num-seqs", "0"], ("--max-num-seqs 0",)),
    (
        "predict-memory-utilization",
        ["predict", "--model", "llama-3.1-8b", "--gpu-memory-utilization", "2"],
        ("--gpu-memory-utilization 2.0", "give a value <= 0.99"),
    ),
    (
        "predict-budget-below-sequences",
        ["predict", "--model", "llama-3.1-8b", "--max-num-batched-tokens", "16"],
        ("--max-num-batched-tokens (16) must be at least --max-num-seqs (256)",),
    ),
    ("predict-three-gpus", ["predict", "--model", "llama-3.1-8b", "--gpus", "3"], ("--gpus 3", "1, 2, 4, 8")),
    ("predict-unknown-model", ["predict", "--model", "llama-9"], ("--model", "valid models: apriel-h1-h25")),
    (
        "predict-config-with-zero-heads",
        ["predict", "--model", "{tmp}/cfg0.json"],
        ("--model", "num_attention_heads is 0", "must be positive whole numbers"),
    ),
    (
        "predict-fp8-on-ampere",
        ["predict", "--model", "llama-3.1-8b", "--format", "fp8", "--gpu", "a100-80gb"],
        ("--format fp8 --gpu a100-80gb", "weight-only", "--allow-weight-only-fallback"),
    ),
    ("predict-unknown-format", ["predict", "--model", "llama-3.1-8b", "--format", "int3"], ("int3", "bf16, fp8")),
    ("predict-unknown-gpu", ["predict", "--model", "llama-3.1-8b", "--gpu", "h1000"], ("h1000", "h100")),
    ("predict-unknown-workload", ["predict", "--model", "llama-3.1-8b", "--workload", "poetry"], ("poetry",)),
    # bakeoff sim
    ("sim-port-out-of-range", ["sim", "--port", "99999"], ("--port", "from 0 to 65535")),
    ("sim-busy-port", ["sim", "--port", "{busy}"], ("cannot listen on", "choose another --port")),
    ("sim-zero-sequences", ["sim", "--max-num-seqs", "0"], ("--max-num-seqs 0", "give a value >= 1")),
    ("sim-error-rate-above-one", ["sim", "--fault-error-rate", "2"], ("--fault-error-rate 2.0", "<= 1")),
    ("sim-config-with-zero-heads", ["sim", "--model", "{tmp}/cfg0.json"], ("--model", "num_attention_heads is 0")),
    (
        "sim-fp8-on-ampere",
        ["sim", "--format", "fp8", "--gpu", "a100-80gb"],
        ("--format fp8 --gpu a100-80gb", "--allow-weight-only-fallback"),
    ),
    ("sim-tensor-parallel-three", ["sim", "--tensor-parallel", "3"], ("--tensor-parallel", "power of two")),
    ("sim-unknown-gpu", ["sim", "--gpu", "h1000"], ("--gpu", "valid GPU classes")),
    ("sim-missing-variant-file", ["sim", "--variant-json", "{tmp}/none.json"], ("--variant-json", "cannot read it")),
    ("sim-empty-variant-env", ["sim", "--variant-env", "BAKEOFF_NO_SUCH_VARIABLE"], ("--variant-env", "not set")),
    # a command that names no path itself still gets no traceback
    ("crds-output-under-a-file", ["crds", "--output-dir", "{tmp}/afile/crds"], ("afile/crds", "Not a directory")),
]


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def _children() -> set[int]:
    me = str(os.getpid())
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "stat").read_text().rsplit(")", 1)[1].split()[1] == me:
                    found.add(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.parametrize(("argv", "says"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_flag_is_refused_naming_the_flag_and_the_fix(
    argv: list[str], says: tuple[str, ...], tmp_path: Path, busy_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "b.yaml").write_text(TWO_VARIANTS)
    (tmp_path / "afile").write_text("a regular file\n")
    (tmp_path / "cfg0.json").write_text(CONFIG_ZERO_HEADS)
    before = sorted(p.name for p in tmp_path.iterdir())
    children = _children()
    args = [a.replace("{tmp}", str(tmp_path)).replace("{busy}", str(busy_port)) for a in argv]
    try:
        code = main(args)
    except SystemExit as e:  # argparse's own refusals
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    text = " ".join((out + err).split())  # rich wraps long lines
    assert code in (1, 2), text
    assert code == 2 or argv[0] == "crds", text
    for fragment in says:
        assert fragment in text, f"{fragment!r} not in: {text}"
    assert "Traceback" not in text
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "nothing is written"
    assert _children() <= children, "nothing is started"
