"""The FM certification experiment on ML-100K (Liu et al., SIGIR 2020, Tables 2-3, Figures 2, 4-6).

Trains a plain FM, RFM-1 (Punjabi & Bhatt 2018) and FM-RT for each training budget, then for each
model reports test accuracy and avg-max q (Table 2/3), the shares certified robust / non-robust /
unknown for q = 1..8 under the paper's bound, the joint bound, best and exact (Figures 4-6), and
the greedy vs random injection success rate (Figure 2). FM-RT continues from the trained FM's
weights, as the paper prescribes (train FM to convergence, then with eq. 13). The report (tables,
Markdown, JSON, figures) lives in ``fm_certify_report``.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from ..certify import FMCertifier
from ..data.fields import ml100k_fm
from ..models import FM
from ..training.classifier import ClassifierTrainer, accuracy
from ..training.fm_robust import FMRobustLoss
from ..training.rfm import rfm2_loss, rfm_loss
from .provenance import Provenance, collect, provenance_entry, provenance_from
from .records import config_from_dict


@dataclass
class FMCertifyConfig:
    """Paper settings where it gives them (dim 64, Adam, batch 2048, 80/10/10 random split,
    RT budgets 1..4); the rest chosen on the validation split (see README)."""

    dim: int = 64
    lr: float = 1e-3
    l2: float = 0.0
    batch_size: int = 2048
    epochs: int = 100
    patience: int = 5
    rt_qs: Tuple[int, ...] = (1, 2, 3, 4)
    rt_epochs: int = 5
    rt_lr: float = 1e-3
    rfm_eta: float = 0.01
    rfm_rho: float = 0.01
    # RFM-2: fine-tuned from FM at each (eps1, eps2), the one with the best validation accuracy kept
    rfm2_eps1: Tuple[float, ...] = (0.1, 0.2, 0.5, 1.0)          # the SIGIR paper's search ranges
    rfm2_eps2: Tuple[float, ...] = (0.01, 0.05, 0.1, 0.5, 1.0)
    rfm2_lam: float = 1.0
    rfm2_epochs: int = 5
    rfm2_lr: float = 1e-3
    eval_qs: Tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
    methods: Tuple[str, ...] = ("paper", "joint", "best", "exact")
    exact_models: Tuple[str, ...] = ("FM", "FM-RT-2")  # exact is the costly one: run it where it matters
    max_q_cap: int = 20
    attack_qs: Tuple[int, ...] = (1, 2, 3, 4)
    node_budget: int = 20_000
    seed: int = 0
    threads: Optional[int] = 1  # measured faster than 2 for models this small
    progress: Optional[bool] = None

    @classmethod
    def quick(cls, **overrides: Any) -> "FMCertifyConfig":
        """One FM-RT budget (q=2), one RFM-2 setting, q=1..4, exact search on FM only
        (``advrec certify --quick``)."""
        base: Dict[str, Any] = dict(rt_qs=(2,), eval_qs=(1, 2, 3, 4), attack_qs=(1, 2), exact_models=("FM",),
                                    rfm2_eps1=(1.0,), rfm2_eps2=(0.1,))
        base.update(overrides)
        return cls(**base)


@dataclass(frozen=True)
class FMModelRow:
    """Table 2/3 for one model: test accuracy (%) and the average largest certified budget q
    per method (``paper``, ``best``)."""

    model: str
    accuracy: float
    avg_max_q: Dict[str, float]

    def to_dict(self) -> Dict[str, Any]:
        return {"model": self.model, "accuracy": self.accuracy,
                **{f"avg-max q ({m})": v for m, v in self.avg_max_q.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FMModelRow":
        prefix = "avg-max q ("
        return cls(d["model"], d["accuracy"],
                   {k[len(prefix):-1]: v for k, v in d.items() if k.startswith(prefix) and k.endswith(")")})


@dataclass(frozen=True)
class CertShares:
    """Figures 4-6: the shares of test instances certified robust / non-robust / unknown for one
    model, method and budget q, and the branch-and-bound nodes spent."""

    model: str
    method: str
    q: int
    robust: float
    non_robust: float
    unknown: float
    nodes: int

    def to_dict(self) -> Dict[str, Any]:
        return {"model": self.model, "method": self.method, "q": self.q, "robust": self.robust,
                "non-robust": self.non_robust, "unknown": self.unknown, "nodes": self.nodes}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CertShares":
        return cls(d["model"], d["method"], d["q"], d["robust"], d["non-robust"], d["unknown"], d["nodes"])


@dataclass(frozen=True)
class InjectionRate:
    """Figure 2: the share of test instances whose label flips with q injected interactions,
    chosen greedily or at random."""

    model: str
    q: int
    greedy: float
    random: float

    def to_dict(self) -> Dict[str, Any]:
        return {"model": self.model, "q": self.q, "greedy": self.greedy, "random": self.random}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "InjectionRate":
        return cls(d["model"], d["q"], d["greedy"], d["random"])


@dataclass(frozen=True)
class FMCertifyResult:
    """Everything one run measured (plain numbers); ``fm_certify_report`` renders and writes it."""

    config: FMCertifyConfig
    table: List[FMModelRow] = field(default_factory=list)          # Table 2/3
    shares: List[CertShares] = field(default_factory=list)         # Figures 4-6
    attacks: List[InjectionRate] = field(default_factory=list)     # Figure 2
    seconds: Dict[str, float] = field(default_factory=dict)
    data: str = ""
    provenance: Optional[Provenance] = None
    rfm2_search: List[Dict[str, Any]] = field(default_factory=list)  # eps1, eps2, valid accuracy, chosen

    def to_dict(self) -> Dict[str, Any]:
        out = {"config": asdict(self.config), "table": [r.to_dict() for r in self.table],
               "shares": [r.to_dict() for r in self.shares], "attacks": [r.to_dict() for r in self.attacks],
               "seconds": self.seconds, "data": self.data, **provenance_entry(self.provenance)}
        if self.rfm2_search:
            out["rfm2_search"] = self.rfm2_search
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FMCertifyResult":
        return cls(config=config_from_dict(FMCertifyConfig, d["config"]),
                   table=[FMModelRow.from_dict(r) for r in d.get("table", [])],
                   shares=[CertShares.from_dict(r) for r in d.get("shares", [])],
                   attacks=[InjectionRate.from_dict(r) for r in d.get("attacks", [])],
                   seconds=dict(d.get("seconds", {})), data=d.get("data", ""), provenance=provenance_from(d),
                   rfm2_search=[dict(r) for r in d.get("rfm2_search", [])])

    @property
    def models(self) -> List[str]:
        """The models certified, in run order."""
        return list(dict.fromkeys(r.model for r in self.shares))

    def share(self, model: str, method: str, q: int) -> Optional[CertShares]:
        return next((r for r in self.shares if (r.model, r.method, r.q) == (model, method, q)), None)

    def unknown_share(self, model: str, method: str, q: int) -> float:
        r = self.share(model, method, q)
        if r is None:
            raise KeyError((model, method, q))
        return float(r.unknown)


def _trainer(config: FMCertifyConfig, *, epochs: int, lr: float, patience: Optional[int]) -> ClassifierTrainer:
    return ClassifierTrainer(lr=lr, epochs=epochs, batch_size=config.batch_size, l2=config.l2,
                             patience=patience, seed=config.seed, progress=config.progress,
                             threads=config.threads)


def search_rfm2(config: FMCertifyConfig, data: Any, fm: FM) -> Tuple[FM, List[Dict[str, Any]]]:
    """RFM-2 fine-tuned from ``fm`` at every (eps1, eps2) of the config; the model with the best
    validation accuracy (the first on a tie) and one record per setting."""
    best: Optional[FM] = None
    trials: List[Dict[str, Any]] = []
    for eps1 in config.rfm2_eps1:
        for eps2 in config.rfm2_eps2:
            model = copy.deepcopy(fm)
            _trainer(config, epochs=config.rfm2_epochs, lr=config.rfm2_lr, patience=None).fit(
                model, data.train, data.valid, loss_fn=rfm2_loss(eps1, eps2, config.rfm2_lam))
            acc = 100 * accuracy(model, data.valid)
            better = best is None or acc > max(t["valid accuracy"] for t in trials)
            if better:
                for t in trials:
                    t["chosen"] = False
                best = model
            trials.append({"eps1": eps1, "eps2": eps2, "valid accuracy": acc, "chosen": better})
    assert best is not None
    return best, trials


def train_models(config: FMCertifyConfig, data: Any) -> Tuple[Dict[str, FM], List[Dict[str, Any]]]:
    """FM, RFM-1, RFM-2 and FM-RT-q for q in ``config.rt_qs``; returns name -> trained model and
    RFM-2's search records."""
    d = data.train.n_features
    models: Dict[str, FM] = {}
    fm = FM(d, config.dim, seed=config.seed)
    _trainer(config, epochs=config.epochs, lr=config.lr, patience=config.patience).fit(fm, data.train, data.valid)
    models["FM"] = fm
    rfm = FM(d, config.dim, seed=config.seed)
    _trainer(config, epochs=config.epochs, lr=config.lr, patience=config.patience).fit(
        rfm, data.train, data.valid, loss_fn=rfm_loss(config.rfm_eta, config.rfm_rho))
    models["RFM-1"] = rfm
    models["RFM-2"], rfm2_search = search_rfm2(config, data, fm)
    history = data.train.feature_ids("history")
    for q in config.rt_qs:
        rt = copy.deepcopy(fm)
        _trainer(config, epochs=config.rt_epochs, lr=config.rt_lr, patience=None).fit(
            rt, data.train, data.valid, loss_fn=FMRobustLoss(history, q))
        models[f"FM-RT-{q}"] = rt
    return models, rfm2_search


def evaluate_models(config: FMCertifyConfig, data: Any, models: Dict[str, FM],
                    result: Optional[FMCertifyResult] = None) -> FMCertifyResult:
    """Certify every model on the test split; returns ``result`` (or a new one) with the rows added."""
    result = result or FMCertifyResult(config=config)
    table, shares, attacks = list(result.table), list(result.shares), list(result.attacks)
    seconds = dict(result.seconds)
    test = data.test
    history = test.feature_ids("history")
    for name, model in models.items():
        start = time.perf_counter()
        cert = FMCertifier.from_model(model, history)
        acc = 100 * accuracy(model, test)
        avg_max_q: Dict[str, float] = {}
        for method in ("paper", "best"):
            mq = cert.max_q(test.indptr, test.indices, config.max_q_cap, method, progress=config.progress)
            avg_max_q[method] = float(mq.mean())
        table.append(FMModelRow(name, acc, avg_max_q))
        for method in config.methods:
            if method == "exact" and name not in config.exact_models:
                continue
            by_q = cert.certify_budgets(test.indptr, test.indices, config.eval_qs, method,
                                        node_budget=config.node_budget, progress=config.progress)
            for q, r in by_q.items():
                f = r.fractions()
                shares.append(CertShares(name, method, q, f["robust"], f["non-robust"], f["unknown"],
                                         int(r.nodes.sum())))
        greedy_by_q = cert.certify_budgets(test.indptr, test.indices, config.attack_qs, "greedy",
                                           progress=config.progress)
        for q in config.attack_qs:
            greedy = greedy_by_q[q]
            rand = cert.random_injection(test.indptr, test.indices, q, seed=config.seed)
            attacks.append(InjectionRate(name, q, float(np.mean(greedy.status == -1)), float(rand.mean())))
        seconds[f"certify {name}"] = time.perf_counter() - start
    return replace(result, table=table, shares=shares, attacks=attacks, seconds=seconds)


def run_fm_certify(config: FMCertifyConfig = FMCertifyConfig()) -> Tuple[FMCertifyResult, Dict[str, FM]]:
    """Load ML-100K as FM instances, train every model, certify; returns the result and the models."""
    start = time.perf_counter()
    data = ml100k_fm(seed=config.seed)
    seconds = {"data": time.perf_counter() - start}
    start = time.perf_counter()
    models, rfm2_search = train_models(config, data)
    seconds["train"] = time.perf_counter() - start
    result = evaluate_models(config, data, models, FMCertifyResult(config=config, data=data.describe(),
                                                                   seconds=seconds, rfm2_search=rfm2_search))
    return replace(result, provenance=collect(data, config)), models
