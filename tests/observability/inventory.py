"""Every recording rule, alert and dashboard panel with the vLLM and operator metrics it relies on, through
the recorded series it reads, from the shipped rule file and dashboards.

    .venv/bin/python -m tests.observability.inventory          # markdown tables on stdout
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tests.observability.promql import (
    dashboard_files,
    expand,
    operator_families,
    panel_queries,
    rule_exprs,
    selectors,
)

VARIABLES = {"datasource": "prometheus", "namespace": "ns", "variant": "v"}


@dataclass(frozen=True)
class Sources:
    vllm: frozenset[str]
    operator: frozenset[str]


def _family(name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if name.startswith("vllm:") and name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def rule_sources() -> dict[str, Sources]:
    """Recorded series or alert -> the metrics it reads, recorded series resolved (rules of one name merged)."""
    direct: dict[str, set[str]] = {}
    for name, expr in rule_exprs():
        direct.setdefault(name, set()).update(s.name for s in selectors(expr))
    resolved: dict[str, Sources] = {}

    def resolve(name: str, seen: frozenset[str] = frozenset()) -> Sources:
        if name in resolved:
            return resolved[name]
        vllm: set[str] = set()
        operator: set[str] = set()
        for used in direct[name]:
            if used in direct and used not in seen:
                inner = resolve(used, seen | {name})
                vllm |= inner.vllm
                operator |= inner.operator
            elif used.startswith("vllm:"):
                vllm.add(_family(used))
            elif used in operator_families():
                operator.add(used)
        resolved[name] = Sources(frozenset(vllm), frozenset(operator))
        return resolved[name]

    for name in direct:
        resolve(name)
    return resolved


def _sources_of(names: Iterable[str], by_rule: dict[str, Sources]) -> Sources:
    vllm: set[str] = set()
    operator: set[str] = set()
    for name in names:
        if name in by_rule:
            vllm |= by_rule[name].vllm
            operator |= by_rule[name].operator
        elif name.startswith("vllm:"):
            vllm.add(_family(name))
        elif name in operator_families():
            operator.add(name)
    return Sources(frozenset(vllm), frozenset(operator))


def panel_sources() -> dict[tuple[str, str], Sources]:
    """(dashboard, panel title) -> the metrics its queries read, recorded series resolved."""
    by_rule = rule_sources()
    used: dict[tuple[str, str], set[str]] = {}
    for q in panel_queries():
        used.setdefault((q.dashboard, q.panel), set()).update(s.name for s in selectors(expand(q.expr, VARIABLES)))
    return {key: _sources_of(names, by_rule) for key, names in used.items()}


def _cell(names: frozenset[str]) -> str:
    return ", ".join(f"`{n}`" for n in sorted(names)) or "—"


def markdown() -> str:
    lines = ["| rule | vLLM metrics | operator metrics |", "|---|---|---|"]
    for name, src in rule_sources().items():
        lines.append(f"| `{name}` | {_cell(src.vllm)} | {_cell(src.operator)} |")
    lines += ["", "| dashboard / panel | vLLM metrics | operator metrics |", "|---|---|---|"]
    order = {name: i for i, name in enumerate(dashboard_files())}
    for (dashboard, panel), src in sorted(panel_sources().items(), key=lambda kv: order[kv[0][0]]):
        lines.append(f"| {dashboard} / {panel} | {_cell(src.vllm)} | {_cell(src.operator)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown())
