"""The three published methods. Each exposes `run(scan, progress=None) -> Results` on a PreparedScan
and reads only the shared preprocessing, its own network(s) and its catalogue entry."""
from .base import Method, get_method_class

__all__ = ["Method", "get_method_class"]
