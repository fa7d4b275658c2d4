"""What flows into a model: the batch mapping, its keys, and a perturbation (``delta``).

Its own module so that the protocol (``base.py``) and the capabilities (``capabilities.py``)
share the types without importing each other.
"""
from __future__ import annotations

from typing import Mapping, Optional

import torch

Batch = Mapping[str, torch.Tensor]
"""A training batch: a mapping from the keys below to integer tensors of equal length."""

Delta = Optional[Mapping[str, torch.Tensor]]
"""A perturbation: ``{name: tensor}`` for names of ``perturbable()``, each of that tensor's full
shape (row ``r`` of ``delta[name]`` is added to row ``r`` of the table); ``None`` = clean."""

USER_KEY = "user"
"""``batch[USER_KEY]``: user ids ``[b]`` (int64), one per BPR triple."""
POS_KEY = "pos"
"""``batch[POS_KEY]``: the positive (interacted) item of each triple ``[b]``; sequential
batches: the next item at every position ``[b, T]`` (``-1`` at padding)."""
NEG_KEY = "neg"
"""``batch[NEG_KEY]``: a sampled negative item per triple ``[b]`` (sequential: per position)."""
SEQ_KEY = "seq"
"""``batch[SEQ_KEY]``: sequential models only, the right-aligned input sequences ``[b, T]``."""
BATCH_KEYS = (USER_KEY, POS_KEY, NEG_KEY)
"""The keys of the BPR batches ``Trainer`` builds and the attacks take."""
