"""GAN-based recommenders under CFGAN's protocol (Chae et al., CIKM 2018; the tutorial's table).

Protocol: every ML-100K rating is a purchase; each user's purchases are split at random, 80%
train and 20% test (seeded); models rank every item the user has not bought in train and are
scored by Precision, Recall, nDCG and MRR at 5 and 20 (CFGAN's definitions, ``accuracy_metrics``).
The CFGAN code picks its epoch count by test accuracy; here an eighth of each user's training
purchases (10% of all) is held out for early stopping, and each model is then refitted on the
whole 80% for the epochs validation chose. Models: ItemPop, BPR-MF, IRGAN (generator pre-trained
by BPR, then the game) and CFGAN, side by side on the same split, per seed.

Then the library's embedding attacks (FGSM, PGD) on the refitted BPR-MF, IRGAN and CFGAN: is
adversarially-trained generation any more robust? Each model's budget is ``rho`` times the mean
L2 norm of the rows it perturbs (its tables differ in scale), ``rho`` in ``config.rhos``.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch

from .. import data as D
from ..attacks import FGSM, PGD
from ..evaluation import evaluate, validator
from ..models import MF, Pop
from ..models.gan import CFGAN, IRGAN
from ..training import Trainer
from ..training.gan import GANTrainer
from .inputs import check_dataset
from .msap import attack_batch
from .provenance import Provenance, collect, provenance_entry, provenance_from
from .records import config_from_dict

MODELS = ("ItemPop", "BPR-MF", "IRGAN", "CFGAN")
ATTACKED = ("BPR-MF", "IRGAN", "CFGAN")
#: the tutorial's table (CFGAN paper, ML-100K): P@5, P@20, R@5, R@20, nDCG@5, nDCG@20, MRR@5, MRR@20
PAPER = {
    "ItemPop": (.181, .138, .102, .251, .163, .195, .254, .292),
    "BPR-MF": (.348, .236, .116, .287, .370, .380, .556, .574),
    "IRGAN": (.312, .221, .107, .275, .342, .368, .536, .523),
    "CFGAN": (.444, .294, .152, .360, .476, .433, .681, .693),
}
PAPER_COLUMNS = ("Precision@5", "Precision@20", "Recall@5", "Recall@20", "nDCG@5", "nDCG@20", "MRR@5", "MRR@20")


@dataclass
class GANConfig:
    """The run. Defaults: BPR-MF as the library's baseline (dim 64, Adam 1e-3, L2 1e-4); IRGAN
    with the same generator pre-trained by BPR, then the game (REINFORCE, Adam; the published
    SGD steps at batch 16 take hours here); CFGAN with the authors' ML-100K architecture and
    sampling (item-based, G 400 and D 125 hidden units, ZP with 70% ZR and PM, ZR weight 0.03,
    G L2 0.001, 2 d-steps and 4 g-steps, batches 64 / 32, Adam at lr 1e-4, up to the 250 outer
    epochs their 1000 g-epochs make; at lr 1e-3 it plateaus far lower, see docs/results/gan).
    ``workers``: seeds run in that many processes (the same numbers as one after the other)."""

    dataset: str = "ml-100k"
    seeds: Tuple[int, ...] = (0, 1, 2)
    test_share: float = 0.2
    valid_share: float = 0.125            # of the training purchases, for early stopping
    ks: Tuple[int, ...] = (5, 20)
    valid_metric: str = "nDCG@20"
    # BPR-MF (and IRGAN's generator pre-training)
    dim: int = 64
    bpr_lr: float = 1e-3
    bpr_l2: float = 1e-4
    bpr_epochs: int = 300
    bpr_patience: int = 30
    # IRGAN's game
    irgan_epochs: int = 15
    irgan_g_lr: float = 1e-4
    irgan_d_lr: float = 1e-3
    irgan_pretrain_d: int = 5
    irgan_sampler: str = "reinforce"
    # CFGAN
    cfgan_epochs: int = 250
    cfgan_lr: float = 1e-4
    cfgan_patience: int = 50
    cfgan_eval_every: int = 5
    # attacks
    rhos: Tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)
    pgd_steps: int = 10
    progress: Optional[bool] = None
    workers: int = 1

    @classmethod
    def quick(cls, **overrides: Any) -> "GANConfig":
        """One seed, short games (CI's end-to-end run: about two minutes)."""
        base = dict(seeds=(0,), bpr_epochs=40, irgan_epochs=2, irgan_pretrain_d=1, cfgan_epochs=4,
                    cfgan_lr=1e-3, cfgan_eval_every=2, rhos=(1.0,), pgd_steps=3)
        base.update(overrides)
        return cls(**base)

    def validate(self) -> None:
        check_dataset(self.dataset)
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: at least one, each once, got {self.seeds}")
        for name in ("test_share", "valid_share"):
            v = getattr(self, name)
            if not 0.0 < v < 1.0:
                raise ValueError(f"{name}: must be in (0, 1), got {v}")
        for name in ("dim", "bpr_epochs", "bpr_patience", "irgan_epochs", "cfgan_epochs", "cfgan_patience",
                     "cfgan_eval_every", "pgd_steps", "workers"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: must be a positive int, got {v!r}")
        if not self.rhos or any(not (r > 0 and np.isfinite(r)) for r in self.rhos):
            raise ValueError(f"rhos: positive budgets, got {self.rhos}")
        if self.irgan_sampler not in ("reinforce", "gumbel"):
            raise ValueError(f"irgan_sampler: 'reinforce' or 'gumbel', got {self.irgan_sampler!r}")


@dataclass
class GANSeed:
    """One seed: per model its test metrics, epochs, seconds and curves, and the attacks."""

    seed: int
    metrics: Dict[str, Dict[str, float]] = field(default_factory=dict)
    training: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    curves: Dict[str, Dict[str, List[float]]] = field(default_factory=dict)
    attacks: List[Dict[str, Any]] = field(default_factory=list)


@dataclass
class GANResult:
    config: GANConfig
    data: str
    seeds: List[GANSeed]
    provenance: Optional[Provenance] = None

    def to_dict(self) -> Dict[str, Any]:
        return {"config": asdict(self.config), "data": self.data, "seeds": [asdict(s) for s in self.seeds],
                **provenance_entry(self.provenance)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "GANResult":
        return cls(config_from_dict(GANConfig, d["config"]), d["data"],
                   [GANSeed(**s) for s in d["seeds"]], provenance_from(d))

    def mean(self, model: str, metric: str) -> Tuple[float, float]:
        """Mean and standard deviation over the seeds (std 0 with one seed)."""
        v = np.array([s.metrics[model][metric] for s in self.seeds if model in s.metrics])
        return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


# --------------------------------------------------------------------------------------------

def cfgan_split(inter: Any, config: GANConfig, seed: int):
    """(train 80%, test 20%) per user at random, then (fit, valid) inside train."""
    outer = D.ratio_split(inter, (1.0 - config.test_share, config.test_share), order="random", seed=seed)
    inner = D.ratio_split(outer.train, (1.0 - config.valid_share, config.valid_share), order="random", seed=seed)
    return outer.train, outer.test, inner.train, inner.test


def _metrics(model: Any, test: Any, train: Any, config: GANConfig, delta=None) -> Dict[str, float]:
    res = evaluate(model, test, exclude=train, k=config.ks, progress=False, auc=False, delta=delta)
    s = res.summary()
    return {k: float(v) for k, v in s.items() if k.split("@")[0] in ("Precision", "Recall", "nDCG", "MRR", "HR")}


def _bpr_trainer(config: GANConfig, seed: int, epochs: int, patience: Optional[int]) -> Trainer:
    return Trainer(optimizer="adam", lr=config.bpr_lr, l2=config.bpr_l2, batch_size=2048, epochs=epochs,
                   patience=patience, seed=seed, progress=False)


def _fit_bpr(fit: Any, valid: Any, train: Any, config: GANConfig, seed: int):
    """Early-stopped on (fit, valid), then refitted on train for the chosen epochs."""
    probe = MF(train.n_users, train.n_items, dim=config.dim, init_std=0.05, seed=seed)
    h = _bpr_trainer(config, seed, config.bpr_epochs, config.bpr_patience).fit(
        probe, fit, validator(valid, exclude=fit, metric=config.valid_metric))
    model = MF(train.n_users, train.n_items, dim=config.dim, init_std=0.05, seed=seed)
    start = time.perf_counter()
    _bpr_trainer(config, seed, h.best_epoch + 1, None).fit(model, train)
    return model, {"epochs": h.best_epoch + 1, "seconds": time.perf_counter() - start}, \
        {"valid": [float(x) for x in h.metric], "loss": [float(x) for x in h.loss]}


def _irgan(config: GANConfig, n_users: int, n_items: int, seed: int) -> IRGAN:
    return IRGAN(n_users, n_items, dim=config.dim, sampler=config.irgan_sampler, seed=seed)


def _irgan_game(config: GANConfig, seed: int, epochs: int, patience: Optional[int]) -> GANTrainer:
    return GANTrainer(epochs=epochs, d_steps=1, g_steps=1, d_lr=config.irgan_d_lr, g_lr=config.irgan_g_lr,
                      d_batch=512, g_batch=64, patience=patience, seed=seed, progress=config.progress,
                      pretrain_d_epochs=config.irgan_pretrain_d)


def _fit_irgan(fit: Any, valid: Any, train: Any, config: GANConfig, seed: int):
    """Pre-train the generator (BPR, early-stopped), play the game (early-stopped), then the
    same on train with the chosen epoch counts. Also returns the pre-trained generator's test
    metrics' model (a copy before the refit's game)."""
    val = validator(valid, exclude=fit, metric=config.valid_metric)
    probe = _irgan(config, train.n_users, train.n_items, seed)
    h_pre = _bpr_trainer(config, seed, config.bpr_epochs, config.bpr_patience).fit(probe, fit, val)
    pre_valid = h_pre.best_metric
    h_game = _irgan_game(config, seed, config.irgan_epochs, None).fit(probe, fit, val)
    model = _irgan(config, train.n_users, train.n_items, seed)
    start = time.perf_counter()
    _bpr_trainer(config, seed, h_pre.best_epoch + 1, None).fit(model, train)
    pretrained = _irgan(config, train.n_users, train.n_items, seed)
    pretrained.load_state_dict(model.state_dict())
    game_epochs = h_game.best_epoch + 1
    _irgan_game(config, seed, game_epochs, None).fit(model, train)
    record = {"pretrain_epochs": h_pre.best_epoch + 1, "game_epochs": game_epochs,
              "seconds": time.perf_counter() - start, "valid_pretrained": pre_valid,
              "valid_best_game": h_game.best_metric}
    curves = {"valid": [float(x) for x in h_game.metric], "g_loss": h_game.loss, "d_loss": h_game.d_loss,
              "pretrain_valid": [float(x) for x in h_pre.metric]}
    return model, pretrained, record, curves


def _cfgan_trainer(config: GANConfig, seed: int, epochs: int, patience: Optional[int]) -> GANTrainer:
    return GANTrainer(epochs=epochs, d_steps=2, g_steps=4, d_lr=config.cfgan_lr, g_lr=config.cfgan_lr,
                      d_batch=64, g_batch=32, patience=patience, eval_every=config.cfgan_eval_every,
                      seed=seed, progress=config.progress)


def _fit_cfgan(fit: Any, valid: Any, train: Any, config: GANConfig, seed: int):
    probe = CFGAN(train.n_users, train.n_items, seed=seed)
    h = _cfgan_trainer(config, seed, config.cfgan_epochs, config.cfgan_patience).fit(
        probe, fit, validator(valid, exclude=fit, metric=config.valid_metric))
    model = CFGAN(train.n_users, train.n_items, seed=seed)
    start = time.perf_counter()
    _cfgan_trainer(config, seed, h.best_epoch + 1, None).fit(model, train)
    record = {"epochs": h.best_epoch + 1, "seconds": time.perf_counter() - start}
    curves = {"valid": [float(x) for x in h.metric], "g_loss": h.loss, "d_loss": h.d_loss}
    return model, record, curves


def _row_norm(model: Any) -> float:
    """Mean L2 norm of the rows of every perturbable table (the budgets' unit)."""
    with torch.no_grad():
        norms = torch.cat([t.detach().norm(dim=1) for t in model.perturbable().values()])
    return float(norms.mean())


def _attack(name: str, model: Any, batch: Dict[str, torch.Tensor], test: Any, train: Any,
            clean: Dict[str, float], config: GANConfig, seed: int) -> List[Dict[str, Any]]:
    unit = _row_norm(model)
    rows = []
    for rho in config.rhos:
        eps = rho * unit
        for attack in (FGSM(model, eps), PGD(model, eps, steps=config.pgd_steps, seed=seed)):
            model.eval()
            delta = attack(batch)
            with torch.no_grad():
                m = _metrics(model, test, train, config, delta)
            row = {"model": name, "attack": type(attack).__name__, "rho": rho, "eps": eps}
            for key in ("Precision@5", "nDCG@20"):
                row[key] = m[key]
                row[f"{key} drop"] = 1.0 - m[key] / clean[key] if clean[key] > 0 else float("nan")
            rows.append(row)
    return rows


def run_seed(inter: Any, config: GANConfig, seed: int) -> GANSeed:
    torch.manual_seed(seed)
    train, test, fit, valid = cfgan_split(inter, config, seed)
    out = GANSeed(seed)
    pop = Pop.fit(train)
    out.metrics["ItemPop"] = _metrics(pop, test, train, config)
    out.training["ItemPop"] = {"seconds": 0.0}

    models: Dict[str, Any] = {}
    models["BPR-MF"], out.training["BPR-MF"], out.curves["BPR-MF"] = _fit_bpr(fit, valid, train, config, seed)
    irgan, pretrained, out.training["IRGAN"], out.curves["IRGAN"] = _fit_irgan(fit, valid, train, config, seed)
    models["IRGAN"] = irgan
    out.metrics["IRGAN (pre-trained G)"] = _metrics(pretrained, test, train, config)
    models["CFGAN"], out.training["CFGAN"], out.curves["CFGAN"] = _fit_cfgan(fit, valid, train, config, seed)
    for name, model in models.items():
        out.metrics[name] = _metrics(model, test, train, config)

    batch = attack_batch(train, seed)
    for name in ATTACKED:
        out.attacks += _attack(name, models[name], batch, test, train, out.metrics[name], config, seed)
    return out


def _seed_in_process(args) -> GANSeed:
    torch.set_num_threads(1)
    return run_seed(*args)


def run_gan(config: Optional[GANConfig] = None) -> GANResult:
    """Every seed of the run (``GANConfig``); the records the report renders."""
    config = config or GANConfig()
    config.validate()
    ds = D.load(config.dataset)
    inter = D.implicit(ds.interactions, _quiet=True)
    workers = min(config.workers, len(config.seeds))
    if workers > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            seeds = list(pool.map(_seed_in_process, [(inter, config, s) for s in config.seeds]))
    else:
        seeds = [run_seed(inter, config, s) for s in config.seeds]
    return GANResult(config, f"{config.dataset} ({ds.portable_source()})", seeds, collect(inter, config))


__all__ = ["GANConfig", "GANSeed", "GANResult", "run_gan", "run_seed", "cfgan_split", "MODELS", "PAPER",
           "PAPER_COLUMNS"]
