"""Lazy imports of the ``distributed`` extra (Ray, pyarrow), with an error that names the extra."""
from __future__ import annotations

import importlib
from typing import Any

EXTRA_HINT = "pip install 'advrec[distributed]'"


def _need(module: str, what: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"advrec.distributed needs {what} ({module} is not installed): "
                          f"{EXTRA_HINT}") from err


def ray() -> Any:
    """The ``ray`` module (the cluster runtime)."""
    return _need("ray", "Ray")


def pyarrow() -> Any:
    """The ``pyarrow`` module (Arrow arrays)."""
    return _need("pyarrow", "pyarrow")


def parquet() -> Any:
    """``pyarrow.parquet`` (the instance and result files)."""
    pyarrow()
    return _need("pyarrow.parquet", "pyarrow")
