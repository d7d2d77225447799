"""Generated files are current: CRDs, docs/api.md, values.yaml and values.schema.json.

Regenerates in memory and compares byte for byte. `UPDATE_GOLDENS=1` rewrites the files and still
fails, so a stale file is never silently accepted (run `hack/generate.sh` instead).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from bakeoff_operator import chartgen, crdgen

REPO = Path(__file__).resolve().parents[2]


def _generated() -> dict[Path, str]:
    return {**crdgen.generated_files(), **chartgen.generated_files()}


@pytest.mark.parametrize("rel", sorted(_generated()), ids=str)
def test_generated_file_is_current(rel: Path) -> None:
    expected = _generated()[rel]
    path = REPO / rel
    actual = path.read_text() if path.exists() else None
    if actual == expected:
        return
    if os.environ.get("UPDATE_GOLDENS") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(expected)
        pytest.fail(f"{rel} was stale and has been rewritten (UPDATE_GOLDENS=1); review and commit it")
    pytest.fail(f"{rel} is stale: run hack/generate.sh (or UPDATE_GOLDENS=1 pytest {__file__})")


def test_generation_is_deterministic() -> None:
    assert _generated() == _generated()


def test_hack_generate_covers_every_generator() -> None:
    script = (REPO / "hack/generate.sh").read_text()
    assert "bakeoff_operator.crdgen --write" in script
    assert "bakeoff_operator.chartgen --write" in script


def test_crds_subcommand_prints_and_checks(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    crdgen.add_parser(sub)
    args = parser.parse_args(["crds"])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert out.count("kind: CustomResourceDefinition") == 3
    args = parser.parse_args(["crds", "--check"])
    assert args.handler(args) == 0
    args = parser.parse_args(["crds", "--output-dir", str(tmp_path)])
    assert args.handler(args) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bakeoff.dev_bakeoffs.yaml",
        "bakeoff.dev_gpuclasses.yaml",
        "bakeoff.dev_modelvariants.yaml",
    ]
