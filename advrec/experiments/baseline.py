"""The baseline experiment: Pop and BPR-MF on ML-100K, leave-one-out by time, full ranking.

All ratings are implicit feedback; the last interaction of each user (by timestamp, ties by
file order) is the test item, the second last the validation item. MF trains with early
stopping on validation nDCG@10 and is evaluated once on test, training and validation items
masked. This is the run behind the README's figures and ``advrec demo``.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Tuple


from .. import data as D
from ..evaluation import evaluate, validator
from ..models import MF, Pop
from ..training import Trainer

METRIC_COLUMNS = ("HR@10", "nDCG@10", "Recall@10", "MRR@10", "AUC", "ItemCoverage@10", "Gini@10", "EPC@10")


@dataclass
class BPRSettings:
    """How BPR-MF is trained here (the baseline, and the model the MSAP experiment attacks).

    Defaults chosen on the validation split (see README): Adam, lr 1e-3, per-batch L2 1e-4,
    early stopping on validation nDCG@20 with patience 40 (nDCG@10 of one held-out item per user
    is too noisy to stop on). One torch thread: measured no slower than two for a model this small."""

    dataset: str = "ml-100k"
    dim: int = 64
    init_std: float = 0.05
    lr: float = 1e-3
    l2: float = 1e-4
    batch_size: int = 2048
    epochs: int = 300
    patience: int = 40
    valid_metric: str = "nDCG@20"
    threads: Optional[int] = 1


@dataclass
class BaselineConfig(BPRSettings):
    """The baseline run: Pop and BPR-MF (``BPRSettings``), evaluated at ``k``."""

    seed: int = 0
    k: Tuple[int, ...] = (10,)
    sampled_negatives: Optional[int] = None  # also run the sampled protocol with this many negatives
    progress: Optional[bool] = None


@dataclass
class BaselineResult:
    config: BaselineConfig
    rows: List[Dict[str, object]] = field(default_factory=list)
    results: Dict[str, object] = field(default_factory=dict)  # name -> EvalResult
    train_seconds: float = float("nan")
    best_epoch: int = -1
    data_source: str = ""
    model: Optional[MF] = None  # the trained BPR-MF (``advrec demo`` attacks it next)

    def to_dict(self) -> dict:
        return {"config": asdict(self.config), "rows": self.rows, "train_seconds": self.train_seconds,
                "best_epoch": self.best_epoch, "data_source": self.data_source}


def _row(name: str, result, extra: Optional[dict] = None) -> Dict[str, object]:
    s = result.summary()
    row: Dict[str, object] = {"model": name}
    row.update({c: float(s[c]) for c in METRIC_COLUMNS if c in s})
    row.update(extra or {})
    return row


def run_baseline(config: BaselineConfig = BaselineConfig()) -> BaselineResult:
    """Load, split, train Pop and MF, evaluate both; returns table rows and the EvalResults."""
    ds = D.load(config.dataset)
    inter = D.implicit(ds.interactions, _quiet=True)
    split = D.leave_one_out(inter, order="time", validation=True)
    out = BaselineResult(config=config, data_source=ds.source)
    seen = (split.train, split.valid)

    pop = Pop.fit(split.train)
    res = evaluate(pop, split.test, exclude=seen, k=config.k, popularity=split.train, progress=False)
    out.results["Pop"] = res
    out.rows.append(_row("Pop", res, {"train_s": 0.0}))

    model = MF(inter.n_users, inter.n_items, dim=config.dim, init_std=config.init_std, seed=config.seed)
    trainer = Trainer(optimizer="adam", lr=config.lr, epochs=config.epochs, batch_size=config.batch_size,
                      l2=config.l2, patience=config.patience, seed=config.seed, progress=config.progress,
                      threads=config.threads)
    start = time.perf_counter()
    history = trainer.fit(model, split.train, validator(split.valid, exclude=split.train, metric=config.valid_metric))
    out.train_seconds = time.perf_counter() - start
    out.best_epoch = history.best_epoch
    res = evaluate(model, split.test, exclude=seen, k=config.k, popularity=split.train, progress=False)
    out.results["BPR-MF"] = res
    out.model = model
    out.rows.append(_row("BPR-MF", res, {"train_s": out.train_seconds}))
    if config.sampled_negatives:
        res = evaluate(model, split.test, exclude=seen, k=config.k, protocol="sampled",
                       n_negatives=config.sampled_negatives, seed=config.seed, progress=False)
        out.results[f"BPR-MF (sampled {config.sampled_negatives})"] = res
        out.rows.append(_row(f"BPR-MF sampled-{config.sampled_negatives}", res))
    return out
