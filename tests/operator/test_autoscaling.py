"""Table tests of the autoscaling decision (`autoscaling.decide`), with an injected clock."""

from __future__ import annotations

from typing import Any

import pytest
from bakeoff_operator.autoscaling.decide import (
    Capacity,
    Decisions,
    Limit,
    Policy,
    VariantHistory,
    VariantLoad,
    decide,
)
from bakeoff_operator.autoscaling.inventory import measured_now

CAP = Capacity(tokens_per_second=1000.0, source="measured")


def policy(name: str = "v", **kw: Any) -> Policy:
    fields: dict[str, Any] = {
        "variant": name,
        "gpu_class": "h100",
        "gpus_per_replica": 1,
        "min_replicas": 1,
        "max_replicas": 8,
        "scale_down_delay_s": 60.0,
    }
    fields.update(kw)
    return Policy(**fields)


def load(tokens: float = 0.0, waiting: float = 0.0, running: float = 0.0, kv: float | None = None) -> VariantLoad:
    return VariantLoad(waiting=waiting, running=running, output_tokens_per_s=tokens, kv_cache_usage=kv)


def one(
    p: Policy,
    observed: VariantLoad | None,
    replicas: int,
    *,
    now: float = 1000.0,
    free: int = 16,
    history: VariantHistory | None = None,
    capacity: Capacity | None = CAP,
) -> Decisions:
    past = history or VariantHistory(replicas=replicas, last_active=now)
    caps = {p.key: capacity} if capacity else {}
    return decide({p.key: observed}, [p], caps, {"h100": free}, {p.key: past}, now)


@pytest.mark.parametrize(
    ("p", "observed", "replicas", "desired", "limit", "why"),
    [
        (policy(), load(tokens=1500), 2, 2, Limit.NONE, "keeps 2"),
        (policy(), load(tokens=1900), 2, 3, Limit.NONE, "scales up 2 -> 3"),
        (policy(), load(tokens=9000), 1, 8, Limit.MAX_REPLICAS, "capped at maxReplicas 8"),
        (policy(tokens_per_second_per_replica=0.5), load(tokens=1500), 2, 3, Limit.NONE, "50% of 1000/s"),
        (policy(queue_depth=4), load(tokens=100, waiting=20), 2, 5, Limit.NONE, "20 waiting"),
        (policy(kv_cache_usage=0.7), load(tokens=100, kv=0.95), 2, 3, Limit.NONE, "KV cache 95% used"),
        (policy(hybrid=True, max_num_seqs=64), load(tokens=100, running=120, kv=0.1), 2, 3, Limit.NONE,
         "120 running sequences"),
        (policy(hybrid=True, max_num_seqs=64), load(tokens=100, running=40, kv=0.99), 2, 2, Limit.NONE,
         "holding 2"),
        (policy(), None, 3, 3, Limit.METRICS_MISSING, "no metrics"),
        (policy(min_replicas=0, scale_to_zero=True), None, 2, 2, Limit.METRICS_MISSING, "holding 2"),
        (policy(min_replicas=0, scale_to_zero=True), load(waiting=1), 0, 1, Limit.NONE, "while scaled to zero"),
    ],
    ids=["steady-within-tolerance", "up-on-tokens", "max-replicas", "token-target", "queue", "kv-dense",
         "hybrid-running-seqs", "hybrid-ignores-kv", "metrics-missing-holds", "missing-never-zero",
         "wakes-from-zero"],
)  # fmt: skip
def test_signals_and_bounds(  # noqa: PLR0917
    p: Policy, observed: VariantLoad | None, replicas: int, desired: int, limit: Limit, why: str
) -> None:
    d = one(p, observed, replicas).decisions[0]
    assert (d.desired, d.limit) == (desired, limit), d.reason
    assert why in d.reason


def test_down_slowly_within_the_stabilisation_window_then_down() -> None:
    p = policy(scale_down_delay_s=60.0)
    first = one(p, load(tokens=3900), 5, now=0.0)
    assert first.decisions[0].desired == 5
    history = first.history[p.key]
    later = decide({p.key: load(tokens=800)}, [p], {p.key: CAP}, {"h100": 16}, {p.key: history}, 30.0)
    assert later.decisions[0].desired == 5, later.decisions[0].reason
    assert "stabilisation window" in later.decisions[0].reason
    after = decide({p.key: load(tokens=800)}, [p], {p.key: CAP}, {"h100": 16}, later.history, 61.0)
    assert after.decisions[0].desired == 1, after.decisions[0].reason


def test_a_steady_load_does_not_flap() -> None:
    p = policy()
    history: dict[str, VariantHistory] = {p.key: VariantHistory(replicas=3, last_active=0.0)}
    counts = []
    for step, tokens in enumerate([2300, 2500, 2200, 2450, 2350, 2280] * 5):
        out = decide({p.key: load(tokens=tokens)}, [p], {p.key: CAP}, {"h100": 16}, history, float(step * 5))
        history = out.history
        counts.append(out.decisions[0].desired)
    assert set(counts) == {3}, counts


def test_scale_to_zero_only_after_the_delay_without_load() -> None:
    p = policy(min_replicas=0, scale_to_zero=True, scale_down_delay_s=60.0)
    quiet = VariantHistory(replicas=1, last_active=100.0)
    early = one(p, load(), 1, now=130.0, history=quiet)
    assert early.decisions[0].desired == 1
    late = one(p, load(), 1, now=161.0, history=quiet)
    assert late.decisions[0].desired == 0
    assert "scaled to zero" in late.decisions[0].reason


def test_short_gpus_cap_the_variant_with_the_least_unmet_demand_per_gpu() -> None:
    small = policy("small", gpus_per_replica=1)
    big = policy("big", gpus_per_replica=4)
    observed = {"small": load(tokens=3000), "big": load(tokens=3000)}
    caps = {"small": CAP, "big": Capacity(tokens_per_second=2000.0, source="predicted")}
    history = {"small": VariantHistory(replicas=1), "big": VariantHistory(replicas=1)}
    out = decide(observed, [small, big], caps, {"h100": 4}, history, 0.0)
    s, b = out.get("small"), out.get("big")
    assert s is not None
    assert b is not None
    # small: 2000 tok/s unmet per GPU; big: 1000/4 = 250 per GPU: small grows first, big is capped.
    assert (s.desired, s.limit) == (4, Limit.NONE)
    assert (b.desired, b.limit) == (1, Limit.INSUFFICIENT_GPU)
    assert "1 h100 GPU(s) free, 4 needed per replica" in b.reason


def test_restoring_min_replicas_comes_first() -> None:
    hungry = policy("hungry")
    below = policy("below", min_replicas=2)
    observed = {"hungry": load(tokens=9000), "below": load(tokens=0)}
    history = {"hungry": VariantHistory(replicas=1), "below": VariantHistory(replicas=1)}
    out = decide(observed, [hungry, below], {"hungry": CAP, "below": CAP}, {"h100": 1}, history, 0.0)
    assert out.get("below").desired == 2  # type: ignore[union-attr]
    assert out.get("hungry").limit is Limit.INSUFFICIENT_GPU  # type: ignore[union-attr]


def test_without_capacity_the_queue_and_saturation_still_act() -> None:
    d = one(policy(queue_depth=2), load(waiting=9), 1, capacity=None).decisions[0]
    assert d.desired == 5
    assert d.capacity_tokens_per_second is None


def test_a_variant_a_bakeoff_run_measures_keeps_its_count_until_the_run_ends() -> None:
    p = policy(min_replicas=1, max_replicas=8, scale_to_zero=True)
    other = policy("other")
    history = {p.key: VariantHistory(replicas=2, last_active=0.0), other.key: VariantHistory(replicas=1)}
    observed = {p.key: load(tokens=9000, waiting=50), other.key: load(tokens=1900)}
    caps = {p.key: CAP, other.key: CAP}
    held = {p.key: "run bo-20260101-100000 of BakeOff bo"}
    during = decide(observed, [p, other], caps, {"h100": 16}, history, 10.0, held=held)
    d = during.get(p.key)
    assert d is not None
    assert (d.desired, d.limit) == (2, Limit.BAKEOFF_RUN)
    assert d.reason == "keeps 2: run bo-20260101-100000 of BakeOff bo is measuring it at a fixed count"
    assert during.get(other.key).desired == 3  # type: ignore[union-attr]  # the others scale as ever (1900/s at 80%)
    # Held even without metrics, and never to zero while measured.
    quiet = decide({}, [p], caps, {"h100": 16}, during.history, 1000.0, held=held)
    assert (quiet.decisions[0].desired, quiet.decisions[0].limit) == (2, Limit.BAKEOFF_RUN)
    # The run over, the load scales it at once.
    after = decide(observed, [p], caps, {"h100": 16}, quiet.history, 1010.0)
    assert (after.decisions[0].desired, after.decisions[0].limit) == (8, Limit.MAX_REPLICAS)


def test_the_variants_a_running_bakeoff_run_measures() -> None:
    def bakeoff(name: str, *runs: dict[str, Any]) -> dict[str, Any]:
        return {"metadata": {"namespace": "team", "name": name}, "status": {"lastRuns": list(runs)}}

    bodies = [
        bakeoff(
            "a", {"name": "a-2", "outcome": "Running", "variants": ["x", "y"]}, {"name": "a-1", "outcome": "Failed"}
        ),
        bakeoff("b", {"name": "b-1", "outcome": "Succeeded", "variants": ["z"]}),
        bakeoff("c"),
        {"metadata": {"namespace": "team", "name": "d"}},
    ]
    assert measured_now(bodies) == {"team/x": "run a-2 of BakeOff a", "team/y": "run a-2 of BakeOff a"}
