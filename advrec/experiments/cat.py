"""The cascade-guided adversarial training experiment (Tan et al.) on ML-100K or your data.

Per seed, on a leave-one-out-by-time split (last item test, second last validation; the seed
draws the initialisations, dropout and negatives), for SASRec and GRU4Rec:

* Table 3: the base model trained to convergence (early stopping on validation nDCG@10), then
  each adversarial method (adv_linear, adv_seq, adv_global, adv_cas) trained on from that same
  checkpoint for ``adv_epochs`` with its best validation epoch kept; full-ranking nDCG@10 and
  HR@10 on test, history items excluded, paired t-tests against the base model. The control
  ``continued`` (``control=True``) trains the base on exactly as the methods are, with the plain
  loss: what the extra epochs and the fresh optimiser give without any perturbation;
* Table 4: adv_cas with the same-sequence (adv_cas_1) or cross-sequence (adv_cas_2) cascade
  component only (``component_models``);
* Figure 4: adv_cas at other perturbation sizes (``sweep_eps``, on ``sweep_seeds``);
* Figures 5-6: the drop of test nDCG@10 / HR@10 when the first, middle or last item, or the last
  K items, of each test history are replaced adversarially by a similar real item
  (``advrec.attacks.substitute_items``), for the base model and every method;
* Figure 3: validation nDCG@10 through both training phases.

Scaled down from the paper (500 + 100 epochs, T = 200 on ML-1M) for ML-100K on a CPU: T =
``max_len`` (50, the paper's value for its sparser data sets), the base phase stops early, and
the adversarial phase runs ``adv_epochs``. ``cat_report`` aggregates the seeds.
"""
from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch

from .._checks import seed_arg
from .. import data as D
from .._logging import report
from ..attacks.substitution import substitute_items
from ..data.sequences import training_sequences, user_sequences
from ..evaluation import evaluate
from ..models import GRU4Rec, SASRec
from ..training import SequenceTrainer, cascade_effects
from ..training.cat import METHODS, CascadeAdversarialLoss
from .inputs import check_dataset, implicit_interactions
from .provenance import Provenance, collect, provenance_entry, provenance_from
from .records import config_from_dict, number, numbers

SEQ_MODELS = {"SASRec": SASRec, "GRU4Rec": GRU4Rec}
#: Table 4's ablations: name -> the cascade component kept.
COMPONENTS = {"adv_cas_1": "sequence", "adv_cas_2": "cross"}
POSITIONS = ("first", "middle", "last")
#: the control method: the base trained on like the adversarial methods, with the plain loss
CONTROL = "continued"
METRICS = ("nDCG@10", "HR@10")


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class CATConfig:
    """Settings of the experiment; the paper's where it gives them (dim 100, 2 SASRec blocks,
    dropout 0.2, Adam lr 1e-3, batch 128, L2 1e-5, eps 10, lambda1 = lambda2 = 1)."""

    dataset: str = "ml-100k"
    data_path: Optional[str] = None
    data_format: Optional[str] = None
    min_interactions: int = 0         # k-core filter of users and items (the paper: 5 for Amazon)
    seeds: Tuple[int, ...] = (0, 1, 2)
    models: Tuple[str, ...] = ("SASRec", "GRU4Rec")
    max_len: int = 50
    dim: int = 100
    n_blocks: int = 2
    dropout: float = 0.2
    lr: float = 1e-3
    l2: float = 1e-5
    batch_size: int = 128
    epochs: int = 200
    patience: int = 30
    eval_every: int = 5
    methods: Tuple[str, ...] = METHODS
    adv_epochs: int = 40
    adv_eval_every: int = 2
    eps: float = 0.3                  # the paper's 10 wrecks the models here: docs/results/cat/tuning.md
    lam1: float = 0.1                 # the paper's 1 lets L_adv1 outweigh L_B here (tuning.md)
    lam2: float = 1.0
    control: bool = True              # also train the base on with the plain loss ("continued")
    component_models: Tuple[str, ...] = ("SASRec",)   # Table 4 (the paper reports SASRec)
    sweep_eps: Tuple[float, ...] = (0.1, 1.0)          # Figure 4, adv_cas at these eps too
    sweep_models: Tuple[str, ...] = ("SASRec", "GRU4Rec")
    sweep_seeds: Tuple[int, ...] = (0,)
    last_k: Tuple[int, ...] = (1, 2, 3, 4, 5)
    pool_size: int = 20
    step: float = 1.0
    threads: Optional[int] = 1     # torch threads for the run: these small models are per-op bound,
                                   # and 2 threads on a busy 2-core machine ran 10-100x slower
    progress: Optional[bool] = None

    @classmethod
    def quick(cls, **overrides: Any) -> "CATConfig":
        """One seed, SASRec only, short phases, adv_cas only, no ablations: minutes on 2 cores."""
        base = dict(seeds=(0,), models=("SASRec",), epochs=60, patience=20, adv_epochs=6,
                    methods=("adv_cas",), control=False, component_models=(), sweep_eps=(), last_k=(1, 3))
        base.update(overrides)
        return cls(**base)

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting."""
        check_dataset(self.dataset, self.data_path)
        for name in ("max_len", "dim", "n_blocks", "batch_size", "epochs", "patience", "eval_every",
                     "adv_epochs", "adv_eval_every", "pool_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        for name in ("lr", "eps"):
            if not _finite(getattr(self, name)) or getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {getattr(self, name)!r}")
        if not isinstance(self.control, bool):
            raise ValueError(f"control must be True or False, got {self.control!r}")
        if isinstance(self.min_interactions, bool) or not isinstance(self.min_interactions, int) \
                or self.min_interactions < 0:
            raise ValueError(f"min_interactions must be an int >= 0, got {self.min_interactions!r}")
        for name in ("l2", "lam1", "lam2", "step"):
            if not _finite(getattr(self, name)) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)!r}")
        if not _finite(self.dropout) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        for name in ("seeds", "sweep_seeds"):
            seeds = tuple(getattr(self, name))
            if any(isinstance(s, bool) or not isinstance(s, int) for s in seeds) or (name == "seeds" and not seeds):
                raise ValueError(f"{name} must be a {'non-empty ' if name == 'seeds' else ''}sequence of ints, "
                                 f"got {getattr(self, name)!r}")
            for s in seeds:
                seed_arg(s, f"{name} entries")
        for name in ("models", "component_models", "sweep_models"):
            bad = [m for m in getattr(self, name) if m not in SEQ_MODELS]
            if bad or (name == "models" and not self.models):
                raise ValueError(f"{name} must name models from {sorted(SEQ_MODELS)}, got {getattr(self, name)!r}")
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise ValueError(f"methods must be from {METHODS}, got {self.methods!r}")
        if any(not _finite(e) or e <= 0 for e in self.sweep_eps):
            raise ValueError(f"sweep_eps must hold finite numbers > 0, got {self.sweep_eps!r}")
        if any(isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.max_len for k in self.last_k):
            raise ValueError(f"last_k must hold ints in [1, max_len={self.max_len}], got {self.last_k!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise ValueError(f"threads must be a positive int or None, got {self.threads!r}")


@dataclass(frozen=True)
class SubstitutionRecord:
    """Test metrics after one substitution (first / middle / last / last K items replaced), how
    many items were replaced, and the relative drop ``(clean - attacked) / clean`` per metric."""

    metrics: Dict[str, float]
    n_replaced: int
    drop: Dict[str, float]

    def to_dict(self) -> Dict[str, Any]:
        return {"metrics": self.metrics, "n_replaced": self.n_replaced, "drop": self.drop}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SubstitutionRecord":
        return cls(d["metrics"], d["n_replaced"], d["drop"])


@dataclass(frozen=True)
class MethodRecord:
    """One training phase of one model: test metrics, epochs run, best epoch (0-based, counted
    from the phase's start), its validation nDCG@10, the validation curve ((epoch, value) pairs),
    seconds per epoch; for Table 3's methods the paired t-test p against base per metric and,
    for the base and Table 3's methods, the substitution records (where -> record)."""

    test: Dict[str, float]
    epochs: int
    best_epoch: int
    valid: float
    curve: List[Tuple[int, float]]
    seconds_per_epoch: float
    p_vs_base: Optional[Dict[str, float]] = None
    substitution: Optional[Dict[str, SubstitutionRecord]] = None

    @property
    def is_base(self) -> bool:
        """The base phase: substitutions measured, no test against itself."""
        return self.p_vs_base is None and self.substitution is not None

    def to_dict(self) -> Dict[str, Any]:
        # the runner has always written the base record with its test metrics first
        train = {"epochs": self.epochs, "best_epoch": self.best_epoch, "valid": self.valid, "curve": self.curve,
                 "seconds_per_epoch": self.seconds_per_epoch}
        out: Dict[str, Any] = {"test": self.test, **train} if self.is_base else {**train, "test": self.test}
        if self.p_vs_base is not None:
            out["p_vs_base"] = self.p_vs_base
        if self.substitution is not None:
            out["substitution"] = {k: r.to_dict() for k, r in self.substitution.items()}
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MethodRecord":
        sub = d.get("substitution")
        return cls(d["test"], d["epochs"], d["best_epoch"], d["valid"], d["curve"], d["seconds_per_epoch"],
                   d.get("p_vs_base"),
                   None if sub is None else {k: SubstitutionRecord.from_dict(r) for k, r in sub.items()})


def _methods_to_dict(records: Optional[Dict[str, MethodRecord]]) -> Optional[Dict[str, Any]]:
    return None if records is None else {k: r.to_dict() for k, r in records.items()}


def _methods_from_dict(d: Optional[Mapping[str, Any]]) -> Optional[Dict[str, MethodRecord]]:
    return None if d is None else {k: MethodRecord.from_dict(r) for k, r in d.items()}


@dataclass(frozen=True)
class CATModelRecord:
    """One model of one seed: base and each method (Table 3), the cascade ablations (Table 4,
    component models only), the eps sweep (Figure 4, keyed by ``repr(float(eps))``; sweep models
    and seeds only) and the seconds the model's whole part took."""

    methods: Dict[str, MethodRecord]
    components: Optional[Dict[str, MethodRecord]] = None
    sweep: Optional[Dict[str, MethodRecord]] = None
    seconds: float = float("nan")

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"methods": _methods_to_dict(self.methods)}
        if self.components is not None:
            out["components"] = _methods_to_dict(self.components)
        if self.sweep is not None:
            out["sweep"] = _methods_to_dict(self.sweep)
        out["seconds"] = self.seconds
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CATModelRecord":
        return cls(_methods_from_dict(d["methods"]) or {}, _methods_from_dict(d.get("components")),
                   _methods_from_dict(d.get("sweep")), d.get("seconds", float("nan")))


@dataclass(frozen=True)
class CATSeed:
    """Everything one seed measured, per model."""

    seed: int
    models: Dict[str, CATModelRecord]

    def to_dict(self) -> Dict[str, Any]:
        return {"seed": self.seed, "models": {k: m.to_dict() for k, m in self.models.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CATSeed":
        return cls(d["seed"], {k: CATModelRecord.from_dict(m) for k, m in d["models"].items()})


@dataclass(frozen=True)
class CATResult:
    """Per-seed records (plain numbers, JSON-ready); ``cat_report`` aggregates them."""

    config: CATConfig
    data: str = ""
    seeds: List[CATSeed] = field(default_factory=list)
    seconds: float = float("nan")
    provenance: Optional[Provenance] = None

    def to_dict(self) -> Dict[str, Any]:
        return {"config": asdict(self.config), "data": self.data, "seeds": [s.to_dict() for s in self.seeds],
                "seconds": self.seconds, **provenance_entry(self.provenance)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CATResult":
        """From a loaded cat.json (strict JSON: null back to NaN, "inf" to infinity)."""
        return cls(config=config_from_dict(CATConfig, d["config"]), data=d.get("data", ""),
                   seeds=[CATSeed.from_dict(numbers(s)) for s in d["seeds"]], seconds=number(d.get("seconds")),
                   provenance=provenance_from(d))


@dataclass
class SeqData:
    """One leave-one-out split and the sequences every phase reads."""

    inter: Any
    split: Any
    valid_histories: np.ndarray   # train items only: what a validation prediction sees
    test_histories: np.ndarray    # train + valid items: what a test prediction sees
    train_inputs: np.ndarray      # the training regime's inputs (cascade effects are computed on them)
    source: str


def load_data(config: CATConfig) -> SeqData:
    """Implicit interactions (every rating counts), split by time, and the sequences."""
    inter, source, _ = implicit_interactions(config.dataset, config.data_path, config.data_format)
    if config.min_interactions > 0:
        before = len(inter)
        inter = D.k_core(inter, config.min_interactions, config.min_interactions)
        report(f"cat: {config.min_interactions}-core filter kept {len(inter)} of {before} interactions")
    if inter.timestamp is None:
        raise ValueError("the interactions have no timestamps; sequential models need the order")
    split = D.leave_one_out(inter, order="time")
    return SeqData(inter, split, user_sequences(split.train, config.max_len),
                   user_sequences(split.train, config.max_len, split.valid),
                   training_sequences(split.train, config.max_len).inputs, source)


def _build(name: str, data: SeqData, config: CATConfig, seed: int):
    extra = {"n_blocks": config.n_blocks} if name == "SASRec" else {}
    return SEQ_MODELS[name](data.inter.n_users, data.inter.n_items, dim=config.dim, max_len=config.max_len,
                            dropout=config.dropout, seed=seed, **extra)


def _validator(data: SeqData):
    def score(model) -> float:
        model.set_histories(data.valid_histories)
        return evaluate(model, data.split.valid, exclude=data.split.train, k=(10,), progress=False,
                        auc=False).summary()["nDCG@10"]
    return score


def _test(model, data: SeqData, histories: Optional[np.ndarray] = None):
    """Full ranking of every test item; the user's own history (train + valid) is never ranked."""
    model.eval()
    model.set_histories(data.test_histories if histories is None else histories)
    with torch.no_grad():
        return evaluate(model, data.split.test, exclude=(data.split.train, data.split.valid), k=(10,),
                        progress=False, auc=False)


def _summary(result) -> Dict[str, float]:
    s = result.summary()
    return {m: float(s[m]) for m in METRICS}


def _base_trainer(config: CATConfig, seed: int, show: bool, desc: str) -> SequenceTrainer:
    return SequenceTrainer(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, l2=config.l2,
                           patience=config.patience, eval_every=config.eval_every, seed=seed,
                           progress=show, threads=config.threads, desc=desc)


def _second_phase_trainer(config: CATConfig, seed: int, show: bool, desc: str,
                          loss: Optional[CascadeAdversarialLoss]) -> SequenceTrainer:
    """The trainer that goes on from the base checkpoint; ``loss=None`` is the plain loss (the control)."""
    return SequenceTrainer(epochs=config.adv_epochs, batch_size=config.batch_size, lr=config.lr, l2=config.l2,
                           eval_every=config.adv_eval_every, seed=seed + 1, loss_fn=loss,
                           progress=show, threads=config.threads, desc=desc)


def _cascade_scale(data: SeqData, config: CATConfig, components: str) -> torch.Tensor:
    inv = cascade_effects(data.train_inputs, config.batch_size, components=components, normalize="inverse-mean")
    return torch.as_tensor(np.asarray(inv), dtype=torch.float32)


def _substitution(model, data: SeqData, config: CATConfig, clean: Dict[str, float]) -> Dict[str, SubstitutionRecord]:
    """Test metrics after replacing the first/middle/last or the last K history items."""
    targets = np.full(data.inter.n_users, -1, dtype=np.int64)
    targets[data.split.test.user] = data.split.test.item
    out: Dict[str, SubstitutionRecord] = {}
    wheres = list(POSITIONS) + [k for k in config.last_k if k != 1]
    for where in wheres:
        sub = substitute_items(model, data.test_histories, targets, where=where, pool_size=config.pool_size,
                               step=config.step)
        attacked = _summary(_test(model, data, sub.sequences))
        label = where if isinstance(where, str) else f"last_{where}"
        out[label] = SubstitutionRecord(attacked, int(sub.replaced.sum()),
                                        {m: (clean[m] - attacked[m]) / clean[m] if clean[m] > 0 else float("nan")
                                         for m in METRICS})
    out["last_1"] = out["last"]
    model.set_histories(data.test_histories)
    return out


def _fit_adversarial(name: str, base_state, data: SeqData, config: CATConfig, seed: int, show: bool,
                     method: str, eps: float, components: str = "both") -> Tuple[Any, Dict[str, Any]]:
    """Train on from the base checkpoint with ``method``'s loss (``CONTROL``: the plain loss)."""
    model = _build(name, data, config, seed)
    model.load_state_dict(base_state)
    scale = _cascade_scale(data, config, components) if method == "adv_cas" else None
    loss = None if method == CONTROL else CascadeAdversarialLoss(method, eps=eps, lam1=config.lam1,
                                                                 lam2=config.lam2, scale=scale, seed=seed)
    label = f"{name} {method}" if loss is None else f"{name} {method} eps {eps:g} ({components})"
    history = _second_phase_trainer(config, seed, show, label, loss).fit(
        model, data.split.train, _validator(data))
    report(f"cat: seed {seed} {label}: best valid nDCG@10 "
           f"{history.best_metric:.4f} at epoch {history.best_epoch + 1}/{history.epochs}, "
           f"{history.train_seconds:.0f} s")
    return model, {"epochs": history.epochs, "best_epoch": history.best_epoch,
                   "valid": history.best_metric, "curve": _curve(history),
                   "seconds_per_epoch": history.train_seconds / max(history.epochs, 1)}


def _curve(history) -> List[Tuple[int, float]]:
    return [(i + 1, float(v)) for i, v in enumerate(history.metric) if not math.isnan(v)]


def _run_model(name: str, data: SeqData, config: CATConfig, seed: int, show: bool) -> CATModelRecord:
    t0 = time.perf_counter()
    model = _build(name, data, config, seed)
    history = _base_trainer(config, seed, show, f"{name} base").fit(model, data.split.train, _validator(data))
    report(f"cat: seed {seed} {name} base: best valid nDCG@10 {history.best_metric:.4f} at epoch "
           f"{history.best_epoch + 1}/{history.epochs}, {history.train_seconds:.0f} s")
    base_state = copy.deepcopy(model.state_dict())
    base_result = _test(model, data)
    base = _summary(base_result)
    methods: Dict[str, MethodRecord] = {"base": MethodRecord(
        test=base, epochs=history.epochs, best_epoch=history.best_epoch, valid=history.best_metric,
        curve=_curve(history), seconds_per_epoch=history.train_seconds / max(history.epochs, 1),
        substitution=_substitution(model, data, config, base))}
    for method in ((CONTROL,) if config.control else ()) + tuple(config.methods):
        adv, info = _fit_adversarial(name, base_state, data, config, seed, show, method, config.eps)
        result = _test(adv, data)
        test = _summary(result)
        p_vs_base = {m: result.compare(base_result)[m][1] for m in METRICS}
        methods[method] = MethodRecord(test=test, **info, p_vs_base=p_vs_base,
                                       substitution=_substitution(adv, data, config, test))
    components: Optional[Dict[str, MethodRecord]] = None
    if name in config.component_models:
        components = {}
        for label, comp in COMPONENTS.items():
            adv, info = _fit_adversarial(name, base_state, data, config, seed, show, "adv_cas", config.eps, comp)
            components[label] = MethodRecord(test=_summary(_test(adv, data)), **info)
    sweep: Optional[Dict[str, MethodRecord]] = None
    if name in config.sweep_models and seed in config.sweep_seeds and config.sweep_eps:
        sweep = {}
        for eps in config.sweep_eps:
            adv, info = _fit_adversarial(name, base_state, data, config, seed, show, "adv_cas", eps)
            sweep[repr(float(eps))] = MethodRecord(test=_summary(_test(adv, data)), **info)
    return CATModelRecord(methods, components, sweep, time.perf_counter() - t0)


def run_cat(config: Optional[CATConfig] = None) -> CATResult:
    """Run the experiment for every seed and model of ``config``."""
    config = config or CATConfig()
    config.validate()
    previous = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        return _run(config)
    finally:
        torch.set_num_threads(previous)


def _run(config: CATConfig) -> CATResult:
    start = time.perf_counter()
    data = load_data(config)
    show = sys.stderr.isatty() if config.progress is None else bool(config.progress)
    seeds = [CATSeed(seed, {name: _run_model(name, data, config, seed, show) for name in config.models})
             for seed in config.seeds]
    return CATResult(config=config, data=data.source, seeds=seeds, seconds=time.perf_counter() - start,
                     provenance=collect(data.inter, config))
