"""One streaming request against an OpenAI-compatible endpoint, timed as its bytes arrive.

Runs in a process that imported Locust first (gevent): see :mod:`bakeoff_loadtest.locust_users`.
"""

from __future__ import annotations

# isort: off
import locust  # noqa: F401  first: Locust monkey-patches the standard library for gevent
# isort: on

import contextlib
import json
import os
import socket
import time
from typing import Any

from gevent import GreenletExit
from geventhttpclient import HTTPClient
from geventhttpclient.url import URL

from bakeoff_loadtest.point_run import PointRun
from bakeoff_loadtest.records import FailureCause, RequestRecord, StreamTimer
from bakeoff_loadtest.spec import RunSpec

_BODY_SNIPPET = 300


class StreamClient:
    """Sends the requests of one load point and measures each stream."""

    def __init__(self, point: PointRun) -> None:
        self.point = point
        self.spec: RunSpec = point.spec
        self.headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        key = os.environ.get("BAKEOFF_API_KEY") or os.environ.get("OPENAI_API_KEY")
        if key:
            self.headers["Authorization"] = f"Bearer {key}"
        self._warm_resolver()

    def _warm_resolver(self) -> None:
        """Resolve the host once before timing: gevent's resolver starts lazily (a thread pool) on
        its first lookup, which would otherwise land in the first request's TTFT."""
        url = URL(self.spec.endpoint)
        # An unresolvable host is reported per request, with the URL.
        with contextlib.suppress(OSError):
            socket.getaddrinfo(url.host, url.port, 0, socket.SOCK_STREAM)

    def connection(self, concurrency: int) -> HTTPClient:
        return HTTPClient.from_url(
            URL(self.spec.endpoint),
            concurrency=concurrency,
            connection_timeout=self.spec.connect_timeout_s,
            network_timeout=self.spec.request_timeout_s,
            block_size=64 * 1024,
        )

    def run_request(self, http: HTTPClient, index: int) -> RequestRecord:
        point = self.point
        planned = point.sampler.request(index)
        if not planned.prompt_exact:
            point.inexact_prompts += 1
        body = json.dumps(planned.body(self.spec.api, self.spec.model)).encode()
        rec = RequestRecord(
            index=index,
            worker=point.worker,
            start_unix=0.0,
            requested_prompt_tokens=planned.prompt_tokens,
            requested_output_tokens=planned.output_tokens,
        )
        point.in_flight += 1
        resp: Any = None
        start = time.perf_counter()
        try:
            rec.start_unix = time.time()
            start = time.perf_counter()
            timer = StreamTimer(rec, start)
            try:
                resp = http.request("POST", self.spec.path, body=body, headers=self.headers)
            except GreenletExit:
                raise
            except TimeoutError as e:
                _fail(rec, FailureCause.TIMEOUT, f"no response within {self.spec.request_timeout_s}s: {e}")
            except Exception as e:
                _fail(rec, FailureCause.CONNECTION, f"{type(e).__name__}: {e} ({point.url})")
            else:
                point.heard(time.perf_counter())
                rec.status_code = int(resp.status_code)
                ctype = str(resp.get("content-type") or "")
                if not 200 <= rec.status_code < 300:
                    _fail(rec, FailureCause.HTTP_STATUS, f"HTTP {rec.status_code}: {_snippet(resp)}")
                elif not ctype.startswith("text/event-stream"):
                    _fail(
                        rec,
                        FailureCause.NOT_SSE,
                        f"Content-Type {ctype!r} is not text/event-stream: {_snippet(resp)}",
                    )
                else:
                    self._read_stream(resp, timer, rec)
            end = time.perf_counter()
            if rec.cause is None:
                timer.finish(end)
            else:
                rec.e2e_s = end - start
                rec.ok = False
        except GreenletExit:
            if point.cut is not None:  # the endpoint went silent: a failure, not the end of the point
                _fail(rec, FailureCause.TIMEOUT, point.cut)
            else:
                rec.cause = FailureCause.CANCELLED
                rec.detail = point.cancelled_because
            rec.ok = False
            rec.e2e_s = time.perf_counter() - start
            point.add(rec)
            raise
        except Exception as e:
            # A fault of the harness itself must show in the results, never vanish with the greenlet.
            rec.ok = False
            rec.e2e_s = time.perf_counter() - start
            _fail(rec, FailureCause.CLIENT_ERROR, f"load generator error: {type(e).__name__}: {e}")
        finally:
            point.in_flight -= 1
            if resp is not None:
                resp.release()
        point.add(rec)
        return rec

    def _read_stream(self, resp: Any, timer: StreamTimer, rec: RequestRecord) -> None:
        readline = resp.readline
        perf = time.perf_counter
        feed = timer.feed_line
        point = self.point
        try:
            while True:
                line = readline(b"\n")
                t = perf()
                if not line:
                    return
                point.last_heard = t
                feed(line.rstrip(b"\r\n").decode("utf-8", "replace"), t)
                if timer.failed:
                    return
        except GreenletExit:
            raise
        except TimeoutError as e:
            _fail(rec, FailureCause.TIMEOUT, f"stream stalled for {self.spec.request_timeout_s}s: {e}")
        except Exception as e:
            # A connection cut mid-stream: finish() reports it as truncated with this detail.
            rec.detail = f"{type(e).__name__}: {e}"[:_BODY_SNIPPET]


def _fail(rec: RequestRecord, cause: FailureCause, detail: str) -> None:
    rec.cause = cause
    rec.detail = detail[:_BODY_SNIPPET]


def _snippet(resp: Any) -> str:
    try:
        data = resp.read(_BODY_SNIPPET)
    except Exception as e:
        return f"(body unreadable: {e})"
    return bytes(data).decode("utf-8", "replace").strip()
