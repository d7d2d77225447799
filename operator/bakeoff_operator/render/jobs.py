"""The Kubernetes objects of a bake-off run: the Job that runs `bakeoff loadtest` against each variant it
measures, and the ServiceAccount and RoleBinding that Job runs as.

Pure and deterministic: `render_run_job(start, ...)` is a function of the run (`planning.runs.RunStart`:
each variant's run spec, already spelled as `bakeoff loadtest` flags by `bakeoff_plan.loadtest_args`),
the owning BakeOff and the operator's settings; keys, labels and environment come out sorted.

The Job's one container runs a short POSIX shell script: `bakeoff loadtest` per variant, one after
another or side by side (`spec.runs.sideBySide`), each with `--summary-configmap`, so that every load
test hands its summary back as a ConfigMap labelled with the bake-off, the run and the variant and owned
by the BakeOff. A load test that measured nothing still writes its summary (its error is in it) and
does not fail the Job; one whose flags were refused (exit 2) does, and so the run fails. A load test
that asks for more streams than one process drives carries `--workers N` (`planning.runs`): `bakeoff
loadtest` then runs a Locust master and N worker processes in the pod, and the pod's CPU and memory
are requested per process. With `spec.runs.resultsClaim` the pod mounts that PersistentVolumeClaim
and each load test writes its full results and report under `<bakeoff>/<run>/<variant>/` there;
without it they stay on the pod's emptyDir. The Job never
retries (`backoffLimit: 0`; the next scheduled run is the retry), stops at the run's deadline
(`activeDeadlineSeconds`) and is deleted a day after it finished (`ttlSecondsAfterFinished`), or
earlier by the operator once the run leaves the BakeOff's history.

The pod's identity is a ServiceAccount per BakeOff, bound in its namespace to the chart's ClusterRole
that may create ConfigMaps and nothing else; both are owned by the BakeOff.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from bakeoff_operator.planning.runs import (
    COMPONENT_RESULT,
    COMPONENT_RUN,
    LABEL_BAKEOFF,
    LABEL_COMPONENT,
    LABEL_MANAGED_BY,
    LABEL_RUN,
    LABEL_VARIANT,
    MANAGED_BY,
    MeasuredRun,
    RunStart,
)
from bakeoff_operator.render.kserve import Owner

JOB_API: Final = "batch/v1"
CONTAINER: Final = "loadtest"
RESULTS_DIR_ENV: Final = "BAKEOFF_RESULTS_DIR"
RESULTS_DIR: Final = "/tmp/bakeoff-results"  # on the pod's emptyDir: the root filesystem is read-only
RESULTS_MOUNT: Final = "/results"  # spec.runs.resultsClaim, when the full results are kept
JOB_TTL_S: Final = 86_400
# What one process of a running `bakeoff loadtest` needs (Locust's event loop, the per-request records of
# a level); a load test with workers (`--workers`, more streams than one process drives) needs it per
# process.
MILLICPU_PER_LOAD_TEST: Final = 500
MEMORY_MIB_PER_LOAD_TEST: Final = 512
RUN_AS: Final = 65532  # the image's user
# A load-test exit status above this (bad flags) fails the Job; 1 (nothing measured) and 130 (stopped
# by a signal) have written their summary, which says so.
HANDED_OVER: Final = (0, 1, 130)


class JobSettings(BaseModel):
    """The operator's settings that shape run Jobs (chart values, environment)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str = Field(default="bakeoff:latest", description="Bakeoff's image: it runs `bakeoff loadtest`.")
    cluster_role: str = Field(
        default="bakeoff-loadtest", description="ClusterRole a run's ServiceAccount is bound to (create configmaps)."
    )
    ttl_s: int = Field(default=JOB_TTL_S, ge=0, description="ttlSecondsAfterFinished of a run's Job.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node selector of the run's pod.")
    tolerations: tuple[dict[str, Any], ...] = Field(default=(), description="Tolerations of the run's pod.")


def owner_of(bakeoff: str, uid: str) -> Owner:
    """The BakeOff as the owner of what its runs make."""
    return Owner(name=bakeoff, uid=uid, kind="BakeOff")


def service_account_name(bakeoff: str) -> str:
    """The ServiceAccount a bake-off's runs run as."""
    return f"{bakeoff}-loadtest"


def run_labels(bakeoff: str, run: str) -> dict[str, str]:
    """Labels of a run's Job and pod (the operator lists and watches them by these)."""
    return {LABEL_BAKEOFF: bakeoff, LABEL_COMPONENT: COMPONENT_RUN, LABEL_MANAGED_BY: MANAGED_BY, LABEL_RUN: run}


def result_labels(bakeoff: str, run: str, variant: str) -> dict[str, str]:
    """Labels of a variant's result ConfigMap in a run."""
    return {
        LABEL_BAKEOFF: bakeoff,
        LABEL_COMPONENT: COMPONENT_RESULT,
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_RUN: run,
        LABEL_VARIANT: variant,
    }


def render_identity(bakeoff: str, owner: Owner, settings: JobSettings) -> list[dict[str, Any]]:
    """The ServiceAccount of the bake-off's runs and its RoleBinding to `settings.cluster_role`."""
    name = service_account_name(bakeoff)
    labels = {LABEL_BAKEOFF: bakeoff, LABEL_COMPONENT: COMPONENT_RUN, LABEL_MANAGED_BY: MANAGED_BY}
    meta = {"name": name, "labels": labels, "ownerReferences": [owner.reference()]}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": settings.cluster_role},
            "subjects": [{"kind": "ServiceAccount", "name": name}],
        },
    ]


def load_test_command(
    m: MeasuredRun, bakeoff: str, namespace: str, run: str, owner: Owner, *, report: bool = False
) -> list[str]:
    """`bakeoff loadtest` for one variant as shell words, a flag and its value per item: its flags, where
    its results go (under the results folder the environment names; with its report when they are kept)
    and its summary ConfigMap."""
    labels = sorted(result_labels(bakeoff, run, m.variant).items())
    summary = [
        ("--summary-configmap", f"{namespace}/{m.result}"),
        *(("--summary-label", f"{k}={v}") for k, v in labels),
        ("--summary-owner", f"apiVersion={owner.api_version},kind={owner.kind},name={owner.name},uid={owner.uid}"),
    ]
    words = ["bakeoff loadtest"]
    args = list(m.args)
    while args:
        flag = args.pop(0)
        value = args.pop(0) if args and not args[0].startswith("--") else None
        words.append(flag if value is None else f"{flag} {shlex.quote(value)}")
    words += [f'--out "${RESULTS_DIR_ENV}"/{shlex.quote(m.variant)}', *([] if report else ["--no-report"])]
    words += [f"{flag} {shlex.quote(value)}" for flag, value in summary]
    return words


def load_test_processes(m: MeasuredRun) -> int:
    """The processes of one variant's load test: one, or a Locust master and its workers."""
    return 1 + m.spec.workers


def run_script(start: RunStart, bakeoff: str, namespace: str, owner: Owner) -> str:
    """The shell script of the Job's container (see the module docstring)."""
    how = "side by side" if start.side_by_side else "one after another"
    lines = [
        f"# Bakeoff: run {start.run} of BakeOff {bakeoff}: `bakeoff loadtest` per variant, {how}.",
        "status=0",
        "measure() {",
        '  variant=$1; shift; echo "bakeoff: measuring $variant"; "$@"; code=$?',
        '  echo "bakeoff: $variant: bakeoff loadtest exited with $code"',
        "  case $code in " + "|".join(str(c) for c in HANDED_OVER) + ") ;; *) status=1 ;; esac",
        "}",
    ]
    for m in start.measured:
        words = load_test_command(m, bakeoff, namespace, start.run, owner, report=start.results_claim is not None)
        head = f"( measure {shlex.quote(m.variant)}" if start.side_by_side else f"measure {shlex.quote(m.variant)}"
        body = " \\\n    ".join([f"{head} {words[0]}", *words[1:]])
        lines.append(body + ('; exit "$status" ) & pids="$pids $!"' if start.side_by_side else ""))
    if start.side_by_side:
        lines.append('for pid in $pids; do wait "$pid" || status=1; done')
    lines.append('exit "$status"')
    return "\n".join(lines) + "\n"


def _sorted(d: Mapping[str, str]) -> dict[str, str]:
    return dict(sorted(d.items()))


def render_run_job(
    start: RunStart, bakeoff: str, namespace: str, owner: Owner, settings: JobSettings
) -> dict[str, Any]:
    """The Job of one run (namespace set; the caller creates it)."""
    labels = run_labels(bakeoff, start.run)
    processes = [load_test_processes(m) for m in start.measured] or [1]
    at_once = sum(processes) if start.side_by_side else max(processes)
    memory = f"{MEMORY_MIB_PER_LOAD_TEST * at_once}Mi"
    cpu = f"{MILLICPU_PER_LOAD_TEST * at_once}m"
    kept = start.results_claim is not None
    env = {
        "HOME": "/tmp",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        RESULTS_DIR_ENV: f"{RESULTS_MOUNT}/{start.results_path}" if kept else RESULTS_DIR,
    }
    mounts = [{"mountPath": "/tmp", "name": "tmp"}]
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}]
    pod_security: dict[str, Any] = {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if kept:
        mounts.append({"mountPath": RESULTS_MOUNT, "name": "results"})
        volumes.append({"name": "results", "persistentVolumeClaim": {"claimName": start.results_claim}})
        pod_security["fsGroup"] = RUN_AS  # the claim's files are the image user's to write
    container = {
        "name": CONTAINER,
        "image": settings.image,
        "command": ["/bin/sh", "-c", run_script(start, bakeoff, namespace, owner)],
        "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
        "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
        "volumeMounts": mounts,
    }
    return {
        "apiVersion": JOB_API,
        "kind": "Job",
        "metadata": {
            "name": start.run,
            "namespace": namespace,
            "labels": _sorted(labels),
            "annotations": _sorted(start.annotations()),
            "ownerReferences": [owner.reference()],
        },
        "spec": {
            "activeDeadlineSeconds": start.deadline_s,
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": settings.ttl_s,
            "template": {
                "metadata": {"labels": _sorted(labels)},
                "spec": {
                    "serviceAccountName": service_account_name(bakeoff),
                    "automountServiceAccountToken": True,
                    "enableServiceLinks": False,
                    "restartPolicy": "Never",
                    "securityContext": pod_security,
                    "containers": [container],
                    "volumes": volumes,
                    **({"nodeSelector": _sorted(settings.node_selector)} if settings.node_selector else {}),
                    **({"tolerations": list(settings.tolerations)} if settings.tolerations else {}),
                },
            },
        },
    }
