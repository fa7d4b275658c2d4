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


LATER_FIELDS = ("torch_threads", "omp_threads", "config_sha256")


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
    # added later: absent from older reports, and from to_dict() when None, so those round-trip
    torch_threads: Optional[int] = None   # torch's intra-op threads when the run ended
    omp_threads: Optional[str] = None     # OMP_NUM_THREADS as set for the run (None: unset)
    config_sha256: Optional[str] = None   # ``config_sha256`` of the run's config

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: v for k, v in d.items() if not (k in LATER_FIELDS and v is None)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Provenance":
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__})

    def line(self) -> str:
        commit = f"commit {self.commit}" if self.commit else "not run from a git checkout"
        stack = f"Python {self.python}, NumPy {self.numpy}" + (f", torch {self.torch}" if self.torch else "")
        gpu = f"; GPU {self.gpu}" if self.gpu else "; no GPU used"
        data = f" Data SHA-256 {self.data_sha256[:16]}…." if self.data_sha256 else ""
        if self.config_sha256:
            data += f" Config SHA-256 {self.config_sha256[:16]}…."
        threads = f", {self.torch_threads} torch thread{'s' * (self.torch_threads != 1)}" \
            if self.torch_threads is not None else ""
        omp = f", OMP_NUM_THREADS={self.omp_threads}" if self.omp_threads else ""
        return (f"Run: advrec {self.advrec} ({commit}); {stack}; {self.platform}, {self.cpu}, "
                f"{self.cores} cores{threads}{omp}{gpu}; finished {self.finished}.{data}")


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


def collect(data: Any = None, config: Any = None) -> Provenance:
    """The environment of the run now ending; ``data`` (the Interactions or FM dataset it read)
    is fingerprinted, ``config`` (the run's settings) hashed (``config_sha256``)."""
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
        finished=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        torch_threads=torch.get_num_threads() if torch_version is not None else None,
        omp_threads=os.environ.get("OMP_NUM_THREADS"),
        config_sha256=config_sha256(config) if config is not None else None)


#: config fields that never change a number (progress bars; seeds run in processes give the same numbers)
NOT_HASHED = ("progress", "workers")


def config_sha256(config: Any) -> str:
    """SHA-256 of a config's canonical JSON (keys sorted, tuples as lists, ``NOT_HASHED`` left
    out): two reports with the same hash ran the same settings."""
    import json

    from ..report.aggregate import jsonable

    settings = asdict(config) if hasattr(config, "__dataclass_fields__") else dict(config)
    settings = {k: v for k, v in settings.items() if k not in NOT_HASHED}
    text = json.dumps(jsonable(settings), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def provenance_entry(p: Optional[Provenance]) -> dict:
    """``{"provenance": ...}`` for a result's JSON, or nothing for a result that has none."""
    return {} if p is None else {"provenance": p.to_dict()}


def provenance_from(d: Mapping[str, Any]) -> Optional[Provenance]:
    """The ``provenance`` entry of a loaded report (None in reports written before it existed)."""
    p = d.get("provenance")
    return Provenance.from_dict(p) if isinstance(p, Mapping) else None


__all__ = ["Provenance", "collect", "data_fingerprint", "git_commit", "provenance_entry", "provenance_from",
           "config_sha256"]
