"""The Locust users: closed-loop streams (sync and concurrency sweeps) and open-loop arrivals (rate
sweeps), each sending the requests of the load point it is given.

Locust is imported first, here and in every module of the harness's load-generating side
(:mod:`~bakeoff_loadtest.point_run`, :mod:`~bakeoff_loadtest.http_stream`,
:mod:`~bakeoff_loadtest.locust_runners`): Locust monkey-patches the standard library for gevent on
import, which must happen before anything imports ``ssl``. Import them only in a process dedicated
to load generation (``bakeoff_loadtest.runner`` starts one when needed).
"""

from __future__ import annotations

# isort: off
import locust  # noqa: F401  must stay the first import: it monkey-patches the standard library for gevent
# isort: on

import time
from typing import ClassVar

import gevent
import gevent.pool
from geventhttpclient import HTTPClient
from locust import User, constant, task

from bakeoff_loadtest.http_stream import StreamClient
from bakeoff_loadtest.point_run import PointRun
from bakeoff_loadtest.schedule import arrival_offsets
from bakeoff_loadtest.spec import RunSpec


class PointHolder:
    """Lets a user class created before a load point reach the point (and its client) once it exists."""

    def __init__(self) -> None:
        self.point: PointRun | None = None
        self.client: StreamClient | None = None

    def hold(self, point: PointRun) -> PointRun:
        self.client = StreamClient(point)
        self.point = point
        return point

    def get(self) -> tuple[PointRun, StreamClient]:
        if self.point is None or self.client is None:
            raise RuntimeError("the load point has not started yet")
        return self.point, self.client


class ClosedLoopUser(User):
    """One stream at a time, back to back: sync mode is one of these, concurrency N is N."""

    abstract = True
    holder: ClassVar[PointHolder]
    wait_time = constant(0)

    def on_start(self) -> None:
        self._http: HTTPClient | None = None

    @task
    def stream(self) -> None:
        point, client = self.holder.get()
        idx = point.take()
        if idx is None:
            gevent.sleep(0.05)  # the point's watcher ends the run
            return
        if self._http is None:
            self._http = client.connection(1)
        client.run_request(self._http, idx)

    def on_stop(self) -> None:
        if self._http is not None:
            self._http.close()


class OpenLoopUser(User):
    """Sends requests at scheduled arrival times, whatever the responses do (rate sweeps)."""

    abstract = True
    holder: ClassVar[PointHolder]
    wait_time = constant(0)

    def on_start(self) -> None:
        self._done = False

    @task
    def arrivals(self) -> None:
        if self._done:
            gevent.sleep(0.05)
            return
        point, client = self.holder.get()
        spec = point.spec
        cap = spec.max_in_flight
        pool = gevent.pool.Pool(cap)
        point.pools.append(pool)
        http = client.connection(cap)
        start = point.begin()
        offsets = arrival_offsets(point.level, spec.arrival, spec.seed, worker=point.worker, workers=point.workers)
        for off in offsets:
            at = start + off
            if at >= point.deadline:
                break
            delay = at - time.perf_counter()
            if delay > 0:
                gevent.sleep(delay)
            idx = point.take()
            if idx is None:
                break
            if pool.full():
                point.open_loop_waits += 1
                pool.wait_available()
            pool.spawn(client.run_request, http, idx)
        pool.join()
        self._done = True


def user_class(spec: RunSpec, holder: PointHolder) -> type[User]:
    """A concrete user class for this spec, named the same in master and workers."""
    base: type[User] = OpenLoopUser if spec.open_loop else ClosedLoopUser
    name = "BakeoffArrivals" if spec.open_loop else "BakeoffStreams"
    return type(name, (base,), {"holder": holder, "host": spec.endpoint, "abstract": False})


def users_for(spec: RunSpec, level: float, workers: int = 1) -> int:
    return workers if spec.open_loop else int(level)
