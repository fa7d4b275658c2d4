"""RevAdv: the unrolled bi-level injection attack on implicit feedback (Tang, Wen & Wang,
"Revisiting adversarially learned injection attacks in recommender systems", RecSys 2020),
white box against ``WRMF``.

The attacker's variable is the fake users' interaction matrix M (``n_fake x n_items``, every
profile holding the targets and ``filler`` other items). The outer problem pushes the targets
into the real users' rankings; the inner one is the victim's training on the poisoned log:

    min_M  L_adv(theta*(M))   s.t.  theta*(M) = argmin_theta L_WRMF(theta; R_real, M).

As in the paper (and RecAD's implementation, read for its defaults), each outer step:

1. retrains the victim on the poisoned log exactly as the victim trains (``WRMF.fit`` with its
   own settings and seed: the white box), and records the targets' hit ratio HR@k over the real
   users who have not interacted with them; the best M so far is kept;
2. unrolls ``unroll`` more ALS sweeps from that fit, differentiably, with M relaxed to real
   values (a fake entry m counts with preference m and confidence 1 + alpha m, which is the
   victim's own weighting at m in {0, 1}), and differentiates the adversarial loss
   L_adv = mean over (eligible real user u, target t) of -log softmax(x_u Y^T)_t
   (the cross-entropy RecAD uses) with respect to M;
3. takes a step of SGD with momentum on M along the row-normalised gradient (the paper's
   normalisation: every fake user moves by the same amount), then projects each row back onto
   the budget: the targets, plus the ``filler`` non-target items of largest value.

Why ALS and not SGD unrolling: WRMF's half-steps are closed-form ridge solves, so a few unrolled
sweeps from the trained point already carry the training's response to M (the paper's
"approximation by partial unrolling"), with no learning-rate schedule to replay. The unrolled
sweeps are written as matrix products (each row's Gram matrix is a sparse-times-dense product
with the other side's row-wise outer products), so one outer step costs about a second on
ML-100K, and ``tests/test_revadv.py`` checks them against ``WRMF.fit`` and finite differences.

Initial profiles: real users' interactions (a random real user per fake user, trimmed or padded
with random items to ``filler`` items), as RecAD does, so the attack starts from plausible rows.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from .._checks import positive_int
from ..data.interactions import Interactions
from ..data.poison import fake_user_ids, inject
from .shilling import ShillingAttack

__all__ = ["OBJECTIVES", "RevAdvAttack", "RevAdvRun", "unrolled_wrmf_sweeps"]

#: the adversarial losses (``_adversarial_loss``)
OBJECTIVES = ("hit", "ce")


def _outer_rows(a: torch.Tensor) -> torch.Tensor:
    """Row-wise outer products flattened: ``[n, d*d]`` (row k is vec(a_k a_k^T))."""
    return (a[:, :, None] * a[:, None, :]).reshape(len(a), -1)


def _solve(gram: torch.Tensor, weighted_outer: torch.Tensor, rhs: torch.Tensor, reg: float,
           alpha: float) -> torch.Tensor:
    """x_r = (G + alpha * W_r + reg I)^-1 rhs_r for every row r (W_r = weighted_outer[r] as d x d)."""
    d = gram.shape[0]
    a = gram + alpha * weighted_outer.reshape(-1, d, d) + reg * torch.eye(d, dtype=gram.dtype)
    return torch.cholesky_solve(rhs[:, :, None], torch.linalg.cholesky(a))[:, :, 0]


def unrolled_wrmf_sweeps(real: torch.Tensor, fake: torch.Tensor, item: torch.Tensor, sweeps: int, reg: float,
                         alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``sweeps`` WRMF ALS sweeps (users, then items) in torch, differentiable in ``fake``.

    ``real``: the real users' 0/1 interactions as a sparse COO tensor ``[n_real, n_items]``;
    ``fake``: the fake users' (relaxed) entries, dense ``[n_fake, n_items]``; ``item``
    ``[n_items, d]``: the item factors to start from (each sweep solves the users first, as
    ``WRMF.fit`` does). An entry m counts with preference m and
    confidence 1 + alpha m (``advrec.models.wrmf``'s weighting for m in {0, 1}).
    Returns the factors after the last sweep: users ``[n_real + n_fake, d]`` (real first), items."""
    real_t = real.t().coalesce()
    fake_rhs = (1.0 + alpha * fake) * fake  # c * p per fake entry
    user = item.new_zeros((0, item.shape[1]))
    for _ in range(positive_int(sweeps, "sweeps")):
        gram = item.t() @ item
        outer_items = _outer_rows(item)
        x_real = _solve(gram, torch.sparse.mm(real, outer_items), (1.0 + alpha) * torch.sparse.mm(real, item),
                        reg, alpha)
        x_fake = _solve(gram, fake @ outer_items, fake_rhs @ item, reg, alpha)
        gram = x_real.t() @ x_real + x_fake.t() @ x_fake
        weighted = torch.sparse.mm(real_t, _outer_rows(x_real)) + fake.t() @ _outer_rows(x_fake)
        item = _solve(gram, weighted, (1.0 + alpha) * torch.sparse.mm(real_t, x_real) + fake_rhs.t() @ x_fake,
                      reg, alpha)
        user = torch.cat([x_real, x_fake])
    return user, item


@dataclass(frozen=True, eq=False)
class RevAdvRun:
    """What ``RevAdvAttack.run`` did: ``fake`` (what ``attack`` returns: the best profiles
    found), per outer step the targets' HR@k on the exactly retrained victim ``hit_ratio`` and
    the adversarial loss ``loss`` (after the unrolled sweeps), the step whose profiles were kept
    ``best_step``, and the seconds it took."""

    fake: Interactions
    hit_ratio: np.ndarray
    loss: np.ndarray
    best_step: int
    seconds: float


class RevAdvAttack(ShillingAttack):
    """RevAdv against a white-box ``WRMF`` (module docstring). Push only; implicit logs (no
    ratings) only: pass the log the victim trains on. Arguments besides the shilling attacks'
    (``targets``, ``n_fake``, ``filler``, ``max_ratings``, ``seed``):

    - ``victim``: a ``WRMF`` whose settings (dim, reg, alpha, iterations, init_std, seed) are the
      victim's; default ``WRMF()``'s;
    - ``steps``: outer steps (each one exact retraining plus one unrolled gradient);
    - ``unroll``: ALS sweeps differentiated after each retraining;
    - ``lr``, ``momentum``: the SGD on M (the row-normalised gradient has unit norm per fake
      user, so ``lr`` is how far one step moves a profile);
    - ``k``: the cut-off of the hit ratio that picks the best step;
    - ``progress``: a tqdm bar over the steps (default: only on a terminal).
    """

    goals = ("push",)

    def __init__(self, *, victim: Any = None, steps: int = 10, unroll: int = 1, lr: float = 100.0,
                 momentum: float = 0.9, swaps: Optional[int] = 10, objective: str = "hit",
                 temperature: float = 0.05, k: int = 50, progress: Optional[bool] = None, **common: Any) -> None:
        super().__init__(**common)
        from ..models.wrmf import WRMF
        victim = WRMF() if victim is None else victim
        if not isinstance(victim, WRMF):
            raise ValueError(f"victim must be an advrec.models.WRMF (its settings are copied), got {type(victim).__name__}")
        if victim.solver != "cholesky":  # the unrolled sweeps are exact solves: so must the fit be
            raise ValueError(f"victim: RevAdvAttack differentiates exact ALS, so the victim must use "
                             f"solver='cholesky', got solver={victim.solver!r}")
        self.victim = victim
        self.steps = positive_int(steps, "steps")
        self.unroll = positive_int(unroll, "unroll")
        for name, v, lo_open in (("lr", lr, True), ("momentum", momentum, False)):
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
            if not ok or v < 0 or (lo_open and v == 0) or (name == "momentum" and v >= 1):
                raise ValueError(f"{name} must be a finite number in {'(0, inf)' if lo_open else '[0, 1)'}, got {v!r}")
        self.lr, self.momentum = float(lr), float(momentum)
        self.swaps = None if swaps is None else positive_int(swaps, "swaps")
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        self.objective = objective
        ok = isinstance(temperature, (int, float)) and not isinstance(temperature, bool) and np.isfinite(temperature)
        if not ok or temperature <= 0:
            raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
        self.temperature = float(temperature)
        self.k = positive_int(k, "k")
        self.progress = progress

    def __repr__(self) -> str:
        victim = ", ".join(f"{k}={v!r}" for k, v in self.victim.config().items() if k not in ("n_users", "n_items"))
        args = [f"{k}={v.tolist() if isinstance(v, np.ndarray) else v!r}" for k, v in vars(self).items()
                if k != "victim"]
        return f"{type(self).__name__}({', '.join(args)}, victim=WRMF({victim}))"

    def attack(self, train: Interactions) -> Interactions:
        """The fake profiles for ``train``: rows of the fake users only, sorted by user then item."""
        return self.run(train).fake

    def run(self, train: Interactions) -> RevAdvRun:
        """Optimise the fake profiles for ``train`` (module docstring)."""
        from ..evaluation.targets import target_exposure
        from ..models.wrmf import WRMF

        start = time.perf_counter()
        if train.rating is not None:
            raise ValueError("train: RevAdvAttack attacks implicit feedback; pass the log without ratings "
                             "(the one the WRMF victim trains on)")
        self._stats(train)  # refuses an empty log
        targets = self._targets_in(train)
        n_fake = self._fake_count(train)
        pool = np.setdiff1d(np.arange(train.n_items), targets)
        n_filler = self._filler_count(train.n_items, len(pool), len(targets))
        rng = np.random.default_rng(self.seed)
        is_target = np.zeros(train.n_items, dtype=bool)
        is_target[targets] = True
        profiles = _initial_profiles(train, n_fake, pool, n_filler, rng)
        profiles[:, is_target] = 1.0
        real = _real_matrix(train)
        eligible = _eligible(train, targets)
        seen = real.to_dense() > 0
        settings = {k: v for k, v in self.victim.config().items() if k not in ("n_users", "n_items")}
        velocity = np.zeros_like(profiles)
        hits, losses = [], []
        best, best_key = profiles.copy(), (-1.0, np.inf)
        show = sys.stderr.isatty() if self.progress is None else bool(self.progress)
        bar = tqdm(range(self.steps), desc="RevAdvAttack", disable=not show, leave=False)
        for _ in bar:
            fake = _to_interactions(train, profiles)
            poisoned = inject(train, fake)
            model = WRMF(**settings).fit(poisoned, progress=False)
            hr = target_exposure(model, poisoned, targets, k=self.k, real_users=train.n_users,
                                 progress=False).summary()[f"HR@{self.k}"]
            item = torch.from_numpy(model.item_factors.detach().double().numpy())
            relaxed = torch.from_numpy(profiles).requires_grad_(True)
            x, y = unrolled_wrmf_sweeps(real, relaxed, item, self.unroll, float(settings["reg"]),
                                        float(settings["alpha"]))
            loss_t = _adversarial_loss(x[:train.n_users], y, targets, eligible, self.objective, seen, self.k,
                                       self.temperature)
            (grad,) = torch.autograd.grad(loss_t, relaxed)
            loss = float(loss_t.detach())
            hits.append(hr)
            losses.append(loss)
            if (hr, -loss) > (best_key[0], -best_key[1]):
                best, best_key = profiles.copy(), (hr, loss)
            g = grad.numpy().copy()
            g[:, is_target] = 0.0
            g /= np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-30)
            velocity = self.momentum * velocity + g
            if self.swaps is None:
                profiles = _project(profiles - self.lr * velocity, pool, n_filler, is_target)
            else:
                profiles = _swap(profiles, profiles - self.lr * velocity, pool, self.swaps)
            bar.set_postfix(hr=f"{hr:.3f}", loss=f"{loss:.3f}")
        best_step = int(np.argmax([(h, -l) == (best_key[0], -best_key[1]) for h, l in zip(hits, losses)]))
        return RevAdvRun(_to_interactions(train, best), np.array(hits), np.array(losses), best_step,
                         time.perf_counter() - start)


# ------------------------------------------------------------------------------------ helpers


def _initial_profiles(train: Interactions, n_fake: int, pool: np.ndarray, n_filler: int,
                      rng: np.random.Generator) -> np.ndarray:
    """Each fake user starts as a random real user's pool items, trimmed or padded at random to
    ``n_filler`` items (0/1 rows, float64)."""
    out = np.zeros((n_fake, train.n_items))
    in_pool = np.zeros(train.n_items, dtype=bool)
    in_pool[pool] = True
    order = np.argsort(train.user, kind="stable")
    indptr = np.zeros(train.n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(train.user, minlength=train.n_users), out=indptr[1:])
    items_by_user = train.item[order]
    for f, u in enumerate(rng.integers(0, train.n_users, n_fake)):
        own = np.unique(items_by_user[indptr[u]:indptr[u + 1]])
        own = own[in_pool[own]]
        if len(own) >= n_filler:
            chosen = rng.choice(own, n_filler, replace=False)
        else:
            rest = np.setdiff1d(pool, own)
            chosen = np.concatenate([own, rng.choice(rest, n_filler - len(own), replace=False)])
        out[f, chosen] = 1.0
    return out


def _project(values: np.ndarray, pool: np.ndarray, n_filler: int, is_target: np.ndarray) -> np.ndarray:
    """The budget: per row the ``n_filler`` pool items of largest value (ties to the lower
    index), plus the targets; 0/1."""
    out = np.zeros_like(values)
    if n_filler:
        top = np.argsort(-values[:, pool], axis=1, kind="stable")[:, :n_filler]
        np.put_along_axis(out, pool[top], 1.0, axis=1)
    out[:, is_target] = 1.0
    return out


def _swap(profiles: np.ndarray, values: np.ndarray, pool: np.ndarray, swaps: int) -> np.ndarray:
    """The budget with at most ``swaps`` changes per row: the pool items out of the profile of
    largest value replace the ones in it of smallest value, pair by pair while the incoming one's
    value is the larger (ties to the lower index)."""
    inside = profiles[:, pool] > 0.5
    v = values[:, pool]
    leave = np.argsort(np.where(inside, v, np.inf), axis=1, kind="stable")[:, :swaps]
    enter = np.argsort(np.where(inside, np.inf, -v), axis=1, kind="stable")[:, :swaps]
    gain = np.take_along_axis(v, enter, 1) > np.take_along_axis(v, leave, 1)
    gain &= np.take_along_axis(inside, leave, 1) & ~np.take_along_axis(inside, enter, 1)
    out = profiles.copy()
    rows = np.nonzero(gain)[0]
    out[rows, pool[leave[gain]]] = 0.0
    out[rows, pool[enter[gain]]] = 1.0
    return out


def _real_matrix(train: Interactions) -> torch.Tensor:
    """The real users' distinct interactions as a 0/1 sparse COO tensor (float64)."""
    pairs = np.unique(np.stack([train.user, train.item]), axis=1)
    return torch.sparse_coo_tensor(torch.from_numpy(pairs), torch.ones(pairs.shape[1], dtype=torch.float64),
                                   (train.n_users, train.n_items), check_invariants=True).coalesce()


def _eligible(train: Interactions, targets: np.ndarray) -> np.ndarray:
    """[n_targets, n_users] bool: the real users who have not interacted with each target."""
    seen = np.zeros((len(targets), train.n_users), dtype=bool)
    for j, t in enumerate(targets):
        seen[j, np.unique(train.user[train.item == t])] = True
    return ~seen


def _adversarial_loss(users: torch.Tensor, items: torch.Tensor, targets: np.ndarray, eligible: np.ndarray,
                      objective: str = "ce", seen: Optional[torch.Tensor] = None, k: int = 50,
                      temperature: float = 0.05) -> torch.Tensor:
    """The loss the attack minimises, over the (eligible user u, target t) pairs:

    - ``"ce"``: mean of -log softmax(x_u Y^T)_t (RecAD's), which lowers the target's mean rank;
    - ``"hit"``: minus the mean of sigmoid((s_ut - s_u[k]) / temperature), s_u[k] the user's k-th
      best score among the items it has not interacted with (``seen`` True): a smooth HR@k, whose
      gradient comes from the users near the cut-off rather than from every user alike."""
    scores = users @ items.t()
    cols = torch.from_numpy(targets)
    mask = torch.from_numpy(eligible.T)
    if objective == "ce":
        value = -torch.log_softmax(scores, dim=1)[:, cols]
    else:
        assert seen is not None
        kth = scores.masked_fill(seen, float("-inf")).topk(k, dim=1).values[:, -1:]
        value = -torch.sigmoid((scores[:, cols] - kth) / temperature)
    return (value * mask).sum() / mask.sum().clamp_min(1)


def _to_interactions(train: Interactions, profiles: np.ndarray) -> Interactions:
    """The fake users' rows (implicit), as ``ShillingAttack.attack`` builds them."""
    n_fake = len(profiles)
    fake, item = np.nonzero(profiles > 0.5)  # row-major: sorted by user then item
    timestamp = None if train.timestamp is None else np.full(len(item), train.timestamp.max() + 1)
    return Interactions(train.n_users + fake, item, None, timestamp, train.n_users + n_fake, train.n_items,
                        np.concatenate([train.user_ids, fake_user_ids(train, n_fake)]), train.item_ids)

