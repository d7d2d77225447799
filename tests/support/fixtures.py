"""pytest fixtures around `ControlPlane`, shared by every test folder that needs a cluster.

A folder's conftest.py re-exports what it uses::

    from tests.support.fixtures import control_plane, namespace, upstream_crds  # noqa: F401

The control plane is session-scoped: it starts once (a few seconds) and all cluster tests share it,
each in its own namespace. Without the binaries, tests fail under CI=true and are skipped elsewhere,
both with the command that builds them.

`e2e_cluster` (with `e2e_namespace`) is the end-to-end cluster of `tests.support.e2e`: a control
plane of its own plus KServe's controller, kube-scheduler and kwok GPU nodes (10-20 s to start).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from tests.support.controlplane import (
    BUILD_HINT,
    CONTROL_PLANE_TOOLS,
    ControlPlane,
    ToolsMissingError,
    find_tool,
    missing_tools,
    tools_dir,
    upstream_crd_files,
)
from tests.support.e2e import E2ECluster, kserve_config_dir, missing_e2e_tools


def unavailable(reason: str) -> NoReturn:
    """Fail under CI (where hack/build-tools.sh must have run) and skip on a developer machine."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def control_plane_binaries() -> Path:
    """The folder holding etcd, kube-apiserver, kube-controller-manager and kubectl."""
    missing = missing_tools(CONTROL_PLANE_TOOLS)
    if missing:
        unavailable(f"{', '.join(missing)} not built in {tools_dir() / 'bin'}: {BUILD_HINT}")
    return tools_dir() / "bin"


@pytest.fixture(scope="session")
def control_plane(control_plane_binaries: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A running etcd + kube-apiserver + kube-controller-manager, shared by the whole session."""
    with ControlPlane(tmp_path_factory.mktemp("control-plane")) as cp:
        yield cp


@pytest.fixture(scope="session")
def upstream_crds(control_plane: ControlPlane) -> list[str]:
    """Names of the KServe, KEDA and prometheus-operator CRDs, installed once per session."""
    try:
        files = upstream_crd_files()
    except ToolsMissingError as exc:
        reason = str(exc)
    else:
        return control_plane.install_crds(files)
    unavailable(reason)


@pytest.fixture(scope="session")
def helm_binary() -> Path:
    """The pinned helm binary from hack/build-tools.sh."""
    try:
        return find_tool("helm")
    except ToolsMissingError as exc:
        reason = str(exc)
    # Outside the except block, so the report shows the reason and not a chained traceback.
    unavailable(reason)


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test, deleted (without waiting) afterwards."""
    stem = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{stem or 'test'}-{uuid.uuid4().hex[:6]}"
    control_plane.create_namespace(name)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture
def kube_io(control_plane: ControlPlane) -> Iterator[ControlPlane]:
    """The control plane, with `bakeoff_operator.io.kube` talking to it as admin (its cached clients are
    rebuilt before and after the test)."""
    from bakeoff_operator.io import kube
    from kubernetes.config import kube_config

    with pytest.MonkeyPatch.context() as env:
        env.setenv("KUBECONFIG", str(control_plane.kubeconfig))
        env.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(control_plane.kubeconfig))
        kube.custom_objects.cache_clear()
        kube.api_client.cache_clear()
        yield control_plane
        kube.custom_objects.cache_clear()
        kube.api_client.cache_clear()


@pytest.fixture(scope="session")
def e2e_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2ECluster]:
    """The control plane + KServe controller + kube-scheduler + kwok GPU nodes, shared by the session."""
    missing = missing_e2e_tools()
    try:
        kserve_config_dir()
        upstream_crd_files()
    except ToolsMissingError as exc:
        missing.append(str(exc))
    if missing:
        unavailable(f"the e2e cluster cannot start ({tools_dir()}): {'; '.join(missing)}")
    with E2ECluster(tmp_path_factory.mktemp("e2e-cluster")) as cluster:
        print(f"\ne2e cluster started: {cluster.timings}")
        yield cluster


@pytest.fixture
def e2e_namespace(e2e_cluster: E2ECluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace in the e2e cluster named after the test, deleted (without waiting) afterwards.

    Short on purpose: KServe derives a host name `<isvc>-predictor-<namespace>` whose first DNS
    label must fit in 63 characters, or it creates no Deployment.
    """
    stem = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).removeprefix("test-")[:16].strip("-")
    name = f"{stem or 'test'}-{uuid.uuid4().hex[:6]}"
    e2e_cluster.create_namespace(name)
    yield name
    e2e_cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
