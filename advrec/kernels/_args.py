"""Argument conversion and checks shared by the kernel wrappers: the Python twin of
``csrc/bind_util.h``.

The core takes contiguous buffers of one dtype and rejects anything else; these helpers turn
what users pass (numpy arrays, lists, CPU or CUDA tensors) into those buffers, refusing what
would silently change meaning (floats or bools as ids, a ragged list), and name the argument in
every error. Device twins check on the device with torch ops and the same messages.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import numpy as np
import torch

from .._checks import INT64_MAX, int_arg, positive_int
from ._native import _core

__all__ = ["INT64_MAX", "int_arg", "positive_int", "is_tensor", "dtype_name", "int_array", "csr_pair", "as_csr",
           "index_tensor", "exact_tensor", "first_true", "require_cuda", "stream_of"]


def is_tensor(x: Any) -> bool:
    return isinstance(x, torch.Tensor)


def dtype_name(dtype: Any) -> str:
    """``float32`` for ``torch.float32`` and ``np.float32`` alike."""
    return str(dtype).replace("torch.", "")


def int_array(x: Any, name: str, ndim: Optional[int] = 1, cpu_only: Optional[str] = None) -> np.ndarray:
    """Integer ids as a C-contiguous int64 array (a view where possible).

    Floats and bools are refused, not truncated; uint64 above int64's range is an IndexError.
    ``ndim`` None accepts any rank. ``cpu_only``: the reason a device tensor is refused (else
    it is copied to the host).
    """
    if is_tensor(x):
        if cpu_only is not None and x.device.type != "cpu":
            raise ValueError(f"{name} is on {x.device}, but {cpu_only}")
        if x.numel() and (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
            raise ValueError(f"{name} must hold integers, got dtype {dtype_name(x.dtype)}")
        x = x.detach().cpu()
        if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:  # empty here
            x = x.to(torch.int64)  # (bfloat16 has no numpy twin)
        x = x.numpy()
    try:
        a = np.asarray(x)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be array-like: {err}") from None
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if a.size and (a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{name} must hold integers, got dtype {a.dtype}")
    if a.dtype == np.uint64 and a.size and int(a.max()) > INT64_MAX:
        raise IndexError(f"{name} holds {int(a.max())}, outside the int64 range")
    return np.asarray(a, dtype=np.int64, order="C")  # (ascontiguousarray would make 0-D 1-D)


def csr_pair(csr: Optional[Sequence[Any]], name: str) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """An optional CSR ``(indptr, indices)`` as two int64 vectors; the core checks the structure."""
    if csr is None:
        return None, None
    if not isinstance(csr, (tuple, list)) or len(csr) != 2:
        raise ValueError(f"{name} must be a pair (indptr, indices)")
    return int_array(csr[0], f"{name} indptr"), int_array(csr[1], f"{name} indices")


def as_csr(indptr: Any, indices: Any, name: str = "") -> Tuple[np.ndarray, np.ndarray]:
    """A CSR checked in full here (as the core's ``check_csr_structure``), for callers that
    slice it before any kernel sees it. ``name`` prefixes the messages (``"hist"`` ->
    ``"hist indptr must start at 0"``)."""
    pre = f"{name} " if name else ""
    indptr, indices = int_array(indptr, f"{pre}indptr"), int_array(indices, f"{pre}indices")
    if len(indptr) < 1 or indptr[0] != 0:
        raise ValueError(f"{pre}indptr must start at 0")
    if np.any(np.diff(indptr) < 0):
        raise ValueError(f"{pre}indptr must be non-decreasing")
    if indptr[-1] != len(indices):
        raise ValueError(f"{pre}indptr[-1] ({indptr[-1]}) must equal len(indices) ({len(indices)})")
    return indptr, indices


def index_tensor(x: Any, name: str) -> torch.Tensor:
    """A 1-D int64 tensor on x's own device (numpy arrays and lists land on the CPU)."""
    if not is_tensor(x):
        return torch.from_numpy(int_array(x, name))
    t = x.detach()
    if t.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(t.shape)}")
    integral = not (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool)
    if t.numel() and not integral:
        raise ValueError(f"{name} must hold integers, got dtype {dtype_name(t.dtype)}")
    return t.to(torch.int64).contiguous()


def exact_tensor(x: Any, name: str, dtype: torch.dtype, ndim: int,
                 device: Optional[torch.device] = None) -> torch.Tensor:
    """A tensor of exactly this dtype and rank (on ``device`` when given), made contiguous."""
    if not is_tensor(x):
        raise ValueError(f"{name} must be a torch tensor, got {type(x).__name__}")
    if x.dtype != dtype:
        raise ValueError(f"{name} must have dtype {dtype_name(dtype)}, got {dtype_name(x.dtype)}")
    if x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got {x.ndim}-D")
    if device is not None and x.device != device:
        raise ValueError(f"{name} must be on {device} (the device of p), got {x.device}")
    return x.detach().contiguous()


def first_true(mask: torch.Tensor) -> int:
    """Index of the first True of a 1-D mask (the entry an error message names)."""
    return int(torch.nonzero(mask)[0, 0].item())


def require_cuda(x: Any, name: str, core_fn: str) -> None:
    """``x`` is a CUDA tensor and the core was built with the CUDA function ``core_fn``."""
    if not is_tensor(x) or not x.is_cuda:
        raise ValueError(f"{name} must be a CUDA tensor for the CUDA kernel")
    if not hasattr(_core, core_fn):
        raise RuntimeError("advrec was built without CUDA support (advrec.kernels.info())")


def stream_of(device: torch.device) -> int:
    """The raw handle of the current CUDA stream of ``device``: kernels run on it."""
    return int(torch.cuda.current_stream(device).cuda_stream)
