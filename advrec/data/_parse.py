"""Line-level parsing shared by the readers: every error names the file, the line and the format.

Text files: lines end at '\\n', '\\r\\n' or a lone '\\r' (old Mac files); a leading UTF-8
byte-order mark is dropped (it also means the file is UTF-8, whatever encoding was assumed).
A gzip-compressed file is recognised by its first bytes and decompressed while it is read. It
may expand to at most max(256 MiB, R x its compressed size), R = 200 unless the environment
variable ADVREC_GZIP_MAX_RATIO sets it (e.g. ``ADVREC_GZIP_MAX_RATIO=1000``, or ``inf`` for no
limit): a guard against decompression bombs that would exhaust memory.
"""
from __future__ import annotations

import codecs
import csv
import gzip
import io
import os
import re
import zlib
from itertools import repeat
from pathlib import Path
from typing import BinaryIO, Iterator, Sequence

import numpy as np

from advrec._logging import report


class FormatError(ValueError):
    """A data file does not match its expected format; the message names file, line and format."""


# ----------------------------------------------------------------------------- opening files

GZIP_RATIO_ENV = "ADVREC_GZIP_MAX_RATIO"
# Rating logs and review JSON compress about 3-10x under gzip, while deflate reaches ~1000x on
# degenerate input (its ceiling is 1032x): 200x leaves ample room for real files and stops a
# bomb after a bounded amount of memory. The floor keeps small, very repetitive files (sorted
# ids, constant ratings) readable whatever their ratio.
_GZIP_RATIO = 200.0
_GZIP_FLOOR = 256 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)
_F32_MAX = float(np.finfo(np.float32).max)
_INT64 = (-(1 << 63), (1 << 63) - 1)


def gzip_limit(compressed_size: int) -> float:
    """Most bytes a .gz of this size may decompress to (inf when the limit is switched off)."""
    raw = os.environ.get(GZIP_RATIO_ENV, "").strip()
    try:
        ratio = float(raw) if raw else _GZIP_RATIO
        if not ratio > 0:
            raise ValueError
    except ValueError:
        raise ValueError(f"{GZIP_RATIO_ENV}={raw!r}: expected a positive number (the most a .gz "
                         f"may expand, as a multiple of its size), or inf for no limit") from None
    return max(float(_GZIP_FLOOR), ratio * compressed_size)


class _CappedGzip(io.RawIOBase):
    """The decompressed bytes of a .gz, refusing to produce more than `gzip_limit` (counted as
    they are decompressed, so a bomb is stopped before it fills memory)."""

    _gz: gzip.GzipFile | None = None  # close() may run on a half-built object

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._name = path.name
        self._size = path.stat().st_size
        self._limit = gzip_limit(self._size)
        self._n = 0
        self._gz = gzip.open(path, "rb")

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        assert self._gz is not None
        n = self._gz.readinto1(b)  # at most one step, so data before a corrupt part comes out
        self._count(n)
        return n

    def read_all(self) -> bytearray:
        """Everything, in large chunks (much faster than readinto's buffer-sized steps)."""
        assert self._gz is not None
        buf = bytearray()
        try:
            while chunk := self._gz.read1(1 << 20):
                buf += chunk
                self._count(len(chunk))
        except _GZIP_ERRORS as e:
            raise _bad_gzip(self._name, buf.count(b"\n") + 1, e) from None
        return buf

    def _count(self, n: int) -> None:
        self._n += n
        if self._n > self._limit:
            ratio = os.environ.get(GZIP_RATIO_ENV, "").strip() or f"{_GZIP_RATIO:g}"
            raise FormatError(
                f"{self._name}: decompresses to more than {self._limit / 2**20:,.0f} MiB "
                f"(the limit for a {self._size:,}-byte .gz: {ratio} x its size, at least "
                f"{_GZIP_FLOOR >> 20} MiB); refused as a possible decompression bomb. If the "
                f"file is genuine, raise the limit: {GZIP_RATIO_ENV}=<ratio> (or inf)")

    def close(self) -> None:
        if self._gz is not None:
            self._gz.close()
        super().close()


def _bad_gzip(name: str, line: int, e: BaseException) -> FormatError:
    return FormatError(f"{name} line {line}: the gzip data is corrupt or cut short ({e}); "
                       f"expected a complete gzip file")


def _open_binary(path: Path) -> BinaryIO:
    """path's bytes, decompressed when it is gzip data (known by its first two bytes)."""
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory; expected a data file")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not path.is_file():  # a FIFO or device could block, or never end
        raise OSError(f"{path}: not a regular file; expected a data file")
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == _GZIP_MAGIC:
        return _CappedGzip(path)  # type: ignore[return-value]
    if path.suffix.lower() == ".gz":
        what = f"it starts with {magic!r}" if magic else "it is empty"
        raise FormatError(f"{path.name}: named .gz but is not gzip data ({what}); expected a "
                          f"gzip-compressed file")
    return open(path, "rb")


def _text_encoding(head: bytes, encoding: str, name: str) -> tuple[str, int]:
    """(encoding, bytes to skip) from the first bytes: a UTF-8 BOM means UTF-8; UTF-16 is refused.

    A BOM in a latin-1 file is reported, since the file is then not latin-1 at all.
    """
    if head.startswith(codecs.BOM_UTF8):
        if codecs.lookup(encoding).name != "utf-8":
            report(f"{name}: starts with a UTF-8 byte-order mark, so it is read as UTF-8, "
                   f"not {encoding}")
        return "utf-8", len(codecs.BOM_UTF8)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise FormatError(f"{name}: is UTF-16 text; expected {encoding} (save it as UTF-8)")
    return encoding, 0


def _nul_error(name: str, line: int) -> FormatError:
    return FormatError(f"{name} line {line}: contains a NUL byte; expected text (is the file "
                       f"binary, or UTF-16?)")


# ----------------------------------------------------------------------------- lines

def iter_lines(path: str | os.PathLike[str], encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """(1-based line number, line) for a (possibly gzip) text file, streamed.

    Lines end at '\n', '\r\n' or '\r' only (a latin-1 title may hold other Unicode line
    breaks). Trailing blank lines carry no data and are not yielded; a blank line before more
    data raises FormatError, and so does a file with no data at all.
    """
    path = Path(path)
    lineno = blank_at = 0
    seen = False
    with _open_binary(path) as raw:
        binary = io.BufferedReader(raw, 1 << 16) if isinstance(raw, _CappedGzip) else raw
        enc, skip = encoding, 0
        try:
            enc, skip = _text_encoding(binary.peek(4)[:4], encoding, path.name)
            binary.read(skip)
            # newline=None: '\r\n' and '\r' arrive as '\n', and no other character ends a line
            f = io.TextIOWrapper(binary, encoding=enc, newline=None)
            for lineno, line in enumerate(f, start=1):
                if "\x00" in line:
                    raise _nul_error(path.name, lineno)
                if not line.strip():
                    blank_at = blank_at or lineno
                    continue
                if blank_at:
                    raise FormatError(f"{path.name} line {blank_at}: empty line inside the data")
                seen = True
                yield lineno, line.rstrip("\n")
        except _GZIP_ERRORS as e:
            raise _bad_gzip(path.name, lineno + 1, e) from None
        except UnicodeDecodeError as e:  # decoded a block at a time: find the line
            raise FormatError(f"{path.name} line {_bad_text_line(path, enc, skip, lineno)}: not "
                              f"valid {enc} text ({e.reason}); expected {enc} text") from None
    if not seen:
        raise FormatError(f"{path.name}: file is empty (no data lines)")


def _bad_text_line(path: Path, encoding: str, skip: int, after: int) -> int:
    """The first line after line `after` that does not decode (read again, on errors only)."""
    with _open_binary(path) as raw:
        data = raw.read_all() if isinstance(raw, _CappedGzip) else raw.read()
    try:
        str(memoryview(data)[skip:], encoding)
    except UnicodeDecodeError as e:
        return _line_at(data, skip + e.start)
    return after + 1


def read_lines(path: str | os.PathLike[str], encoding: str = "utf-8") -> list[str]:
    """All data lines of a file, checked as by `iter_lines` (line k is lines[k - 1]).

    Reads the file at once, which is several times faster than `iter_lines` on big files.
    """
    path = Path(path)
    with _open_binary(path) as f:
        data = f.read_all() if isinstance(f, _CappedGzip) else f.read()
    encoding, skip = _text_encoding(data[:4], encoding, path.name)
    try:
        text = str(memoryview(data)[skip:], encoding)
    except UnicodeDecodeError as e:
        at = skip + e.start
        raise FormatError(f"{path.name} line {_line_at(data, at)}: not valid {encoding} text "
                          f"(byte {data[at]:#04x}); expected {encoding} text") from None
    del data
    if "\r" in text:  # '\r\n' (Windows) or a lone '\r' (old Mac) ends a line too
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\x00" in text:
        raise _nul_error(path.name, text.count("\n", 0, text.index("\x00")) + 1)
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise FormatError(f"{path.name}: file is empty (no data lines)")
    if not lines[0].strip() or _BLANK_LINE.search(text):
        k = next(k for k, ln in enumerate(lines) if not ln.strip())
        raise FormatError(f"{path.name} line {k + 1}: empty line inside the data")
    return lines


_BLANK_LINE = re.compile(r"\n[ \t\f\v]*\n[ \t\f\v]*\S")  # a blank line followed by data


def _line_at(data: bytes | bytearray, pos: int) -> int:
    """1-based line of byte offset pos ('\n' line ends, else '\r')."""
    nl = b"\n" if b"\n" in data else b"\r"
    return data.count(nl, 0, pos) + 1


# ----------------------------------------------------------------------------- columns

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


def csv_rows(lines: Sequence[str], sep: str, name: str, first_lineno: int = 1
             ) -> Iterator[list[str]]:
    """Rows of quoted CSV, one per line: a quoted field may not span lines (its line would be
    merged silently with the next), and csv errors name their line."""
    reader = csv.reader(lines, delimiter=sep, strict=True)
    k = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise FormatError(f"{name} line {first_lineno + k}: {e}; expected one row per "
                              f"line, with quotes closed on the line they open") from None
        if reader.line_num != k + 1:
            raise FormatError(f"{name} line {first_lineno + k}: a quote opened on this line is "
                              f"not closed on it; expected one row per line")
        k += 1
        yield row


def column(values: Sequence[str], kind: str, name: str, field: str, expected: str,
           first_lineno: int = 1) -> np.ndarray:
    """Convert one column of strings to int64 ('int') or float64 ('float'), naming a bad line.

    Floats must be finite and within float32 range, where every rating ends up.
    """
    dtype = np.float64 if kind == "float" else np.int64
    try:
        out = np.array(values, dtype=dtype)
    except (ValueError, OverflowError, TypeError):
        k = _first_unparsable(values, dtype)
        what = "an integer within int64" if kind == "int" else "a number"
        raise FormatError(f"{name} line {first_lineno + k}: {field} must be {what}, got "
                          f"{_clip(str(values[k]))!r}; expected {expected}") from None
    if kind == "float":
        bad = np.flatnonzero(~(np.abs(out) <= _F32_MAX))  # NaN, inf and beyond float32
        if len(bad):
            k = int(bad[0])
            raise FormatError(f"{name} line {first_lineno + k}: {field} must be a finite number "
                              f"within float32 range, got {_clip(values[k])!r}; expected "
                              f"{expected}")
    return out


def _first_unparsable(values: Sequence[str], dtype: type) -> int:
    """Position of the first value numpy cannot convert to dtype (0 if, oddly, none)."""
    for k, v in enumerate(values):
        try:
            np.array(v, dtype=dtype)
        except (ValueError, OverflowError, TypeError):
            return k
    return 0


def maybe_int_ids(values: Sequence[str], name: str = "", field: str = "id",
                  first_lineno: int = 1) -> np.ndarray:
    """Raw ids as int64 when each is a plain integer that round-trips (so "007" stays a string).

    Integer ids then sort numerically (2 before 10), which fixes the index order. Text ids
    are reported when they look numeric (then "1" and "1.0" are different ids); an empty id is
    a FormatError (name names the file in messages).
    """
    try:
        ints = np.array(values, dtype=np.int64)
    except (ValueError, OverflowError):
        ints = None
    uniq = set(values)
    if ints is not None and all(str(int(v)) == v for v in uniq):
        return ints
    if any(not v.strip() for v in uniq):
        k = next(k for k, v in enumerate(values) if not v.strip())
        raise FormatError(f"{name} line {first_lineno + k}: empty {field}; expected a "
                          f"non-empty id")
    k, v = next((k, v) for k, v in enumerate(values) if not _plain_int(v))
    if _is_number(v):
        report(f"{name}: {field}s are kept as text, since {v!r} on line {first_lineno + k} is "
               f"not a plain integer (as text, '1', '1.0' and ' 1' are different ids)")
    return np.array(values, dtype=str)


def _plain_int(v: str) -> bool:
    try:
        return str(int(v)) == v and _INT64[0] <= int(v) <= _INT64[1]
    except ValueError:
        return False


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _clip(s: str, n: int = 80) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."
