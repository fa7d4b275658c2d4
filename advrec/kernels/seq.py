"""Cascade effects of padded user sequences (``csrc/seq/cascade.{h,cpp}``; CPU only; CAT, Tan et
al., Algorithm 1 / eq. 11).

``cascade_effects`` takes numpy arrays of any integer dtype (converted to int64) and CPU torch
tensors and returns the same kind. The core validates every entry (ids >= -1, right-aligned) and
computes in linear time; ``advrec.training.cascade_effects`` is the documented public entry.
"""
from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np
import torch

from ._args import INT64_MAX, positive_int
from ._native import _core

__all__ = ["cascade_effects", "CASCADE_COMPONENTS", "CASCADE_NORMALIZATIONS"]

CASCADE_COMPONENTS = ("sequence", "cross", "both")
CASCADE_NORMALIZATIONS = (None, "minmax", "inverse-mean")

MAX_THREADS = 256


def _sequences(x: Any) -> np.ndarray:
    """int64 C-contiguous [m, T] from a numpy array or a CPU tensor of integers."""
    if isinstance(x, torch.Tensor):
        if x.device.type != "cpu":
            raise ValueError(f"sequences must be a CPU tensor, got one on {x.device}")
        if x.dtype == torch.bool or x.is_floating_point() or x.is_complex():
            raise ValueError(f"sequences must hold integer item ids, got dtype {str(x.dtype)[6:]}")
        x = x.detach().numpy()
    if not isinstance(x, np.ndarray):
        raise ValueError(f"sequences must be a numpy array or torch tensor, got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"sequences must be 2-D [users, T], got shape {x.shape}")
    if x.dtype == np.bool_ or not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"sequences must hold integer item ids, got dtype {x.dtype}")
    if x.dtype == np.uint64 and x.size and int(x.max()) > INT64_MAX:
        raise ValueError(f"sequences holds an id above {INT64_MAX} (int64's max), got {int(x.max())}")
    return np.ascontiguousarray(x, dtype=np.int64)


def cascade_effects(
    sequences: Union[np.ndarray, torch.Tensor],
    batch_size: int,
    components: str = "both",
    normalize: Optional[str] = None,
    *,
    threads: Optional[int] = None,
) -> Union[np.ndarray, torch.Tensor]:
    """Cascade effect of every position of right-aligned padded sequences, float32 [m, T].

    See ``advrec.training.cascade_effects`` for the formula. ``threads``: OpenMP threads for this
    call (default: OpenMP's); the result is bit-identical for any count.
    """
    is_tensor = isinstance(sequences, torch.Tensor)
    b = positive_int(batch_size, "batch_size")
    if not isinstance(components, str) or components not in CASCADE_COMPONENTS:
        raise ValueError(f"components must be one of {CASCADE_COMPONENTS}, got {components!r}")
    if normalize is not None and (not isinstance(normalize, str)
                                  or normalize not in CASCADE_NORMALIZATIONS):
        raise ValueError(f"normalize must be one of {CASCADE_NORMALIZATIONS}, got {normalize!r}")
    nt = 0 if threads is None else positive_int(threads, "threads")
    if nt > MAX_THREADS:  # asking OpenMP for thousands of threads can abort the process
        raise ValueError(f"threads must be at most {MAX_THREADS}, got {nt}")
    seq = _sequences(sequences)
    out, _ = _core.cascade_effects(seq, b, components, "none" if normalize is None else normalize,
                                   nt, "auto")
    return torch.from_numpy(out) if is_tensor else out
