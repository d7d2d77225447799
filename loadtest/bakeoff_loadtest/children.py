"""The harness's child processes: started so that none outlives its parent, stopped as a group.

A load process runs in a session of its own, so a terminal's Ctrl-C reaches only the command that
started it, which then stops the load in order (measurements so far are kept). Every child asks the
kernel for SIGTERM when its parent dies (Linux's parent-death signal), so one whose parent was
killed without any cleanup stops too. Locust workers stay in their master's process group, so
stopping the group stops them all.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from collections.abc import Sequence
from typing import Any

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: only the prctl call, nothing that takes a lock.
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def start(cmd: Sequence[str], *, own_session: bool, **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start ``cmd``; it gets SIGTERM when this process dies, and with ``own_session`` its own session."""
    return subprocess.Popen(
        list(cmd),
        start_new_session=own_session,
        preexec_fn=_die_with_parent,  # noqa: PLW1509  only prctl runs between fork and exec
        **kwargs,
    )


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL every process left in the group ``proc`` leads (it was started with its own session),
    also after ``proc`` itself has exited."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def stop(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``; waits for the process in both cases."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
