"""Aggregating per-seed numbers (mean ± sample std) and writing them as text and strict JSON."""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def mean_std(values: np.ndarray) -> tuple:
    """(mean, sample std) over axis 0; std is NaN with one seed."""
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        mean = values.mean(axis=0)
        std = values.std(axis=0, ddof=1) if len(values) > 1 else np.full_like(mean, np.nan)
    return mean, std


def fmt_mean_std(mean: float, std: float, digits: int) -> str:
    """``mean ± std`` (just the mean when std is NaN, i.e. one seed); infinities spelled out."""
    if math.isinf(mean):
        return "-inf" if mean < 0 else "inf"
    if math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def jsonable(x: Any) -> Any:
    """Strict JSON: NaN -> null, +-inf -> "inf"/"-inf", numpy scalars and arrays -> Python."""
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float):
        return None if math.isnan(x) else (("inf" if x > 0 else "-inf") if math.isinf(x) else x)
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    return x


def json_text(payload: dict) -> str:
    """The text of an experiment's ``<stem>.json``: strict JSON of ``payload``, indent 1."""
    return json.dumps(jsonable(payload), indent=1)


def markdown_text(title: str, markdown: str) -> str:
    """The text of an experiment's ``<stem>.md``: ``# title``, a blank line, then ``markdown``."""
    return f"# {title}\n\n{markdown}\n"


def write_experiment_report(out: Any, stem: str, title: str, payload: dict, markdown: str,
                            draw: Any) -> list:
    """``<stem>.json`` (strict JSON of ``payload``), ``<stem>.md`` (``# title`` then ``markdown``)
    and, with matplotlib, the PNG figures ``draw(out)`` writes; returns every path written."""
    from pathlib import Path

    from .figures import have_matplotlib

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / f"{stem}.json", out / f"{stem}.md"]
    files[0].write_text(json_text(payload))
    files[1].write_text(markdown_text(title, markdown))
    if have_matplotlib():
        files += draw(out)
    return files
