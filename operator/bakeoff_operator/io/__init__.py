"""Kubernetes and Prometheus I/O of the operator: thin clients the handlers call; no decisions here."""
