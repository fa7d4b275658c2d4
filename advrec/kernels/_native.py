"""Loads the compiled core once. The modules of ``advrec.kernels`` are the only importers of
``advrec._core`` in the library (``tests/test_architecture.py`` holds every other module to it)."""
try:
    from .. import _core
except ImportError as err:  # pragma: no cover - only in an unbuilt source tree
    raise ImportError(
        "advrec's compiled core (advrec._core) is missing: install the package with "
        "'python -m pip install .', or build it in place (see docs/architecture.md)") from err

__all__ = ["_core"]
