"""Wrappers of the Gram extreme-entry selection kernel (re-exported by ``advrec.kernels``)."""
from __future__ import annotations

__all__: list = []
