"""One local HTTP endpoint per variant, in front of the variant's local replicas (a Service stand-in).

    endpoints = Endpoints().start()
    ep = endpoints.ensure("default", "llama-int8")             # http://127.0.0.1:<port>, stable
    endpoints.set_replicas("default", "llama-int8", {"llama-int8-predictor-abc": "http://127.0.0.1:41234"})
    # bakeoff loadtest --endpoint <ep.url> --model <served name>
    endpoints.stop()

Each variant gets a port of its own on 127.0.0.1 (chosen by the OS), so `bakeoff loadtest --endpoint`
and any OpenAI client take it as they would take a Service URL; the port stays the variant's for the
life of the `Endpoints`, whatever its replicas do. Every path is forwarded unchanged to one replica,
chosen by least outstanding requests (ties in turn), and the response is streamed through as it
arrives, so SSE token streams keep their timing. The replica that answered is named in the
`x-bakeoff-replica` response header. With no replica serving the endpoint answers 503 in vLLM's
error shape; a replica that refuses the connection is skipped for the next one.

All endpoints share one asyncio loop in one thread and one httpx connection pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

REPLICA_HEADER = "x-bakeoff-replica"
# Hop-by-hop headers (RFC 9110 section 7.6.1) and those the proxy sets itself.
_REQUEST_DROP = frozenset(
    {b"host", b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade"}
    | {b"content-length"}
)
_RESPONSE_DROP = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"trailer", b"upgrade"})


@dataclass(eq=False)
class Replica:
    """One replica behind an endpoint: its pod, its URL and what it is doing."""

    pod: str
    url: str
    outstanding: int = 0
    served: int = 0


@dataclass(eq=False)
class VariantEndpoint:
    """The endpoint of one variant: `url`, and the replicas it spreads requests over."""

    namespace: str
    variant: str
    url: str
    replicas: list[Replica] = field(default_factory=list)
    unavailable: int = 0
    _turn: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.variant)

    def pick(self, skip: frozenset[int] = frozenset()) -> Replica | None:
        """The replica with the fewest outstanding requests; among equals, the next in turn."""
        replicas = [r for r in self.replicas if id(r) not in skip]
        if not replicas:
            return None
        self._turn += 1
        start = self._turn % len(replicas)
        ordered = replicas[start:] + replicas[:start]
        return min(ordered, key=lambda r: r.outstanding)

    def served(self) -> dict[str, int]:
        """Requests each pod answered (counted when its response starts; removed replicas left out)."""
        return {r.pod: r.served for r in self.replicas}


class Endpoints:
    """The per-variant endpoints; `start()` runs their loop in a thread, `stop()` ends it."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._endpoints: dict[tuple[str, str], VariantEndpoint] = {}
        self._servers: dict[tuple[str, str], tuple[uvicorn.Server, asyncio.Task[None]]] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx.AsyncClient | None = None

    def start(self) -> Endpoints:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            # Streams last as long as a generation does: no read timeout; many at once under load.
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(None, connect=5.0),
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=512),
            )
            loop.call_soon(ready.set)
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="variant-endpoints", daemon=True)
        self._thread.start()
        ready.wait(timeout=10)
        return self

    def __enter__(self) -> Endpoints:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop every endpoint (in-flight streams get a second to finish) and the loop; idempotent."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=15)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        loop.close()

    async def _shutdown(self) -> None:
        for server, _ in self._servers.values():
            server.should_exit = True
        await asyncio.gather(*(task for _, task in self._servers.values()), return_exceptions=True)
        self._servers.clear()
        if self._client is not None:
            await self._client.aclose()

    # -- endpoints ----------------------------------------------------------------------------------

    def ensure(self, namespace: str, variant: str) -> VariantEndpoint:
        """The endpoint of a variant, started on a free port the first time it is asked for."""
        key = (namespace, variant)
        with self._lock:
            found = self._endpoints.get(key)
            if found is not None:
                return found
            if self._loop is None:
                raise RuntimeError("Endpoints is not started")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, 0))
            port = sock.getsockname()[1]
            endpoint = VariantEndpoint(namespace, variant, f"http://{self.host}:{port}")
            asyncio.run_coroutine_threadsafe(self._serve(endpoint, sock), self._loop).result(timeout=10)
            self._endpoints[key] = endpoint
            return endpoint

    def get(self, namespace: str, variant: str) -> VariantEndpoint | None:
        return self._endpoints.get((namespace, variant))

    def all(self) -> list[VariantEndpoint]:
        with self._lock:
            return list(self._endpoints.values())

    def set_replicas(self, namespace: str, variant: str, replicas: Mapping[str, str]) -> VariantEndpoint:
        """Serve the variant from exactly these replicas (pod name -> URL); counters of kept ones stay."""
        endpoint = self.ensure(namespace, variant)
        with self._lock:
            kept = {(r.pod, r.url): r for r in endpoint.replicas}
            # One assignment: the loop thread sees the old list or the new one, never a mix.
            endpoint.replicas = [kept.get((pod, url)) or Replica(pod, url) for pod, url in sorted(replicas.items())]
        return endpoint

    async def _serve(self, endpoint: VariantEndpoint, sock: socket.socket) -> None:
        config = uvicorn.Config(
            self._app(endpoint),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
        self._servers[endpoint.key] = (server, task)
        while not server.started:
            if task.done():
                task.result()  # raises why it stopped
                raise RuntimeError(f"the endpoint of {endpoint.key} stopped while starting")
            await asyncio.sleep(0.01)

    # -- the proxy ----------------------------------------------------------------------------------

    def _app(self, endpoint: VariantEndpoint) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                return
            await self._proxy(endpoint, scope, receive, send)

        return app

    async def _proxy(self, endpoint: VariantEndpoint, scope: Scope, receive: Receive, send: Send) -> None:
        assert self._client is not None
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            path += b"?" + scope["query_string"]
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _REQUEST_DROP]
        tried: set[int] = set()
        while True:
            replica = endpoint.pick(frozenset(tried))
            if replica is None:
                endpoint.unavailable += 1
                what = "no replica is serving" if not tried else "no replica accepted the connection"
                await _error(send, 503, f"{endpoint.namespace}/{endpoint.variant}: {what}")
                return
            tried.add(id(replica))
            request = self._client.build_request(
                scope["method"], replica.url + path.decode("latin-1"), headers=headers, content=bytes(body)
            )
            replica.outstanding += 1
            try:
                try:
                    response = await self._client.send(request, stream=True)
                except (httpx.ConnectError, httpx.ConnectTimeout):
                    continue  # gone or not listening yet: the next replica
                except httpx.HTTPError as exc:
                    await _error(send, 502, f"replica {replica.pod}: {type(exc).__name__}: {exc}")
                    return
                replica.served += 1
                try:
                    await self._relay(replica, response, receive, send)
                finally:
                    await response.aclose()
                return
            finally:
                replica.outstanding -= 1

    @staticmethod
    async def _relay(replica: Replica, response: httpx.Response, receive: Receive, send: Send) -> None:
        """Stream the replica's answer to the client; stop (closing the upstream stream, so the
        replica cancels the generation) when the client goes away."""
        headers = [(k, v) for k, v in response.headers.raw if k.lower() not in _RESPONSE_DROP]
        headers.append((REPLICA_HEADER.encode(), replica.pod.encode()))
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})

        async def pump() -> None:
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        streaming = asyncio.ensure_future(pump())
        watching = asyncio.ensure_future(disconnected())
        try:
            await asyncio.wait({streaming, watching}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (streaming, watching):
                task.cancel()
            await asyncio.gather(streaming, watching, return_exceptions=True)
        if streaming.done() and not streaming.cancelled() and streaming.exception() is not None:
            raise streaming.exception()  # type: ignore[misc]


async def _error(send: Send, status: int, message: str) -> None:
    body = json.dumps(
        {"error": {"message": message, "type": "ServiceUnavailableError", "param": None, "code": status}}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"retry-after", b"1")],
        }
    )
    await send({"type": "http.response.body", "body": body})
