"""Certified radii of ML-100K top-10 lists (docs/serving.md, "How often a list is certified").

Trains BPR-MF exactly as the baseline does (``advrec.experiments.BPRSettings`` defaults: dim 64,
Adam lr 1e-3, per-batch L2 1e-4, early stopping on validation nDCG@20, seed 0, time-ordered
leave-one-out), serves every user's top-10 with the training items excluded and
``certify=True``, and writes the radius distribution and the certified shares at
eps = 0.1 and 0.5 to radius_ml100k.json beside this file. Beside each certified share it writes
the share of lists a concrete attack breaks at the same eps (``edge_attack``), so the truth lies
between the two numbers. Run:
``python docs/results/serving/radius_ml100k.py`` (about a minute on 2 cores).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from advrec import data as D
from advrec.evaluation import validator
from advrec.experiments import BaselineConfig
from advrec.models import MF
from advrec.serving import Scorer
from advrec.training import Trainer


EPS_GRID = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5)


def edge_attack(P: np.ndarray, Q: np.ndarray, items: np.ndarray, eps: float) -> np.ndarray:
    """Whether a per-row perturbation of norm eps puts the 11th item above a listed one.

    For listed j and the first non-listed l (``items[:, 10]``) with dq = q_j - q_l: the user row
    moves to p' = p - eps dq/|dq|, q_j by -eps p'/|p'| and q_l by +eps p'/|p'|; the rows are
    applied and the two scores recomputed (float64), so a True is a perturbation that exists.
    """
    p = P[:, None, :]                                   # [n, 1, d]
    qj, ql = Q[items[:, :10]], Q[items[:, 10]][:, None, :]
    dq = qj - ql
    p2 = p - eps * dq / np.linalg.norm(dq, axis=2, keepdims=True)
    unit = p2 / np.linalg.norm(p2, axis=2, keepdims=True)
    s_j = np.sum(p2 * (qj - eps * unit), axis=2)
    s_l = np.sum(p2 * (ql + eps * unit), axis=2)
    return (s_l > s_j).any(axis=1)


def main() -> dict:
    cfg = BaselineConfig(progress=False)
    inter = D.implicit(D.load(cfg.dataset).interactions)
    split = D.leave_one_out(inter, order="time", validation=True)
    model = MF(inter.n_users, inter.n_items, dim=cfg.dim, init_std=cfg.init_std, seed=cfg.seed)
    trainer = Trainer(optimizer="adam", lr=cfg.lr, epochs=cfg.epochs, batch_size=cfg.batch_size,
                      l2=cfg.l2, patience=cfg.patience, seed=cfg.seed, progress=False,
                      threads=cfg.threads)
    history = trainer.fit(model, split.train, validator(split.valid, exclude=split.train, metric=cfg.valid_metric))
    out = {}
    for c in (10, 50):
        scorer = Scorer(model, threads=2)
        t0 = time.perf_counter()
        items, scores, radius = scorer.recommend(k=10, exclude=split.train, certify=True,
                                                 certify_candidates=c)
        out[f"certify_candidates={c}"] = {
            "lists": int(len(radius)),
            "certified_share_eps_0.1": float(np.mean(radius > 0.1)),
            "certified_share_eps_0.5": float(np.mean(radius > 0.5)),
            "radius_quartiles": [float(q) for q in np.quantile(radius, [0.25, 0.5, 0.75])],
            "radius_min_max": [float(radius.min()), float(radius.max())],
            "seconds": time.perf_counter() - t0,
        }
    items11, _ = Scorer(model, threads=2).recommend(k=11, exclude=split.train)
    P = model.user_factors.detach().double().numpy()
    Q = model.item_factors.detach().double().numpy()
    _, _, radius = Scorer(model, threads=2).recommend(k=10, exclude=split.train, certify=True)
    out["eps_grid"] = [{"eps": e, "certified_share": float(np.mean(radius > e)),
                        "broken_by_edge_attack_share": float(np.mean(edge_attack(P, Q, items11, e)))}
                       for e in EPS_GRID]
    norms = model.user_factors.detach().norm(dim=1).numpy(), model.item_factors.detach().norm(dim=1).numpy()
    result = {"model": "BPR-MF, BPRSettings defaults, seed 0", "epochs_run": len(history.loss),
              "best_epoch": history.best_epoch, "best_valid_nDCG@20": history.best_metric,
              "user_norm_median": float(np.median(norms[0])), "item_norm_median": float(np.median(norms[1])),
              "item_norm_max": float(norms[1].max()), **out}
    Path(__file__).with_name("radius_ml100k.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
