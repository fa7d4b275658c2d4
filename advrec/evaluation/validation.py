"""Validation callbacks for early stopping: training asks for a number, evaluation supplies it.

Kept here rather than in ``training`` so the training layer never imports evaluation.
"""
from __future__ import annotations

from typing import Callable, Sequence, Union

from ..data.interactions import Interactions
from ..models.base import Recommender
from .protocols import evaluate


def validator(valid: Interactions, exclude: Union[Interactions, Sequence[Interactions]] = (),
              metric: str = "nDCG@10", batch_size: int = 1024) -> Callable[[Recommender], float]:
    """A ``model -> float`` callback: a top-K ``metric`` (higher is better) on ``valid``, full
    ranking; AUC ranks are skipped, since they are not needed and they cost time every epoch."""
    name, _, cut = metric.partition("@")
    if not cut.isdigit():
        raise ValueError(f"metric must look like 'nDCG@10', got {metric!r}")
    k = int(cut)

    def score(model: Recommender) -> float:
        result = evaluate(model, valid, exclude=exclude, k=(k,), batch_size=batch_size, progress=False,
                          auc=False)
        summary = result.summary()
        if metric not in summary:
            raise ValueError(f"metric {metric!r} is not computed; available: {sorted(summary)}")
        return float(summary[metric])

    return score
