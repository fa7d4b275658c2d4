"""Certified radius of an MF top-k list under the per-row embedding threat model.

Threat model (the one MSAP/APR attacks use on ``MF``, ``docs/models.md``): every row of the user
table and of the item table may move by its own perturbation of L2 norm at most ``eps``
(``p' = p + d_u``, ``q'_i = q_i + d_i``, ``|d_u|, |d_i| <= eps``); item biases, if any, do not move.
A whole-table L2 ball of radius ``eps`` is covered too, since each row's share of it is at most
``eps``. The list is its SET: the radius certifies that no non-listed (and non-excluded) item can
reach the score of a listed one; the order inside the list may change.

For a listed j and a non-listed l with margin ``m = s_j - s_l``:
``s'_j - s'_l >= m - eps |q_j - q_l| - 2 eps (|p| + eps)``, positive for every
``eps < r(m, a) = 2m / (a + sqrt(a^2 + 8m))`` with ``a = |q_j - q_l| + 2|p|`` (the positive root
of ``2 eps^2 + a eps - m``). The list's radius is the minimum over pairs: exact pairs for the
``c`` best non-listed items, and for every item ranked below them the bound
``m >= s_j - s_last`` and ``|q_j - q_l| <= |q_j| + max_i |q_i|``, which only lowers r (r grows
with m and falls with a). docs/serving.md has the derivation.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

__all__ = ["pair_radius", "mf_topk_radius"]

_F32_UNIT = 2.0 ** -24


def pair_radius(margin: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """The positive root of ``2 e^2 + a e - margin`` (0 where ``margin <= 0``), in the stable form
    ``2m / (a + sqrt(a^2 + 8m))``."""
    m = margin.clamp_min(0.0)
    return 2.0 * m / (a + torch.sqrt(a * a + 8.0 * m)).clamp_min(1e-300)


def mf_topk_radius(
    user_rows: torch.Tensor,
    item_factors: torch.Tensor,
    top_items: np.ndarray,
    top_scores: np.ndarray,
    k: int,
    item_bias: Optional[torch.Tensor] = None,
    n_eligible: Optional[np.ndarray] = None,
    chunk: int = 4096,
) -> np.ndarray:
    """Certified radius (float64 [n]) of each user's top-``k`` set.

    ``user_rows`` [n, d] are the users' factor rows, ``top_items`` / ``top_scores`` [n, k + c] the
    users' best ``k + c`` non-excluded items (best first, -1 / -inf padding) as the serving
    selection returns them: the first ``k`` are the list, the next ``c`` are compared pair by
    pair, everything ranked below is bounded through the last one's (float32) score, with a
    slack for float32 rounding. ``n_eligible`` (non-excluded items per user) tells where no item
    is ranked below; without it one is assumed to exist wherever the ``k + c`` slots are full.
    A list with fewer than ``k`` items (every eligible item listed) has radius ``inf``; ties
    across the list's edge give 0. Margins are recomputed in float64 from the factors.
    """
    top_items = np.asarray(top_items)
    n, width = top_items.shape
    if width < k:
        raise ValueError(f"top_items must have at least k = {k} columns, got {width}")
    c = width - k
    Q = item_factors.detach().to(torch.float64)
    d = Q.shape[1]
    qn = Q.norm(dim=1)
    q_max = float(qn.max()) if qn.numel() else 0.0
    b = None if item_bias is None else item_bias.detach().to(torch.float64)
    b_max = 0.0 if b is None or b.numel() == 0 else float(b.abs().max())
    out = np.empty(n, dtype=np.float64)
    inf = float("inf")
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        P = user_rows[s:e].detach().to(torch.float64)
        pn = P.norm(dim=1)  # [b]
        idx = torch.from_numpy(np.ascontiguousarray(top_items[s:e]))
        valid = idx >= 0
        safe = idx.clamp_min(0)
        Qt = Q[safe]  # [b, w, d]
        sc = torch.einsum("bd,bwd->bw", P, Qt)
        if b is not None:
            sc = sc + b[safe]
        J, QJ, sJ, vJ = safe[:, :k], Qt[:, :k], sc[:, :k], valid[:, :k]
        r = torch.full((e - s,), inf, dtype=torch.float64)
        full_list = vJ.all(dim=1)  # else: every eligible item is listed, nothing can enter
        if c > 0:
            QL, sL, vL = Qt[:, k:], sc[:, k:], valid[:, k:]
            G = torch.bmm(QJ, QL.transpose(1, 2))  # [b, k, c]
            d2 = (qn[J][:, :, None] ** 2 + qn[safe[:, k:]][:, None, :] ** 2 - 2.0 * G).clamp_min(0.0)
            dist = torch.sqrt(d2) * (1 + 1e-12) + 1e-300
            a = dist + 2.0 * pn[:, None, None]
            rp = pair_radius(sJ[:, :, None] - sL[:, None, :], a)
            rp = torch.where(vL[:, None, :], rp, torch.full_like(rp, inf))
            r = torch.minimum(r, rp.amin(dim=(1, 2)))
        # Items ranked below the k + c slots: present where every slot is filled (unless
        # n_eligible says there are no more).
        rest = valid[:, -1].clone()
        if n_eligible is not None:
            rest &= torch.from_numpy(np.asarray(n_eligible[s:e], dtype=np.int64) > width)
        if rest.any():
            s_last = torch.from_numpy(np.asarray(top_scores[s:e, -1], dtype=np.float64))
            s_last = torch.where(rest, s_last, torch.zeros_like(s_last))
            slack = (d + 2) * 2 * _F32_UNIT * (pn * q_max + b_max) + 2 * _F32_UNIT * s_last.abs()
            mr = sJ - (s_last + slack)[:, None]
            ar = qn[J] + q_max + 2.0 * pn[:, None]
            rr = pair_radius(mr, ar).amin(dim=1)
            r = torch.where(rest, torch.minimum(r, rr), r)
        r = torch.where(full_list, r, torch.full_like(r, inf))
        out[s:e] = r.numpy()
    return out
