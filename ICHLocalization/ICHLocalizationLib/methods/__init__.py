"""The three published methods. Each exposes `run(scan, progress=None) -> Results` on a PreparedScan
and reads only the shared preprocessing, its own network(s) and its catalogue entry.

The registry lives here, not in the base class, so that the concrete methods import `base` and
nothing imports back.
"""
import importlib

from .base import Method

REGISTRY = {"cascade": ("cascade3d", "ThreePlaneCascade"), "mil": ("weakly_supervised", "WeaklySupervisedDetector"),
            "unet": ("unet_segmenter", "UNetSegmenter")}


def get_method_class(name: str):
    """The Method subclass of a method name (its module is imported on first use)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(REGISTRY)}")
    module, cls = REGISTRY[name]
    return getattr(importlib.import_module(f".{module}", __name__), cls)


__all__ = ["Method", "REGISTRY", "get_method_class"]
