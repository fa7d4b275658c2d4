"""What a report was produced by: the code (advrec version, git commit), the software stack, the
hardware, and a fingerprint of the data, so a reader can tell whether a re-run is comparable.

Paths on the machine that ran the experiment are never recorded: the data is named by where it
came from and by the SHA-256 of the interactions the experiment read, which is the same on every
machine that has the same data.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from .._version import __version__


@dataclass(frozen=True)
class Provenance:
    """One run's environment; ``line()`` is the sentence the Markdown reports end with."""

    advrec: str
    commit: Optional[str]          # git HEAD of the checkout advrec ran from, "+dirty" if modified; None if not a checkout
    python: str
    numpy: str
    torch: Optional[str]
    platform: str
    cpu: str
    cores: Optional[int]
    gpu: Optional[str]
    data_sha256: Optional[str]     # of the interactions the experiment read (see ``data_fingerprint``)
    finished: str                  # UTC, ISO 8601, seconds

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Provenance":
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__})

    def line(self) -> str:
        commit = f"commit {self.commit}" if self.commit else "not run from a git checkout"
        stack = f"Python {self.python}, NumPy {self.numpy}" + (f", torch {self.torch}" if self.torch else "")
        gpu = f"; GPU {self.gpu}" if self.gpu else "; no GPU used"
        data = f" Data SHA-256 {self.data_sha256[:16]}…." if self.data_sha256 else ""
        return (f"Run: advrec {self.advrec} ({commit}); {stack}; {self.platform}, {self.cpu}, "
                f"{self.cores} cores{gpu}; finished {self.finished}.{data}")


def data_fingerprint(data: Any) -> str:
    """SHA-256 of the data an experiment read: an Interactions' sizes, indices, ratings and
    timestamps, or an FM dataset's instance matrices and labels, part by part. Equal data, equal
    fingerprint, on any machine."""
    h = hashlib.sha256()
    if hasattr(data, "parts"):
        arrays = [a for _, part in sorted(data.parts().items()) for a in (part.indptr, part.indices, part.labels)]
        arrays.append(np.array([data.n_features], np.int64))
    else:
        arrays = [np.array([data.n_users, data.n_items, len(data.user)], np.int64),
                  data.user, data.item, data.rating, data.timestamp]
    for arr in arrays:
        if arr is not None:
            h.update(np.ascontiguousarray(arr).tobytes())
        h.update(b"|")
    return h.hexdigest()


def git_commit(folder: Optional[Path] = None) -> Optional[str]:
    """HEAD of the git checkout holding ``folder`` (default: this package), ``+dirty`` when
    tracked files differ from it; None outside a checkout or without git."""
    folder = folder or Path(__file__).resolve().parents[2]
    if not (folder / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return head.stdout.strip()[:12] + ("+dirty" if dirty.stdout.strip() else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def collect(data: Any = None) -> Provenance:
    """The environment of the run now ending; ``data`` (the Interactions or FM dataset it read)
    is fingerprinted."""
    try:
        import torch
        torch_version: Optional[str] = torch.__version__
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        torch_version, gpu = None, None
    return Provenance(
        advrec=__version__, commit=git_commit(), python=platform.python_version(), numpy=np.__version__,
        torch=torch_version, platform=f"{platform.system()} {platform.machine()}", cpu=_cpu_model(),
        cores=os.cpu_count(), gpu=gpu,
        data_sha256=data_fingerprint(data) if data is not None else None,
        finished=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))


def provenance_entry(p: Optional[Provenance]) -> dict:
    """``{"provenance": ...}`` for a result's JSON, or nothing for a result that has none."""
    return {} if p is None else {"provenance": p.to_dict()}


def provenance_from(d: Mapping[str, Any]) -> Optional[Provenance]:
    """The ``provenance`` entry of a loaded report (None in reports written before it existed)."""
    p = d.get("provenance")
    return Provenance.from_dict(p) if isinstance(p, Mapping) else None


__all__ = ["Provenance", "collect", "data_fingerprint", "git_commit", "provenance_entry", "provenance_from"]
