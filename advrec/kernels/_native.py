"""Loads the compiled core once. The modules of ``advrec.kernels`` are the only importers of
``advrec._core`` in the library (``tests/test_architecture.py`` holds every other module to it)."""
from __future__ import annotations

import sys
from pathlib import Path


def _missing_core_message() -> str:
    """Why ``_core`` is missing, and what to do: the usual cause is importing the source tree
    (Python puts the current folder first) while the built package is installed elsewhere."""
    here = Path(__file__).resolve().parents[1]  # the advrec folder being imported
    checkout = (here.parent / "pyproject.toml").is_file() and (here.parent / "csrc").is_dir()
    installed = None
    for entry in sys.path:
        if not entry or Path(entry).resolve() == here.parent:
            continue
        candidates = list(Path(entry).glob("advrec/_core*")) if Path(entry).is_dir() else []
        if candidates:
            installed = Path(entry) / "advrec"
            break
    if checkout and installed is not None:
        return (f"advrec was imported from the source checkout {here}, which has no compiled core, "
                f"while a built advrec is installed at {installed}: run from another folder (Python "
                "puts the current folder first on sys.path), or build in place for development "
                "with 'python -m pip install -e .'")
    if checkout:
        return (f"advrec's compiled core (advrec._core) is missing from the source checkout {here}: "
                "install the package with 'python -m pip install .' (or '-e .' for development)")
    return ("advrec's compiled core (advrec._core) is missing: reinstall the package with "
            "'python -m pip install advrec'")


try:
    from .. import _core
except ImportError as err:  # pragma: no cover - only in an unbuilt source tree
    raise ImportError(_missing_core_message()) from err

__all__ = ["_core"]
