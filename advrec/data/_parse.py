"""Line-level parsing shared by the readers: every error names the file, the line and the format."""
from __future__ import annotations

import gzip
import os
import re
from itertools import repeat
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np


class FormatError(ValueError):
    """A data file does not match its expected format; the message names file, line and format."""


def iter_lines(path: str | os.PathLike[str], encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """(1-based line number, line) for a (possibly .gz) text file, streamed.

    Lines end at '\n' only (a latin-1 title may hold other Unicode line breaks). Trailing blank
    lines carry no data and are not yielded; a blank line before more data raises FormatError,
    and so does a file with no data at all.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    opener = gzip.open if path.suffix == ".gz" else open
    blank_at = 0
    seen = False
    try:
        with opener(path, "rt", encoding=encoding, newline="\n") as f:
            for lineno, line in enumerate(f, start=1):
                line = line.rstrip("\r\n")
                if not line.strip():
                    blank_at = blank_at or lineno
                    continue
                if blank_at:
                    raise FormatError(f"{path.name} line {blank_at}: empty line inside the data")
                seen = True
                yield lineno, line
    except UnicodeDecodeError as e:
        raise FormatError(f"{path.name}: not valid {encoding} text ({e})") from None
    if not seen:
        raise FormatError(f"{path.name}: file is empty (no data lines)")


def read_lines(path: str | os.PathLike[str], encoding: str = "utf-8") -> list[str]:
    """All data lines of a file, checked as by `iter_lines` (line k is lines[k - 1]).

    Reads the file at once, which is several times faster than `iter_lines` on big files.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding=encoding, newline="") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise FormatError(f"{path.name}: not valid {encoding} text ({e})") from None
    lines = text.split("\n")
    if "\r" in text:
        lines = [ln.rstrip("\r") for ln in lines]
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise FormatError(f"{path.name}: file is empty (no data lines)")
    if not lines[0].strip() or _BLANK_LINE.search(text):
        k = next(k for k, ln in enumerate(lines) if not ln.strip())
        raise FormatError(f"{path.name} line {k + 1}: empty line inside the data")
    return lines


_BLANK_LINE = re.compile(r"\n[ \t\r\f\v]*\n[ \t\r\f\v]*\S")  # a blank line followed by data


def split_columns(lines: Sequence[str], sep: str, n_fields: int, name: str, expected: str,
                  first_lineno: int = 1) -> list[list[str]]:
    """The n_fields columns of lines split on sep, or FormatError naming the first bad line.

    Works column-wise (no list per row), which keeps million-line files fast.
    """
    counts = np.fromiter(map(str.count, lines, repeat(sep)), dtype=np.int64, count=len(lines))
    bad = np.flatnonzero(counts != n_fields - 1)
    if len(bad):
        k = int(bad[0])
        got = int(counts[k]) + 1
        raise FormatError(f"{name} line {first_lineno + k}: expected {expected}, got "
                          f"{got} field{'s' if got != 1 else ''}: {_clip(lines[k])!r}")
    flat = sep.join(lines).split(sep)
    return [flat[j::n_fields] for j in range(n_fields)]


def column(values: Sequence[str], kind: str, name: str, field: str, expected: str,
           first_lineno: int = 1) -> np.ndarray:
    """Convert one column of strings to int64 ('int') or float64 ('float'), naming a bad line."""
    try:
        out = np.array(values, dtype=np.float64 if kind == "float" else np.int64)
    except (ValueError, OverflowError, TypeError):
        out = None
    if out is not None:
        bad = np.flatnonzero(~np.isfinite(out)) if kind == "float" else ()
        if len(bad) == 0:
            return out
        k = int(bad[0])
        raise FormatError(f"{name} line {first_lineno + k}: {field} must be a finite number, "
                          f"got {values[k]!r}; expected {expected}")
    conv: Callable[[str], object] = int if kind == "int" else float
    for k, v in enumerate(values):
        try:
            conv(v)
        except (ValueError, OverflowError):
            raise FormatError(f"{name} line {first_lineno + k}: {field} must be "
                              f"{'an integer' if kind == 'int' else 'a number'}, got {v!r}; "
                              f"expected {expected}") from None
    return np.array([conv(v) for v in values], dtype=np.int64 if kind == "int" else np.float64)


def maybe_int_ids(values: Sequence[str]) -> np.ndarray:
    """Raw ids as int64 when each is a plain integer that round-trips (so "007" stays a string).

    Integer ids then sort numerically (2 before 10), which fixes the index order.
    """
    try:
        ints = np.array(values, dtype=np.int64)
    except (ValueError, OverflowError):
        return np.array(values, dtype=str)
    if all(str(int(v)) == v for v in set(values)):
        return ints
    return np.array(values, dtype=str)


def _clip(s: str, n: int = 80) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."
