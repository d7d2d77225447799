"""A real Prometheus for Bakeoff's playground and closed-loop tests, on loopback, scraping every second.

    with Prometheus(workdir, static_targets={"bakeoff-operator": ["127.0.0.1:9090"]}) as prom:
        prom.write_targets([TargetGroup(["127.0.0.1:8080"], {"variant": "llama-int8"})])
        prom.wait_for('count(up{variant="llama-int8"} == 1)', lambda v: v == 1)
        prom.query('sum by (variant) (vllm:num_requests_running)')

Prometheus 3.x and promtool come from `hack/build-prometheus.sh` (`<BAKEOFF_TOOLS_DIR>/bin/`). The
server runs in its own process group on a free loopback port with a throw-away TSDB in `workdir`,
scrape and rule evaluation intervals of 1 s, and these jobs:

- a `file_sd_configs` job `replicas` reading `file_sd_path`, which `write_targets` replaces
  atomically. Prometheus reads the file on inotify at once, but its discovery manager hands target
  changes to the scrapers every 5 s (fixed in Prometheus, as for Kubernetes discovery in a
  cluster): a new target is scraped 1-6 s after it is written. `honor_labels` is on, so the labels
  a replica exposes (vLLM's `model_name`, `engine`) win over the target's;
- one static job per `static_targets` entry (the operator's own /metrics, for example);
- the `prometheus` job, Prometheus itself.

Rule files are checked with `promtool check rules` before the server starts, so a broken rule fails
with promtool's message instead of a server that never gets ready. Nothing here needs pytest: the
playground CLI uses it as it is.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from tests.support.controlplane import _die_with_parent, free_port, tools_dir

PROMETHEUS_BUILD_HINT = "run hack/build-prometheus.sh"
PROMETHEUS_TOOLS = ("prometheus", "promtool")
REPLICAS_JOB = "replicas"


class PrometheusError(RuntimeError):
    """Prometheus could not start, or answered a query with an error."""


def find_prometheus(name: str = "prometheus") -> Path:
    """The path of `prometheus` or `promtool` from hack/build-prometheus.sh."""
    path = tools_dir() / "bin" / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise FileNotFoundError(
            f"{name} not found at {path}: {PROMETHEUS_BUILD_HINT} (BAKEOFF_TOOLS_DIR={tools_dir()})"
        )
    return path


def missing_prometheus_tools() -> list[str]:
    """The Prometheus binaries that are not built yet, each with the command that builds it."""
    missing = []
    for name in PROMETHEUS_TOOLS:
        try:
            find_prometheus(name)
        except FileNotFoundError:
            missing.append(f"{name} not built: {PROMETHEUS_BUILD_HINT}")
    return missing


@dataclass(frozen=True)
class TargetGroup:
    """One entry of a file_sd target list: `host:port` addresses and the labels they all get."""

    targets: Sequence[str]
    labels: Mapping[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"targets": list(self.targets), "labels": dict(sorted(self.labels.items()))}


def write_file_sd(path: Path, groups: Iterable[TargetGroup]) -> None:
    """Replace a file_sd target list in one rename, so Prometheus never reads half a file."""
    body = json.dumps([g.as_json() for g in groups], indent=1, sort_keys=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(body + "\n")
    os.replace(tmp, path)


def scrape_config(
    file_sd_path: Path,
    static_targets: Mapping[str, Sequence[str]],
    rule_files: Sequence[Path],
    self_address: str,
    interval: str,
) -> dict[str, Any]:
    """The prometheus.yml of this fixture (a function of its inputs, for tests and for reading)."""
    jobs: list[dict[str, Any]] = [
        {
            "job_name": REPLICAS_JOB,
            "honor_labels": True,
            "file_sd_configs": [{"files": [str(file_sd_path)], "refresh_interval": "5s"}],
        },
        {"job_name": "prometheus", "static_configs": [{"targets": [self_address]}]},
    ]
    for job, targets in sorted(static_targets.items()):
        jobs.append({"job_name": job, "static_configs": [{"targets": list(targets)}]})
    return {
        "global": {
            "scrape_interval": interval,
            # A scrape may not take longer than the interval; Prometheus refuses the config otherwise.
            "scrape_timeout": interval,
            "evaluation_interval": interval,
        },
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": jobs,
    }


class Prometheus:
    """A Prometheus server on 127.0.0.1 (a free port); a context manager that stops it.

    Attributes after `start()`: `url` (http://127.0.0.1:<port>), `file_sd_path` (the target list
    of the `replicas` job), `config_path`, `log_path`, `startup_seconds`.
    """

    def __init__(
        self,
        workdir: Path | str,
        *,
        static_targets: Mapping[str, Sequence[str]] | None = None,
        rule_files: Sequence[Path | str] = (),
        interval: str = "1s",
        retention: str = "6h",
        startup_timeout: float = 60.0,
    ) -> None:
        self.workdir = Path(workdir)
        self.static_targets = {k: list(v) for k, v in (static_targets or {}).items()}
        self.rule_files = [Path(r).resolve() for r in rule_files]
        self.interval = interval
        self.retention = retention
        self.startup_timeout = startup_timeout
        self.url = ""
        self.file_sd_path = self.workdir / "targets.json"
        self.config_path = self.workdir / "prometheus.yml"
        self.log_path = self.workdir / "prometheus.log"
        self.startup_seconds = 0.0
        self._process: subprocess.Popen[bytes] | None = None

    # -- lifecycle ----------------------------------------------------------------------------------

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> Prometheus:
        """Check the rules, write the config and start the server; returns once /-/ready answers 200."""
        binary = find_prometheus()
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.rule_files:
            self.check_rules(self.rule_files)
        if not self.file_sd_path.exists():
            write_file_sd(self.file_sd_path, [])
        started = time.monotonic()
        # A free port can be taken between the check and the bind: try another one then.
        for attempt in range(3):
            port = free_port()
            self.url = f"http://127.0.0.1:{port}"
            address = f"127.0.0.1:{port}"
            config = scrape_config(self.file_sd_path, self.static_targets, self.rule_files, address, self.interval)
            self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
            self._spawn(binary, address)
            try:
                self._wait_ready()
            except PrometheusError:
                self.stop()
                if attempt == 2 or "address already in use" not in self.log_tail():
                    raise
                continue
            break
        self.startup_seconds = round(time.monotonic() - started, 2)
        return self

    def _spawn(self, binary: Path, address: str) -> None:
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    str(binary),
                    f"--config.file={self.config_path}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--storage.tsdb.retention.time={self.retention}",
                    f"--web.listen-address={address}",
                    "--web.enable-lifecycle",
                    # Target changes reach the scrapers after Prometheus's discovery manager sends them
                    # (every 5 s, fixed) and after this throttle (default 5 s): 1-6 s instead of 5-10 s.
                    "--scrape.discovery-reload-interval=1s",
                    "--log.level=warn",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509  (one prebound C call)
                close_fds=True,
            )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self._process is None or self._process.poll() is not None:
                code = self._process.returncode if self._process else None
                raise PrometheusError(f"prometheus exited with status {code}:\n{self.log_tail()}")
            if self._status("/-/ready") == 200:
                return
            if time.monotonic() > deadline:
                raise PrometheusError(
                    f"prometheus not ready within {self.startup_timeout:.0f}s at {self.url}:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL after `grace`; idempotent."""
        process, self._process = self._process, None
        if process is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if process.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=grace)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(cannot read {self.log_path}: {exc})"

    @staticmethod
    def check_rules(paths: Sequence[Path]) -> str:
        """`promtool check rules`; raises PrometheusError with promtool's output when a file is wrong."""
        result = subprocess.run(
            [str(find_prometheus("promtool")), "check", "rules", *map(str, paths)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise PrometheusError(f"promtool check rules failed:\n{result.stdout}{result.stderr}")
        return result.stdout

    # -- targets ------------------------------------------------------------------------------------

    def write_targets(self, groups: Iterable[TargetGroup]) -> None:
        """Replace the target list of the `replicas` job."""
        write_file_sd(self.file_sd_path, groups)

    def reload(self) -> None:
        """Re-read the configuration and rule files (POST /-/reload)."""
        status, body = self._http("/-/reload", data=b"")
        if status != 200:
            raise PrometheusError(f"reload answered {status}: {body.decode(errors='replace')}")

    def targets(self, state: str = "active") -> list[dict[str, Any]]:
        """`/api/v1/targets`: the active (or dropped) targets with their labels, health and last error."""
        data = self._api("/api/v1/targets", {"state": state})
        key = "activeTargets" if state == "active" else "droppedTargets"
        found: list[dict[str, Any]] = data.get(key, [])
        return found

    # -- queries ------------------------------------------------------------------------------------

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query: the `result` list (each `{"metric": {...}, "value": [t, "v"]}` for a vector)."""
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        result: list[dict[str, Any]] = self._api("/api/v1/query", params)["result"]
        return result

    def query_value(self, promql: str, at: float | None = None) -> float | None:
        """The single number an instant query returns (a scalar, or a one-sample vector); None when empty."""
        data = self._api("/api/v1/query", {"query": promql, **({"time": f"{at:.3f}"} if at is not None else {})})
        if data["resultType"] == "scalar":
            return float(data["result"][1])
        samples = data["result"]
        if not samples:
            return None
        if len(samples) > 1:
            raise PrometheusError(f"{promql!r} returned {len(samples)} series, not one: {samples}")
        return float(samples[0]["value"][1])

    def query_range(self, promql: str, start: float, end: float, step: float = 1.0) -> list[dict[str, Any]]:
        """A range query: the `result` list (each `{"metric": {...}, "values": [[t, "v"], ...]}`)."""
        params = {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        result: list[dict[str, Any]] = self._api("/api/v1/query_range", params)["result"]
        return result

    def wait_for(
        self,
        promql: str,
        predicate: Callable[[float | None], bool] = lambda v: v is not None,
        *,
        timeout: float = 30.0,
        interval: float = 0.25,
    ) -> float | None:
        """Poll `query_value(promql)` until `predicate` holds for it; returns that value."""
        deadline = time.monotonic() + timeout
        last: float | str | None = None
        while True:
            try:
                value = self.query_value(promql)
            except PrometheusError as exc:
                last = str(exc)
            else:
                if predicate(value):
                    return value
                last = value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {promql!r}; last value: {last}")
            time.sleep(interval)

    def _api(self, path: str, params: Mapping[str, str]) -> dict[str, Any]:
        status, body = self._http(path, data=urllib.parse.urlencode(params).encode())
        try:
            payload: dict[str, Any] = json.loads(body)
        except ValueError:
            raise PrometheusError(f"{path} answered {status}: {body[:500].decode(errors='replace')}") from None
        if payload.get("status") != "success":
            raise PrometheusError(f"{path} {dict(params)}: {payload.get('errorType')}: {payload.get('error')}")
        data: dict[str, Any] = payload["data"]
        return data

    def _status(self, path: str) -> int:
        return self._http(path)[0]

    def _http(self, path: str, data: bytes | None = None) -> tuple[int, bytes]:
        """GET (or POST form `data`); returns (status, body), status 0 when nothing answered."""
        request = urllib.request.Request(self.url + path, data=data)
        if data is not None:
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            return 0, b""
