"""Shapes every experiment's result records share: the acceptance ``Check``, a model's
``TrainingRecord``, and the helpers that read a config or strict-JSON numbers back.

Each record is a frozen dataclass with ``to_dict()`` (the JSON structure the reports write,
key for key and in the same order) and a ``from_dict()`` classmethod that rebuilds it from a
loaded report. Frozen means a record's fields are never reassigned; the plain containers
inside (a metric name -> value map, a list of curve points) are what the runners produced.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, Mapping, Optional, Sequence, Type, TypeVar

C = TypeVar("C")


@dataclass(frozen=True)
class Check:
    """One acceptance check of a report: its name, whether it holds on the seed means (``None``:
    it cannot be decided, e.g. a standard deviation over one seed), the measured numbers, and
    (MSAP, AMR) the target in words.

    Two JSON spellings exist in the committed reports and both are kept: ``to_dict()``
    ``{"name", "passed", "detail"}`` (CAT) and ``to_row()`` ``{"check", "measured", "target",
    "holds"}`` (MSAP, AMR, also their table row); ``from_dict`` reads either."""

    name: str
    passed: Optional[bool]
    detail: str
    target: str = ""

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}

    def to_row(self) -> Dict[str, Any]:
        return {"check": self.name, "measured": self.detail, "target": self.target, "holds": self.passed}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Check":
        if "check" in d:
            return cls(d["check"], d["holds"], d["measured"], d.get("target", ""))
        return cls(d["name"], d["passed"], d["detail"], d.get("target", ""))

    def verdict(self, undecided: str = "n/a") -> str:
        """``yes``, ``NO`` or ``undecided`` (the tables' "holds" column)."""
        return undecided if self.passed is None else ("yes" if self.passed else "NO")


@dataclass(frozen=True)
class TrainingRecord:
    """How one model was trained: epochs run, best epoch (as the experiment counts it), seconds;
    ``pretrained`` when it was handed in instead (then nothing else is known). Keys absent from
    a record (``None``) are absent from its JSON."""

    epochs: Optional[int] = None
    best_epoch: Optional[int] = None
    seconds: Optional[float] = None
    pretrained: bool = False

    def to_dict(self) -> Dict[str, Any]:
        if self.pretrained:
            return {"pretrained": True}
        out: Dict[str, Any] = {}
        for key in ("epochs", "best_epoch", "seconds"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainingRecord":
        if d.get("pretrained"):
            return cls(pretrained=True)
        return cls(d.get("epochs"), d.get("best_epoch"), d.get("seconds"))


def numbers(x: Any) -> Any:
    """The inverse of the strict-JSON writer (``report.aggregate.jsonable``) on record values:
    null -> NaN, "inf"/"-inf" -> infinities, containers walked."""
    if x is None:
        return float("nan")
    if isinstance(x, str) and x in ("inf", "-inf"):
        return float(x)
    if isinstance(x, dict):
        return {k: numbers(v) for k, v in x.items()}
    if isinstance(x, list):
        return [numbers(v) for v in x]
    return x


def number(x: Any) -> float:
    """One strict-JSON number back (null -> NaN)."""
    return float("nan") if x is None else float(x)


def config_from_dict(cls: Type[C], d: Mapping[str, Any]) -> C:
    """A config dataclass from its JSON: lists back to tuples, unknown keys ignored."""
    known = {f.name for f in fields(cls)}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known})


def config_to_dict(config: Any, order: Sequence[str] = ()) -> Dict[str, Any]:
    """``asdict(config)``, the keys in ``order`` first (where a committed report fixed an order
    the class's field order no longer has), then the rest."""
    d = asdict(config)
    out = {k: d[k] for k in order if k in d}
    out.update((k, v) for k, v in d.items() if k not in out)
    return out


__all__ = ["Check", "TrainingRecord", "numbers", "number", "config_from_dict", "config_to_dict"]
