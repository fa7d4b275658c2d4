"""The FM certification experiment on ML-100K (Liu et al., SIGIR 2020, Tables 2-3, Figures 2, 4-6).

Trains a plain FM, RFM-1 (Punjabi & Bhatt 2018) and FM-RT for each training budget, then for each
model reports test accuracy and avg-max q (Table 2/3), the shares certified robust / non-robust /
unknown for q = 1..8 under the paper's bound, the joint bound, best and exact (Figures 4-6), and
the greedy vs random injection success rate (Figure 2). FM-RT continues from the trained FM's
weights, as the paper prescribes (train FM to convergence, then with eq. 13).
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..certify import FMCertifier
from ..data.fields import ml100k_fm
from ..models import FM
from ..report import format_table, grouped_bars, have_matplotlib, line_chart, stacked_shares
from ..training.classifier import ClassifierTrainer, accuracy
from ..training.fm_robust import FMRobustLoss
from ..training.rfm import rfm_loss


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
    eval_qs: Tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
    methods: Tuple[str, ...] = ("paper", "joint", "best", "exact")
    exact_models: Tuple[str, ...] = ("FM", "FM-RT-2")  # exact is the costly one: run it where it matters
    max_q_cap: int = 20
    attack_qs: Tuple[int, ...] = (1, 2, 3, 4)
    node_budget: int = 20_000
    seed: int = 0
    threads: Optional[int] = 1  # measured faster than 2 for models this small
    progress: Optional[bool] = None


@dataclass
class FMCertifyResult:
    config: FMCertifyConfig
    table: List[Dict[str, object]] = field(default_factory=list)        # Table 2/3
    shares: List[Dict[str, object]] = field(default_factory=list)       # Figures 4-6
    attacks: List[Dict[str, object]] = field(default_factory=list)      # Figure 2
    seconds: Dict[str, float] = field(default_factory=dict)
    data: str = ""

    def to_dict(self) -> dict:
        return {"config": asdict(self.config), "table": self.table, "shares": self.shares,
                "attacks": self.attacks, "seconds": self.seconds, "data": self.data}

    def unknown_share(self, model: str, method: str, q: int) -> float:
        for r in self.shares:
            if r["model"] == model and r["method"] == method and r["q"] == q:
                return float(r["unknown"])
        raise KeyError((model, method, q))


def _trainer(config: FMCertifyConfig, *, epochs: int, lr: float, patience: Optional[int]) -> ClassifierTrainer:
    return ClassifierTrainer(lr=lr, epochs=epochs, batch_size=config.batch_size, l2=config.l2,
                             patience=patience, seed=config.seed, progress=config.progress,
                             threads=config.threads)


def train_models(config: FMCertifyConfig, data) -> Dict[str, object]:
    """FM, RFM-1 and FM-RT-q for q in ``config.rt_qs``; returns name -> trained model."""
    d = data.train.n_features
    models: Dict[str, object] = {}
    fm = FM(d, config.dim, seed=config.seed)
    _trainer(config, epochs=config.epochs, lr=config.lr, patience=config.patience).fit(fm, data.train, data.valid)
    models["FM"] = fm
    rfm = FM(d, config.dim, seed=config.seed)
    _trainer(config, epochs=config.epochs, lr=config.lr, patience=config.patience).fit(
        rfm, data.train, data.valid, loss_fn=rfm_loss(config.rfm_eta, config.rfm_rho))
    models["RFM-1"] = rfm
    history = data.train.feature_ids("history")
    for q in config.rt_qs:
        rt = copy.deepcopy(fm)
        _trainer(config, epochs=config.rt_epochs, lr=config.rt_lr, patience=None).fit(
            rt, data.train, data.valid, loss_fn=FMRobustLoss(history, q))
        models[f"FM-RT-{q}"] = rt
    return models


def evaluate_models(config: FMCertifyConfig, data, models: Dict[str, object],
                    result: Optional[FMCertifyResult] = None) -> FMCertifyResult:
    """Certify every model on the test split and fill the result tables."""
    result = result or FMCertifyResult(config=config)
    test = data.test
    history = test.feature_ids("history")
    for name, model in models.items():
        start = time.perf_counter()
        cert = FMCertifier.from_model(model, history)
        row: Dict[str, object] = {"model": name, "accuracy": 100 * accuracy(model, test)}
        for method in ("paper", "best"):
            mq = cert.max_q(test.indptr, test.indices, config.max_q_cap, method, progress=config.progress)
            row[f"avg-max q ({method})"] = float(mq.mean())
        result.table.append(row)
        for method in config.methods:
            if method == "exact" and name not in config.exact_models:
                continue
            by_q = cert.certify_budgets(test.indptr, test.indices, config.eval_qs, method,
                                        node_budget=config.node_budget, progress=config.progress)
            for q, r in by_q.items():
                result.shares.append({"model": name, "method": method, "q": q, **r.fractions(),
                                      "nodes": int(r.nodes.sum())})
        greedy_by_q = cert.certify_budgets(test.indptr, test.indices, config.attack_qs, "greedy",
                                           progress=config.progress)
        for q in config.attack_qs:
            greedy = greedy_by_q[q]
            rand = cert.random_injection(test.indptr, test.indices, q, seed=config.seed)
            result.attacks.append({"model": name, "q": q, "greedy": float(np.mean(greedy.status == -1)),
                                   "random": float(rand.mean())})
        result.seconds[f"certify {name}"] = time.perf_counter() - start
    return result


def run_fm_certify(config: FMCertifyConfig = FMCertifyConfig()) -> Tuple[FMCertifyResult, Dict[str, object]]:
    """Load ML-100K as FM instances, train every model, certify; returns the result and the models."""
    start = time.perf_counter()
    data = ml100k_fm(seed=config.seed)
    result = FMCertifyResult(config=config, data=data.describe())
    result.seconds["data"] = time.perf_counter() - start
    start = time.perf_counter()
    models = train_models(config, data)
    result.seconds["train"] = time.perf_counter() - start
    evaluate_models(config, data, models, result)
    return result, models


TABLE_COLUMNS = ("model", "accuracy", "avg-max q (paper)", "avg-max q (best)")


def shares_table(result: FMCertifyResult, model: str) -> List[Dict[str, object]]:
    """One row per q: robust / non-robust / unknown (%) per method, for one model."""
    rows = []
    for q in result.config.eval_qs:
        row: Dict[str, object] = {"q": q}
        for r in result.shares:
            if r["model"] == model and r["q"] == q:
                m = r["method"]
                row[f"{m} R"] = 100 * r["robust"]
                row[f"{m} NR"] = 100 * r["non-robust"]
                row[f"{m} ?"] = 100 * r["unknown"]
        rows.append(row)
    return rows


def render_text(result: FMCertifyResult, markdown: bool = False) -> str:
    """Every table of the report, as terminal text or Markdown."""
    out = ["Accuracy (%) and avg-max q on the test split (Table 2/3)",
           format_table(result.table, TABLE_COLUMNS, digits=2, markdown=markdown), ""]
    for model in dict.fromkeys(r["model"] for r in result.shares):
        out += [f"{model}: certified robust (R) / non-robust (NR) / unknown (?) instances, % (Figures 4-6)",
                format_table(shares_table(result, model), digits=1, markdown=markdown), ""]
    out += ["Injection success rate, % of test instances whose label flips (Figure 2)",
            format_table([{**r, "greedy": 100 * r["greedy"], "random": 100 * r["random"]} for r in result.attacks],
                         ("model", "q", "greedy", "random"), digits=2, markdown=markdown)]
    return "\n".join(out)


def write_report(result: FMCertifyResult, out: Path) -> List[Path]:
    """JSON, Markdown and (with matplotlib) PNG figures into ``out``; returns the files written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "fm_certify.json", out / "fm_certify.md"]
    files[0].write_text(json.dumps(result.to_dict(), indent=2))
    files[1].write_text("# FM certification on ML-100K\n\n" + result.data + "\n\n" +
                        render_text(result, markdown=True) + "\n")
    if not have_matplotlib():
        return files
    qs = list(result.config.eval_qs)
    models = list(dict.fromkeys(r["model"] for r in result.shares))
    def share(model, method, key):
        return [next((r[key] for r in result.shares if r["model"] == model and r["method"] == method and r["q"] == q),
                     float("nan")) for q in qs]
    files.append(line_chart(out / "fig4_non_robust.png", qs, {m: share(m, "best", "non-robust") for m in models},
                            title="Certified non-robust (greedy)", xlabel="budget q", ylabel="instances", percent=True))
    files.append(line_chart(out / "fig5_robust.png", qs, {m: share(m, "best", "robust") for m in models},
                            title="Certified robust (best bound)", xlabel="budget q", ylabel="instances", percent=True))
    for model in models:
        for method in result.config.methods:
            r, nr = share(model, method, "robust"), share(model, method, "non-robust")
            if any(np.isnan(r)):
                continue
            files.append(stacked_shares(out / f"fig6_{model}_{method}.png", qs, r, nr,
                                        title=f"{model}: {method}"))
    aq = list(result.config.attack_qs)
    for model in models:
        rows = [a for a in result.attacks if a["model"] == model]
        files.append(grouped_bars(out / f"fig2_{model}.png", [str(q) for q in aq],
                                  {"greedy": [a["greedy"] for a in rows], "random": [a["random"] for a in rows]},
                                  title=f"{model}: injection success", xlabel="injected interactions q",
                                  ylabel="labels flipped"))
    return files
