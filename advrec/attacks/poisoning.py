"""Optimised poisoning attacks against explicit matrix factorisation fitted by alternating least
squares: projected gradient ascent (``PGAAttack``) and Langevin sampling (``SGLDAttack``).

Source: B. Li, Y. Wang, A. Singh and Y. Vorobeychik, "Data poisoning attacks on
factorization-based collaborative filtering", NeurIPS 2016. The attacker knows the victim (white
box: ``advrec.models.ExplicitMF``'s dim, reg, iterations, init and seed) and the real log, and
chooses the fake users' ratings M~ to maximise a utility R of the model refitted on the poisoned
log, computed over the real users:

- ``"integrity"`` (the default): the mean predicted rating of the targets, over the real users
  who have not rated them (the users ``prediction_shift`` averages over); negated for
  ``goal="nuke"``;
- ``"availability"``: the mean squared change of every real user's predictions on the items
  they have not rated, against the clean model's;
- ``"hybrid"``: ``(1 - weight) * integrity + weight * availability``.

The gradient dR/dM~ runs through the victim's training itself: ``UnrolledALS`` replays
``ExplicitMF.fit`` (the same initial item factors from the victim's seed, the same number of
sweeps, each half-step the same exact ridge solves) and differentiates it in reverse mode through
every sweep. Li et al. differentiate the KKT conditions of the converged fit instead, holding the
other side fixed; but the victim stops after ``iterations`` sweeps, short of that fixed point,
and unrolling differentiates what the victim computes when it is refitted from scratch, with no
approximation (``tests/test_poisoning_optimised.py`` checks it against finite differences of
``ExplicitMF.fit`` itself).

Both attacks run in two phases, then project (see ``docs/poisoning.md``, "Optimised attacks"):

1. relaxed: every fake user rates every item, each non-target rating counting with weight
   ``filler / candidates`` (so a fake profile weighs what its final ``filler`` ratings weigh), the
   targets rated r_max (push) or r_min (nuke) with weight one; ``steps`` updates in the box
   [r_min, r_max], from the average attack's law N(item mean, item std);
2. the budget: each fake user keeps its ``filler`` non-target items with the largest
   first-order gain of rating them (``select="gradient"``, the default: dR/dW, the gradient of
   the entry's weight at the end of phase 1) or with the largest |M~ - item mean|
   (``select="value"``: the ratings the optimisation moved furthest from a normal user's, the
   analogue of Li et al. keeping the largest |M~| of centred ratings); then ``refine_steps`` more
   updates on that support at full weight: the exact discrete problem;
3. ratings rounded to the rating scale; the targets keep r_max (r_min).

``PGAAttack`` ascends (steps normalised by the gradient's RMS, so ``step_size`` is in rating
units; a step that lowers the utility is refused and the next ones halved); ``SGLDAttack`` samples M~ from p(M~) ~ exp(beta R - sum (M~_fi - xi_i)^2 / (2 sigma_i^2)),
xi_i and sigma_i item i's mean and spread among the real users, so the fake ratings stay close to
the real users' rating statistics (Li et al., Sec. 5).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Optional

import numba
import numpy as np
from tqdm.auto import tqdm

from .._checks import int_arg, positive_int
from ..data.interactions import Interactions
from ..data.poison import fake_user_ids
from ..models.als import ExplicitMF, ratings_by
from .shilling import ShillingAttack, _on_scale, _Stats

__all__ = ["UTILITIES", "SELECTIONS", "UnrolledALS", "ALSFit", "PoisonRun", "OptimisedAttack", "PGAAttack",
           "SGLDAttack"]

UTILITIES = ("integrity", "availability", "hybrid")
SELECTIONS = ("value", "gradient")


# --------------------------------------------------------------------- the differentiable victim


@numba.njit(cache=True, nogil=True, fastmath=True)
def _ridge(indptr, indices, values, weights, other, other_bias, mu, reg, out, factors):  # pragma: no cover
    """One ALS half-step: out[r] = A_r^-1 b_r for every row r of the CSR ``(indptr, indices,
    values, weights)``, with A_r = sum_k w_k y_k y_k^T + reg n_r I, b_r = sum_k w_k (v_k - mu -
    other_bias[j_k]) y_k, y_k = [other[j_k], 1] and n_r = sum_k w_k (a real row has weight 1). A
    row without ratings gets 0, as in the victim. When ``factors`` has rows, row r's Cholesky
    factor U (A_r = U^T U) is kept there, packed row by row (``_solve_packed`` reads it).

    The Gram matrix is built as in ``advrec.models.als``: the design rows gathered transposed
    (G[a, k] = y_k[a]) so each entry of A's upper triangle is a contiguous dot product, four at a
    time; then Cholesky and two triangular solves."""
    d = other.shape[1]
    m = d + 1
    keep = factors.shape[0] > 0
    longest = 0
    for r in range(indptr.shape[0] - 1):
        longest = max(longest, indptr[r + 1] - indptr[r])
    G = np.zeros((m + 3, longest))
    G[d, :] = 1.0
    wt = np.empty(longest)
    A = np.empty((m, m + 3))
    b = np.empty(m)
    for r in range(indptr.shape[0] - 1):
        lo, n = indptr[r], indptr[r + 1] - indptr[r]
        count = 0.0
        for k in range(n):
            count += weights[lo + k]
        if count == 0.0:
            out[r, :] = 0.0
            if keep:
                factors[r, :] = 0.0
            continue
        for k in range(n):
            wt[k] = weights[lo + k] * (values[lo + k] - mu - other_bias[indices[lo + k]])
        for a in range(d):
            for k in range(n):
                G[a, k] = other[indices[lo + k], a]
        for a in range(m):
            s = 0.0
            for k in range(n):
                s += G[a, k] * wt[k]
            b[a] = s
            for c in range(a, m, 4):
                s0, s1, s2, s3 = 0.0, 0.0, 0.0, 0.0
                for k in range(n):
                    g = G[a, k] * weights[lo + k]
                    s0 += g * G[c, k]
                    s1 += g * G[c + 1, k]
                    s2 += g * G[c + 2, k]
                    s3 += g * G[c + 3, k]
                A[a, c], A[a, c + 1], A[a, c + 2], A[a, c + 3] = s0, s1, s2, s3
            A[a, a] += reg * count
        for j in range(m):  # A = U^T U, upper triangle, in place
            pivot = np.sqrt(A[j, j])
            A[j, j] = pivot
            for c in range(j + 1, m):
                A[j, c] /= pivot
            for i in range(j + 1, m):
                u = A[j, i]
                for c in range(i, m):
                    A[i, c] -= u * A[j, c]
        for i in range(m):  # U^T z = b, then U x = z
            b[i] /= A[i, i]
            for c in range(i + 1, m):
                b[c] -= b[i] * A[i, c]
        for i in range(m - 1, -1, -1):
            s = b[i]
            for c in range(i + 1, m):
                s -= A[i, c] * b[c]
            b[i] = s / A[i, i]
        for a in range(m):
            out[r, a] = b[a]
        if keep:
            at = 0
            for j in range(m):
                for c in range(j, m):
                    factors[r, at] = A[j, c]
                    at += 1


@numba.njit(cache=True, nogil=True, fastmath=True)
def _solve_packed(factors, grad, out):  # pragma: no cover - compiled
    """out[r] = A_r^-1 grad[r] from the packed Cholesky factors ``_ridge`` kept (0 for a row
    without ratings, whose factor is 0): the adjoint solve of a half-step (A_r is symmetric)."""
    m = grad.shape[1]
    b = np.empty(m)
    for r in range(grad.shape[0]):
        if factors[r, 0] == 0.0:
            out[r, :] = 0.0
            continue
        for a in range(m):
            b[a] = grad[r, a]
        at = 0
        for i in range(m):  # U^T z = b; row i of U starts at `at`
            b[i] /= factors[r, at]
            for c in range(i + 1, m):
                b[c] -= b[i] * factors[r, at + c - i]
            at += m - i
        for i in range(m - 1, -1, -1):
            at -= m - i
            s = b[i]
            for c in range(i + 1, m):
                s -= factors[r, at + c - i] * b[c]
            b[i] = s / factors[r, at]
        for a in range(m):
            out[r, a] = b[a]


@numba.njit(cache=True, nogil=True, fastmath=True)
def _adjoint(indptr, indices, values, weights, other, other_bias, mu, reg, x, z, other_grad, value_grad,
             weight_grad):  # pragma: no cover - compiled
    """A half-step's backward pass over its entries. Row r solved x_r = A_r^-1 b_r; z_r =
    A_r^-1 xbar_r. For its entry k = (j, v, w), with y = [other[j], 1], s = z_r . y and the
    residual e = v - mu - other_bias[j] - x_r . y, the chain rule through A_r and b_r gives
    d other[j] += w (e z_r - s x_r) (first d parts), d other_bias[j] -= w s, d v = w s,
    d w = s e - reg z_r . x_r, and d mu -= w s (the sum is returned)."""
    d = other.shape[1]
    total = 0.0
    for r in range(indptr.shape[0] - 1):
        zx = 0.0
        for a in range(d + 1):
            zx += z[r, a] * x[r, a]
        for k in range(indptr[r], indptr[r + 1]):
            j, w = indices[k], weights[k]
            s, fit = z[r, d], x[r, d]
            for a in range(d):
                s += z[r, a] * other[j, a]
                fit += x[r, a] * other[j, a]
            e = values[k] - mu - other_bias[j] - fit
            for a in range(d):
                other_grad[j, a] += w * (e * z[r, a] - s * x[r, a])
            bias_grad_k = w * s
            other_grad[j, d] -= bias_grad_k
            value_grad[k] = bias_grad_k
            weight_grad[k] = s * e - reg * zx
            total -= bias_grad_k
    return total


class ALSFit(NamedTuple):
    """A fit of ``UnrolledALS``: the global mean, and the factors and biases of every user (real
    then fake) and item (float64)."""

    mu: float
    user_factors: np.ndarray
    user_bias: np.ndarray
    item_factors: np.ndarray
    item_bias: np.ndarray

    def scores(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predicted ratings ``[len(users), len(items)]``, as ``ExplicitMF.full_scores``."""
        return (self.mu + self.user_bias[users, None] + self.item_bias[items]
                + self.user_factors[users] @ self.item_factors[items].T)


class _Side(NamedTuple):
    """One side's rows as a weighted CSR: the real rows, then the fake entries (``fake`` gives
    where the k-th fake entry, in ``np.nonzero(weights)`` order, sits)."""

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    weights: np.ndarray
    fake: np.ndarray


class _Step(NamedTuple):
    """One half-step as the backward pass reads it: its input (the other side's [factors,
    bias]), its solutions and their packed Cholesky factors."""

    other: np.ndarray
    solution: np.ndarray
    factors: np.ndarray


class UnrolledALS:
    """``ExplicitMF.fit`` on ``train`` plus fake users, as a function of the fake users' ratings,
    with its exact gradient by reverse-mode differentiation through every ALS sweep.

    ``ratings`` and ``weights`` are ``[n_fake, n_items]``: fake user f rated item i with
    ``ratings[f, i]``, the row counting ``weights[f, i]`` times (0: not rated; 1: one row, as after
    injection; fractions: the relaxed problem). With 0/1 weights ``fit`` is the victim's own fit of
    the poisoned log: the same initial item factors (the victim's ``init_std`` and ``seed``), the
    same ``iterations`` sweeps of users then items, each row an exact weighted-lambda ridge solve,
    the global mean over every row (``advrec.models.als``).

    ``gradient(ratings, weights, head)`` runs the sweeps, asks ``head(fit)`` for the utility and
    its gradient with respect to the fit, and propagates it back through the sweeps in reverse:
    each half-step x_r = A_r^-1 b_r has the adjoint z_r = A_r^-1 xbar_r (its Cholesky factor is
    kept from the forward pass), then one pass over the entries (``_adjoint``). Hand-written
    rather than torch autograd: the batched 33 x 33 solves and sparse products of ML-100K cost
    about ten times more per sweep through torch on CPU than in these compiled loops, which are
    serial (no thread pool to fight over a busy machine). ``unroll=k`` goes back through the
    last k sweeps only (a truncated, cheaper gradient that keeps k sweeps of factors); the default
    goes through all of them.
    """

    def __init__(self, train: Interactions, victim: ExplicitMF):
        if train.rating is None:
            raise ValueError("train: UnrolledALS needs explicit ratings (an implicit log has none)")
        self.n_real, self.n_items = train.n_users, train.n_items
        self.dim, self.reg, self.iterations = victim.dim, victim.reg, victim.iterations
        self.by_user, self.by_item = ratings_by(train, "user"), ratings_by(train, "item")
        self.rating_sum, self.n_rows = float(self.by_user[2].sum()), len(train)
        # the victim's initial item factors: ExplicitMF.fit draws them first from its seed
        self.q0 = np.random.default_rng(victim.seed).normal(0.0, victim.init_std, (self.n_items, self.dim))

    def fit(self, ratings: Optional[np.ndarray] = None, weights: Optional[np.ndarray] = None) -> ALSFit:
        """The victim fitted on the real rows plus the fake ones (none when ``ratings`` is None)."""
        return self._forward(*self._sides(ratings, weights), keep=0)[0]

    def gradient(self, ratings: np.ndarray, weights: np.ndarray, head: Callable[[ALSFit], tuple],
                 unroll: Optional[int] = None) -> tuple[float, np.ndarray, np.ndarray]:
        """``(R, dR/d ratings, dR/d weights)`` for the utility ``head(fit) -> (R, dR/d user_factors,
        dR/d user_bias, dR/d item_factors, dR/d item_bias, dR/d mu)`` (the user arrays may cover
        the first users only: the others get 0). Both gradients are ``[n_fake, n_items]``, 0 where
        the weight is 0."""
        users, items, mu = self._sides(ratings, weights)
        unroll = self.iterations if unroll is None else min(unroll, self.iterations)
        fit, tape = self._forward(users, items, mu, keep=unroll)
        value, g_p, g_bu, g_q, g_bi, g_mu = head(fit)
        d = self.dim
        user_grad = np.zeros((len(users.indptr) - 1, d + 1))
        user_grad[:len(g_p), :d], user_grad[:len(g_bu), d] = g_p, g_bu
        item_grad = np.column_stack([g_q, g_bi]).astype(np.float64)
        n_fake_entries = len(users.fake)
        g_values, g_weights = np.zeros(n_fake_entries), np.zeros(n_fake_entries)
        g_mu = float(g_mu)
        for user_step, item_step in reversed(tape):  # the last sweep first
            g_users, g_mu_items = self._back(items, item_step, item_grad, mu, g_values, g_weights)
            item_grad, g_mu_users = self._back(users, user_step, user_grad + g_users, mu, g_values, g_weights)
            user_grad = np.zeros_like(user_grad)  # the utility reads the last sweep only
            g_mu += g_mu_items + g_mu_users
        f, i = np.nonzero(weights)
        w, r = weights[f, i], np.asarray(ratings, dtype=np.float64)[f, i]
        # mu = (sum of real ratings + sum w r) / (rows + sum w)
        total = self.n_rows + w.sum()
        g_values += g_mu * w / total
        g_weights += g_mu * (r - mu) / total
        g_ratings, g_w = np.zeros(weights.shape), np.zeros(weights.shape)
        g_ratings[f, i], g_w[f, i] = g_values, g_weights
        return float(value), g_ratings, g_w

    # ------------------------------------------------------------------------------ internals

    def _sides(self, ratings: Optional[np.ndarray], weights: Optional[np.ndarray]) -> tuple[_Side, _Side, float]:
        """Both sides' weighted CSR (real rows, then the fake entries where weights > 0) and mu."""
        if ratings is None:
            ratings = weights = np.zeros((0, self.n_items))
        ratings, weights = np.asarray(ratings, dtype=np.float64), np.asarray(weights, dtype=np.float64)
        if ratings.ndim != 2 or ratings.shape[1] != self.n_items or weights.shape != ratings.shape:
            raise ValueError(f"ratings and weights must both be [n_fake, {self.n_items}], got shapes "
                             f"{ratings.shape} and {weights.shape}")
        if (weights < 0).any() or not np.isfinite(ratings).all():
            raise ValueError("weights must be >= 0 and ratings finite")
        f, i = np.nonzero(weights)
        r, w = ratings[f, i], weights[f, i]
        mu = (self.rating_sum + float((w * r).sum())) / (self.n_rows + float(w.sum()))
        # users: the real rows, then one row per fake user with its entries (already in order)
        indptr, indices, values = self.by_user
        fake_ptr = indptr[-1] + np.cumsum(np.bincount(f, minlength=len(ratings)))
        users = _Side(np.concatenate([indptr, fake_ptr]), np.concatenate([indices, i]), np.concatenate([values, r]),
                      np.concatenate([np.ones(len(values)), w]), len(values) + np.arange(len(f)))
        # items: each item's real entries, then its fake ones
        indptr, indices, values = self.by_item
        item = np.concatenate([np.repeat(np.arange(self.n_items), np.diff(indptr)), i])
        order = np.argsort(item, kind="stable")
        where = np.empty_like(order)
        where[order] = np.arange(len(order))
        items = _Side(np.concatenate([[0], np.cumsum(np.bincount(item, minlength=self.n_items))]),
                      np.concatenate([indices, self.n_real + f])[order], np.concatenate([values, r])[order],
                      np.concatenate([np.ones(len(values)), w])[order], where[len(values):])
        return users, items, mu

    def _forward(self, users: _Side, items: _Side, mu: float, keep: int) -> tuple[ALSFit, list]:
        """The sweeps; the last ``keep`` are taped as (user step, item step)."""
        q = np.column_stack([self.q0, np.zeros(self.n_items)])
        tape = []
        for sweep in range(self.iterations):
            taped = sweep >= self.iterations - keep
            user_step = self._step(users, q, mu, taped)
            item_step = self._step(items, user_step.solution, mu, taped)
            q = item_step.solution
            if taped:
                tape.append((user_step, item_step))
        p, d = user_step.solution, self.dim
        return ALSFit(mu, p[:, :d], p[:, d], q[:, :d], q[:, d]), tape

    def _step(self, side: _Side, other: np.ndarray, mu: float, keep: bool) -> _Step:
        """A half-step of ``side``'s rows from the other side's [factors, bias]."""
        m = self.dim + 1
        n_rows = len(side.indptr) - 1
        out = np.empty((n_rows, m))
        factors = np.empty((n_rows if keep else 0, m * (m + 1) // 2))
        _ridge(side.indptr, side.indices, side.values, side.weights, np.ascontiguousarray(other[:, :self.dim]),
               np.ascontiguousarray(other[:, self.dim]), mu, self.reg, out, factors)
        return _Step(other, out, factors)

    def _back(self, side: _Side, step: _Step, grad: np.ndarray, mu: float, g_values: np.ndarray,
              g_weights: np.ndarray) -> tuple[np.ndarray, float]:
        """Back through a half-step: the gradient of its input (the other side's [factors, bias])
        and of mu; the fake entries' rating and weight gradients accumulate."""
        z = np.empty_like(grad)
        _solve_packed(step.factors, grad, z)
        other_grad = np.zeros_like(step.other)
        value_grad, weight_grad = np.empty(len(side.values)), np.empty(len(side.values))
        g_mu = _adjoint(side.indptr, side.indices, side.values, side.weights,
                        np.ascontiguousarray(step.other[:, :self.dim]), np.ascontiguousarray(step.other[:, self.dim]),
                        mu, self.reg, step.solution, z, other_grad, value_grad, weight_grad)
        g_values += value_grad[side.fake]
        g_weights += weight_grad[side.fake]
        return other_grad, g_mu


# ------------------------------------------------------------------------------- the utility


class _Utility:
    """R of the module docstring over the real users, as a ``head`` for ``UnrolledALS.gradient``:
    the value and its gradient with respect to the fit."""

    def __init__(self, model: UnrolledALS, train: Interactions, targets: np.ndarray, utility: str,
                 weight: float, sign: float):
        self.utility, self.sign = utility, sign
        self.shares = {"integrity": (1.0, 0.0), "availability": (0.0, 1.0), "hybrid": (1.0 - weight, weight)}[utility]
        self.users, self.items, self.targets = np.arange(model.n_real), np.arange(model.n_items), targets
        rated = np.zeros((train.n_users, train.n_items), dtype=bool)
        rated[train.user, train.item] = True
        self.eligible = ~rated[:, targets]  # real users who have not rated the target
        self.unrated = ~rated
        self.clean = model.fit().scores(self.users, self.items) if self.shares[1] else None

    def __call__(self, fit: ALSFit) -> tuple:
        """``(R, dR/dP, dR/d b_user, dR/dQ, dR/d b_item, dR/d mu)`` (real users' rows)."""
        value, grad = 0.0, np.zeros((len(self.users), len(self.items)))  # dR / d scores
        integrity, availability = self.shares
        if integrity:
            pick = self.sign * integrity * self.eligible / self.eligible.sum()
            value += float((fit.scores(self.users, self.targets) * pick).sum())
            grad[:, self.targets] += pick
        if availability:
            change = (fit.scores(self.users, self.items) - self.clean) * self.unrated
            n = self.unrated.sum()
            value += availability * float((change ** 2).sum()) / n
            grad += availability * 2 * change / n
        p = fit.user_factors[self.users]
        return value, grad @ fit.item_factors, grad.sum(1), grad.T @ p, grad.sum(0), grad.sum()


# -------------------------------------------------------------------------------- the attacks


@dataclass(frozen=True, eq=False)
class PoisonRun:
    """What an optimised attack did: ``fake`` (what ``attack`` returns), the relaxed ratings at
    the end of phase 1 ``relaxed`` ``[n_fake, n_items]``, the kept entries ``support`` (bool,
    targets included), the utility at the start of each phase and after each of its steps (a
    refused PGA step repeats the last value; ``utility``: phase 1, ``refine_utility``: phase 2,
    on the support at full weight, before rounding) and the seconds it took."""

    fake: Interactions
    relaxed: np.ndarray
    support: np.ndarray
    utility: np.ndarray
    refine_utility: np.ndarray
    seconds: float


class OptimisedAttack(ShillingAttack):
    """The shared machinery of ``PGAAttack`` and ``SGLDAttack`` (module docstring): subclasses
    give one update of the free ratings from the gradient. The constructor takes the shilling
    attacks' arguments (``targets``, ``n_fake``, ``filler``, ``goal``, ``max_ratings``,
    ``rating_scale``, ``seed``) plus:

    - ``victim``: an ``ExplicitMF`` (fitted or not) whose dim, reg, iterations, init_std and seed
      are the victim's (white box); default ``ExplicitMF()``'s;
    - ``utility`` (``UTILITIES``) and ``weight`` (hybrid: the availability share in [0, 1]);
    - ``steps`` (relaxed phase), ``refine_steps`` (on the kept support), ``select``
      (``SELECTIONS``), ``unroll`` (ALS sweeps differentiated, default all: ``UnrolledALS``);
    - ``progress``: a tqdm bar over the steps (default: only on a terminal).

    ``attack(train)`` returns the fake users' rows; ``run(train)`` returns a ``PoisonRun``.
    Explicit ratings only: an implicit log is refused, naming ``train``.
    """

    needs_ratings = True

    def __init__(self, *, victim: Optional[ExplicitMF] = None, utility: str = "integrity", weight: float = 0.5,
                 steps: int = 3, refine_steps: int = 6, select: str = "gradient", unroll: Optional[int] = None,
                 progress: Optional[bool] = None, **common: Any) -> None:
        super().__init__(**common)
        victim = ExplicitMF() if victim is None else victim
        if not isinstance(victim, ExplicitMF):
            raise ValueError(f"victim must be an advrec.models.ExplicitMF (its settings are copied), "
                             f"got {type(victim).__name__}")
        self.victim = victim
        if utility not in UTILITIES:
            raise ValueError(f"utility must be one of {UTILITIES}, got {utility!r}")
        self.utility = utility
        self.weight = _fraction(weight, "weight")
        self.steps = int_arg(steps, "steps")
        self.refine_steps = int_arg(refine_steps, "refine_steps")
        if select not in SELECTIONS:
            raise ValueError(f"select must be one of {SELECTIONS}, got {select!r}")
        self.select = select
        self.unroll = None if unroll is None else positive_int(unroll, "unroll")
        self.progress = progress

    def __repr__(self) -> str:
        victim = ", ".join(f"{k}={v!r}" for k, v in self.victim.config().items() if k not in ("n_users", "n_items"))
        args = [f"{k}={v.tolist() if isinstance(v, np.ndarray) else v!r}" for k, v in vars(self).items()
                if k != "victim"]
        return f"{type(self).__name__}({', '.join(args)}, victim=ExplicitMF({victim}))"

    def attack(self, train: Interactions) -> Interactions:
        """The fake profiles for ``train``: rows of the fake users only, sorted by user then item."""
        return self.run(train).fake

    def run(self, train: Interactions) -> PoisonRun:
        """Optimise, project and round the fake profiles for ``train`` (module docstring)."""
        start = time.perf_counter()
        stats = self._stats(train)  # refuses implicit logs, naming train
        targets = self._targets_in(train)
        n_fake = self._fake_count(train)
        pool = np.setdiff1d(np.arange(train.n_items), targets)
        n_filler = self._filler_count(train.n_items, len(pool), len(targets))
        assert stats.scale is not None
        r_min, r_max, _ = stats.scale
        target_rating = r_max if self.goal == "push" else r_min
        model = UnrolledALS(train, self.victim)
        utility = _Utility(model, train, targets, self.utility, self.weight, 1.0 if self.goal == "push" else -1.0)
        rng = np.random.default_rng(self.seed)
        is_target = np.zeros(train.n_items, dtype=bool)
        is_target[targets] = True
        # phase 1: every item rated, from the average attack's law, each filler entry weighing
        # n_filler / len(pool) so a profile weighs what its final n_filler ratings will
        ratings = np.clip(rng.normal(stats.item_mean, stats.item_std, (n_fake, train.n_items)), r_min, r_max)
        ratings[:, is_target] = target_rating
        weights = np.repeat(np.where(is_target, 1.0, n_filler / len(pool))[None, :], n_fake, 0)
        free = np.repeat(~is_target[None, :], n_fake, 0) & (n_filler > 0)
        show = sys.stderr.isatty() if self.progress is None else bool(self.progress)
        with tqdm(total=self.steps + self.refine_steps, desc=type(self).__name__, disable=not show,
                  leave=False) as bar:
            ratings, trace, gain = self._ascend(model, utility, stats, ratings, weights, free, self.steps, rng, bar)
            relaxed = ratings.copy()
            # phase 2: the budget, then the exact problem on that support
            support = self._support(stats, ratings, gain, pool, n_filler) | is_target[None, :]
            ratings, refine_trace, _ = self._ascend(model, utility, stats, ratings, support.astype(np.float64),
                                                    support & ~is_target[None, :], self.refine_steps, rng, bar)
        ratings = _on_scale(ratings, stats.scale)
        ratings[:, is_target] = target_rating
        fake = _profiles(train, support, ratings)
        return PoisonRun(fake, relaxed, support, trace, refine_trace, time.perf_counter() - start)

    # ----------------------------------------------------------------- what subclasses choose

    #: refuse a step that lowers the utility and halve the next ones (ascent); False: take every
    #: step (sampling)
    monotone = True

    def _update(self, stats: _Stats, ratings: np.ndarray, grad: np.ndarray, free: np.ndarray,
                rng: np.random.Generator, shrink: float) -> np.ndarray:
        """The ratings after one step from ``grad`` (dR/dM~ per unit weight, 0 off ``free``),
        before clipping (only the free entries are kept); ``shrink`` scales the step."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------- shared

    def _ascend(self, model: UnrolledALS, utility: _Utility, stats: _Stats, ratings: np.ndarray,
                weights: np.ndarray, free: np.ndarray, steps: int, rng: np.random.Generator,
                bar: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``steps`` updates of the free entries within [r_min, r_max], one utility gradient each:
        the ratings, the utility at the start and after each step, and dR/d weights at the end."""
        assert stats.scale is not None
        r_min, r_max, _ = stats.scale
        value, g_ratings, g_weights = model.gradient(ratings, weights, utility, self.unroll)
        trace, shrink = [value], 1.0
        for _ in range(steps):
            grad = np.where(free, g_ratings / np.where(weights > 0, weights, 1.0), 0.0)
            moved = np.clip(self._update(stats, ratings, grad, free, rng, shrink), r_min, r_max)
            proposal = np.where(free, moved, ratings)
            new = model.gradient(proposal, weights, utility, self.unroll)
            if self.monotone and new[0] < value:
                shrink /= 2
            else:
                ratings, (value, g_ratings, g_weights) = proposal, new
            trace.append(value)
            bar.update(1)
            bar.set_postfix(utility=f"{value:.4f}")
        return ratings, np.array(trace), g_weights

    def _support(self, stats: _Stats, ratings: np.ndarray, gain: np.ndarray, pool: np.ndarray,
                 n_filler: int) -> np.ndarray:
        """Each fake user's ``n_filler`` kept items among ``pool`` (ties to the lower index)."""
        support = np.zeros(ratings.shape, dtype=bool)
        if n_filler == 0:
            return support
        if self.select == "value":
            score = np.abs(ratings[:, pool] - stats.item_mean[pool])
        else:
            score = gain[:, pool]
        order = np.argsort(-score, axis=1, kind="stable")[:, :n_filler]
        np.put_along_axis(support, pool[order], True, axis=1)
        return support


class PGAAttack(OptimisedAttack):
    """Projected gradient ascent (Li et al. 2016): M~ <- clip(M~ + s g / rms(g)), g the
    utility's gradient, s = ``step_size`` rating units (the RMS normalisation makes one step size
    fit every utility and data size; the paper's raw step s_t grad R needs tuning per problem).
    See ``OptimisedAttack`` for the other arguments."""

    def __init__(self, *, step_size: float = 0.5, **common: Any) -> None:
        super().__init__(**common)
        self.step_size = _positive(step_size, "step_size")

    def _update(self, stats: _Stats, ratings: np.ndarray, grad: np.ndarray, free: np.ndarray,
                rng: np.random.Generator, shrink: float) -> np.ndarray:
        rms = float(np.sqrt(np.mean(grad[free] ** 2))) if free.any() else 0.0
        return ratings if rms == 0.0 else ratings + shrink * self.step_size * grad / rms


class SGLDAttack(OptimisedAttack):
    """Stochastic gradient Langevin dynamics (Li et al. 2016, Sec. 5): samples M~ from
    p(M~) ~ exp(beta R(M~) - sum_fi (M~_fi - xi_i)^2 / (2 sigma_i^2)), xi_i and sigma_i the real
    users' mean rating of item i and its spread (floored at half the log's spread: an item rated
    once or twice does not pin the fakes), by M~ <- M~ + (s/2) grad log p + N(0, s), clipped to
    [r_min, r_max]; s = ``step_size``, ``beta`` the weight of the attack against looking normal
    (large beta: PGA; beta = 0: the average attack's law). The chain starts from that law.
    See ``OptimisedAttack`` for the other arguments."""

    monotone = False

    def __init__(self, *, beta: float = 3000.0, step_size: float = 0.2, **common: Any) -> None:
        super().__init__(**common)
        self.beta = _positive(beta, "beta", allow_zero=True)
        self.step_size = _positive(step_size, "step_size")

    def _update(self, stats: _Stats, ratings: np.ndarray, grad: np.ndarray, free: np.ndarray,
                rng: np.random.Generator, shrink: float) -> np.ndarray:
        spread = np.maximum(stats.item_std, stats.std / 2)
        drift = self.beta * grad - (ratings - stats.item_mean) / spread ** 2
        s = self.step_size
        return ratings + s / 2 * drift + np.sqrt(s) * rng.standard_normal(ratings.shape)


# ------------------------------------------------------------------------------------ helpers


def _profiles(train: Interactions, support: np.ndarray, ratings: np.ndarray) -> Interactions:
    """The fake users' rows, as ``ShillingAttack.attack`` builds them."""
    n_fake = len(support)
    fake, item = np.nonzero(support)  # row-major: sorted by user then item
    timestamp = None if train.timestamp is None else np.full(len(item), train.timestamp.max() + 1)
    return Interactions(train.n_users + fake, item, ratings[fake, item].astype(np.float32), timestamp,
                        train.n_users + n_fake, train.n_items,
                        np.concatenate([train.user_ids, fake_user_ids(train, n_fake)]), train.item_ids)


def _positive(x: Any, name: str, allow_zero: bool = False) -> float:
    ok = isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))
    if not ok or not np.isfinite(x) or x < 0 or (x == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0, got {x!r}")
    return float(x)


def _fraction(x: Any, name: str) -> float:
    value = _positive(x, name, allow_zero=True)
    if value > 1:
        raise ValueError(f"{name} must be in [0, 1], got {x!r}")
    return value
