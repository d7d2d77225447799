"""The tiny models now live in the package (`bakeoff_runtime.tinymodels`, `bakeoff tiny-models`)."""

from bakeoff_runtime.tinymodels import BUILT, FORMATS, KINDS, cache_root, placeholder, tiny_model

__all__ = ["BUILT", "FORMATS", "KINDS", "cache_root", "placeholder", "tiny_model"]
