"""Pure load schedules: open-loop arrival times and stage ``tick()`` functions.

Nothing here imports Locust, so the schedules are unit-tested directly; the Locust users and shapes
only read them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal


def arrival_offsets(
    rate_rps: float,
    process: Literal["constant", "poisson"],
    seed: int,
    *,
    worker: int = 0,
    workers: int = 1,
) -> Iterator[float]:
    """Seconds after the start at which this worker sends its requests (endless).

    Each of ``workers`` workers offers ``rate_rps / workers``. Constant arrivals are phase-shifted by
    worker so that the merged stream is evenly spaced at ``rate_rps``; Poisson streams are
    independent, and the superposition of independent Poisson processes is Poisson at the total rate.
    """
    if rate_rps <= 0:
        raise ValueError(f"rate must be > 0 requests/s, got {rate_rps}")
    if not 0 <= worker < workers:
        raise ValueError(f"worker index {worker} outside 0..{workers - 1}")
    per_worker = rate_rps / workers
    if process == "constant":
        k = 0
        while True:
            yield (k * workers + worker) / rate_rps
            k += 1
    rng = random.Random(f"arrivals:{seed}:{worker}")
    t = 0.0
    while True:
        t += rng.expovariate(per_worker)
        yield t


def share(total: int, worker: int, workers: int) -> int:
    """This worker's share of ``total`` requests: the split differs by at most one."""
    base, extra = divmod(total, workers)
    return base + (1 if worker < extra else 0)


@dataclass(frozen=True, slots=True)
class Stage:
    """Hold ``users`` streams until ``end_s`` seconds after the start."""

    end_s: float
    users: int


def stages_tick(elapsed_s: float, stages: Sequence[Stage]) -> tuple[int, float] | None:
    """LoadTestShape.tick as a pure function: (users, spawn rate) for the stage, None past the end.

    The spawn rate equals the user count so each stage reaches its concurrency within one second.
    """
    for st in stages:
        if elapsed_s < st.end_s:
            return (st.users, float(max(1, st.users)))
    return None
