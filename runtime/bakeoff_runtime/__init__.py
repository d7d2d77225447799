"""Bakeoff runtime core: formats, architectures, GPU classes, memory fit, vLLM arguments, performance model."""
