"""docs/measurement.md states the definitions exactly as the code and the reports do."""

from __future__ import annotations

from pathlib import Path

from bakeoff_loadtest.definitions import DEFINITIONS

DOC = Path(__file__).resolve().parents[2] / "docs" / "measurement.md"


def test_every_definition_is_in_the_docs_verbatim() -> None:
    text = " ".join(DOC.read_text().split())
    missing = [k for k, v in DEFINITIONS.items() if f"**{k}**: {' '.join(v.split())}" not in text]
    assert missing == [], f"docs/measurement.md is stale for: {missing}"
