"""The MSAP experiment (Anelli et al., "MSAP: Multi-Step Adversarial Perturbations on Recommender
Systems Embeddings"), with APR's adversarial-vs-random comparison (He et al. 2018).

Per seed: train BPR-MF (the baseline's settings, early stopping on validation), continue it into
AMF with the adversarial regulariser, then attack both models' embeddings with FGSM, BIM and PGD
(and random noise of FGSM's norm) computed on the whole training set, one BPR triple per training
interaction, as APR and MSAP do. It records

* Figure 1: accuracy and beyond-accuracy after every BIM/PGD iteration up to ``steps`` at ``eps``;
* Figure 2: nDCG@k against eps at ``sweep_steps`` iterations;
* Table 1: PR, RE, nDCG, EFD, SE, ICov at k (clean, random, FGSM, BIM and PGD after ``steps``);
* Table 2: nDCG@k per item-popularity quartile, user gender and user-activity quartile;
* Table 3: GCE (uniform f0 and skewed f_k), MADr and MADR for the same groupings.

Evaluation under attack passes ``delta`` to the model; parameters are never written. The report
(tables, acceptance checks, figures) lives in ``msap_report``.
"""
from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch

from .._checks import seed_arg
from .. import data as D
from ..attacks import BIM, FGSM, PGD, RandomNoise
from ..attacks.step import check_norm
from ..data.sampling import BPRSampler
from ..evaluation import evaluate, validator
from ..evaluation.groups import Groups, item_popularity_groups, user_activity_groups, user_gender_groups
from ..metrics import group_means, item_fairness, mad_rating, per_item_ndcg, user_fairness
from ..models import MF, Random
from ..training import Trainer, train_amf
from .baseline import BPRSettings
from .inputs import check_dataset
from .provenance import Provenance, collect, provenance_entry, provenance_from
from .records import TrainingRecord, config_from_dict, config_to_dict, number, numbers

#: Table 1 columns: our metric name -> the paper's.
TABLE1_METRICS = ("PR", "RE", "nDCG", "EFD", "SE", "ICov")
ATTACKS = ("FGSM", "BIM", "PGD")
CONDITIONS = ("clean", "random", "FGSM", "BIM", "PGD")
MODELS = ("BPR-MF", "AMF")
#: grouping -> the skewed ideal distributions of Table 3 (0-based favoured group: f1 and f4, or f1 and f2)
FAVOURED = {"item_pop": (0, 3), "user_gender": (0, 1), "user_activity": (0, 3)}


@dataclass
class MSAPConfig(BPRSettings):
    """MSAP's attack settings (eps 0.5, step eps/4, L up to 150, eps swept over 0.001..10 at L=25,
    k=10); APR's AMF (eps 0.5, lambda 1). BPR-MF is trained with the baseline's settings
    (``BPRSettings``: Adam, lr 1e-3, batch 2048, early stopping on the validation split), the ones
    tuned for this library, not MSAP's 2,000 fixed epochs at lr 0.05 with batch 512 (not tried
    here). AMF continues from the trained BPR-MF (MSAP: from BPR-MF's epoch 1,000) with the same
    optimiser and early stopping."""

    data_path: Optional[str] = None       # a file/directory you have (ML-1M, Last.fm, ...) instead
    data_format: Optional[str] = None     # its advrec.data.load_file format (None: guessed)
    seeds: Tuple[int, ...] = (0, 1, 2)
    amf_epochs: int = 300
    amf_patience: int = 40
    amf_eps: float = 0.5
    amf_lam: float = 1.0
    eps: float = 0.5
    alpha: Optional[float] = None         # step size; None = eps / 4 (MSAP)
    norm: str = "l2"
    steps: int = 150                      # Figure 1 length and the BIM/PGD iterations of Tables 1-3
    curve_every: int = 1                  # evaluate every n-th iteration for Figure 1
    sweep_eps: Tuple[float, ...] = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
    sweep_steps: int = 25
    accept_steps: int = 25                # BIM/PGD iterations of the acceptance check against FGSM
    k: int = 10
    progress: Optional[bool] = None

    @classmethod
    def quick(cls, **overrides: Any) -> "MSAPConfig":
        """One seed, short AMF, 25 iterations, a 5-point sweep: a couple of minutes on 2 cores."""
        base = dict(seeds=(0,), amf_epochs=30, amf_patience=10, steps=25,
                    sweep_eps=(0.01, 0.1, 0.5, 1.0, 5.0))
        base.update(overrides)
        return cls(**base)

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting."""
        check_dataset(self.dataset, self.data_path)
        ints = {"dim": self.dim, "batch_size": self.batch_size, "epochs": self.epochs, "patience": self.patience,
                "amf_epochs": self.amf_epochs, "amf_patience": self.amf_patience, "steps": self.steps,
                "curve_every": self.curve_every, "sweep_steps": self.sweep_steps,
                "accept_steps": self.accept_steps, "k": self.k}
        for name, v in ints.items():
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        positive = {"init_std": self.init_std, "lr": self.lr, "eps": self.eps, "amf_eps": self.amf_eps}
        for name, v in positive.items():
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        for name, v in (("l2", self.l2), ("amf_lam", self.amf_lam)):
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if self.alpha is not None and not (isinstance(self.alpha, (int, float)) and math.isfinite(self.alpha)
                                           and self.alpha > 0):
            raise ValueError(f"alpha must be None or a finite number > 0, got {self.alpha!r}")
        check_norm(self.norm)
        seeds = tuple(self.seeds)
        if not seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
            raise ValueError(f"seeds must be a non-empty sequence of ints, got {self.seeds!r}")
        for s in seeds:
            seed_arg(s, "seeds entries")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct, got {list(seeds)}")
        if any(isinstance(e, bool) or not (isinstance(e, (int, float)) and math.isfinite(e) and e > 0)
               for e in self.sweep_eps):
            raise ValueError(f"sweep_eps must hold finite numbers > 0 (or be empty: no sweep), got {self.sweep_eps!r}")
        if self.accept_steps > self.steps:
            raise ValueError(f"accept_steps={self.accept_steps} exceeds steps={self.steps}; "
                             "the acceptance check reads the Figure 1 curve")


#: the key order of ``config`` in the committed reports (msap.json), kept so they stay byte-identical
_CONFIG_ORDER = ("dataset", "data_path", "data_format", "seeds", "dim", "init_std", "lr", "l2", "batch_size",
                 "epochs", "patience", "valid_metric", "amf_epochs", "amf_patience", "amf_eps", "amf_lam", "eps",
                 "alpha", "norm", "steps", "curve_every", "sweep_eps", "sweep_steps", "accept_steps", "k",
                 "threads", "progress")


@dataclass(frozen=True)
class GroupRecord:
    """One grouping (item popularity, user gender, user activity) under one condition: nDCG@k per
    group (C1 first) and the fairness measures (``GCE_f0``, ``GCE_f<j>``, ``MADr``, ``MADR``)."""

    nDCG: List[float]
    fairness: Dict[str, float]

    def to_dict(self) -> Dict[str, Any]:
        return {"nDCG": self.nDCG, **self.fairness}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "GroupRecord":
        return cls(d["nDCG"], {k: v for k, v in d.items() if k != "nDCG"})


@dataclass(frozen=True)
class ConditionRecord:
    """One model under one condition (clean, random, FGSM, BIM, PGD): the Table 1 metrics (and HR)
    and, per grouping, Tables 2-3."""

    metrics: Dict[str, float]
    groups: Dict[str, GroupRecord]
    user_ndcg: List[float] = field(default_factory=list)  # per test user (one order in a seed), 6 decimals

    def to_dict(self) -> Dict[str, Any]:
        out = {"metrics": self.metrics, "groups": {k: g.to_dict() for k, g in self.groups.items()}}
        if self.user_ndcg:     # what a grid's leaderboard pairs to test a drop for significance
            out["user_nDCG"] = self.user_ndcg
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ConditionRecord":
        return cls(d["metrics"], {k: GroupRecord.from_dict(g) for k, g in d["groups"].items()},
                   list(d.get("user_nDCG", ())))


@dataclass(frozen=True)
class AttackCurve:
    """Figure 1 for one iterative attack: the iterations measured (0 = clean) and each light
    metric after them."""

    step: List[int]
    metrics: Dict[str, List[float]]

    def to_dict(self) -> Dict[str, Any]:
        return {"step": self.step, **self.metrics}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "AttackCurve":
        return cls(d["step"], {k: v for k, v in d.items() if k != "step"})


@dataclass(frozen=True)
class MSAPModelRecord:
    """One model of one seed: every condition, the BIM/PGD curves, the eps sweep (attack ->
    metric -> one value per ``sweep_eps``) and the seconds all its attacks took."""

    conditions: Dict[str, ConditionRecord]
    curves: Dict[str, AttackCurve]
    sweep: Dict[str, Dict[str, List[float]]]
    attack_seconds: float

    def to_dict(self) -> Dict[str, Any]:
        return {"conditions": {k: c.to_dict() for k, c in self.conditions.items()},
                "curves": {k: c.to_dict() for k, c in self.curves.items()}, "sweep": self.sweep,
                "attack_seconds": self.attack_seconds}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MSAPModelRecord":
        return cls({k: ConditionRecord.from_dict(c) for k, c in d["conditions"].items()},
                   {k: AttackCurve.from_dict(c) for k, c in d["curves"].items()}, d["sweep"], d["attack_seconds"])


@dataclass(frozen=True)
class MSAPSeed:
    """Everything one seed measured: how each model trained, each model's record, and the
    random recommender's light metrics (the floor of the figures)."""

    seed: int
    training: Dict[str, TrainingRecord]
    models: Dict[str, MSAPModelRecord]
    random_recommender: Dict[str, float]

    def to_dict(self) -> Dict[str, Any]:
        return {"seed": self.seed, "training": {k: t.to_dict() for k, t in self.training.items()},
                "models": {k: m.to_dict() for k, m in self.models.items()},
                "random_recommender": self.random_recommender}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MSAPSeed":
        return cls(d["seed"], {k: TrainingRecord.from_dict(t) for k, t in d["training"].items()},
                   {k: MSAPModelRecord.from_dict(m) for k, m in d["models"].items()}, d["random_recommender"])


@dataclass(frozen=True)
class MSAPResult:
    """Per-seed records (plain numbers, JSON-ready) and the run's context; ``msap_report``
    aggregates them (mean and standard deviation over seeds) into the tables and figures."""

    config: MSAPConfig
    data: str = ""
    group_names: Dict[str, Tuple[str, ...]] = field(default_factory=dict)
    seeds: List[MSAPSeed] = field(default_factory=list)
    seconds: float = float("nan")
    provenance: Optional[Provenance] = None

    def to_dict(self) -> Dict[str, Any]:
        return {"config": config_to_dict(self.config, _CONFIG_ORDER), "data": self.data,
                "group_names": {k: list(v) for k, v in self.group_names.items()},
                "seeds": [s.to_dict() for s in self.seeds], "seconds": self.seconds,
                **provenance_entry(self.provenance)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MSAPResult":
        """From a loaded msap.json (strict JSON: null back to NaN, "inf" to infinity)."""
        return cls(config=config_from_dict(MSAPConfig, d["config"]), data=d.get("data", ""),
                   group_names={k: tuple(v) for k, v in d.get("group_names", {}).items()},
                   seeds=[MSAPSeed.from_dict(numbers(s)) for s in d["seeds"]], seconds=number(d.get("seconds")),
                   provenance=provenance_from(d))


# ----------------------------------------------------------------------------- data

@dataclass
class MSAPData:
    """The interactions, their leave-one-out split and the user/item groupings of Tables 2-3."""

    inter: Any
    split: Any
    groups: Dict[str, Groups]
    source: str


def load_data(config: MSAPConfig) -> MSAPData:
    """ML-100K (or ``config.data_path``) as implicit feedback, split leave-one-out (by time when
    timestamps exist), grouped by item popularity, user activity and, when known, user gender."""
    if config.data_path is not None:
        loaded = D.load_file(config.data_path, config.data_format)
        dataset = loaded if isinstance(loaded, D.Dataset) else None
        ratings = dataset.interactions if dataset is not None else loaded
        if not hasattr(ratings, "to_csr"):
            raise ValueError(f"data_path: {config.data_path} holds no user-item interactions "
                             f"(read as {type(loaded).__name__})")
        source = str(config.data_path)
    else:
        dataset = D.load(config.dataset)
        ratings, source = dataset.interactions, f"{config.dataset} ({dataset.portable_source()})"
    inter = D.implicit(ratings, _quiet=True)
    # MSAP: the last interaction when timestamps exist (ML-1M), a random one otherwise (Last.fm)
    order = "time" if inter.timestamp is not None else "random"
    split = D.leave_one_out(inter, order=order, validation=True, seed=0)
    groups = {"item_pop": item_popularity_groups(split.train), "user_activity": user_activity_groups(split.train)}
    try:
        if dataset is not None:
            groups["user_gender"] = user_gender_groups(dataset)
    except ValueError:
        pass  # no gender column: Table 2/3 leave that grouping out (reported in the tables)
    return MSAPData(inter, split, groups, f"{source}; leave-one-out by {order}")


# ----------------------------------------------------------------------------- measuring

class Measure:
    """Evaluates a model (clean or under ``delta``) on the test split: the light metrics of the
    curves, or everything the tables need."""

    def __init__(self, data: MSAPData, k: int):
        self.split, self.groups, self.k = data.split, data.groups, k
        self.exclude = (data.split.train, data.split.valid)
        self.seen = D.exclusion_csr(*self.exclude)
        test_indptr, self.test_items = data.split.test.to_csr()
        self.test_counts = np.diff(test_indptr)

    def _evaluate(self, model, delta):
        return evaluate(model, self.split.test, exclude=self.exclude, k=self.k, popularity=self.split.train,
                        delta=delta, progress=False, auc=False)

    def _metrics(self, res) -> Dict[str, float]:
        s, k = res.summary(), self.k
        return {"PR": s[f"Precision@{k}"], "RE": s[f"Recall@{k}"], "nDCG": s[f"nDCG@{k}"],
                "EFD": s[f"EFD@{k}"], "SE": s[f"Entropy@{k}"] / math.log(2),  # bits, as the paper's values imply
                "ICov": s[f"ItemCount@{k}"], "HR": s[f"HR@{k}"]}

    def light(self, model, delta=None) -> Dict[str, float]:
        return self._metrics(self._evaluate(model, delta))

    def mean_scores(self, model, users: np.ndarray, delta=None) -> Tuple[np.ndarray, np.ndarray]:
        """Mean predicted score of each user over their candidate items and of each item over the
        users it is a candidate for (training and validation items are not candidates), scored in
        tiles of 1024 users: the per-user and per-item values MADr compares between groups."""
        n_items = self.split.test.n_items
        user_mean = np.zeros(len(users))
        item_sum, item_count = np.zeros(n_items), np.zeros(n_items)
        for start in range(0, len(users), 1024):
            tile = users[start:start + 1024]
            with torch.no_grad():
                scores = model.full_scores(torch.as_tensor(tile), delta).detach().cpu().double().numpy()
            lo, hi = self.seen[0][tile], self.seen[0][tile + 1]
            counts = hi - lo
            rows = np.repeat(np.arange(len(tile)), counts)
            cols = self.seen[1][np.repeat(lo - np.r_[0, np.cumsum(counts)[:-1]], counts) + np.arange(counts.sum())]
            candidate = np.ones(scores.shape, dtype=bool)
            candidate[rows, cols] = False
            scores = np.where(candidate, scores, 0.0)
            user_mean[start:start + len(tile)] = scores.sum(1) / np.maximum(candidate.sum(1), 1)
            item_sum += scores.sum(0)
            item_count += candidate.sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return user_mean, np.where(item_count > 0, item_sum / np.maximum(item_count, 1), np.nan)

    def full(self, model, delta=None) -> ConditionRecord:
        res = self._evaluate(model, delta)
        k = self.k
        truth = (np.r_[0, np.cumsum(self.test_counts[res.users])].astype(np.int64), self.test_items)
        per_item = per_item_ndcg(res.topk, truth, self.split.test.n_items, k)
        per_user = res.per_user[f"nDCG@{k}"]
        user_scores, item_scores = self.mean_scores(model, res.users, delta)
        tables: Dict[str, GroupRecord] = {}
        for name, groups in self.groups.items():
            n = len(groups.names)
            if name == "item_pop":
                by_group = group_means(per_item, groups.labels, n)
                fair = item_fairness(per_item, groups.labels, favoured=FAVOURED[name], n_groups=n)
                fair["MADr"] = mad_rating(item_scores, groups.labels, n)
            else:
                user_labels = groups.labels[res.users]
                by_group = group_means(per_user, user_labels, n)
                fair = user_fairness(res, groups.labels, metric=f"nDCG@{k}", favoured=FAVOURED[name], n_groups=n)
                fair["MADr"] = mad_rating(user_scores, user_labels, n)
            tables[name] = GroupRecord([float(v) for v in by_group], {m: float(v) for m, v in fair.items()})
        return ConditionRecord(self._metrics(res), tables, [round(float(v), 6) for v in per_user])


# ----------------------------------------------------------------------------- one seed

def attack_batch(train, seed: int) -> Dict[str, torch.Tensor]:
    """The whole training set as one batch: one BPR triple per training interaction, negatives
    drawn once with ``seed`` (every iteration of an attack sees the same triples)."""
    indptr, indices = train.to_csr()
    users, pos, neg = BPRSampler(indptr, indices, train.n_items, seed=seed).epoch()
    return {"user": torch.from_numpy(users), "pos": torch.from_numpy(pos), "neg": torch.from_numpy(neg)}


def _bar(total: int, desc: str, show: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not show, leave=False, file=sys.stderr)


def _curve(model, attack, batch, measure: Measure, config: MSAPConfig, clean: ConditionRecord,
           bar) -> Tuple[AttackCurve, ConditionRecord]:
    """Figure 1: the light metrics after every ``curve_every``-th iteration (and at
    ``accept_steps``), starting from the clean values; the full measure after the last one."""
    curve: Dict[str, List[float]] = {"step": [0], **{m: [v] for m, v in clean.metrics.items()}}
    final: Optional[ConditionRecord] = None
    for step, delta in attack.steps_iter(batch):
        if step == config.steps:
            final = measure.full(model, delta)
            values: Optional[Dict[str, float]] = final.metrics
        elif step % config.curve_every == 0 or step == config.accept_steps:
            values = measure.light(model, delta)
        else:
            values = None
        if values is not None:
            curve["step"].append(step)
            for m, v in values.items():
                curve[m].append(v)
        bar.update(1)
    assert final is not None, "the attack stopped before config.steps"
    return AttackCurve(curve["step"], {m: v for m, v in curve.items() if m != "step"}), final


def _sweep(model, batch, measure: Measure, config: MSAPConfig, seed: int, bar) -> Dict[str, Dict[str, List[float]]]:
    """Figure 2: nDCG and ICov of every attack at each eps of ``sweep_eps`` (``sweep_steps``
    iterations; a given ``alpha`` stays the same share of the budget)."""
    norm = config.norm
    sweep: Dict[str, Dict[str, List[float]]] = {a: {"nDCG": [], "ICov": []} for a in ("random", *ATTACKS)}
    for e in config.sweep_eps:
        a = None if config.alpha is None else config.alpha * e / config.eps
        deltas = {"random": RandomNoise(model, e, norm=norm, seed=seed)(batch),
                  "FGSM": FGSM(model, e, norm=norm)(batch),
                  "BIM": BIM(model, e, a, config.sweep_steps, norm=norm)(batch),
                  "PGD": PGD(model, e, a, config.sweep_steps, seed=seed, norm=norm)(batch)}
        for attack_name, delta in deltas.items():
            values = measure.light(model, delta)
            sweep[attack_name]["nDCG"].append(values["nDCG"])
            sweep[attack_name]["ICov"].append(values["ICov"])
        bar.update(1)
    return sweep


def _attack_model(model, batch, measure: Measure, config: MSAPConfig, seed: int, show: bool,
                  name: str) -> MSAPModelRecord:
    """Every condition, curve and sweep point of one model (clean, random noise, FGSM, BIM, PGD)."""
    eps, norm, alpha = config.eps, config.norm, config.alpha
    start = time.perf_counter()
    conditions: Dict[str, ConditionRecord] = {}
    curves: Dict[str, AttackCurve] = {}
    clean = measure.full(model)
    conditions["clean"] = clean
    conditions["random"] = measure.full(model, RandomNoise(model, eps, norm=norm, seed=seed)(batch))
    conditions["FGSM"] = measure.full(model, FGSM(model, eps, norm=norm)(batch))
    for attack_name, attack in (("BIM", BIM(model, eps, alpha, config.steps, norm=norm)),
                                ("PGD", PGD(model, eps, alpha, config.steps, seed=seed, norm=norm))):
        with _bar(config.steps, f"seed {seed} {name} {attack_name}", show) as bar:
            curves[attack_name], conditions[attack_name] = _curve(model, attack, batch, measure, config, clean, bar)
    with _bar(len(config.sweep_eps), f"seed {seed} {name} eps sweep", show) as bar:
        sweep = _sweep(model, batch, measure, config, seed, bar)
    return MSAPModelRecord(conditions, curves, sweep, time.perf_counter() - start)


def _train_bpr(data: MSAPData, config: MSAPConfig, seed: int) -> Tuple[MF, TrainingRecord]:
    inter, split = data.inter, data.split
    model = MF(inter.n_users, inter.n_items, dim=config.dim, init_std=config.init_std, seed=seed)
    trainer = Trainer(optimizer="adam", lr=config.lr, epochs=config.epochs, batch_size=config.batch_size,
                      l2=config.l2, patience=config.patience, seed=seed, progress=config.progress,
                      threads=config.threads)
    start = time.perf_counter()
    history = trainer.fit(model, split.train, validator(split.valid, exclude=split.train, metric=config.valid_metric))
    return model, TrainingRecord(history.epochs, history.best_epoch + 1, time.perf_counter() - start)


def _train_amf(bpr: MF, data: MSAPData, config: MSAPConfig, seed: int) -> Tuple[MF, TrainingRecord]:
    amf = copy.deepcopy(bpr)
    split = data.split
    start = time.perf_counter()
    history = train_amf(amf, split.train, eps=config.amf_eps, lam=config.amf_lam, epochs=config.amf_epochs,
                        norm=config.norm, optimizer="adam", lr=config.lr, batch_size=config.batch_size,
                        l2=config.l2, patience=config.amf_patience, seed=seed, progress=config.progress,
                        threads=config.threads,
                        validator=validator(split.valid, exclude=split.train, metric=config.valid_metric))
    return amf, TrainingRecord(history.epochs, history.best_epoch + 1, time.perf_counter() - start)


def _run_seed(data: MSAPData, config: MSAPConfig, seed: int, pretrained: Optional[MF], show: bool) -> MSAPSeed:
    training: Dict[str, TrainingRecord] = {}
    if pretrained is None:
        bpr, training["BPR-MF"] = _train_bpr(data, config, seed)
    else:
        bpr, training["BPR-MF"] = pretrained, TrainingRecord(pretrained=True)
    amf, training["AMF"] = _train_amf(bpr, data, config, seed)
    measure = Measure(data, config.k)
    random_recommender = measure.light(Random(data.inter.n_users, data.inter.n_items, seed=seed))
    batch = attack_batch(data.split.train, seed)
    models: Dict[str, MSAPModelRecord] = {}
    for name, model in (("BPR-MF", bpr), ("AMF", amf)):
        model.eval()
        models[name] = _attack_model(model, batch, measure, config, seed, show, name)
    return MSAPSeed(seed, training, models, random_recommender)


def run_msap(config: Optional[MSAPConfig] = None, pretrained: Optional[Mapping[int, MF]] = None) -> MSAPResult:
    """Run the experiment for every seed of ``config``.

    ``pretrained`` maps a seed to a BPR-MF already trained on this experiment's split and settings
    (``advrec demo`` passes the one it trained), so it is not trained again; the map is not modified.
    """
    config = config or MSAPConfig()
    config.validate()
    pretrained = dict(pretrained or {})
    unknown = sorted(set(pretrained) - set(config.seeds))
    if unknown:
        raise ValueError(f"pretrained has models for seeds {unknown} that config.seeds {list(config.seeds)} "
                         "does not run")
    start = time.perf_counter()
    data = load_data(config)
    for seed, model in pretrained.items():
        if not isinstance(model, MF) or (model.n_users, model.n_items) != (data.inter.n_users, data.inter.n_items):
            raise ValueError(f"pretrained[{seed}] must be an MF over {data.inter.n_users} users x "
                             f"{data.inter.n_items} items")
    show = sys.stderr.isatty() if config.progress is None else bool(config.progress)
    seeds = [_run_seed(data, config, seed, pretrained.get(seed), show) for seed in config.seeds]
    return MSAPResult(config=config, data=data.source,
                      group_names={name: tuple(g.names) for name, g in data.groups.items()},
                      seeds=seeds, seconds=time.perf_counter() - start, provenance=collect(data.inter, config))
