"""load_documents: the examples load; every problem names document, kind/name, field path and fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from bakeoff_operator.api import BakeOff, GPUClass, ManifestError, ModelVariant, load_documents, parse_documents

from tests.api.api_builders import bakeoff, variant

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
TINY_PLACEHOLDERS = {
    f"BAKEOFF_TINY_{k}": f"/tmp/tiny/{k.lower()}" for k in ("LLAMA_BF16", "LLAMA_INT8", "LLAMA_INT4", "NEMOTRONH_BF16")
}


def _yaml(*docs: object) -> str:
    return yaml.safe_dump_all(list(docs), sort_keys=False)


def test_every_example_is_covered() -> None:
    assert [p.name for p in EXAMPLES] == [
        "apriel-h1-hybrids.yaml",
        "llama-70b-sync-vs-async.yaml",
        "llama-8b-formats.yaml",
        "quickstart.yaml",
        "tiny-vllm-cpu.yaml",
    ]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_load(path: Path) -> None:
    resources = load_documents(path, substitutions=TINY_PLACEHOLDERS if "tiny" in path.name else None)
    assert any(isinstance(r, ModelVariant) for r in resources)
    assert any(isinstance(r, BakeOff) for r in resources)


def test_llama_8b_example_covers_four_formats_on_two_gpu_classes() -> None:
    variants = [r for r in load_documents(REPO / "examples/llama-8b-formats.yaml") if isinstance(r, ModelVariant)]
    pairs = {(v.spec.format.value, v.spec.gpu_class) for v in variants}
    assert pairs == {(f, g) for f in ("bf16", "fp8", "int8", "int4") for g in ("l40s", "h100")}
    use_cases = {
        r.spec.workload.name for r in load_documents(REPO / "examples/llama-8b-formats.yaml") if isinstance(r, BakeOff)
    }
    assert use_cases == {"multi-turn-chat", "rag"}


def test_70b_example_matches_the_study_setup() -> None:
    rs = load_documents(REPO / "examples/llama-70b-sync-vs-async.yaml")
    tp = {r.metadata.name: r.spec.tensor_parallel_size for r in rs if isinstance(r, ModelVariant)}
    # The study's two deployments: sync BF16 on 2xH100 and FP8/INT4 on 1xH100; async all on 4xH100.
    assert tp == {
        "llama-70b-bf16": 2,
        "llama-70b-fp8": 1,
        "llama-70b-int4": 1,
        "llama-70b-bf16-tp4": 4,
        "llama-70b-fp8-tp4": 4,
        "llama-70b-int4-tp4": 4,
    }
    modes = sorted(r.spec.load.mode.value for r in rs if isinstance(r, BakeOff))
    assert modes == ["concurrency-sweep", "sync"]


def test_apriel_example_recoveries_and_budget() -> None:
    rs = load_documents(REPO / "examples/apriel-h1-hybrids.yaml")
    rec = {r.metadata.name: r.spec.accuracy.recovery for r in rs if isinstance(r, ModelVariant) and r.spec.accuracy}
    assert rec == {"apriel-h30": pytest.approx(0.78 / 0.80), "apriel-h40": pytest.approx(0.69 / 0.80)}
    (bo,) = [r for r in rs if isinstance(r, BakeOff)]
    assert bo.spec.accuracy_budget is not None
    budget = bo.spec.accuracy_budget.min_recovery
    assert rec["apriel-h30"] >= budget > rec["apriel-h40"]


def test_tiny_example_substitutes_model_folders() -> None:
    rs = load_documents(REPO / "examples/tiny-vllm-cpu.yaml", substitutions=TINY_PLACEHOLDERS)
    sources = {r.spec.model.source for r in rs if isinstance(r, ModelVariant)}
    assert "file:///tmp/tiny/llama_int4" in sources
    with pytest.raises(ManifestError, match=r"placeholder \$\{BAKEOFF_TINY_LLAMA_BF16\} has no value"):
        load_documents(REPO / "examples/tiny-vllm-cpu.yaml", substitutions={})


def test_problem_names_document_kind_name_path_and_fix() -> None:
    bad = variant(name="llama-8b-fp8", autoscaling={"minReplica": 1})
    with pytest.raises(ManifestError) as info:
        parse_documents(_yaml(variant(name="ok-one"), bad), source="x.yaml")
    (problem,) = info.value.problems
    assert (problem.document, problem.kind, problem.name) == (2, "ModelVariant", "llama-8b-fp8")
    assert problem.path == "spec.autoscaling.minReplica"
    assert "did you mean minReplicas?" in problem.fix
    text = str(info.value)
    assert text.startswith("x.yaml: 1 problem(s)")
    assert "document 2 (ModelVariant llama-8b-fp8): spec.autoscaling.minReplica" in text


def test_all_problems_of_a_file_are_reported_together() -> None:
    docs = _yaml(variant(name="a", format="fp16"), bakeoff(name="b", load={"mode": "rate-sweep"}), {"kind": "Pod"})
    with pytest.raises(ManifestError) as info:
        parse_documents(docs)
    paths = [(p.document, p.path) for p in info.value.problems]
    assert paths == [(1, "spec.format"), (2, "spec.load"), (3, "apiVersion")]
    assert "bf16" in info.value.problems[0].message  # the valid values are listed
    assert "rates" in info.value.problems[1].message


def test_unknown_kind_and_bad_yaml() -> None:
    with pytest.raises(ManifestError, match="'Model' is not a Bakeoff kind; fix: use one of GPUClass"):
        parse_documents("apiVersion: bakeoff.dev/v1alpha1\nkind: Model\nmetadata: {name: x}\n")
    with pytest.raises(ManifestError, match="line 2, column"):
        parse_documents("kind: BakeOff\n  bad: [\n")
    with pytest.raises(ManifestError, match="no documents"):
        parse_documents("---\n---\n")


def test_references_are_resolved_within_the_file() -> None:
    docs = _yaml(
        variant(name="llama-8b-fp8", baseline="llama-8b-bf16", gpuClass="h100x"),
        bakeoff(variants=["llama-8b-fp8", "llama-8b-fp9"]),
    )
    with pytest.raises(ManifestError) as info:
        parse_documents(docs)
    by_path = {p.path: p for p in info.value.problems}
    assert set(by_path) == {"spec.gpuClass", "spec.baseline", "spec.variants[1]"}
    assert "did you mean 'h100'?" in by_path["spec.gpuClass"].fix
    assert "did you mean 'llama-8b-fp8'?" in by_path["spec.variants[1]"].fix
    # A cluster resolves references itself: the same file loads without the check.
    assert len(parse_documents(docs, check_references=False)) == 2


def test_gpu_classes_defined_in_the_file_are_references_too() -> None:
    custom = {
        "apiVersion": "bakeoff.dev/v1alpha1",
        "kind": "GPUClass",
        "metadata": {"name": "b200"},
        "spec": {
            "product": "NVIDIA-B200",
            "memoryGiB": 180,
            "bandwidthTBps": 8,
            "tflops": {"bf16": 2250, "fp8": 4500},
            "computeCapability": 10.0,
            "pricePerGPUHour": {"onDemand": 6.0},
        },
    }
    rs = parse_documents(_yaml(custom, variant(gpuClass="b200"), bakeoff()))
    assert isinstance(rs[0], GPUClass)
    assert rs[0].to_gpu_spec().name == "b200"


def test_duplicate_names_and_empty_selection() -> None:
    docs = _yaml(
        variant(),
        variant(),
        bakeoff(variants=None, variantSelector={"matchLabels": {"team": "nobody"}}),
    )
    with pytest.raises(ManifestError) as info:
        parse_documents(docs)
    messages = [str(p) for p in info.value.problems]
    assert any("document 1 already defines this ModelVariant" in m for m in messages)
    assert any("spec.variantSelector: selects no ModelVariant" in m for m in messages)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot read the file"):
        load_documents(tmp_path / "missing.yaml")
