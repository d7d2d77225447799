"""Pure load schedules: open-loop arrival times and each worker's share of a request budget.

Nothing here imports Locust, so the schedules are unit-tested directly; the Locust users only read
them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
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
