"""A reference OpenAI-compatible streaming server with exactly known timings.

It checks the harness, not a model: every stream sends its first content token ``ttft_ms`` after the
request arrived and each later one ``itl_ms`` after the previous, on absolute deadlines so lateness
never accumulates, and reports usage exactly (prompt tokens = whitespace-separated words, output
tokens = max_tokens). ``GET /stats`` reports how late the server itself was, so a measurement error
can be split between server and client. The ``model`` name selects a failure to exhibit:

- ``fail-500``: HTTP 500 with a JSON error; ``not-sse``: HTTP 200 with a JSON (non-stream) body;
- ``no-usage``: a stream without the usage chunk; ``truncate``: the connection closes mid-stream;
- ``error-event``: an error event mid-stream; ``multi``: two tokens per chunk (usage stays exact);
- ``hang``: reads the request and never answers; ``stall``: streams half the tokens, then nothing.

Run: ``python -m bakeoff_loadtest.refserver --port 0 --ttft-ms 50 --itl-ms 10``; it prints
``PORT <n>`` on stdout once listening. Standard library only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from typing import Any


class Lateness:
    """Running record of how late the server sent chunks relative to their deadlines (seconds)."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    def add(self, late: float) -> None:
        if len(self.samples) < 2_000_000:
            self.samples.append(late)

    def summary(self) -> dict[str, float]:
        s = sorted(self.samples)
        if not s:
            return {"count": 0}
        n = len(s)
        return {
            "count": n,
            "mean_ms": sum(s) / n * 1000,
            "p50_ms": s[n // 2] * 1000,
            "p99_ms": s[min(n - 1, int(n * 0.99))] * 1000,
            "max_ms": s[-1] * 1000,
        }


class RefServer:
    def __init__(self, ttft_ms: float, itl_ms: float, spin_ms: float = 0.0) -> None:
        self.ttft = ttft_ms / 1000.0
        self.itl = itl_ms / 1000.0
        self.spin = spin_ms / 1000.0
        self.late = Lateness()
        self.sent_ttft = Lateness()
        self.sent_itl = Lateness()
        self.requests = 0
        # What each finished stream actually sent, in completion order (bounded).
        self.sent: list[dict[str, Any]] = []

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until ``deadline``; the event loop wakes up to 1 ms late, so the last ``spin``
        seconds are spent yielding in a loop (precise, but costs CPU: for few streams only)."""
        delay = deadline - time.perf_counter()
        if delay > self.spin:
            await asyncio.sleep(delay - self.spin)
        while time.perf_counter() < deadline:
            await asyncio.sleep(0)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                t0 = time.perf_counter()
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = [*lines[0].split(" "), "", ""][:3]
                headers = {}
                for ln in lines[1:]:
                    k, _, v = ln.partition(":")
                    headers[k.strip().lower()] = v.strip()
                n = int(headers.get("content-length", "0") or 0)
                body = await reader.readexactly(n) if n else b""
                t0 = time.perf_counter()
                keep = await self.route(method, path, body, writer, t0)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def route(self, method: str, path: str, body: bytes, w: asyncio.StreamWriter, t0: float) -> bool:
        if method == "GET" and path == "/health":
            return await self.send_json(w, 200, {"status": "ok"})
        if method == "GET" and path == "/stats":
            stats = {
                "requests": self.requests,
                "lateness": self.late.summary(),
                "sent_ttft": self.sent_ttft.summary(),
                "sent_itl": self.sent_itl.summary(),
                "sent": self.sent[-1000:],
            }
            return await self.send_json(w, 200, stats)
        if method == "POST" and path == "/stats/reset":
            self.late = Lateness()
            self.sent_ttft = Lateness()
            self.sent_itl = Lateness()
            self.sent = []
            self.requests = 0
            return await self.send_json(w, 200, {"ok": True})
        try:
            req: Any = json.loads(body or b"{}")
        except ValueError:
            return await self.send_json(w, 400, {"error": {"message": "body is not JSON"}})
        if method == "POST" and path == "/tokenize":
            words = _words(req)
            return await self.send_json(w, 200, {"count": words, "tokens": list(range(words))})
        if method == "POST" and path in ("/v1/completions", "/v1/chat/completions"):
            self.requests += 1
            return await self.complete(req, path.endswith("chat/completions"), w, t0)
        return await self.send_json(w, 404, {"error": {"message": f"no route {method} {path}"}})

    async def send_json(self, w: asyncio.StreamWriter, status: int, obj: Any) -> bool:
        data = json.dumps(obj).encode()
        w.write(
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode()
            + data
        )
        await w.drain()
        return True

    async def complete(self, req: dict[str, Any], chat: bool, w: asyncio.StreamWriter, t0: float) -> bool:
        model = str(req.get("model", "ref"))
        max_tokens = int(req.get("max_tokens") or 16)
        prompt_tokens = _words(req)
        if model == "fail-500":
            return await self.send_json(w, 500, {"error": {"message": "reference failure"}})
        if model == "not-sse":
            return await self.send_json(w, 200, {"choices": [{"text": "x"}], "usage": {}})
        if model == "hang":
            await asyncio.Event().wait()  # until the client hangs up (the task is cancelled with the server)
        w.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )

        def event(obj: Any) -> bytes:
            data = b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n"
            return f"{len(data):x}\r\n".encode() + data + b"\r\n"

        rid = f"ref-{self.requests}"
        if chat:
            w.write(event({"id": rid, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}))
        per_chunk = 2 if model == "multi" else 1
        chunks = (max_tokens + per_chunk - 1) // per_chunk
        last = 0.0
        ttft_sent = 0.0
        first_unix = 0.0
        t0_unix = time.time() - (time.perf_counter() - t0)
        gaps: list[float] = []
        for k in range(chunks):
            deadline = t0 + self.ttft + k * self.itl
            await self.sleep_until(deadline)
            if model == "truncate" and k == chunks // 2:
                await w.drain()
                w.transport.abort()
                return False
            if model == "stall" and k == chunks // 2:
                await w.drain()
                await asyncio.Event().wait()
            if model == "error-event" and k == chunks // 2:
                w.write(event({"error": {"message": "reference error event", "code": 500}}))
                break
            text = "tok " * min(per_chunk, max_tokens - k * per_chunk)
            choice: dict[str, Any] = {"index": 0, "delta": {"content": text}} if chat else {"index": 0, "text": text}
            w.write(event({"id": rid, "choices": [choice]}))
            now = time.perf_counter()
            self.late.add(now - deadline)
            if k == 0:
                ttft_sent = now - t0
                first_unix = time.time()
                self.sent_ttft.add(ttft_sent)
            else:
                gaps.append(now - last)
                self.sent_itl.add(now - last)
            last = now
            await w.drain()
        if model != "no-usage":
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": max_tokens,
                "total_tokens": prompt_tokens + max_tokens,
            }
            w.write(event({"id": rid, "choices": [], "usage": usage}))
        w.write(event(b"[DONE]"))
        w.write(b"0\r\n\r\n")
        await w.drain()
        if len(self.sent) < 100_000:
            self.sent.append(
                {
                    "key": _key(req),
                    "t0_unix": t0_unix,
                    "first_unix": first_unix,
                    "ttft_ms": ttft_sent * 1000,
                    "itl_ms": [g * 1000 for g in gaps],
                }
            )
        return True


def _key(req: dict[str, Any]) -> str:
    """The first words of the prompt: lets a benchmark pair its requests with the server's."""
    if isinstance(req.get("messages"), list):
        text = " ".join(str(m.get("content", "")) for m in req["messages"] if isinstance(m, dict))
    else:
        text = str(req.get("prompt", ""))
    return " ".join(text.split()[:16])


def _words(req: dict[str, Any]) -> int:
    if "messages" in req and isinstance(req["messages"], list):
        return sum(len(str(m.get("content", "")).split()) for m in req["messages"] if isinstance(m, dict))
    prompt = req.get("prompt", "")
    return len(prompt.split()) if isinstance(prompt, str) else 0


async def serve(host: str, port: int, ttft_ms: float, itl_ms: float, spin_ms: float = 0.0) -> None:
    srv = RefServer(ttft_ms, itl_ms, spin_ms)
    server = await asyncio.start_server(srv.handle, host, port, backlog=4096, limit=1 << 24)
    bound = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"PORT {bound}\n")
    sys.stdout.flush()
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bakeoff_loadtest.refserver", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--ttft-ms", type=float, default=50.0)
    ap.add_argument("--itl-ms", type=float, default=10.0)
    ap.add_argument("--spin-ms", type=float, default=0.0, help="busy-yield this long before each send")
    a = ap.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(a.host, a.port, a.ttft_ms, a.itl_ms, a.spin_ms))


if __name__ == "__main__":
    main()
