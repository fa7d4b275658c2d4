"""Evaluation protocols: full ranking over the catalogue and the sampled-negatives protocol.

Full ranking (the default): every test user's scores over all items, training/validation items
masked, top-K lists for accuracy and beyond-accuracy metrics, target ranks for AUC. Users are
scored in tiles of ``batch_size``, so the users x items score matrix never exists at once.

Sampled (as in AMR, He et al. 2018, "Adversarial Personalized Ranking for Recommendation", with
999 negatives; 100 is also common): each (user, test item) is one case ranked against
``n_negatives`` items drawn uniformly without replacement from the items the user has neither
interacted with (``exclude``) nor holds in ``test``.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from .._logging import report
from ..data.interactions import Interactions
from ..metrics.checks import check_ks, row_ids
from ..metrics.accuracy import accuracy_metrics, auc_from_counts
from ..metrics.beyond import gini_index, item_coverage, item_user_counts, novelty, shannon_entropy
from ..models.base import Delta, Recommender
from .result import EvalResult

PROTOCOLS = ("full", "sampled")


def evaluate(
    model: Recommender,
    test: Interactions,
    exclude: Union[Interactions, Sequence[Interactions]] = (),
    k: Union[int, Sequence[int]] = (10,),
    protocol: str = "full",
    n_negatives: int = 999,
    seed: int = 0,
    batch_size: int = 1024,
    popularity: Optional[Interactions] = None,
    delta: Delta = None,
    progress: Optional[bool] = None,
    auc: bool = True,
) -> EvalResult:
    """Evaluate ``model`` on the users that have at least one item in ``test``.

    ``exclude``: Interactions (e.g. train, valid) whose items are removed from a user's ranking;
    a test item that is also in ``exclude`` stays rankable for that user (counted in
    ``info["n_test_excluded_overlap"]``). ``k``: cut-offs. ``popularity``: training Interactions
    for EPC/EFD (full protocol only; without it those two are not computed). ``auc=False`` skips
    the AUC ranks of the full protocol (validation during training needs only top-K metrics).
    ``delta``: passed to
    the model (perturbed evaluation). ``batch_size``: users per tile (full) or cases per tile
    (sampled). ``progress``: tqdm bar; None shows it only when stderr is a terminal.

    Full protocol: top-K ties go to the lower item index (``advrec.kernels.topk_scores``); AUC
    counts tied negatives one half. Sampled protocol: a case's rank metrics are their expected
    value when ties with the target are broken uniformly at random (a target tied with e
    negatives is equally likely at each of e + 1 positions), AUC counts ties one half, and a
    user's value is the mean over their cases. Beyond-accuracy metrics need the full protocol.
    """
    ks = _check_args(model, test, k, protocol, n_negatives, seed, batch_size, popularity)
    test_csr, seen, masked, n_overlap = ranking_masks(test, exclude)
    if n_overlap:
        report(f"evaluate: {n_overlap} test (user, item) pairs also appear in exclude; "
               "those items are kept rankable for their users")
    show = sys.stderr.isatty() if progress is None else bool(progress)
    if protocol == "full":
        result = _full_ranking(model, test, test_csr, masked, ks, batch_size, popularity, delta, show, auc)
    else:
        result = _sampled(model, test, test_csr, seen, ks, n_negatives, seed, batch_size, delta, show)
    result.info["n_test_excluded_overlap"] = n_overlap
    return result


def ranking_masks(test: Any, exclude: Union[Any, Sequence[Any]]) -> tuple:
    """``(test_csr, seen, masked, n_overlap)``: the test CSR, everything in ``exclude``, that
    minus each user's test items (what full ranking masks), and how many test pairs were also
    in ``exclude``. Computed once per evaluation (or once per fit by ``validator``)."""
    test_csr, seen = test.to_csr(), _seen(test, exclude)
    masked, n_overlap = _without_targets(seen, test_csr, test.n_items)
    return test_csr, seen, masked, n_overlap


def _seen(test: Any, exclude: Union[Any, Sequence[Any]]) -> tuple[np.ndarray, np.ndarray]:
    """The user -> excluded items CSR of ``exclude`` (one Interactions or a sequence of them)."""
    parts = (exclude,) if hasattr(exclude, "to_csr") else tuple(exclude)
    for j, part in enumerate(parts):
        if (part.n_users, part.n_items) != (test.n_users, test.n_items):
            raise ValueError(f"exclude[{j}] is {part.n_users}x{part.n_items}, test is {test.n_users}x{test.n_items}")
    if not parts:
        return np.zeros(test.n_users + 1, dtype=np.int64), np.zeros(0, dtype=np.int64)
    from ..data import exclusion_csr

    return exclusion_csr(*parts)


def _check_args(model, test, k, protocol, n_negatives, seed, batch_size, popularity) -> tuple[int, ...]:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    for name in ("n_users", "n_items"):
        if getattr(model, name, None) != getattr(test, name):
            raise ValueError(f"model.{name}={getattr(model, name, None)} but test.{name}={getattr(test, name)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if isinstance(n_negatives, bool) or not isinstance(n_negatives, (int, np.integer)) or n_negatives < 1:
        raise ValueError(f"n_negatives must be a positive int, got {n_negatives!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int, got {seed!r}")
    if popularity is not None:
        if protocol != "full":
            raise ValueError("popularity: EPC/EFD need top-K lists, i.e. protocol='full'")
        if popularity.n_items != test.n_items:
            raise ValueError(f"popularity has {popularity.n_items} items, test has {test.n_items}")
    return check_ks(k, None)


def _without_targets(seen: tuple[np.ndarray, np.ndarray], targets: tuple[np.ndarray, np.ndarray],
                     n_items: int) -> tuple[tuple[np.ndarray, np.ndarray], int]:
    """``seen`` minus each row's targets (so a test item is never masked), and how many were removed."""
    width = max(n_items, 1)
    seen_rows = row_ids(seen[0])
    keys = seen_rows * width + seen[1]
    target_keys = row_ids(targets[0]) * width + targets[1]  # sorted: CSR rows hold sorted items
    pos = np.minimum(np.searchsorted(target_keys, keys), max(len(target_keys) - 1, 0))
    drop = target_keys[pos] == keys if len(target_keys) else np.zeros(len(keys), dtype=bool)
    kept_rows = seen_rows[~drop]
    indptr = np.zeros(len(seen[0]), dtype=np.int64)
    np.cumsum(np.bincount(kept_rows, minlength=len(seen[0]) - 1), out=indptr[1:])
    return (indptr, seen[1][~drop]), int(drop.sum())


def _device(model: Any) -> torch.device:
    """Where the model's tensors live, so user/item indices are sent there (CPU for tensor-less models)."""
    if isinstance(model, torch.nn.Module):
        for tensor in list(model.parameters()) + list(model.buffers()):
            return tensor.device
    return torch.device("cpu")


def _as_scores(out: Any, shape: tuple[int, int], what: str) -> np.ndarray:
    scores = out.detach().float().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out, np.float32)
    if scores.shape != shape:
        raise ValueError(f"model.{what} returned shape {scores.shape}, expected {shape}")
    if np.isnan(scores).any():
        raise ValueError(f"model.{what} returned NaN scores; rankings would be meaningless")
    return scores


def _tiles(n: int, size: int, show: bool, desc: str):
    starts = range(0, n, size)
    if not show:
        return starts
    from tqdm.auto import tqdm

    return tqdm(starts, desc=desc, unit="tile", file=sys.stderr)


def _scatter(n: int, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = np.full(n, np.nan)
    out[rows] = values
    return out


def _full_ranking(model, test, test_csr, masked, ks, batch_size, popularity, delta, show,
                  auc: bool = True, beyond: bool = True) -> EvalResult:
    """Full-ranking evaluation from precomputed masks; ``auc``/``beyond`` False skip the AUC
    ranks and the catalogue metrics (coverage, entropy, Gini), which validation does not need."""
    from .. import kernels

    users = np.flatnonzero(np.diff(test_csr[0]) > 0).astype(np.int64)
    indptr = np.r_[0, np.cumsum(np.diff(test_csr[0])[users])].astype(np.int64)
    items = test_csr[1]  # rows of users without test items are empty: these are the evaluated rows
    n, big_k, device = len(users), max(ks), _device(model)
    topk, greater, equal, n_neg = [], [], [], []
    with torch.no_grad():
        for start in _tiles(n, batch_size, show, "evaluate (full)"):
            tile = users[start:start + batch_size]
            out = model.full_scores(torch.as_tensor(tile, device=device), delta=delta)
            scores = _as_scores(out, (len(tile), test.n_items), "full_scores")
            idx, _ = kernels.topk_scores(scores, big_k, exclude=masked, rows=tile)
            lo, hi = indptr[start], indptr[start + len(tile)]
            targets = (indptr[start:start + len(tile) + 1] - lo, items[lo:hi])
            topk.append(np.asarray(idx, dtype=np.int64))
            if auc:
                g, e, nn = kernels.rank_targets(scores, targets, exclude=masked, rows=tile)
                greater.append(g)
                equal.append(e)
                n_neg.append(nn)
    topk_all = np.concatenate(topk) if topk else np.zeros((0, big_k), dtype=np.int64)
    cat = lambda parts: np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)  # noqa: E731

    truth = (indptr, items)
    rows, acc = accuracy_metrics(topk_all, truth, ks)
    per_user = {name: _scatter(n, rows, v) for name, v in acc.items()}
    info: dict[str, Any] = {}
    if auc:
        rows, auc_values = auc_from_counts(cat(greater), cat(equal), cat(n_neg), indptr)
        per_user["AUC"] = _scatter(n, rows, auc_values["AUC"])
        info["n_users_no_negative"] = int(n - len(rows))
    if popularity is not None:
        counts = item_user_counts(popularity.to_csr(), test.n_items)
        rows, nov = novelty(topk_all, counts, popularity.n_users, ks, truth=truth)
        per_user.update({name: _scatter(n, rows, v) for name, v in nov.items()})
        info["n_users_empty_list"] = int(n - len(rows))
    global_metrics: dict[str, float] = {}
    for kk in ks if beyond else ():
        fraction, count = item_coverage(topk_all, test.n_items, kk)
        global_metrics[f"ItemCoverage@{kk}"] = fraction
        global_metrics[f"ItemCount@{kk}"] = float(count)
        global_metrics[f"Entropy@{kk}"] = shannon_entropy(topk_all, test.n_items, kk)
        global_metrics[f"Gini@{kk}"] = gini_index(topk_all, test.n_items, kk)
    if info.get("n_users_no_negative"):
        report(f"evaluate: {info['n_users_no_negative']} users have no candidate negative; their AUC is NaN",
               once=True)
    return EvalResult(users, per_user, global_metrics, topk_all, "full", info)


def sample_negatives(rng: np.random.Generator, forbidden: np.ndarray, n_items: int, n: int) -> np.ndarray:
    """Up to ``n`` distinct items drawn uniformly from 0..n_items-1 minus ``forbidden`` (sorted,
    unique): draw ranks among the allowed items, then shift each rank past the forbidden items
    below it. Fewer than ``n`` allowed items: all of them, in random order."""
    n_allowed = n_items - len(forbidden)
    ranks = rng.choice(n_allowed, size=min(n, n_allowed), replace=False) if n_allowed > 0 else np.zeros(0, np.int64)
    shift = forbidden - np.arange(len(forbidden))  # allowed items below each forbidden item
    return ranks + np.searchsorted(shift, ranks, side="right")


def _tie_expected(greater: np.ndarray, equal: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """HR@k, nDCG@k, MRR@k of one relevant item at a position uniform over greater..greater+equal."""
    gain_ndcg = np.r_[0.0, np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))]
    gain_mrr = np.r_[0.0, np.cumsum(1.0 / (np.arange(k) + 1.0))]
    lo = np.minimum(greater, k)
    hi = np.minimum(greater + equal + 1, k)
    spread = equal + 1.0
    return {
        f"HR@{k}": (hi - lo) / spread,
        f"nDCG@{k}": (gain_ndcg[hi] - gain_ndcg[lo]) / spread,
        f"MRR@{k}": (gain_mrr[hi] - gain_mrr[lo]) / spread,
    }


@dataclass(frozen=True, eq=False)
class SampledCases:
    """The cases of the sampled protocol: per case its user, the target in column 0 of ``items``
    followed by its negatives (padding repeats the target), and how many negatives it has."""

    user: np.ndarray    # [n_cases] int64
    items: np.ndarray   # [n_cases, 1 + n_negatives] int64
    n_neg: np.ndarray   # [n_cases] int64

    def __len__(self) -> int:
        return int(self.user.shape[0])


def sampled_cases(test: Interactions, exclude: Union[Interactions, Sequence[Interactions]] = (), n_negatives: int = 999,
                  seed: int = 0) -> SampledCases:
    """The candidates ``evaluate(protocol="sampled", seed=seed)`` ranks, drawn once: an experiment
    that scores one model under many perturbations ranks every one against the same negatives."""
    if isinstance(n_negatives, bool) or not isinstance(n_negatives, (int, np.integer)) or n_negatives < 1:
        raise ValueError(f"n_negatives must be a positive int, got {n_negatives!r}")
    drawer = _CaseDrawer(test.to_csr(), _seen(test, exclude), test.n_items, n_negatives, seed)
    return drawer.draw(0, len(drawer.case_user))


class _CaseDrawer:
    """Draws the cases tile by tile from one generator, so a tiled evaluation and a single draw
    of every case (``sampled_cases``) give the same negatives without holding them all at once."""

    def __init__(self, test_csr, seen, n_items: int, n_negatives: int, seed: int):
        self.test_csr, self.seen, self.n_items, self.n_negatives = test_csr, seen, n_items, n_negatives
        self.case_user = row_ids(test_csr[0]).astype(np.int64)
        self.rng = np.random.default_rng(seed)
        self._user, self._forbidden = -1, np.zeros(0, dtype=np.int64)

    def draw(self, start: int, stop: int) -> SampledCases:
        """Cases ``start:stop``; tiles must be drawn in order."""
        cu = self.case_user[start:stop]
        items = np.repeat(self.test_csr[1][start:stop, None], 1 + self.n_negatives, axis=1)
        n_neg = np.zeros(len(cu), dtype=np.int64)
        seen, test_csr = self.seen, self.test_csr
        for j, u in enumerate(cu):
            if u != self._user:
                own = slice(seen[0][u], seen[0][u + 1])
                mine = slice(test_csr[0][u], test_csr[0][u + 1])
                self._user, self._forbidden = u, np.union1d(seen[1][own], test_csr[1][mine])
            neg = sample_negatives(self.rng, self._forbidden, self.n_items, self.n_negatives)
            items[j, 1:1 + len(neg)] = neg
            n_neg[j] = len(neg)
        return SampledCases(cu, items, n_neg)


def case_ranks(model: Recommender, cases: SampledCases, delta: Delta = None,
               batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Per case: how many of its negatives score above the target, and how many tie with it."""
    device = _device(model)
    n_negatives = cases.items.shape[1] - 1
    greater = np.zeros(len(cases), dtype=np.int64)
    equal = np.zeros(len(cases), dtype=np.int64)
    with torch.no_grad():
        for start in range(0, len(cases), batch_size):
            stop = start + batch_size
            cu, items = cases.user[start:stop], cases.items[start:stop]
            out = model.score(torch.as_tensor(cu, device=device), torch.as_tensor(items, device=device), delta=delta)
            scores = _as_scores(out, items.shape, "score")
            valid = np.arange(n_negatives)[None, :] < cases.n_neg[start:stop, None]
            target = scores[:, :1]
            greater[start:stop] = ((scores[:, 1:] > target) & valid).sum(axis=1)
            equal[start:stop] = ((scores[:, 1:] == target) & valid).sum(axis=1)
    return greater, equal


def _sampled(model, test, test_csr, seen, ks, n_negatives, seed, batch_size, delta, show) -> EvalResult:
    counts = np.diff(test_csr[0])
    users = np.flatnonzero(counts > 0).astype(np.int64)
    drawer = _CaseDrawer(test_csr, seen, test.n_items, n_negatives, seed)
    n_cases = len(drawer.case_user)
    greater = np.zeros(n_cases, dtype=np.int64)
    equal = np.zeros(n_cases, dtype=np.int64)
    n_neg = np.zeros(n_cases, dtype=np.int64)
    for start in _tiles(n_cases, batch_size, show, "evaluate (sampled)"):
        part = drawer.draw(start, start + batch_size)
        stop = start + len(part)
        n_neg[start:stop] = part.n_neg
        greater[start:stop], equal[start:stop] = case_ranks(model, part, delta, batch_size)

    defined = n_neg > 0
    case_values: dict[str, np.ndarray] = {}
    for kk in ks:
        case_values.update(_tie_expected(greater, equal, kk))
    case_values["AUC"] = (n_neg - greater - 0.5 * equal) / np.maximum(n_neg, 1)
    case_row = np.repeat(np.arange(len(users)), counts[users])
    per_user = {}
    for name, v in case_values.items():
        sums = np.bincount(case_row[defined], weights=v[defined], minlength=len(users))
        cnt = np.bincount(case_row[defined], minlength=len(users))
        per_user[name] = np.where(cnt > 0, sums / np.maximum(cnt, 1), np.nan)
    info = {
        "n_cases": int(n_cases),
        "n_short_cases": int(np.count_nonzero(n_neg < n_negatives)),
        "n_cases_no_negative": int(np.count_nonzero(~defined)),
        "n_negatives": int(n_negatives),
        "seed": int(seed),
    }
    if info["n_short_cases"]:
        report(f"evaluate: {info['n_short_cases']} of {n_cases} cases had fewer than {n_negatives} "
               "candidate negatives and were ranked against all of them", once=True)
    if info["n_cases_no_negative"]:
        report(f"evaluate: {info['n_cases_no_negative']} cases have no candidate negative; left undefined (NaN)",
               once=True)
    return EvalResult(users, per_user, {}, None, "sampled", info)
