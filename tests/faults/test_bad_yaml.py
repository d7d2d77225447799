"""Bad YAML: `bakeoff run` refuses it before anything starts (exit 2), naming the document, the field
and the fix; the real API server (cluster tier) judges every schema case the same way.

A case the API server cannot judge says so: references between objects (a baseline or a variant that
is not defined) are the operator's to report as conditions, and a file that is not YAML never
reaches the server.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from bakeoff_operator import local
from rich.console import Console

from tests.api.api_builders import bakeoff, variant, with_path
from tests.support.controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[2]
Server = Literal["rejects", "accepts", "never-sent"]


def documents(variant_changes: dict[str, Any] | None = None, bakeoff_changes: dict[str, Any] | None = None) -> str:
    """A variant `v` (document 1) and a bake-off `b` of it (document 2), each with dotted paths changed."""
    v = variant("v", format="bf16")
    b = bakeoff("b", variants=["v"], load={"mode": "sync", "duration": "5s", "maxRequests": 1})
    for path, value in (variant_changes or {}).items():
        v = with_path(v, path, value)
    for path, value in (bakeoff_changes or {}).items():
        b = with_path(b, path, value)
    return yaml.safe_dump_all([v, b], sort_keys=False)


@dataclass(frozen=True)
class YamlCase:
    id: str
    text: str | bytes
    says: tuple[str, ...]  # the document, the field and the fix, as printed
    server: Server = "rejects"
    server_says: tuple[str, ...] = field(default=())  # what the API server's answer names


V, B = "document 1 (ModelVariant v)", "document 2 (BakeOff b)"

CASES = [
    # Types: what the API server takes for no integer, number or boolean.
    YamlCase(
        "quoted-integer",
        documents({"spec.serving.maxNumSeqs": "64"}),
        (V, "spec.serving.maxNumSeqs", "write 64 without quotes"),
        server_says=("spec.serving.maxNumSeqs", "integer"),
    ),
    YamlCase(
        "quoted-tensor-parallel",
        documents({"spec.tensorParallelSize": "1"}),
        (V, "spec.tensorParallelSize", "write 1 without quotes"),
        server_says=("spec.tensorParallelSize",),
    ),
    YamlCase(
        "boolean-tensor-parallel",
        documents({"spec.tensorParallelSize": True}),
        (V, "spec.tensorParallelSize", "true and false are not numbers"),
        server_says=("spec.tensorParallelSize",),
    ),
    YamlCase(
        "quoted-boolean",
        documents({"spec.serving.enablePrefixCaching": "true"}),
        (V, "spec.serving.enablePrefixCaching", "write true without quotes"),
        server_says=("spec.serving.enablePrefixCaching", "boolean"),
    ),
    YamlCase(
        "quoted-number",
        documents({"spec.serving.gpuMemoryUtilization": "0.9"}),
        (V, "spec.serving.gpuMemoryUtilization", "write 0.9 without quotes"),
        server_says=("spec.serving.gpuMemoryUtilization", "number"),
    ),
    # Bounds, enums, patterns, unknown fields.
    YamlCase(
        "zero-duration",
        documents(bakeoff_changes={"spec.load.duration": "0s"}),
        (B, "spec.load.duration", "more than 0s and at most 24h, e.g. 60s"),
        server_says=("spec.load.duration", "more than 0s and at most 24h"),
    ),
    YamlCase(
        "duration-over-a-day",
        documents(bakeoff_changes={"spec.load.duration": "25h"}),
        (B, "spec.load.duration", "more than 0s and at most 24h, e.g. 60s"),
        server_says=("spec.load.duration", "more than 0s and at most 24h"),
    ),
    YamlCase(
        "duration-in-words",
        documents(bakeoff_changes={"spec.load.duration": "5 minutes"}),
        (B, "spec.load.duration", "write a duration like 90s, 5m or 1h30m"),
        server_says=("spec.load.duration",),
    ),
    YamlCase(
        "unknown-format",
        documents({"spec.format": "int3"}),
        (V, "spec.format", "'bf16', 'fp8', 'int8' or 'int4'", "use one of the values listed"),
        server_says=("spec.format", "int3"),
    ),
    YamlCase(
        "misspelled-field",
        documents({"spec.serving.maxNumSeq": 64}),
        (V, "spec.serving.maxNumSeq", "did you mean maxNumSeqs?"),
        server_says=("maxNumSeq",),
    ),
    YamlCase(
        "memory-utilization-above-bound",
        documents({"spec.serving.gpuMemoryUtilization": 1.5}),
        (V, "spec.serving.gpuMemoryUtilization", "less than or equal to 0.99", "use a value within the bounds"),
        server_says=("spec.serving.gpuMemoryUtilization",),
    ),
    YamlCase(
        "tensor-parallel-three",
        documents({"spec.tensorParallelSize": 3}),
        (V, "spec.tensorParallelSize", "'auto' or one of 1, 2, 4, 8"),
        server_says=("tensorParallelSize is 'auto' or one of",),
    ),
    YamlCase(
        "reserved-vllm-flag",
        documents({"spec.serving.extraArgs": ["--max-model-len=4096"]}),
        (V, "spec.serving.extraArgs", "spec.serving.maxModelLen"),
        server_says=("spec.serving.extraArgs", "set the spec field instead"),
    ),
    YamlCase(
        "fp8-on-ampere",
        documents({"spec.format": "fp8", "spec.gpuClass": "a100-80gb"}),
        (V, "spec", "compute capability >= 8.9", "allowWeightOnlyFallback: true"),
        server_says=("spec.gpuClass", "allowWeightOnlyFallback"),
    ),
    YamlCase(
        "min-replicas-above-max",
        documents({"spec.autoscaling": {"minReplicas": 3, "maxReplicas": 2}}),
        (V, "spec.autoscaling", "minReplicas (3) must not exceed maxReplicas (2)"),
        server_says=("spec.autoscaling.minReplicas", "minReplicas must not exceed maxReplicas"),
    ),
    YamlCase(
        "sweep-without-levels",
        documents(bakeoff_changes={"spec.load.mode": "concurrency-sweep"}),
        (B, "spec.load", "concurrency-sweep needs concurrencies, e.g. [1, 4, 16, 64]"),
        server_says=("spec.load.concurrencies", "needs concurrencies"),
    ),
    YamlCase(
        "rates-in-sync-mode",
        documents(bakeoff_changes={"spec.load.rates": [1.0]}),
        (B, "spec.load", "rates apply to mode rate-sweep only"),
        server_says=("spec.load.rates", "rates apply to mode rate-sweep only"),
    ),
    YamlCase(
        "slo-without-bounds",
        documents(bakeoff_changes={"spec.slo": {"percentile": "p99"}}),
        (B, "spec.slo", "add e.g. `ttftMs: 500`"),
        server_says=("spec.slo", "at least one of ttftMs"),
    ),
    YamlCase(
        "variants-and-selector",
        documents(bakeoff_changes={"spec.variantSelector": {"matchLabels": {"a": "b"}}}),
        (B, "spec", "give exactly one of variants or variantSelector"),
        server_says=("exactly one of variants or variantSelector",),
    ),
    YamlCase(
        "name-with-capitals",
        documents({"metadata.name": "Small_BF16"}),
        ("document 1 (ModelVariant Small_BF16)", "metadata.name", "String should match pattern"),
        server_says=("Small_BF16",),
    ),
    YamlCase(
        "wrong-api-version",
        documents({"apiVersion": "bakeoff.dev/v1"}),
        ("document 1 (ModelVariant v)", "apiVersion", "set apiVersion: bakeoff.dev/v1alpha1"),
        server_says=("bakeoff.dev/v1",),
    ),
    YamlCase(
        "unknown-kind",
        documents({"kind": "ModelVarient"}),
        ("document 1 (ModelVarient v)", "kind", "use one of GPUClass, ModelVariant, BakeOff"),
        server_says=("ModelVarient",),
    ),
    # User text that looks like console markup or holds a regular expression is printed as written.
    YamlCase(
        "markup-in-a-value",
        documents({"spec.format": "[/red]"}),
        (V, "spec.format", '(got "[/red]")'),
        server_says=("spec.format",),
    ),
    YamlCase(
        "regex-in-the-message",
        documents({"spec.model.source": "ftp://x/[a-z]+"}),
        (V, "spec.model.source", r"'^(hf|pvc|s3|gs|oci|file)://[^\s]+$'", '(got "ftp://x/[a-z]+")'),
        server_says=("spec.model.source",),
    ),
    # References between objects: the API server cannot know them; the operator reports them as conditions.
    YamlCase(
        "undefined-baseline",
        documents({"spec.baseline": "bf16"}),
        (V, "spec.baseline", "variant 'bf16' is not defined in this file", "define the variant or use one of: v"),
        server="accepts",
    ),
    YamlCase(
        "undefined-variant",
        documents(bakeoff_changes={"spec.variants": ["w"]}),
        (B, "spec.variants[0]", "variant 'w' is not defined", "use one of: v"),
        server="accepts",
    ),
    YamlCase(
        "unknown-gpu-class",
        documents({"spec.gpuClass": "h1000"}),
        (V, "spec.gpuClass", "did you mean 'h100'?"),
        server="accepts",
    ),
    YamlCase(
        "duplicate-name",
        documents() + "---\n" + yaml.safe_dump(variant("v", format="int4")),
        ("document 3 (ModelVariant v)", "metadata.name", "document 1 already defines this ModelVariant", "rename"),
        server="accepts",
    ),
    # Files that never become documents.
    YamlCase(
        "not-yaml",
        "apiVersion: bakeoff.dev/v1alpha1\nkind: [ModelVariant\n",
        ("the file", "line 3", "not valid YAML", "check the indentation and quotes"),
        server="never-sent",
    ),
    YamlCase(
        "not-utf8",
        "metadata: {name: café}\n".encode("latin-1"),
        ("the file", "line 1", "byte 0xe9 is not UTF-8 text", "save the file as UTF-8"),
        server="never-sent",
    ),
    YamlCase("a-list", "- a\n- b\n", ("document 1", "expected a mapping, got list"), server="never-sent"),
    YamlCase(
        "empty", "# nothing\n", ("the file", "no documents", "add GPUClass, ModelVariant or BakeOff"), "never-sent"
    ),
    YamlCase(
        "placeholder-without-value",
        documents({"spec.model.source": "file://${MODEL_DIR}"}),
        ("the file", "placeholder ${MODEL_DIR} has no value", "pass --set MODEL_DIR=VALUE"),
        server="never-sent",
    ),
    YamlCase(
        "no-bakeoff",
        yaml.safe_dump(variant("v", format="bf16")),
        ("the files define no BakeOff", "add a `kind: BakeOff` document"),
        server="accepts",
    ),
]


def _write(tmp_path: Path, case: YamlCase) -> Path:
    path = tmp_path / f"{case.id}.yaml"
    if isinstance(case.text, bytes):
        path.write_bytes(case.text)
    else:
        path.write_text(case.text)
    return path


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bakeoff_run_refuses_bad_yaml_naming_document_field_and_fix(case: YamlCase, tmp_path: Path) -> None:
    path = _write(tmp_path, case)
    buf = io.StringIO()
    code = local.run_local([path], local.Options(out=tmp_path / "runs"), Console(file=buf, width=400))
    out = buf.getvalue()
    assert code == local.EXIT_BAD_INPUT, out
    for fragment in case.says:
        assert fragment in out, f"{fragment!r} not in:\n{out}"
    assert not (tmp_path / "runs").exists(), "nothing starts, nothing is written"


def test_the_command_line_refuses_bad_yaml_with_exit_2(tmp_path: Path) -> None:
    from tests.faults.conftest import Sandbox

    box = Sandbox(tmp_path)
    (tmp_path / "b.yaml").write_text(documents({"spec.serving.maxNumSeqs": "64"}))
    ran = box.run("run", "b.yaml", "--out", "runs")
    assert ran.code == 2, ran.text
    assert "spec.serving.maxNumSeqs" in ran.out
    assert "Traceback" not in ran.text
    box.assert_clean()


# --- the same documents against the API server --------------------------------------------------------
@pytest.fixture(scope="module")
def crds(control_plane: ControlPlane) -> ControlPlane:
    control_plane.install_crds([REPO / "charts" / "bakeoff" / "crds"])
    control_plane.create_namespace("bad-yaml")
    return control_plane


def _server_answers(cp: ControlPlane, text: str) -> list[tuple[bool, str]]:
    """Whether the API server accepts each document (a server-side dry run), and what it said."""
    answers = []
    for doc in yaml.safe_load_all(text):
        if doc is None:
            continue
        result = cp.kubectl(
            "apply", "--dry-run=server", "--validate=strict", "-n", "bad-yaml", "-f", "-",
            input=yaml.safe_dump(doc), check=False,
        )  # fmt: skip
        answers.append((result.returncode == 0, result.stderr))
    return answers


SERVER_CASES = [c for c in CASES if c.server != "never-sent"]


@pytest.mark.cluster
@pytest.mark.parametrize("case", SERVER_CASES, ids=[c.id for c in SERVER_CASES])
def test_the_api_server_agrees(case: YamlCase, crds: ControlPlane) -> None:
    assert isinstance(case.text, str)
    answers = _server_answers(crds, case.text)
    rejected = [said for ok, said in answers if not ok]
    if case.server == "accepts":
        assert not rejected, rejected
        return
    assert len(rejected) == 1, answers
    for fragment in case.server_says:
        assert fragment in rejected[0], rejected[0]


def test_every_schema_case_names_what_the_server_should_say() -> None:
    assert all(c.server_says for c in CASES if c.server == "rejects")
