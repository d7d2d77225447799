"""Observability as code: Prometheus rules and Grafana dashboards, generated from Python. Pure.

- `spec`: `bakeoff_variant_spec`, what the operator exports of each variant (GPUs per replica, GPU
  class, sequence limit, SLO) so that PromQL can price and judge it;
- `rules`: recording rules (cost per 1M tokens, tokens/s per GPU, latency quantiles, saturation) and
  alerts, per variant;
- `dashboards`: the overview and variant dashboards (grafana-foundation-sdk);
- `files`: what the chart ships, written by `hack/generate.sh` (`bakeoff_operator.chartgen`).

docs/observability.md describes every rule and panel.
"""
