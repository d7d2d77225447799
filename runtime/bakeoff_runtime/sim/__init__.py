"""A vLLM-compatible server whose step times come from the performance model."""
