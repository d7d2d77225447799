"""Fixtures of the bad-input and fault suite: each command runs as a user would run it, in a sandbox
that can tell afterwards whether it left anything behind.

A `Sandbox` starts `bakeoff` (or `python -m ...`) with a marker in its environment and a private
TMPDIR. Every process it starts inherits both, whatever session or process group it moves to, so
`assert_clean` finds any survivor by the marker in `/proc/<pid>/environ`, and any temporary folder
left in TMPDIR.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.fixtures import control_plane, control_plane_binaries, helm_binary

__all__ = ["control_plane", "control_plane_binaries", "helm_binary"]

MARKER = "BAKEOFF_TEST_CASE"
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Ran:
    """A finished command: exit status and what it printed."""

    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def marked_processes(marker: str) -> list[str]:
    """`pid cmdline` of every live process whose environment carries `marker`."""
    needle = f"{MARKER}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if state != "Z":
            found.append(f"{entry.name} {cmdline.strip()}")
    return found


class Sandbox:
    """Runs commands of one test case and checks that they leave nothing running and no temp folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.marker = uuid.uuid4().hex
        self.extra_env: dict[str, str] = {}

    def env(self) -> dict[str, str]:
        return {**os.environ, MARKER: self.marker, "TMPDIR": str(self.tmp), "COLUMNS": "200", **self.extra_env}

    def argv(self, args: Sequence[str]) -> list[str]:
        return [sys.executable, "-m", "bakeoff_operator.cli", *args]

    def run(self, *args: str, timeout: float = 120, file_size_limit: int | None = None) -> Ran:
        """`bakeoff ARGS...` to its end; with `file_size_limit`, no file it writes grows past that many
        bytes (RLIMIT_FSIZE: a write beyond fails as on a full disk)."""

        def limit() -> None:
            if file_size_limit is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

        proc = subprocess.run(
            self.argv(args),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=self.env(),
            cwd=self.root,
            start_new_session=True,
            preexec_fn=limit,  # only setrlimit runs between fork and exec
        )
        return Ran(proc.returncode, proc.stdout, proc.stderr)

    def start(self, *args: str) -> subprocess.Popen[str]:
        """`bakeoff ARGS...` in the background, in its own session (signals go to it alone)."""
        return subprocess.Popen(
            self.argv(args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(),
            cwd=self.root,
            start_new_session=True,
        )

    def leftovers(self) -> list[str]:
        return marked_processes(self.marker)

    def assert_clean(self, grace_s: float = 5.0) -> None:
        """Nothing the commands started is running `grace_s` after they ended; no temp folder is left."""
        deadline = time.monotonic() + grace_s
        left = self.leftovers()
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = self.leftovers()
        for line in left:
            os.kill(int(line.split()[0]), signal.SIGKILL)
        assert not left, f"still running after the command ended: {left}"
        temp = sorted(p.name for p in self.tmp.iterdir())
        assert not temp, f"temporary files left in TMPDIR: {temp}"


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    box = Sandbox(tmp_path)
    yield box
    for line in box.leftovers():  # a failed test still stops what it started
        os.kill(int(line.split()[0]), signal.SIGKILL)


@dataclass
class Endpoint:
    """A server in a process of its own; `url` is its base URL."""

    url: str
    proc: subprocess.Popen[str]

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_faultserver() -> Endpoint:
    """The harness's reference server: the `model` of a request picks the fault it answers with."""
    cmd = [sys.executable, "-m", "bakeoff_loadtest.refserver", "--port", "0", "--ttft-ms", "20", "--itl-ms", "5"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"reference server did not start: {line!r}")
    return Endpoint(f"http://127.0.0.1:{int(line.split()[1])}", proc)


@pytest.fixture(scope="module")
def faultserver() -> Iterator[Endpoint]:
    srv = start_faultserver()
    yield srv
    srv.stop()


def start_sim(*args: str) -> Endpoint:
    """`bakeoff sim` on a free port (serves `llama-3.1-8b-bf16` unless told otherwise)."""
    cmd = [sys.executable, "-m", "bakeoff_runtime.sim.cli", "--port", "0", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http://"):
        proc.kill()
        raise RuntimeError(f"the simulator did not start: {url!r}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return Endpoint(url, proc)
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the simulator never became healthy")


@pytest.fixture(scope="module")
def simulator() -> Iterator[Endpoint]:
    srv = start_sim("--max-model-len", "2048")
    yield srv
    srv.stop()


def closed_port() -> int:
    """A loopback port nothing listens on (bound and released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
