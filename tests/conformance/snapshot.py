"""Metric families of a /metrics page, in the form of `vllm_metric_families.txt`."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

SNAPSHOT = Path(__file__).with_name("vllm_metric_families.txt")
Family = tuple[str, frozenset[str]]  # type, labels


def families(text: str, prefix: str = "vllm:") -> dict[str, Family]:
    """`{name as PromQL queries it: (type, labels)}` for the families whose names start with `prefix`."""
    parsed = list(text_string_to_metric_families(text))
    names = {f.name for f in parsed}
    out: dict[str, Family] = {}
    for family in parsed:
        if not family.name.startswith(prefix):
            continue
        # prometheus_client declares each counter's and histogram's `_created` series as a gauge family.
        if family.name.endswith("_created") and family.name[: -len("_created")] in names:
            continue
        labels: set[str] = set()
        for sample in family.samples:
            labels |= set(sample.labels) - {"le"}
        if family.name == "vllm:cache_config_info":
            labels &= {"engine"}  # the others are configuration values
        name = family.name + "_total" if family.type == "counter" else family.name
        out[name] = (family.type, frozenset(labels))
    return out


def read_snapshot(path: Path = SNAPSHOT) -> tuple[str, dict[str, Family]]:
    version = ""
    out: dict[str, Family] = {}
    for line in path.read_text().splitlines():
        if line.startswith("# vllm-version:"):
            version = line.split(":", 1)[1].strip()
        if not line or line.startswith("#"):
            continue
        name, kind, labels = line.split(" ")
        out[name] = (kind, frozenset(labels.split(",")))
    return version, out


def render_snapshot(fams: dict[str, Family], version: str, path: Path = SNAPSHOT) -> str:
    header = [line for line in path.read_text().splitlines() if line.startswith("#") and "vllm-version" not in line]
    body = [f"{name} {kind} {','.join(sorted(labels))}" for name, (kind, labels) in sorted(fams.items())]
    return "\n".join([*header, f"# vllm-version: {version}", *body]) + "\n"
