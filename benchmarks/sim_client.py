"""A minimal asyncio streaming client for the simulator benchmarks.

Plain HTTP/1.1 over asyncio streams with chunked decoding and SSE parsing: cheap enough that one
client process can hold hundreds of streams without its own overhead colouring the timings.
Timing definitions are Bakeoff's: TTFT = request start to the first content token; ITL = gaps
between content tokens; output tokens come from the server's usage chunk.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class StreamResult:
    ok: bool
    start: float
    ttft_s: float = 0.0
    e2e_s: float = 0.0
    itl_s: list[float] = field(default_factory=list)
    completion_tokens: int = 0
    prompt_tokens: int = 0
    content_chunks: int = 0
    error: str = ""


async def stream_completion(url: str, body: dict[str, Any], timeout_s: float = 600.0) -> StreamResult:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    payload = json.dumps({**body, "stream": True, "stream_options": {"include_usage": True}}).encode()
    start = time.perf_counter()
    result = StreamResult(ok=False, start=start)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, TimeoutError) as err:
        result.error = f"connect: {err}"
        return result
    try:
        writer.write(
            b"POST /v1/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % (host.encode(), len(payload)) + payload
        )
        await writer.drain()
        status = await reader.readline()
        if b" 200 " not in status:
            result.error = status.decode(errors="replace").strip()
            return result
        chunked = False
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            if line.lower().startswith(b"transfer-encoding:") and b"chunked" in line.lower():
                chunked = True
        buffer = b""
        last: float | None = None
        done = False
        while not done:
            if chunked:
                size_line = await reader.readline()
                size = int(size_line.strip() or b"0", 16)
                if size == 0:
                    break
                data = await reader.readexactly(size + 2)
                buffer += data[:-2]
            else:
                data = await reader.read(65536)
                if not data:
                    break
                buffer += data
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                if not event.startswith(b"data: "):
                    continue
                content = event[6:]
                if content == b"[DONE]":
                    done = True
                    break
                chunk = json.loads(content)
                if chunk.get("usage"):
                    result.completion_tokens = int(chunk["usage"]["completion_tokens"])
                    result.prompt_tokens = int(chunk["usage"]["prompt_tokens"])
                choices = chunk.get("choices") or []
                if choices and choices[0].get("text"):
                    now = time.perf_counter()
                    if last is None:
                        result.ttft_s = now - start
                    else:
                        result.itl_s.append(now - last)
                    last = now
                    result.content_chunks += 1
        result.e2e_s = time.perf_counter() - start
        result.ok = done
        if not done:
            result.error = "stream ended without [DONE]"
        return result
    except (OSError, asyncio.IncompleteReadError, ValueError) as err:
        result.error = f"{type(err).__name__}: {err}"
        return result
    finally:
        writer.close()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def proc_rss_mib(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process, MiB."""
    fields: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = float(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process."""
    import os

    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks
