"""Shared test support for Bakeoff: a real Kubernetes control plane and its pytest fixtures."""
