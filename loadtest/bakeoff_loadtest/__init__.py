"""Bakeoff load harness: workloads, Locust users, timings, statistics, cost per 1M tokens, reports."""
