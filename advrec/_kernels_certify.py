"""Wrappers of the FM certification kernels (re-exported by ``advrec.kernels``)."""
from __future__ import annotations

__all__: list = []
