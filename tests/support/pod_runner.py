"""Run the containers of simulated replicas as local processes: the kubelet the playground lacks.

kwok makes a Pod Running without running anything. For every Running Pod of a simulated variant
(label `bakeoff.dev/engine=simulator`) on a kwok node, `PodRunner` starts what the Pod's container
would run, `bakeoff sim` with the container's arguments and environment, except that it listens on
127.0.0.1 and a port the OS picks. When the Pod is deleted, stops Running or leaves its node, the
process is stopped. Once a process answers `/health` (its readiness) it is published:

- in the Prometheus file_sd target list, labelled like a PodMonitor target (`namespace`, `pod`,
  `container`, `node`) plus `variant` (the Pod's `bakeoff.dev/variant`), `inferenceservice`,
  `format` and `model_name` (the served model name), so `vllm:*{variant="..."}` selects a variant;
- in the variant's local endpoint (`tests.support.endpoints`), which spreads requests over it.

Each process runs in its own process group, which `stop` signals whole (SIGTERM, then SIGKILL
after a grace period); the kernel kills it if the runner's thread or process dies first. A process
that exits while its Pod is still Running is started again with a growing back-off, as a kubelet
restarts a container. Logs are `<workdir>/<namespace>_<pod>.log`.

Two threads: one lists and watches Pods (kubernetes client, `--kubeconfig` of any identity that may
list Pods cluster-wide) and queues what it sees; the other owns the processes and starts, checks
and stops them, so process state has a single writer.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.controlplane import _die_with_parent
from tests.support.endpoints import Endpoints
from tests.support.prometheus import Prometheus, TargetGroup

ENGINE_LABEL = "bakeoff.dev/engine"
SIMULATOR = "simulator"
VARIANT_LABEL = "bakeoff.dev/variant"
FORMAT_LABEL = "bakeoff.dev/format"
ISVC_LABEL = "serving.kserve.io/inferenceservice"
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
CONTAINER = "kserve-container"  # the container KServe builds from the ServingRuntime and the model
SELECTOR = f"{ENGINE_LABEL}={SIMULATOR}"

HEALTH_TIMEOUT_S = 0.5
STARTUP_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0
RESTART_BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
_URL_LINE = re.compile(r"^(http://\S+:\d+)\s*$", re.MULTILINE)


class PodNotRunnable(ValueError):
    """A simulated Pod whose container this runner cannot run locally (the reason is the message)."""


@dataclass(frozen=True)
class SimulatedPod:
    """What the runner needs of a Pod: who it is, where it runs, and its container's command."""

    uid: str
    namespace: str
    name: str
    node: str
    variant: str
    labels: Mapping[str, str]
    argv: tuple[str, ...]
    env: Mapping[str, str]
    model_name: str

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def target_labels(self) -> dict[str, str]:
        labels = {
            "namespace": self.namespace,
            "pod": self.name,
            "container": CONTAINER,
            "node": self.node,
            "variant": self.variant,
            "inferenceservice": self.labels.get(ISVC_LABEL, self.variant),
            "format": self.labels.get(FORMAT_LABEL, ""),
            "model_name": self.model_name,
        }
        return {k: v for k, v in labels.items() if v}


def wanted(pod: Mapping[str, Any], kwok_nodes: Iterable[str]) -> bool:
    """A simulated replica kwok made Running, not being deleted: one that should have a process."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    return (
        (meta.get("labels") or {}).get(ENGINE_LABEL) == SIMULATOR
        and not meta.get("deletionTimestamp")
        and (pod.get("status") or {}).get("phase") == "Running"
        and spec.get("nodeName") in set(kwok_nodes)
    )


def local_args(args: Sequence[str]) -> list[str]:
    """The container's arguments, listening on 127.0.0.1 and a port the OS picks instead of 0.0.0.0:8080."""
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("--host", "--port"):
            skip = True
        elif not arg.startswith(("--host=", "--port=")):
            out.append(arg)
    return [*out, "--host=127.0.0.1", "--port=0"]


def bakeoff_command() -> str:
    """The `bakeoff` console script of this environment (the image's entry point in a cluster)."""
    beside = Path(sys.executable).with_name("bakeoff")
    if beside.is_file():
        return str(beside)
    found = shutil.which("bakeoff")
    if found is None:
        raise PodNotRunnable("the `bakeoff` command is not installed here (pip install -e .)")
    return found


def simulated_pod(pod: Mapping[str, Any]) -> SimulatedPod:
    """Parse a Pod object; raises PodNotRunnable when its container cannot be run here."""
    meta = pod["metadata"]
    containers = (pod.get("spec") or {}).get("containers") or []
    container = next((c for c in containers if c.get("name") == CONTAINER), containers[0] if containers else None)
    if container is None:
        raise PodNotRunnable("the pod has no container")
    command = list(container.get("command") or [])
    if command[:2] != ["bakeoff", "sim"]:
        raise PodNotRunnable(f"its container runs {command or 'the image entry point'}, not `bakeoff sim`")
    env: dict[str, str] = {}
    for entry in container.get("env") or []:
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
        elif "valueFrom" in entry:
            raise PodNotRunnable(f"env {entry['name']} comes from valueFrom, which the runner cannot resolve")
    args = [str(a) for a in container.get("args") or []]
    labels = dict(meta.get("labels") or {})
    return SimulatedPod(
        uid=meta["uid"],
        namespace=meta["namespace"],
        name=meta["name"],
        node=pod["spec"]["nodeName"],
        variant=labels.get(VARIANT_LABEL, labels.get(ISVC_LABEL, meta["name"])),
        labels=labels,
        argv=(bakeoff_command(), *command[1:], *local_args(args)),
        env=env,
        model_name=_served_model_name(args, env),
    )


def _served_model_name(args: Sequence[str], env: Mapping[str, str]) -> str:
    """The served model name, from the Variant JSON the simulator reads (`--variant-env NAME`)."""
    for i, arg in enumerate(args):
        name = arg.split("=", 1)[1] if arg.startswith("--variant-env=") else None
        if arg == "--variant-env" and i + 1 < len(args):
            name = args[i + 1]
        if name and name in env:
            with contextlib.suppress(ValueError, AttributeError):
                return str(json.loads(env[name]).get("served_model_name") or "")
    return ""


@dataclass(frozen=True)
class ReplicaView:
    """A local replica as others may see it (a snapshot)."""

    namespace: str
    pod: str
    variant: str
    model_name: str
    url: str
    pid: int
    healthy: bool
    restarts: int
    log_path: Path


@dataclass(eq=False)
class _Replica:
    pod: SimulatedPod
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    url: str = ""
    healthy: bool = False
    started_at: float = 0.0
    restarts: int = 0
    restart_at: float | None = None
    stop_deadline: float | None = None
    pgids: list[int] = field(default_factory=list)

    def view(self) -> ReplicaView:
        return ReplicaView(
            namespace=self.pod.namespace,
            pod=self.pod.name,
            variant=self.pod.variant,
            model_name=self.pod.model_name,
            url=self.url,
            pid=self.process.pid if self.process is not None else 0,
            healthy=self.healthy,
            restarts=self.restarts,
            log_path=self.log_path,
        )


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_alive(pgid: int) -> bool:
    """True while any process of the process group `pgid` exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=HEALTH_TIMEOUT_S) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


class PodRunner:
    """Watches simulated Pods and keeps one local `bakeoff sim` process per Running one.

    `namespaces` limits it to those namespaces (all when empty). `on_event` receives one line per
    thing that happened (started, serving, stopped, exited), from the runner's thread.
    """

    def __init__(
        self,
        kubeconfig: Path,
        workdir: Path,
        *,
        prometheus: Prometheus | None = None,
        endpoints: Endpoints | None = None,
        namespaces: Sequence[str] = (),
        max_replicas: int = 48,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.workdir = workdir
        self.prometheus = prometheus
        self.endpoints = endpoints
        self.namespaces = frozenset(namespaces)
        self.max_replicas = max_replicas
        self.on_event = on_event or (lambda line: None)
        self._inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._pods: dict[str, dict[str, Any]] = {}
        self._replicas: dict[str, _Replica] = {}
        self._refused: dict[str, str] = {}
        self._kwok_nodes: set[str] = set()
        self._published: tuple[Any, ...] = ()
        self._variants: set[tuple[str, str]] = set()
        self._all_pgids: list[int] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._synced = threading.Event()
        self._threads: list[threading.Thread] = []
        self.errors: list[str] = []

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> PodRunner:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._threads = [
            threading.Thread(target=self._watch, name="pod-runner-watch", daemon=True),
            threading.Thread(target=self._run, name="pod-runner", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        if not self._synced.wait(timeout=30):
            raise TimeoutError(f"the pod runner could not list pods: {self.errors[-3:]}")
        return self

    def __enter__(self) -> PodRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop every process (the runner's thread does, before it ends) and both threads; idempotent."""
        self._stopping.set()
        self._inbox.put(("wake", None))
        watcher, runner = self._threads or (None, None)
        if runner is not None:
            runner.join(timeout=STOP_GRACE_S + 20)
        if watcher is not None:
            # It owns no process and ends by itself once its current watch request returns (5 s at most).
            watcher.join(timeout=1)
        self._threads = []

    # -- what runs ----------------------------------------------------------------------------------

    def replicas(self, namespace: str | None = None, variant: str | None = None) -> list[ReplicaView]:
        """The local replicas (starting or serving), optionally of one namespace and variant."""
        with self._lock:
            views = [r.view() for r in self._replicas.values() if r.stop_deadline is None]
        return sorted(
            (
                v
                for v in views
                if (namespace is None or v.namespace == namespace) and (variant is None or v.variant == variant)
            ),
            key=lambda v: (v.namespace, v.pod),
        )

    def process_groups(self) -> list[int]:
        """Every process group this runner ever started (each replica's, restarts included)."""
        with self._lock:
            return list(self._all_pgids)

    def refused(self) -> dict[str, str]:
        """Pods (`namespace/name`) the runner does not run, with the reason."""
        with self._lock:
            return dict(self._refused)

    # -- the watching thread ------------------------------------------------------------------------

    def _watch(self) -> None:
        from kubernetes import client, config, watch

        api: Any = client.CoreV1Api(config.new_client_from_config(config_file=str(self.kubeconfig)))  # type: ignore[no-untyped-call]
        while not self._stopping.is_set():
            try:
                # Raw JSON (`_preload_content=False`): the runner reads Pods as the API serves them.
                listed = json.loads(
                    api.list_pod_for_all_namespaces(label_selector=SELECTOR, _preload_content=False).data
                )
                nodes = json.loads(api.list_node(_preload_content=False).data)
                kwok = {
                    n["metadata"]["name"]
                    for n in nodes["items"]
                    if (n["metadata"].get("annotations") or {}).get(KWOK_NODE_ANNOTATION)
                }
                self._inbox.put(("list", (listed["items"], kwok)))
                self._synced.set()
                version = listed["metadata"]["resourceVersion"]
                while not self._stopping.is_set():
                    stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                        api.list_pod_for_all_namespaces,
                        label_selector=SELECTOR,
                        resource_version=version,
                        timeout_seconds=5,
                        _request_timeout=15,
                    )
                    for event in stream:
                        pod = event["raw_object"]
                        version = pod["metadata"]["resourceVersion"]
                        if pod["spec"].get("nodeName") and pod["spec"]["nodeName"] not in kwok:
                            break  # a node joined since the list: list again (and read nodes)
                        self._inbox.put((event["type"], pod))
                    else:
                        continue
                    break
            except Exception as exc:  # expired versions, a restarting API server: list again
                self.errors.append(f"{type(exc).__name__}: {exc}")
                del self.errors[:-20]
                self._stopping.wait(0.5)

    # -- the process-owning thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    kind, payload = self._inbox.get(timeout=0.1)
                except queue.Empty:
                    pass
                else:
                    self._receive(kind, payload)
                    while True:  # take everything queued before acting once
                        try:
                            kind, payload = self._inbox.get_nowait()
                        except queue.Empty:
                            break
                        self._receive(kind, payload)
                try:
                    self._reconcile()
                except Exception as exc:  # keep serving the other replicas
                    self.errors.append(f"reconcile: {type(exc).__name__}: {exc}")
                    del self.errors[:-20]
        finally:
            # Processes started from this thread die with it (PR_SET_PDEATHSIG): stop them cleanly first.
            self._stop_all()

    def _receive(self, kind: str, payload: Any) -> None:
        if kind == "list":
            items, kwok = payload
            self._kwok_nodes = set(kwok)
            self._pods = {p["metadata"]["uid"]: p for p in items}
        elif kind in ("ADDED", "MODIFIED"):
            self._pods[payload["metadata"]["uid"]] = payload
        elif kind == "DELETED":
            self._pods.pop(payload["metadata"]["uid"], None)

    def _reconcile(self) -> None:
        now = time.monotonic()
        desired: dict[str, SimulatedPod] = {}
        for uid, pod in self._pods.items():
            meta = pod["metadata"]
            if self.namespaces and meta["namespace"] not in self.namespaces:
                continue
            if not wanted(pod, self._kwok_nodes):
                continue
            key = f"{meta['namespace']}/{meta['name']}"
            try:
                desired[uid] = simulated_pod(pod)
            except PodNotRunnable as exc:
                if self._refused.get(key) != str(exc):
                    self._refused[key] = str(exc)
                    self.on_event(f"not running {key}: {exc}")
        for uid, replica in list(self._replicas.items()):
            if uid not in desired and replica.stop_deadline is None:
                self._begin_stop(replica, now, "its pod is gone or not Running")
        for uid, wanted_pod in desired.items():
            if uid in self._replicas:
                continue
            running = sum(1 for r in self._replicas.values() if r.stop_deadline is None)
            if running >= self.max_replicas:
                if self._refused.get(wanted_pod.key) is None:
                    self._refused[wanted_pod.key] = f"the playground runs at most {self.max_replicas} local replicas"
                    self.on_event(f"not running {wanted_pod.key}: {self._refused[wanted_pod.key]}")
                continue
            self._refused.pop(wanted_pod.key, None)
            replica = _Replica(wanted_pod, self.workdir / f"{wanted_pod.namespace}_{wanted_pod.name}.log")
            self._spawn(replica, now)
            with self._lock:
                self._replicas[uid] = replica
        for uid, replica in list(self._replicas.items()):
            self._check(uid, replica, now)
        self._publish()

    def _spawn(self, replica: _Replica, now: float) -> None:
        pod = replica.pod
        env = {**os.environ, **pod.env, "PYTHONUNBUFFERED": "1"}
        with replica.log_path.open("ab") as log:
            log.write(f"$ {' '.join(pod.argv)}\n".encode())
            log.flush()
            process = subprocess.Popen(
                list(pod.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                # Only one prebound C call runs between fork and exec; every spawn is from this thread.
                preexec_fn=_die_with_parent,  # noqa: PLW1509
                close_fds=True,
            )
        replica.process = process
        replica.url = ""
        replica.healthy = False
        replica.started_at = now
        replica.restart_at = None
        replica.pgids.append(process.pid)
        with self._lock:
            self._all_pgids.append(process.pid)
        self.on_event(f"started {pod.key} (variant {pod.variant}) as pid {process.pid}, log {replica.log_path}")

    def _check(self, uid: str, replica: _Replica, now: float) -> None:
        process = replica.process
        if replica.stop_deadline is not None:
            if process is None or process.poll() is not None:
                if process is not None:
                    _kill_group(process.pid, signal.SIGKILL)  # stragglers of an exited leader
                with self._lock:
                    del self._replicas[uid]
                self.on_event(f"stopped {replica.pod.key}")
            elif now > replica.stop_deadline:
                _kill_group(process.pid, signal.SIGKILL)
            return
        if process is None:
            if replica.restart_at is not None and now >= replica.restart_at:
                self._spawn(replica, now)
            return
        code = process.poll()
        if code is not None:
            _kill_group(process.pid, signal.SIGKILL)
            delay = RESTART_BACKOFF_S[min(replica.restarts, len(RESTART_BACKOFF_S) - 1)]
            with self._lock:
                replica.process = None
                replica.healthy = False
                replica.restarts += 1
                replica.restart_at = now + delay
            tail = replica.log_path.read_text(errors="replace")[-600:] if replica.log_path.exists() else ""
            self.on_event(f"{replica.pod.key} exited with status {code}; restarting in {delay:g} s\n{tail}")
            return
        if replica.healthy:
            return
        if not replica.url:
            with contextlib.suppress(OSError):
                found = _URL_LINE.search(replica.log_path.read_text(errors="replace"))
                if found:
                    replica.url = found.group(1)
        if replica.url and _healthy(replica.url):
            with self._lock:
                replica.healthy = True
            took = now - replica.started_at
            self.on_event(f"serving {replica.pod.key} at {replica.url} ({took:.1f} s after start)")
        elif now - replica.started_at > STARTUP_TIMEOUT_S:
            self.on_event(f"{replica.pod.key} not healthy within {STARTUP_TIMEOUT_S:g} s: restarting it")
            _kill_group(process.pid, signal.SIGKILL)

    def _begin_stop(self, replica: _Replica, now: float, why: str) -> None:
        with self._lock:
            replica.healthy = False
            replica.stop_deadline = now + STOP_GRACE_S
        # Out of the endpoint and the target list before the signal, as endpoints go before a pod stops.
        self._publish()
        if replica.process is not None:
            _kill_group(replica.process.pid, signal.SIGTERM)
        self.on_event(f"stopping {replica.pod.key}: {why}")

    def _publish(self) -> None:
        serving = sorted(
            (r for r in self._replicas.values() if r.healthy and r.stop_deadline is None), key=lambda r: r.pod.key
        )
        state = tuple((r.pod.key, r.url) for r in serving)
        if state == self._published:
            return
        self._published = state
        if self.prometheus is not None:
            self.prometheus.write_targets(
                TargetGroup([r.url.removeprefix("http://")], r.pod.target_labels()) for r in serving
            )
        if self.endpoints is not None:
            by_variant: dict[tuple[str, str], dict[str, str]] = {key: {} for key in self._variants}
            for r in serving:
                by_variant.setdefault((r.pod.namespace, r.pod.variant), {})[r.pod.name] = r.url
            for (namespace, variant), backends in by_variant.items():
                self.endpoints.set_replicas(namespace, variant, backends)
            self._variants = set(by_variant)

    def _stop_all(self) -> None:
        live = [r for r in self._replicas.values() if r.process is not None and r.process.poll() is None]
        with self._lock:
            for r in self._replicas.values():
                r.healthy = False
        with contextlib.suppress(Exception):
            self._publish()
        for r in live:
            assert r.process is not None
            _kill_group(r.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for r in live:
            assert r.process is not None
            with contextlib.suppress(subprocess.TimeoutExpired):
                r.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            _kill_group(r.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                r.process.wait(timeout=5)
        with self._lock:
            self._replicas.clear()
        if live:
            self.on_event(f"stopped {len(live)} local replica(s)")
