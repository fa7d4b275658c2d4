"""Cascade effects for Cascade-guided Adversarial Training (CAT; Tan et al., section 4.2).

A sequential model trains on every prefix of a user's history, so an interaction early in a
sequence takes part in the loss of every later position, and an item shared with other users
is also trained through their sequences whenever they share a batch. Such high-cascade
interactions are trained often and end up stable; the most recent ones are trained least, yet
drive the prediction most. CAT therefore perturbs each position's embedding by a factor 1 / C:
low-cascade positions get the larger perturbations.
"""
from __future__ import annotations

from typing import Optional, Union

import numpy as np

from .. import kernels

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None  # type: ignore[assignment]

__all__ = ["cascade_effects"]


def cascade_effects(
    sequences: Union[np.ndarray, "torch.Tensor"],
    batch_size: int,
    components: str = "both",
    normalize: Optional[str] = None,
) -> Union[np.ndarray, "torch.Tensor"]:
    """Cascade effect ``C`` of every position of padded user sequences (Algorithm 1, lines 1-13).

    ``sequences``: int item ids ``[m, T]``, right-aligned (the most recent interaction in column
    ``T - 1``; ``-1`` pads, only before a row's first item); a numpy array of any integer dtype
    or a CPU tensor (the result is of the same kind). ``batch_size``: the training batch size
    ``b``; ``b / m`` approximates the chance that two users share a batch.

    With ``t = column + 1`` and ``D_v = sum over every user k and column l (1-based) holding item
    v of (1 + T - l)``::

        C[i, t] = (1 + T - t) + (b / m) * D_{item at (i, t)},   0 at padding.

    ``1 + T - t`` counts the later positions of the same sequence trained through this one
    (itself included); the second term is the same item's weight in every sequence. As in
    Algorithm 1 (and unlike eq. 11's ``k != i``), the user's own sequence is counted in ``D``.
    ``components``: ``"sequence"`` keeps only ``1 + T - t``, ``"cross"`` only ``(b / m) D``,
    ``"both"`` their sum (the paper's Table 4 ablation).

    ``normalize``: ``None`` (raw ``C``); ``"minmax"``: ``(C - min) / (max - min)`` over the
    non-padding entries (all 1.0 when ``max == min``), Algorithm 1's line 14;
    ``"inverse-mean"``: ``1 / C`` divided by its mean over the non-padding entries, so the
    factors average 1 and the total perturbation budget matches uniform adversarial training:
    the per-position scale CAT multiplies its perturbation by. Padding stays 0.

    ``D`` is summed exactly in int64, ``C`` computed in double and rounded to float32 once; the
    result is the same for any number of OpenMP threads. Linear time in ``m * T``; item ids may
    be sparse (up to int64's max): a dense table is used only when the largest id is below the
    number of non-padding entries plus 65,536, a hash table otherwise.
    """
    return kernels.cascade_effects(sequences, batch_size, components, normalize)
