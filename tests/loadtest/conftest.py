"""Fixtures of the load-harness tests: reference servers in their own processes on 127.0.0.1:0.

The server runs in a child process so that it has its own interpreter (and, on a multi-core
machine, its own core), and so that nothing in the pytest process is monkey-patched by gevent.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest


@dataclass
class RefServer:
    url: str
    ttft_ms: float
    itl_ms: float
    proc: subprocess.Popen[str]

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/stats", timeout=10) as r:
            return dict(json.loads(r.read()))

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def reset(self) -> None:
        req = urllib.request.Request(self.url + "/stats/reset", data=b"{}", method="POST")
        urllib.request.urlopen(req, timeout=10).read()


def start_refserver(ttft_ms: float, itl_ms: float, spin_ms: float = 2.0) -> RefServer:
    cmd = [sys.executable, "-m", "bakeoff_loadtest.refserver", "--port", "0"]
    cmd += ["--ttft-ms", str(ttft_ms), "--itl-ms", str(itl_ms), "--spin-ms", str(spin_ms)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"reference server did not start: {line!r}")
    return RefServer(f"http://127.0.0.1:{int(line.split()[1])}", ttft_ms, itl_ms, proc)


@pytest.fixture(scope="module")
def refserver() -> Iterator[RefServer]:
    """TTFT 40 ms, ITL 8 ms, precise to well under a millisecond on an idle core."""
    srv = start_refserver(40.0, 8.0)
    yield srv
    srv.stop()


@pytest.fixture
def make_refserver() -> Iterator[Callable[..., RefServer]]:
    started: list[RefServer] = []

    def make(ttft_ms: float, itl_ms: float, spin_ms: float = 2.0) -> RefServer:
        srv = start_refserver(ttft_ms, itl_ms, spin_ms)
        started.append(srv)
        return srv

    yield make
    for s in started:
        s.stop()
