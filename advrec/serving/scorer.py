"""``Scorer``: exact top-k recommendations and candidate scoring for serving.

MF models take the blocked GEMM + fused selection path (``kernels.topk_dot_blocked``): the
users x items matrix never exists and the score blocks stay in cache. Other recommenders are
ranked from ``full_scores`` in user tiles (never all users at once). ``certify=True`` attaches
each MF list's certified radius (``advrec.certify.mf_topk_radius``); an ``FM`` scores CSR
instances and attaches the certifier's per-prediction max q.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple, Union

import numpy as np
import torch

from .. import kernels
from .._checks import positive_int
from .._logging import report
from ..certify import FMCertifier, mf_topk_radius
from ..data import Interactions
from ..models import FM, MF
from ..models.base import Recommender
from ..training import load_checkpoint

__all__ = ["Scorer", "ServeStats"]

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ServeStats:
    """What the last call served: users, wall seconds (selection and certification apart),
    users per second over the whole call, threads and device."""

    users: int
    seconds: float
    certify_seconds: float
    threads: int
    device: str
    path: str  # "blocked-gemm", "full-scores" or "fm"

    @property
    def users_per_s(self) -> float:
        return self.users / self.seconds if self.seconds > 0 else float("inf")


def _is_plain_mf(model: Any) -> bool:
    """An MF whose scores are exactly ``P @ Q.T`` (a subclass that redefines scoring is ranked
    through its own ``full_scores``)."""
    if not isinstance(model, MF):
        return False
    cls = type(model)
    return all(getattr(cls, nm) is getattr(MF, nm) for nm in ("full_scores", "score", "_factors"))


class Scorer:
    """Serve a trained model: ``recommend(users, k)`` and ``score(users, items)`` (Recommenders),
    ``score_instances(indptr, indices)`` (FM).

    ``threads`` and ``device`` are the defaults for every call (each call may override them).
    For an FM, ``perturbable`` (feature ids an attacker may flip) and ``q_max`` configure the
    certificate that ``score_instances(..., certify=True)`` attaches.
    """

    def __init__(self, model: Union[Recommender, FM], *, threads: int = 1, device: str = "cpu",
                 batch_size: Optional[int] = None, perturbable: Any = None, q_max: int = 5):
        if not isinstance(model, (Recommender, FM)):
            raise TypeError(f"model must be an advrec Recommender or FM, got {type(model).__name__}")
        self.model = model
        self.threads = positive_int(threads, "threads")
        self.device = self._check_device(device)
        self.batch_size = None if batch_size is None else positive_int(batch_size, "batch_size")
        self.last_stats: Optional[ServeStats] = None
        self._fm_certifier: Optional[FMCertifier] = None
        if isinstance(model, FM):
            self.q_max = positive_int(q_max, "q_max")
            if perturbable is not None:
                self._fm_certifier = FMCertifier.from_model(model, perturbable)
        elif perturbable is not None:
            raise ValueError("perturbable is only meaningful for an FM model")

    @classmethod
    def from_checkpoint(cls, path: Any, **kwargs: Any) -> "Scorer":
        """A Scorer of the model saved by ``advrec.training.save_checkpoint`` at ``path``."""
        model = load_checkpoint(path)
        model.eval()
        return cls(model, **kwargs)

    # ------------------------------------------------------------------ arguments

    @staticmethod
    def _check_device(device: Any) -> str:
        dev = str(device)
        if dev.split(":")[0] not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        if dev.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError("device='cuda' but torch sees no CUDA device")
        return dev

    def _recommender(self, what: str) -> Recommender:
        if isinstance(self.model, FM):
            raise TypeError(f"{what} needs a Recommender; an FM scores CSR instances: use score_instances")
        return self.model

    def _users(self, users: Any, n_users: int) -> np.ndarray:
        if users is None:
            return np.arange(n_users, dtype=np.int64)
        u = np.asarray(users.detach().cpu() if isinstance(users, torch.Tensor) else users)
        if u.ndim != 1:
            raise ValueError(f"users must be 1-D, got shape {u.shape}")
        if u.size and (u.dtype == np.bool_ or not np.issubdtype(u.dtype, np.integer)):
            raise ValueError(f"users must hold integer ids, got dtype {u.dtype}")
        u = u.astype(np.int64, copy=False)
        if u.size and (u.min() < 0 or u.max() >= n_users):
            bad = int(np.flatnonzero((u < 0) | (u >= n_users))[0])
            raise IndexError(f"users[{bad}] = {u[bad]} is outside [0, n_users = {n_users})")
        return np.ascontiguousarray(u)

    @staticmethod
    def _exclusion(exclude: Any, n_users: int, n_items: int) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        if exclude is None:
            return None
        if isinstance(exclude, Interactions):
            if (exclude.n_users, exclude.n_items) != (n_users, n_items):
                raise ValueError(f"exclude covers {exclude.n_users} users x {exclude.n_items} items, "
                                 f"the model {n_users} x {n_items}")
            exclude = exclude.to_csr()
        return kernels.exclusion_csr(exclude, n_users, n_items, "exclude")

    # ------------------------------------------------------------------ recommend

    def recommend(self, users: Any = None, k: int = 10, exclude: Any = None, *,
                  certify: bool = False, certify_candidates: Optional[int] = None,
                  batch_size: Optional[int] = None, threads: Optional[int] = None,
                  device: Optional[str] = None, progress: Optional[Progress] = None
                  ) -> Union[Tuple[np.ndarray, np.ndarray], Tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Top-``k`` items per user, best first: ``(items int64 [n, k], scores float32 [n, k])``,
        plus ``radius float64 [n]`` when ``certify`` (MF only).

        ``users``: ids (default: every user). ``exclude``: items never to recommend, as the
        training ``Interactions``, a CSR pair ``(indptr, indices)`` or a scipy.sparse matrix over
        all users x items. Users with fewer than ``k`` candidates are padded with -1 / -inf.
        ``certify_candidates`` (default ``k``): non-listed items compared pair by pair for the
        radius (the rest through a cheaper bound). ``batch_size``: users per GEMM block (MF) or
        per ``full_scores`` tile (others). ``progress(done, total)`` is called as users finish.
        ``last_stats`` records the throughput.
        """
        model = self._recommender("recommend")
        k = positive_int(k, "k")
        threads = self.threads if threads is None else positive_int(threads, "threads")
        dev = self.device if device is None else self._check_device(device)
        batch_size = batch_size if batch_size is not None else self.batch_size
        if batch_size is not None:
            batch_size = positive_int(batch_size, "batch_size")
        n_users, n_items = int(model.n_users), int(model.n_items)
        u = self._users(users, n_users)
        ex = self._exclusion(exclude, n_users, n_items)
        plain = _is_plain_mf(model)
        if certify and not plain:
            raise ValueError(f"certify=True needs an MF model (the embedding threat model); "
                             f"{type(model).__name__} has no certified radius")
        c = 0
        if certify:
            c = k if certify_candidates is None else positive_int(certify_candidates, "certify_candidates")
        start = time.perf_counter()
        if plain and dev == "cpu" and model.user_factors.dtype == torch.float32:
            path = "blocked-gemm"
            items, scores = kernels.topk_dot_blocked(
                model.user_factors, model.item_factors, k + c, users=u, exclude=ex,
                threads=threads, user_block=batch_size or 64, progress=progress)
        elif plain:
            path = "topk-dot"
            P = model.user_factors.detach()[torch.from_numpy(u)].to(dev)
            items, scores = kernels.topk_dot(P, model.item_factors.detach().to(dev), k + c,
                                             exclude=ex, rows=None if ex is None else u,
                                             tile_rows=batch_size or 2048)
            if isinstance(items, torch.Tensor):
                items, scores = items.cpu().numpy(), scores.cpu().numpy()
            scores = scores.astype(np.float32, copy=False)
        else:
            path = "full-scores"
            items, scores = self._full_scores_topk(model, u, k, ex, batch_size or 1024, dev, progress)
        mid = time.perf_counter()
        radius = None
        if certify:
            n_eligible = None
            if ex is not None:
                n_eligible = n_items - np.diff(ex[0])[u]
            else:
                n_eligible = np.full(u.shape[0], n_items, dtype=np.int64)
            radius = self._radius(model, u, items, scores, k, n_eligible, threads)
            items, scores = np.ascontiguousarray(items[:, :k]), np.ascontiguousarray(scores[:, :k])
        end = time.perf_counter()
        self.last_stats = ServeStats(users=int(u.shape[0]), seconds=end - start,
                                     certify_seconds=end - mid, threads=threads, device=dev, path=path)
        report(f"serving: {u.shape[0]} users, k={k}, {self.last_stats.users_per_s:,.0f} users/s "
               f"({path}, {threads} thread(s){', certified' if certify else ''})")
        return (items, scores, radius) if certify else (items, scores)

    @staticmethod
    def _radius(model: MF, u: np.ndarray, items: np.ndarray, scores: np.ndarray, k: int,
                n_eligible: np.ndarray, threads: int) -> np.ndarray:
        """``mf_topk_radius`` over contiguous user parts, one per worker, torch single-threaded
        meanwhile (its intra-op threads would only spin on these small batched ops)."""
        P = model.user_factors.detach()
        bounds = np.linspace(0, u.shape[0], threads + 1).astype(np.int64)

        def part(i: int) -> np.ndarray:
            s, e = int(bounds[i]), int(bounds[i + 1])
            return mf_topk_radius(P[torch.from_numpy(u[s:e])], model.item_factors, items[s:e],
                                  scores[s:e], k, n_eligible=n_eligible[s:e])

        with torch.no_grad(), kernels.single_threaded_blas():
            if threads == 1:
                return part(0)
            with ThreadPoolExecutor(max_workers=threads) as pool:
                return np.concatenate(list(pool.map(part, range(threads))))

    def _full_scores_topk(self, model: Recommender, u: np.ndarray, k: int, ex: Any, tile: int,
                          dev: str, progress: Optional[Progress]) -> Tuple[np.ndarray, np.ndarray]:
        """Any Recommender: ``full_scores`` of one user tile at a time, masked top-k in the core."""
        parts_i, parts_v = [], []
        with torch.no_grad():
            for s in range(0, u.shape[0], tile):
                uu = u[s:s + tile]
                sc = model.full_scores(torch.from_numpy(uu).to(dev))
                i, v = kernels.topk_scores(sc.float(), k, ex, None if ex is None else uu)
                if isinstance(i, torch.Tensor):
                    i, v = i.cpu().numpy(), v.cpu().numpy()
                parts_i.append(i)
                parts_v.append(np.asarray(v, dtype=np.float32))
                if progress is not None:
                    progress(min(s + tile, u.shape[0]), u.shape[0])
        if not parts_i:
            return np.empty((0, k), np.int64), np.empty((0, k), np.float32)
        return np.concatenate(parts_i), np.concatenate(parts_v)

    # ------------------------------------------------------------------ score

    def score(self, users: Any, items: Any) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
        """Scores of candidate lists: ``items`` a 2-D id array ``[n, m]`` (one row per user; float32
        ``[n, m]`` back) or a CSR tuple ``(indptr, indices)`` of ragged lists (a tuple, never a list) (float32 ``[nnz]`` back,
        aligned with ``indices``)."""
        model = self._recommender("score")
        n_users, n_items = int(model.n_users), int(model.n_items)
        u = self._users(users, n_users)
        start = time.perf_counter()
        with torch.no_grad():
            if isinstance(items, tuple):
                if len(items) != 2:
                    raise ValueError("items as a tuple must be a CSR pair (indptr, indices)")
                indptr, indices = kernels.as_csr(items[0], items[1], "items")
                if indptr.shape[0] != u.shape[0] + 1:
                    raise ValueError(f"items indptr must have one row per user ({u.shape[0]} + 1 entries), "
                                     f"got {indptr.shape[0]}")
                self._check_items(indices, n_items)
                rows = np.repeat(u, np.diff(indptr))
                out = model.score(torch.from_numpy(rows), torch.from_numpy(indices)).float().cpu().numpy()
            else:
                it = np.asarray(items.detach().cpu() if isinstance(items, torch.Tensor) else items)
                if it.ndim != 2 or it.shape[0] != u.shape[0]:
                    raise ValueError(f"items must be [n_users_given = {u.shape[0]}, m] or a CSR pair, "
                                     f"got shape {it.shape}")
                if it.size and (it.dtype == np.bool_ or not np.issubdtype(it.dtype, np.integer)):
                    raise ValueError(f"items must hold integer ids, got dtype {it.dtype}")
                it = it.astype(np.int64, copy=False)
                self._check_items(it.ravel(), n_items)
                out = model.score(torch.from_numpy(u), torch.from_numpy(np.ascontiguousarray(it)))
                out = out.float().cpu().numpy()
        self.last_stats = ServeStats(users=int(u.shape[0]), seconds=time.perf_counter() - start,
                                     certify_seconds=0.0, threads=torch.get_num_threads(),
                                     device="cpu", path="score")
        return out

    @staticmethod
    def _check_items(ids: np.ndarray, n_items: int) -> None:
        if ids.size and (ids.min() < 0 or ids.max() >= n_items):
            bad = int(np.flatnonzero((ids < 0) | (ids >= n_items))[0])
            raise IndexError(f"items[{bad}] = {ids[bad]} is outside [0, n_items = {n_items})")

    # ------------------------------------------------------------------ FM

    def score_instances(self, indptr: Any, indices: Any, *, certify: bool = False
                        ) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
        """An FM's predictions ``f(x)`` (float64 [m]) of CSR instances, plus each prediction's
        certified max q (int64 [m]: the largest q <= ``q_max`` such that no q flips of the
        ``perturbable`` features change its sign) when ``certify``."""
        if not isinstance(self.model, FM):
            raise TypeError("score_instances needs an FM model; a Recommender uses score / recommend")
        if certify and self._fm_certifier is None:
            raise ValueError("certify=True needs the Scorer built with perturbable=<feature ids>")
        start = time.perf_counter()
        cert = self._fm_certifier or FMCertifier.from_model(self.model, np.empty(0, np.int64))
        scores = cert.scores(indptr, indices)
        mid = time.perf_counter()
        max_q = cert.max_q(indptr, indices, self.q_max, progress=False) if certify else None
        end = time.perf_counter()
        self.last_stats = ServeStats(users=int(len(scores)), seconds=end - start,
                                     certify_seconds=end - mid, threads=torch.get_num_threads(),
                                     device="cpu", path="fm")
        return (scores, max_q) if certify else scores
