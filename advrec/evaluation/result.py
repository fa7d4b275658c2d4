"""EvalResult: per-user metric values kept alongside the top-K lists, so that runs can be summarised,
sliced by user group and compared with paired significance tests on the same users."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from ..metrics.significance import paired_ttest, wilcoxon

_TESTS = {"ttest": paired_ttest, "wilcoxon": wilcoxon}


def _nanmean(values: np.ndarray) -> float:
    """Mean over the defined (non-NaN) values; NaN when none is defined."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else float("nan")


def _json_number(x: Any) -> Any:
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


@dataclass(eq=False)
class EvalResult:
    """The outcome of one evaluation run.

    ``per_user[name][j]`` is the value of metric ``name`` for user ``users[j]`` (NaN where it is
    undefined for that user, e.g. AUC with no candidate negative); ``global_metrics`` hold values
    defined only over all lists (coverage, entropy, Gini); ``topk`` [len(users), K] are the lists
    of the full-ranking protocol (None for the sampled protocol); ``info`` holds counts the run
    reported (overlaps between test and excluded items, shortened negative samples, ...).
    """

    users: np.ndarray
    per_user: dict[str, np.ndarray]
    global_metrics: dict[str, float] = field(default_factory=dict)
    topk: Optional[np.ndarray] = None
    protocol: str = "full"
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.users = np.asarray(self.users, dtype=np.int64)
        if self.users.ndim != 1 or np.any(np.diff(self.users) <= 0):
            raise ValueError("users must be a 1-D array of distinct user ids in increasing order")
        for name, v in self.per_user.items():
            v = np.asarray(v, dtype=np.float64)
            if v.shape != self.users.shape:
                raise ValueError(f"per_user[{name!r}] has shape {v.shape}, expected {self.users.shape}")
            self.per_user[name] = v
        if self.topk is not None and np.asarray(self.topk).shape[0] != len(self.users):
            raise ValueError("topk must have one row per evaluated user")

    def summary(self) -> dict[str, float]:
        """Mean of every per-user metric over the users where it is defined, plus the globals."""
        out = {name: _nanmean(v) for name, v in self.per_user.items()}
        out.update({name: float(v) for name, v in self.global_metrics.items()})
        return out

    def compare(self, other: "EvalResult", test: str = "ttest") -> dict[str, tuple[float, float]]:
        """Paired test of self against other on the users both evaluated: {metric: (stat, p)}.

        Per metric, pairs where either value is undefined (NaN) are dropped. For the t-test a
        positive t means self scores higher; the Wilcoxon W = min(W+, W-) carries no sign.
        Metrics present in only one result are skipped; fewer than 2 pairs give (nan, nan).
        """
        if test not in _TESTS:
            raise ValueError(f"test must be one of {sorted(_TESTS)}, got {test!r}")
        if not isinstance(other, EvalResult):
            raise ValueError(f"other must be an EvalResult, got {type(other).__name__}")
        _, ia, ib = np.intersect1d(self.users, other.users, assume_unique=True, return_indices=True)
        out: dict[str, tuple[float, float]] = {}
        for name, a in self.per_user.items():
            if name not in other.per_user:
                continue
            x, y = a[ia], other.per_user[name][ib]
            ok = ~(np.isnan(x) | np.isnan(y))
            if ok.sum() < 2:
                out[name] = (float("nan"), float("nan"))
                continue
            stat, p = _TESTS[test](x[ok], y[ok])
            out[name] = (float(stat), float(p))
        return out

    def by_group(self, labels: np.ndarray) -> dict[Any, dict[str, float]]:
        """Per-group summary (means of per-user metrics and ``n_users``), e.g. by user activity.

        ``labels`` is indexed by user id (length >= max user id + 1), as returned by
        ``advrec.evaluation.users_by_activity``; global metrics are not split.
        """
        labels = np.asarray(labels)
        if labels.ndim != 1:
            raise ValueError("labels must be a 1-D array indexed by user id")
        if self.users.size and len(labels) <= self.users.max():
            raise ValueError(f"labels has {len(labels)} entries but user {int(self.users.max())} was evaluated")
        mine = labels[self.users]
        out: dict[Any, dict[str, float]] = {}
        for g in np.unique(mine):
            sel = mine == g
            key = g.item() if isinstance(g, np.generic) else g
            summary = {name: _nanmean(v[sel]) for name, v in self.per_user.items()}
            summary["n_users"] = float(sel.sum())
            out[key] = summary
        return out

    def to_json(self, per_user: bool = False, indent: Optional[int] = None) -> str:
        """Strict JSON (NaN written as null): protocol, n_users, summary, globals, info and,
        with ``per_user=True``, the user ids and per-user values. ``topk`` is not written."""
        doc: dict[str, Any] = {
            "protocol": self.protocol,
            "n_users": int(len(self.users)),
            "summary": {k: _json_number(v) for k, v in self.summary().items()},
            "global_metrics": {k: _json_number(v) for k, v in self.global_metrics.items()},
            "info": {k: _json_number(v) for k, v in self.info.items()},
        }
        if per_user:
            doc["users"] = self.users.tolist()
            doc["per_user"] = {k: [_json_number(x) for x in v] for k, v in self.per_user.items()}
        return json.dumps(doc, indent=indent, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> "EvalResult":
        """Rebuild a result written with ``to_json(per_user=True)`` (without ``topk``)."""
        doc = json.loads(text)
        if "per_user" not in doc:
            raise ValueError("text was written without per_user=True; per-user values are missing")
        nan = float("nan")
        return cls(
            users=np.asarray(doc["users"], dtype=np.int64),
            per_user={k: np.array([nan if x is None else x for x in v], dtype=np.float64)
                      for k, v in doc["per_user"].items()},
            global_metrics={k: nan if v is None else float(v) for k, v in doc["global_metrics"].items()},
            protocol=doc["protocol"],
            info={k: nan if v is None else v for k, v in doc["info"].items()},
        )

    def table(self, digits: int = 4) -> str:
        """The summary as an aligned two-column plain-text table."""
        rows = [(name, "nan" if math.isnan(v) else f"{v:.{digits}f}") for name, v in self.summary().items()]
        header = ("metric", f"{self.protocol} ({len(self.users)} users)")
        w0 = max(len(header[0]), *(len(r[0]) for r in rows)) if rows else len(header[0])
        w1 = max(len(header[1]), *(len(r[1]) for r in rows)) if rows else len(header[1])
        lines = [f"{header[0]:<{w0}}  {header[1]:>{w1}}", f"{'-' * w0}  {'-' * w1}"]
        lines += [f"{a:<{w0}}  {b:>{w1}}" for a, b in rows]
        return "\n".join(lines)
