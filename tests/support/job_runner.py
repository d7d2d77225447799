"""Run the pods of bake-off run Jobs as local processes: the kubelet the e2e cluster lacks, for Jobs.

kwok makes a pod Running without running anything, and the e2e cluster's kwok stages
(`kwok-stages.yaml`) leave the pods of bake-off runs (label `bakeoff.dev/run`) Running instead of
completing them. For every such pod on a kwok node, `JobRunner`:

1. runs the pod's container command (`/bin/sh -c <script>`: `bakeoff loadtest` per variant) as a local
   process, with the container's environment and these local stand-ins: `PATH` led by this
   environment's `bakeoff`; the credentials of the pod's ServiceAccount as a kubeconfig (`KUBECONFIG`,
   with a TokenRequest token, so every request is authorized by RBAC as the pod's would be); the pod's
   `/tmp` volume as a folder of its own, a PersistentVolumeClaim it mounts as the claim's folder
   (`claim_dir`; environment values under the mount path point there); and every variant's
   in-cluster endpoint (its ModelVariant's `status.endpoint`) rewritten to the local URL
   `endpoint_of(namespace, variant)` gives;
2. when the process exits, writes the pod's status as a kubelet would: phase Succeeded or Failed,
   the container terminated with the process's exit status (137 and `OOMKilled` for a process killed
   by `kill_next`), so that the Job completes or fails;
3. stops the process (SIGTERM, then SIGKILL) when the pod is deleted: the Job's deadline, the BakeOff
   deleted.

It polls pods every `POLL_S` as cluster admin (the cluster's admin kubeconfig); each process runs in
its own process group and logs to `<workdir>/<namespace>_<pod>.log`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.support.controlplane import ControlPlane, _die_with_parent

RUN_LABEL = "bakeoff.dev/run"
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
POLL_S = 0.5
STOP_GRACE_S = 10.0
OOM_EXIT = 137


@dataclass(frozen=True)
class FinishedRun:
    """A Job pod the runner ran: its exit status and log."""

    namespace: str
    pod: str
    run: str
    exit_code: int
    seconds: float
    log_path: Path


@dataclass(eq=False)
class _Running:
    namespace: str
    pod: str
    uid: str
    run: str
    container: str
    image: str
    process: subprocess.Popen[bytes]
    log_path: Path
    started: float
    started_at: str
    kill_at: float | None = None
    killed: bool = False


@dataclass
class _Kill:
    namespace: str
    after_s: float


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class JobRunner:
    """Runs the Running pods of bake-off run Jobs (in `namespaces`, all when empty) as local processes.

    `endpoint_of(namespace, variant)` gives the local URL that stands for a variant's in-cluster
    endpoint. `on_event` receives one line per thing that happened."""

    def __init__(
        self,
        cluster: ControlPlane,
        workdir: Path,
        *,
        endpoint_of: Callable[[str, str], str],
        namespaces: tuple[str, ...] = (),
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.cluster = cluster
        self.workdir = workdir
        self.endpoint_of = endpoint_of
        self.namespaces = frozenset(namespaces)
        self.on_event = on_event or (lambda line: None)
        self.finished: list[FinishedRun] = []
        self.errors: list[str] = []
        self._running: dict[str, _Running] = {}
        self._done: set[str] = set()
        self._kills: list[_Kill] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._kubeconfigs: dict[tuple[str, str], Path] = {}
        self._client: Any = None

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> JobRunner:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._loop, name="job-runner", daemon=True)
        self._thread.start()
        return self

    def __enter__(self) -> JobRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop every process and the polling thread; idempotent."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=STOP_GRACE_S + 10)
            self._thread = None
        for running in list(self._running.values()):
            self._terminate(running)

    # -- what tests ask -------------------------------------------------------------------------------

    def kill_next(self, namespace: str, after_s: float = 1.0) -> None:
        """The next Job pod of `namespace` is killed `after_s` seconds after it starts, as the kernel's OOM
        killer would: the container ends with 137 and the pod (so the Job) fails."""
        with self._lock:
            self._kills.append(_Kill(namespace, after_s))

    def running(self) -> list[str]:
        """`namespace/pod` of the processes running now."""
        with self._lock:
            return sorted(self._running)

    def finished_in(self, namespace: str) -> list[FinishedRun]:
        with self._lock:
            return [f for f in self.finished if f.namespace == namespace]

    # -- the loop -------------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopping.wait(POLL_S):
            try:
                self._tick()
            except Exception as exc:  # the API server restarting, a pod gone between reads: next tick
                self.errors.append(f"{type(exc).__name__}: {exc}")
                del self.errors[:-20]

    def _api(self) -> Any:
        if self._client is None:
            from kubernetes import client, config

            api_client = config.new_client_from_config(config_file=str(self.cluster.kubeconfig))  # type: ignore[no-untyped-call]
            self._client = (client.CoreV1Api(api_client), client.CustomObjectsApi(api_client))
        return self._client

    def _pods(self) -> list[dict[str, Any]]:
        core, _ = self._api()
        listed = json.loads(core.list_pod_for_all_namespaces(label_selector=RUN_LABEL, _preload_content=False).data)
        items: list[dict[str, Any]] = listed["items"]
        return [p for p in items if not self.namespaces or p["metadata"]["namespace"] in self.namespaces]

    def _kwok_nodes(self) -> set[str]:
        core, _ = self._api()
        nodes = json.loads(core.list_node(_preload_content=False).data)["items"]
        return {
            n["metadata"]["name"] for n in nodes if (n["metadata"].get("annotations") or {}).get(KWOK_NODE_ANNOTATION)
        }

    def _tick(self) -> None:
        pods = self._pods()
        present = {f"{p['metadata']['namespace']}/{p['metadata']['name']}": p for p in pods}
        for key, running in list(self._running.items()):
            pod = present.get(key)
            if pod is None or pod["metadata"].get("deletionTimestamp") or pod["metadata"]["uid"] != running.uid:
                self.on_event(f"stopping {key}: its pod is gone")
                self._terminate(running)
                with self._lock:
                    del self._running[key]
                continue
            self._check(key, running)
        wanted = [
            p
            for key, p in present.items()
            if key not in self._running
            and p["metadata"]["uid"] not in self._done
            and not p["metadata"].get("deletionTimestamp")
            and (p.get("status") or {}).get("phase") == "Running"
        ]
        if wanted:
            kwok = self._kwok_nodes()
            for pod in wanted:
                if pod["spec"].get("nodeName") in kwok:
                    self._spawn(pod)

    # -- one pod --------------------------------------------------------------------------------------

    def _kubeconfig(self, namespace: str, account: str) -> Path:
        key = (namespace, account)
        if key not in self._kubeconfigs:
            self._kubeconfigs[key] = self.cluster.service_account_kubeconfig(namespace, account, create=False)
        return self._kubeconfigs[key]

    def claim_dir(self, namespace: str, claim: str) -> Path:
        """The local folder standing in for a PersistentVolumeClaim's volume."""
        return self.workdir / "claims" / namespace / claim

    def _endpoints(self, namespace: str) -> dict[str, str]:
        """In-cluster endpoint -> local URL, for every ModelVariant of `namespace` that has one."""
        _, custom = self._api()
        listed = custom.list_namespaced_custom_object("bakeoff.dev", "v1alpha1", namespace, "modelvariants")
        out = {}
        for mv in listed["items"]:
            endpoint = (mv.get("status") or {}).get("endpoint")
            if endpoint:
                out[str(endpoint).rstrip("/")] = self.endpoint_of(namespace, mv["metadata"]["name"])
        return out

    def _spawn(self, pod: Mapping[str, Any]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        namespace, name = meta["namespace"], meta["name"]
        container = spec["containers"][0]
        command = [*container.get("command", []), *container.get("args", [])]
        scratch = self.workdir / f"{namespace}_{name}"
        scratch.mkdir(parents=True, exist_ok=True)
        for endpoint, local in sorted(self._endpoints(namespace).items(), key=lambda kv: -len(kv[0])):
            command = [part.replace(endpoint, local) for part in command]
        env = {e["name"]: str(e.get("value", "")) for e in container.get("env") or []}
        # The pod's emptyDir at /tmp is a folder of its own here; a PersistentVolumeClaim it mounts is the
        # claim's folder (`claim_dir`), shared by every pod that mounts it.
        mounts: dict[str, Path] = {"/tmp": scratch}
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in spec.get("volumes") or []
                  if v.get("persistentVolumeClaim")}  # fmt: skip
        for mount in container.get("volumeMounts") or []:
            if mount["name"] in claims:
                mounts[mount["mountPath"].rstrip("/")] = self.claim_dir(namespace, claims[mount["name"]])
        for path, folder in mounts.items():
            local = str(folder)
            folder.mkdir(parents=True, exist_ok=True)
            env = {k: local + v.removeprefix(path) if v == path or v.startswith(path + "/") else v
                   for k, v in env.items()}  # fmt: skip
        env.update(
            {
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                "KUBECONFIG": str(self._kubeconfig(namespace, spec.get("serviceAccountName") or "default")),
                "TMPDIR": str(scratch),
            }
        )
        log_path = self.workdir / f"{namespace}_{name}.log"
        with log_path.open("ab") as log:
            log.write(f"$ {command[:2]} (script of {len(command[-1])} characters)\n".encode())
            log.flush()
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=scratch,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 (only a prebound C call runs between fork and exec)
                close_fds=True,
            )
        running = _Running(
            namespace=namespace,
            pod=name,
            uid=meta["uid"],
            run=(meta.get("labels") or {}).get(RUN_LABEL, ""),
            container=container["name"],
            image=container.get("image", ""),
            process=process,
            log_path=log_path,
            started=time.monotonic(),
            started_at=_now(),
        )
        with self._lock:
            kill = next((k for k in self._kills if k.namespace == namespace), None)
            if kill is not None:
                self._kills.remove(kill)
                running.kill_at = running.started + kill.after_s
            self._running[f"{namespace}/{name}"] = running
        self.on_event(f"started {namespace}/{name} as pid {process.pid}, log {log_path}")

    def _check(self, key: str, running: _Running) -> None:
        if running.kill_at is not None and not running.killed and time.monotonic() >= running.kill_at:
            _kill_group(running.process.pid, signal.SIGKILL)
            running.killed = True
        code = running.process.poll()
        if code is None:
            return
        _kill_group(running.process.pid, signal.SIGKILL)  # stragglers of its group
        exit_code = OOM_EXIT if running.killed else (128 - code if code < 0 else code)
        self._complete(running, exit_code)
        with self._lock:
            del self._running[key]
            self._done.add(running.uid)
            self.finished.append(
                FinishedRun(
                    namespace=running.namespace,
                    pod=running.pod,
                    run=running.run,
                    exit_code=exit_code,
                    seconds=round(time.monotonic() - running.started, 2),
                    log_path=running.log_path,
                )
            )
        self.on_event(f"{key} exited with {exit_code}")

    def _complete(self, running: _Running, exit_code: int) -> None:
        """The pod's status as a kubelet writes it when its only container ended."""
        now = _now()
        reason = "Completed" if exit_code == 0 else ("OOMKilled" if running.killed else "Error")
        status = {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now},
            ],
            "containerStatuses": [
                {
                    "name": running.container,
                    "image": running.image,
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "started": False,
                    "state": {
                        "terminated": {
                            "exitCode": exit_code,
                            "reason": reason,
                            "startedAt": running.started_at,
                            "finishedAt": now,
                        }
                    },
                }
            ],
        }
        core, _ = self._api()
        core.patch_namespaced_pod_status(running.pod, running.namespace, {"status": status})

    def _terminate(self, running: _Running) -> None:
        if running.process.poll() is None:
            _kill_group(running.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                running.process.wait(timeout=STOP_GRACE_S)
        _kill_group(running.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            running.process.wait(timeout=5)
