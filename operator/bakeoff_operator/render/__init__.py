"""Pure rendering of the Kubernetes objects the operator owns."""
