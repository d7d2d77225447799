"""The generated files the chart ships under `charts/bakeoff/files/`. Pure."""

from __future__ import annotations

from typing import Final

from bakeoff_operator.observability import dashboards, rules

RULE_FILE: Final = "bakeoff-rules.yaml"
DASHBOARD_DIR: Final = "dashboards"


def chart_files() -> dict[str, str]:
    """Path under the chart's `files/` -> content: the rule file and one JSON file per dashboard."""
    out = {RULE_FILE: rules.render_rule_file()}
    for name, dashboard in dashboards.dashboards().items():
        out[f"{DASHBOARD_DIR}/{name}.json"] = dashboards.render(dashboard)
    return out
