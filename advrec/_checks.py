"""Scalar argument checks shared by every layer: a bad value is a ``ValueError`` naming the
argument, never a silent cast (``True`` is not 1, ``2.0`` is not 2)."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

INT64_MAX = int(np.iinfo(np.int64).max)
#: the largest seed a trainer takes: NumPy's legacy generator stops below 2**32 (the CLI keeps
#: its seeds below 2**31, so an experiment's second phase can use seed + 1)
SEED_MAX = 2**32 - 1


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def int_arg(x: Any, name: str, minimum: int = 0, maximum: Optional[int] = None,
            where: str = "") -> int:
    """``x`` as a Python int in ``[minimum, maximum]``; bools and floats are refused.

    ``where`` qualifies the upper bound (e.g. ``" on CUDA"``: a device limit, not a property of
    the argument).
    """
    if not _is_int(x):
        raise ValueError(f"{name} must be an int, got {type(x).__name__}")
    if x < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {x}")
    if maximum is not None and x > maximum:
        raise ValueError(f"{name} must be in [{minimum}, {maximum}]{where}, got {x}")
    return int(x)


def positive_int(x: Any, name: str, maximum: int = INT64_MAX) -> int:
    """``x`` as a Python int in ``[1, maximum]`` (counts, sizes, thread numbers)."""
    if not _is_int(x):
        raise ValueError(f"{name} must be a positive int, got {type(x).__name__}")
    if x < 1:
        raise ValueError(f"{name} must be a positive int, got {x}")
    if x > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {x}")
    return int(x)


def seed_arg(x: Any, name: str = "seed") -> int:
    """A random seed: an int in ``[0, SEED_MAX]`` (NumPy refuses negative seeds deep inside a
    fit, and one above 2**63 overflows; both are refused here, naming the argument)."""
    return int_arg(x, name, 0, SEED_MAX)
