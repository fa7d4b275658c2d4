"""BPR-MF training against compiled peers (issue 18, "Training at the speed of compiled
libraries"): advrec's compiled epoch, its torch reference, ``implicit`` and Cornac, in one process.

Setting: the README baseline (``advrec.experiments.baseline.run_baseline``): ML-100K, every rating a
positive, leave-one-out by time with a validation item, full ranking. Every library's factors go
into an ``advrec.models.MF`` scored by the SAME evaluator: validation nDCG@20 (training items
excluded) after every epoch, test nDCG@10 (training and validation items excluded) at each run's
best validation epoch. Dim 64, one thread everywhere (``threadpool_limits(1)``, one torch thread).

- advrec: ``Trainer(optimizer="adam", lr=1e-3, batch_size=2048, l2=1e-4, patience=40, threads=1,
  engine=...)`` on ``MF(dim=64, init_std=0.05)``, the baseline's recipe; ``engine="compiled"``
  trains to early stopping, ``engine="torch"`` (~100 ms an epoch) is only timed per epoch unless
  ``ADVREC_BENCH_TORCH_FULL=1``.
- implicit 0.7.2: ``implicit.cpu.bpr.BayesianPersonalizedRanking(factors=63, num_threads=1)``. Its
  tables have ``factors + 1`` columns (users' last column fixed at 1, items' the item bias), so
  they are the score as they are: ``MF(dim=64)``. One ``fit(iterations=n, callback=...)``; the
  callback (after each epoch) validates. Its negatives are drawn by popularity (from the nonzeros).
- Cornac 3.0.1: ``cornac.models.BPR(k=64, seed=...)`` (a seed forces one thread) on a
  ``cornac.data.Dataset`` of ``split.train``'s (user, item) pairs; its remapped ids are mapped back;
  items without training rows get zero rows, as in implicit. Score = ``U V^T + b``: ``MF(dim=65)``
  with a column of ones and the bias column. ``BPR.fit`` has no callback: for the validated run its
  ``recom_bpr.trange`` is replaced by an iterator that validates between epochs.

Measured: (a) seconds per epoch: whole fits of ``TIMED_EPOCHS`` epochs without validation (setup
included), best of ``ROUNDS``, over the epochs; (b) the validated run: per-epoch training seconds,
validation (a full ranking, 10-30 ms) timed apart and excluded (included in brackets; advrec's
are ``History.seconds`` less its validator's time, so they keep the best-weights copy); advrec's time
to its first epoch with validation nDCG@20 >= ``TARGET`` and each peer's time to its own best
validation epoch over ``PEER_EPOCHS`` epochs; best validation nDCG@20, test nDCG@10. Ratios:
compiled epoch / implicit epoch and compiled time-to-0.099 / implicit time-to-own-best (issue 18
accepts <= 2 for both), compiled / Cornac epoch, torch epoch / compiled epoch.

Peer settings, chosen on validation (seed 0, 150-200 epochs; best val nDCG@20 at epoch): implicit
lr/reg 0.005/0.001 0.089@157, 0.005/0.05 0.079, 0.01/0.001 0.090@86, 0.01/0.01 0.088@110,
0.01/0.05 0.080, 0.02/0.001 0.087@41, 0.02/0.05 0.082, 0.05/0.01 0.077: 0.01/0.001. Cornac
0.01/0.01 0.089 (still rising at 150), 0.03/0.003 0.099@92, 0.03/0.03 0.087, 0.05/0.003 0.098@118,
0.05/0.01 0.098@67, 0.05/0.03 0.089, 0.1/0.03 0.086: 0.05/0.01.

Also: SASRec and GRU4Rec epochs of ``SequenceTrainer`` at one thread. Run by hand (about 1.5
minutes): ``python -m pytest bench/bench_training.py -q -s``.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import advrec.data as D
from advrec.evaluation import evaluate, validator
from advrec.models import MF
from advrec.training import Trainer

DIM, SEED, TARGET, ROUNDS, TIMED_EPOCHS, TORCH_TIMED_EPOCHS = 64, 0, 0.099, 3, 20, 5
ADVREC = dict(optimizer="adam", lr=1e-3, batch_size=2048, l2=1e-4, patience=40, seed=SEED, threads=1)
ADVREC_EPOCHS, PEER_EPOCHS, SEQ_EPOCHS, SEQ_T = 300, 150, 10, 50
IMPLICIT = dict(learning_rate=0.01, regularization=0.001)
CORNAC = dict(learning_rate=0.05, lambda_reg=0.01)
TORCH_FULL = os.environ.get("ADVREC_BENCH_TORCH_FULL") == "1"


@dataclass
class Setup:
    split: Any
    valid: Callable[[Any], float]

    def test(self, model: torch.nn.Module) -> float:
        seen = (self.split.train, self.split.valid)
        return float(evaluate(model, self.split.test, exclude=seen, k=(10,), progress=False).summary()["nDCG@10"])


@dataclass
class Row:
    """One trainer: seconds per epoch, and its validated run (validation seconds kept apart)."""

    name: str
    settings: str
    epoch_s: float = math.nan
    train_s: List[float] = field(default_factory=list)
    valid_s: List[float] = field(default_factory=list)
    metric: List[float] = field(default_factory=list)
    test: float = math.nan
    note: str = ""

    def reached(self, target: Optional[float]) -> int:
        """First epoch with metric >= target (None: the best epoch); -1 if none."""
        if target is None:
            return int(np.nanargmax(self.metric)) if self.metric else -1
        return next((e for e, m in enumerate(self.metric) if m >= target), -1)

    def seconds_to(self, epoch: int, with_validation: bool = False) -> float:
        if epoch < 0:
            return math.nan
        return sum(self.train_s[:epoch + 1]) + (sum(self.valid_s[:epoch + 1]) if with_validation else 0.0)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(previous)


def epoch_seconds(fit: Callable[[], Any], epochs: int, rounds: int = ROUNDS) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fit()
        times.append(time.perf_counter() - t0)
    return min(times) / epochs


def mf_from(U: np.ndarray, V: np.ndarray) -> MF:
    model = MF(U.shape[0], V.shape[0], dim=U.shape[1], seed=SEED)
    with torch.no_grad():
        model.user_factors.copy_(torch.from_numpy(np.ascontiguousarray(U, np.float32)))
        model.item_factors.copy_(torch.from_numpy(np.ascontiguousarray(V, np.float32)))
    return model.eval()


class EpochClock:
    """A peer calls ``epoch_done(U, V)`` after each epoch: training seconds since the last call
    (or since construction), then a timed validation; the best epoch's tables are kept."""

    def __init__(self, row: Row, setup: Setup) -> None:
        self.row, self.setup, self.best_uv = row, setup, None
        self.last = time.perf_counter()

    def epoch_done(self, U: np.ndarray, V: np.ndarray) -> None:
        t0 = time.perf_counter()
        self.row.train_s.append(t0 - self.last)
        value = self.setup.valid(mf_from(U, V))
        if not self.row.metric or value > max(self.row.metric):
            self.best_uv = (U.copy(), V.copy())
        self.row.metric.append(value)
        self.last = time.perf_counter()
        self.row.valid_s.append(self.last - t0)

    def finish(self) -> Row:
        self.row.test = self.setup.test(mf_from(*self.best_uv))
        return self.row


def run_implicit(setup: Setup) -> Row:
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    train = setup.split.train
    indptr, items = train.to_csr()
    X = sp.csr_matrix((np.ones(len(items), np.float32), items, indptr), shape=(train.n_users, train.n_items))

    def model(epochs: int) -> BayesianPersonalizedRanking:
        return BayesianPersonalizedRanking(factors=DIM - 1, iterations=epochs, num_threads=1, random_state=SEED,
                                           **IMPLICIT)

    row = Row("implicit 0.7.2 BPR", f"factors {DIM - 1}+bias, lr {IMPLICIT['learning_rate']}, "
                                    f"reg {IMPLICIT['regularization']}")
    row.epoch_s = epoch_seconds(lambda: model(TIMED_EPOCHS).fit(X, show_progress=False), TIMED_EPOCHS)
    bpr, clock = model(PEER_EPOCHS), EpochClock(row, setup)
    bpr.fit(X, show_progress=False, callback=lambda *_: clock.epoch_done(bpr.user_factors, bpr.item_factors))
    return clock.finish()


class ValidatingEpochs:
    """Stands in for ``tqdm.trange`` inside Cornac's ``BPR.fit``: ``done()`` after each epoch."""

    def __init__(self, epochs: int, done: Callable[[], None]) -> None:
        self.epochs, self.done = epochs, done

    def __enter__(self) -> "ValidatingEpochs":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __iter__(self) -> Iterator[int]:
        for epoch in range(self.epochs):
            yield epoch
            self.done()


def run_cornac(setup: Setup) -> Row:
    import cornac
    from cornac.models.bpr import recom_bpr

    train = setup.split.train
    indptr, items = train.to_csr()
    users = np.repeat(np.arange(train.n_users), np.diff(indptr))
    data = cornac.data.Dataset.from_uir(list(zip(users.tolist(), items.tolist(), [1.0] * len(items))), seed=SEED)
    uidx = np.array([data.uid_map[u] for u in range(train.n_users)])  # every user has training rows
    known = np.array([i in data.iid_map for i in range(train.n_items)])
    iidx = np.array([data.iid_map.get(i, 0) for i in range(train.n_items)])

    def tables(m: Any) -> Tuple[np.ndarray, np.ndarray]:
        U = np.hstack([m.u_factors[uidx], np.ones((len(uidx), 1), np.float32)])
        V = np.hstack([m.i_factors[iidx], m.i_biases[iidx, None]])
        V[~known] = 0.0
        return U, V

    def model(epochs: int) -> Any:
        return cornac.models.BPR(k=DIM, max_iter=epochs, seed=SEED, verbose=False, **CORNAC)

    row = Row("Cornac 3.0.1 BPR", f"k {DIM}+bias, lr {CORNAC['learning_rate']}, reg {CORNAC['lambda_reg']}")
    row.epoch_s = epoch_seconds(lambda: model(TIMED_EPOCHS).fit(data), TIMED_EPOCHS)
    bpr, trange = model(PEER_EPOCHS), recom_bpr.trange
    clock = EpochClock(row, setup)
    recom_bpr.trange = lambda n, **_: ValidatingEpochs(n, lambda: clock.epoch_done(*tables(bpr)))
    try:
        bpr.fit(data)
    finally:
        recom_bpr.trange = trange
    return clock.finish()


def advrec_trainer(engine: str, epochs: int) -> Trainer:
    return Trainer(epochs=epochs, engine=engine, progress=False, **ADVREC)


def run_advrec(setup: Setup, engine: str, full: bool, benchmark: Any = None) -> Row:
    train = setup.split.train
    row = Row(f"advrec {engine}", "Adam lr 1e-3, batch 2048, l2 1e-4")

    def fit(epochs: int, valid: Optional[Callable[[MF], float]] = None) -> Tuple[MF, Any]:
        model = MF(train.n_users, train.n_items, dim=DIM, init_std=0.05, seed=SEED)
        return model, advrec_trainer(engine, epochs).fit(model, train, valid)

    timed = TIMED_EPOCHS if engine == "compiled" else TORCH_TIMED_EPOCHS
    fit(1)  # warm-up (numba, allocator)
    row.epoch_s = epoch_seconds(lambda: fit(timed), timed, rounds=ROUNDS if engine == "compiled" else 2)
    if benchmark is not None:
        benchmark.pedantic(fit, args=(timed,), rounds=ROUNDS, iterations=1)
    if not full:
        row.note = "per-epoch only"
        return row

    def timed_valid(model: MF) -> float:
        t0 = time.perf_counter()
        value = setup.valid(model)
        row.valid_s.append(time.perf_counter() - t0)
        return value

    model, history = fit(ADVREC_EPOCHS, timed_valid)
    row.metric = [float(m) for m in history.metric]
    row.train_s = [s - v for s, v in zip(history.seconds, row.valid_s)]
    row.test = setup.test(model)
    row.note = f"best epoch {history.best_epoch + 1}, stopped after {history.epochs}"
    return row


@pytest.fixture(scope="module")
def setup() -> Setup:
    inter = D.implicit(D.load("ml-100k").interactions, _quiet=True)
    split = D.leave_one_out(inter, order="time", validation=True)
    return Setup(split, validator(split.valid, exclude=split.train, metric="nDCG@20"))


def fmt(x: float, spec: str = ".2f") -> str:
    return format(x, spec) if math.isfinite(x) else "-"


def test_bpr_mf_training_vs_implicit_cornac(benchmark: Any, setup: Setup) -> None:
    for module in ("implicit", "cornac", "threadpoolctl"):
        pytest.importorskip(module)
    rows: Dict[str, Row] = {}
    with one_thread():
        rows["compiled"] = run_advrec(setup, "compiled", True, benchmark)
        rows["torch"] = run_advrec(setup, "torch", TORCH_FULL)
        rows["implicit"], rows["cornac"] = run_implicit(setup), run_cornac(setup)

    print(f"\n[BPR-MF training, ML-100K baseline split, dim {DIM}, 1 thread] 'to': seconds to advrec's first epoch "
          f"with val nDCG@20 >= {TARGET} or a peer's own best, validation excluded (included)")
    print(f"{'trainer':<20} {'ms/epoch':>8} {'to (s)':>13} {'epoch':>5} {'val@20':>7} {'test@10':>7}  settings")
    for key, r in rows.items():
        e = r.reached(TARGET if key in ("compiled", "torch") else None)
        best = max(r.metric) if r.metric else math.nan
        to = f"{fmt(r.seconds_to(e))} ({fmt(r.seconds_to(e, True))})"
        print(f"{r.name:<20} {r.epoch_s * 1e3:>8.1f} {to:>13} {e + 1 if e >= 0 else '-':>5} {fmt(best, '.4f'):>7} "
              f"{fmt(r.test, '.4f'):>7}  {r.settings}" + (f"; {r.note}" if r.note else ""))
        benchmark.extra_info[key] = {
            "ms_per_epoch": r.epoch_s * 1e3, "s_to": r.seconds_to(e), "s_to_with_validation": r.seconds_to(e, True),
            "epoch_reached": e + 1, "best_val_ndcg20": best, "test_ndcg10": r.test, "settings": r.settings,
            "valid_ms_median": float(np.median(r.valid_s)) * 1e3 if r.valid_s else math.nan}
    c, imp = rows["compiled"], rows["implicit"]
    ratios = {"compiled_epoch_over_implicit_epoch": c.epoch_s / imp.epoch_s,
              "compiled_to_target_over_implicit_to_best": c.seconds_to(c.reached(TARGET)) / imp.seconds_to(
                  imp.reached(None)),
              "compiled_epoch_over_cornac_epoch": c.epoch_s / rows["cornac"].epoch_s,
              "torch_epoch_over_compiled_epoch": rows["torch"].epoch_s / c.epoch_s}
    benchmark.extra_info.update(ratios)
    for name, value in ratios.items():
        print(f"  {name} = {fmt(value)}" + (" (issue 18 accepts <= 2)" if "implicit" in name else ""))


def test_amf_epoch_against_a_bpr_epoch(benchmark: Any, setup: Setup) -> None:
    """AMF (APR's FGSM term, eps 0.5, lam 1) against plain BPR-MF, both on the compiled engine, and
    AMF on the torch path: seconds per epoch (Trainer epochs, sampling included), interleaved
    rounds, the best epoch of each; issue 18 asks AMF <= 1.5x a BPR epoch on the compiled path."""
    from advrec.training import train_amf

    train = setup.split.train

    def fit(kind: str, engine: str, epochs: int) -> List[float]:
        model = MF(train.n_users, train.n_items, dim=DIM, init_std=0.05, seed=SEED)
        kw = dict(epochs=epochs, patience=None, progress=False, engine=engine, **{
            k: v for k, v in ADVREC.items() if k != "patience"})
        if kind == "bpr":
            return Trainer(**kw).fit(model, train).seconds
        return train_amf(model, train, eps=0.5, lam=1.0, **kw).seconds

    best: Dict[str, float] = {}
    with one_thread():
        fit("amf", "compiled", 1)
        for _ in range(ROUNDS + 2):
            for key, kind, engine, epochs in (("bpr", "bpr", "compiled", TIMED_EPOCHS),
                                              ("amf", "amf", "compiled", TIMED_EPOCHS),
                                              ("amf_torch", "amf", "torch", TORCH_TIMED_EPOCHS)):
                best[key] = min(best.get(key, math.inf), min(fit(kind, engine, epochs)))
        benchmark.pedantic(fit, args=("amf", "compiled", TIMED_EPOCHS), rounds=1, iterations=1)
    ratio = best["amf"] / best["bpr"]
    benchmark.extra_info.update({k + "_ms": v * 1e3 for k, v in best.items()},
                                amf_over_bpr=ratio, torch_amf_over_compiled_amf=best["amf_torch"] / best["amf"])
    print(f"\n[AMF vs BPR-MF epochs, ML-100K, 1 thread] compiled BPR {best['bpr'] * 1e3:.1f} ms, compiled AMF "
          f"{best['amf'] * 1e3:.1f} ms (ratio {ratio:.2f}; issue 18 asks <= 1.5), torch AMF "
          f"{best['amf_torch'] * 1e3:.1f} ms ({best['amf_torch'] / best['amf']:.1f}x the compiled AMF)")


@pytest.mark.parametrize("name", ["SASRec", "GRU4Rec"])
def test_sequence_epoch_ml100k(benchmark: Any, setup: Setup, name: str) -> None:
    """``SequenceTrainer`` at one thread with the CAT experiment's models (dim 100, T 50, dropout 0.2,
    2 SASRec blocks; Adam lr 1e-3, l2 1e-5, 128 sequences a batch): seconds per epoch (min over the
    epochs not validated) and accuracy after ``SEQ_EPOCHS`` epochs (far from converged)."""
    from advrec.models import GRU4Rec, SASRec
    from advrec.training import SequenceTrainer

    split = setup.split
    model = {"SASRec": SASRec, "GRU4Rec": GRU4Rec}[name](split.train.n_users, split.train.n_items, dim=100,
                                                          max_len=SEQ_T, dropout=0.2, seed=SEED)
    valid_h, test_h = D.user_sequences(split.train, SEQ_T), D.user_sequences(split.train, SEQ_T, split.valid)

    def valid(m: Any) -> float:
        m.set_histories(valid_h)
        return setup.valid(m)

    trainer = SequenceTrainer(epochs=SEQ_EPOCHS, batch_size=128, lr=1e-3, l2=1e-5, eval_every=5, seed=SEED,
                              progress=False, threads=1)
    history = benchmark.pedantic(trainer.fit, args=(model, split.train, valid), rounds=1, iterations=1)
    model.set_histories(test_h)
    test = setup.test(model)
    epoch_s = min(s for s, m in zip(history.seconds, history.metric) if math.isnan(m))
    benchmark.extra_info.update(ms_per_epoch=epoch_s * 1e3, val_ndcg20=history.best_metric, test_ndcg10=test)
    print(f"\n[{name}, ML-100K baseline split, T {SEQ_T}, dim 100, 1 thread] {epoch_s * 1e3:.0f} ms/epoch "
          f"({split.train.n_users / epoch_s:.0f} seq/s); after {SEQ_EPOCHS} epochs: val nDCG@20 "
          f"{history.best_metric:.4f}, test nDCG@10 {test:.4f}")
