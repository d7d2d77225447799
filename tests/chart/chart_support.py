"""Running helm on the chart and reading what it renders."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts/bakeoff"
KUBE_VERSION = "1.37.2"


def helm_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    for var, sub in (("HELM_CACHE_HOME", "cache"), ("HELM_CONFIG_HOME", "config"), ("HELM_DATA_HOME", "data")):
        env[var] = str(home / sub)
    return env


def helm(helm_binary: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm_binary), *args], capture_output=True, text=True, env=helm_env(home), timeout=120, check=False
    )


def set_args(values: dict[str, Any]) -> list[str]:
    """`--set-json path=json` for each top-level key: exact types, no string coercion."""
    import json

    return [arg for key, value in values.items() for arg in ("--set-json", f"{key}={json.dumps(value)}")]


def render(
    helm_binary: Path, home: Path, values: dict[str, Any], namespace: str = "bakeoff-system"
) -> list[dict[str, Any]]:
    result = helm(
        helm_binary,
        home,
        "template",
        "bakeoff",
        str(CHART),
        "--namespace",
        namespace,
        "--kube-version",
        KUBE_VERSION,
        *set_args(values),
    )
    if result.returncode != 0:
        raise AssertionError(f"helm template failed:\n{result.stderr}")
    return [d for d in yaml.safe_load_all(result.stdout) if d]
