"""Defending the training data against fake profiles (issue 17): remove the suspects.

``filter_users(train, suspects)``: the log without the rows of the users a detector flags
  (a bool mask, or a detector's ``decide(train)``). The user index space is kept by default
  (``keep_ids=True``): ``n_users`` and ``user_ids`` are unchanged and a removed user simply has
  no rows, so user indices stay valid for the test split and for ``target_exposure``'s
  ``real_users``. ``keep_ids=False`` compacts the index space to the users kept (their order
  unchanged; new index j is old index ``np.flatnonzero(~removed_users)[j]``).

The training-time defence, trimmed ALS, is ``advrec.training.trimmed.TrimmedExplicitMF``.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from .._logging import report
from ..data.interactions import Interactions
from ..data.poison import fake_users

__all__ = ["FilterResult", "filter_users"]


class FilterResult(NamedTuple):
    """What ``filter_users`` returns. ``log``: the filtered log; ``removed_users``: bool mask
    over the *input* log's users; ``removed_rows``: bool mask over the input log's rows."""

    log: Interactions
    removed_users: np.ndarray
    removed_rows: np.ndarray


def _suspect_mask(train: Interactions, suspects: Any) -> np.ndarray:
    """``suspects`` as a bool mask [n_users]: a mask as given, or a detector's ``decide(train)``."""
    decide = getattr(suspects, "decide", None)
    if callable(decide):
        suspects = decide(train)
    if isinstance(suspects, torch.Tensor):
        suspects = suspects.detach().cpu().numpy()
    mask = np.asarray(suspects)
    if mask.dtype != np.bool_ or mask.shape != (train.n_users,):
        raise ValueError(f"suspects must be a boolean mask over train's users, shape ({train.n_users},) "
                         f"(or a detector with decide(train) returning one), got dtype {mask.dtype} "
                         f"shape {mask.shape}")
    return mask


def filter_users(train: Interactions, suspects: Any, *, keep_ids: bool = True) -> FilterResult:
    """``train`` without the rows of the ``suspects`` (bool mask [n_users], True = remove, or an
    object with ``decide(train)``, which is called). Rows kept are unchanged and in order.

    ``keep_ids`` (default True): keep ``n_users`` and ``user_ids``, so every user index means
    the same user before and after (evaluation needs that); False compacts the user index space
    to the users not removed. Reports how many users and rows went, and when ``train`` marks
    fake users (``advrec.data.fake_users``) how many of them were real and how many fake:
    removing real users is a cost of the defence, and must be visible.
    """
    if not isinstance(train, Interactions):
        raise TypeError(f"train must be an advrec.data.Interactions, got {type(train).__name__}")
    if not isinstance(keep_ids, (bool, np.bool_)):
        raise ValueError(f"keep_ids must be True or False, got {keep_ids!r}")
    removed_users = _suspect_mask(train, suspects).copy()
    if train.n_users and removed_users.all():
        raise ValueError(f"suspects flags every one of the {train.n_users} users: removing them all leaves "
                         "nothing to train on (check the detector's threshold)")
    removed_rows = removed_users[train.user]
    kept = train.subset(~removed_rows)
    if keep_ids:
        log = kept
    else:
        new_index = np.cumsum(~removed_users) - 1  # old user index -> new, for the users kept
        log = Interactions(new_index[kept.user], kept.item, kept.rating, kept.timestamp,
                           int((~removed_users).sum()), train.n_items, train.user_ids[~removed_users],
                           train.item_ids)
    n_users, n_rows = int(removed_users.sum()), int(removed_rows.sum())
    msg = (f"filter_users: removed {n_users} of {train.n_users} users and their {n_rows} of {len(train)} rows"
           f" ({'user ids kept' if keep_ids else 'user ids compacted'})")
    fake = fake_users(train)
    if fake.any():
        fake_removed = int((removed_users & fake).sum())
        fake_rows = int((removed_rows & fake[train.user]).sum())
        msg += (f"; of them {n_users - fake_removed} real users ({n_rows - fake_rows} rows) and {fake_removed} "
                f"of the log's {int(fake.sum())} fake users ({fake_rows} rows)")
    report(msg)
    return FilterResult(log, removed_users, removed_rows)
