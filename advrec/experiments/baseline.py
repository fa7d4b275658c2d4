"""The baseline experiment: Pop and BPR-MF on ML-100K, leave-one-out by time, full ranking.

All ratings are implicit feedback; the last interaction of each user (by timestamp, ties by
file order) is the test item, the second last the validation item. MF trains with early
stopping on validation nDCG@10 and is evaluated once on test, training and validation items
masked. This is the run behind the README's figures and ``advrec demo``.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .. import data as D
from ..evaluation import EvalResult, evaluate, validator
from ..models import MF, Pop
from ..training import Trainer
from .records import config_from_dict

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


@dataclass(frozen=True)
class BaselineRow:
    """One row of the demo's table: a model (or protocol) name, its metrics (``METRIC_COLUMNS``
    present in the evaluation) and the training seconds (None: not a trained row, e.g. the
    sampled protocol's re-evaluation)."""

    model: str
    metrics: Dict[str, float]
    train_s: Optional[float] = None

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"model": self.model, **self.metrics}
        if self.train_s is not None:
            out["train_s"] = self.train_s
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "BaselineRow":
        return cls(d["model"], {k: v for k, v in d.items() if k not in ("model", "train_s")}, d.get("train_s"))


@dataclass(frozen=True)
class BaselineResult:
    """The table rows (JSON-ready), the evaluations behind them and the trained BPR-MF."""

    config: BaselineConfig
    rows: List[BaselineRow] = field(default_factory=list)
    results: Dict[str, EvalResult] = field(default_factory=dict)
    train_seconds: float = float("nan")
    best_epoch: int = -1
    data_source: str = ""
    model: Optional[MF] = None  # the trained BPR-MF (``advrec demo`` attacks it next)

    def row(self, model: str) -> BaselineRow:
        return next(r for r in self.rows if r.model == model)

    def to_dict(self) -> Dict[str, Any]:
        return {"config": asdict(self.config), "rows": [r.to_dict() for r in self.rows],
                "train_seconds": self.train_seconds, "best_epoch": self.best_epoch, "data_source": self.data_source}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "BaselineResult":
        """From a saved ``to_dict()`` (demo.json); the evaluations and the model are not saved."""
        return cls(config=config_from_dict(BaselineConfig, d["config"]),
                   rows=[BaselineRow.from_dict(r) for r in d.get("rows", [])],
                   train_seconds=d.get("train_seconds", float("nan")), best_epoch=d.get("best_epoch", -1),
                   data_source=d.get("data_source", ""))


def _row(name: str, result: EvalResult, train_s: Optional[float] = None) -> BaselineRow:
    s = result.summary()
    return BaselineRow(name, {c: float(s[c]) for c in METRIC_COLUMNS if c in s}, train_s)


def run_baseline(config: BaselineConfig = BaselineConfig()) -> BaselineResult:
    """Load, split, train Pop and MF, evaluate both; returns table rows and the EvalResults."""
    ds = D.load(config.dataset)
    inter = D.implicit(ds.interactions, _quiet=True)
    split = D.leave_one_out(inter, order="time", validation=True)
    seen = (split.train, split.valid)
    rows: List[BaselineRow] = []
    results: Dict[str, EvalResult] = {}

    pop = Pop.fit(split.train)
    res = evaluate(pop, split.test, exclude=seen, k=config.k, popularity=split.train, progress=False)
    results["Pop"] = res
    rows.append(_row("Pop", res, 0.0))

    model = MF(inter.n_users, inter.n_items, dim=config.dim, init_std=config.init_std, seed=config.seed)
    trainer = Trainer(optimizer="adam", lr=config.lr, epochs=config.epochs, batch_size=config.batch_size,
                      l2=config.l2, patience=config.patience, seed=config.seed, progress=config.progress,
                      threads=config.threads)
    start = time.perf_counter()
    history = trainer.fit(model, split.train, validator(split.valid, exclude=split.train, metric=config.valid_metric))
    train_seconds = time.perf_counter() - start
    res = evaluate(model, split.test, exclude=seen, k=config.k, popularity=split.train, progress=False)
    results["BPR-MF"] = res
    rows.append(_row("BPR-MF", res, train_seconds))
    if config.sampled_negatives:
        res = evaluate(model, split.test, exclude=seen, k=config.k, protocol="sampled",
                       n_negatives=config.sampled_negatives, seed=config.seed, progress=False)
        results[f"BPR-MF (sampled {config.sampled_negatives})"] = res
        rows.append(_row(f"BPR-MF sampled-{config.sampled_negatives}", res))
    return BaselineResult(config=config, rows=rows, results=results, train_seconds=train_seconds,
                          best_epoch=history.best_epoch, data_source=f"{config.dataset} ({ds.portable_source()})", model=model)
