"""pytest-benchmark setup for bench/: collect bench_*.py here, register the `large` marker.

bench/ is outside the default testpaths (tests/), so a plain `python -m pytest` never runs it.
Every bench reports a ratio against a reference implementation timed in the same process, so the
numbers mean something across machines; absolute times are only printed alongside.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, Tuple

import numpy as np
import pytest

# As in tests/conftest.py: without an in-place build, bench the installed package, not ./advrec.
_ROOT = Path(__file__).resolve().parents[1]
if not any((_ROOT / "advrec").glob("_core*")):
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _ROOT]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "large: minutes-long / multi-GB runs (deselect: -m 'not large')")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> Optional[pytest.Module]:
    """Collects bench_*.py as test modules (pytest's default pattern is test_*.py)."""
    if file_path.suffix != ".py" or not file_path.name.startswith("bench_"):
        return None
    if parent.session.isinitpath(file_path):  # named on the command line: pytest collects it
        return None
    return pytest.Module.from_parent(parent, path=file_path)


def best_of(fn: Callable[[], Any], rounds: int, warmup: int = 1) -> float:
    """Minimum wall time of `rounds` calls after `warmup` calls (the min is the least noisy)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def report_ratio(benchmark: Any, name: str, reference_s: float, **extra: Any) -> Optional[float]:
    """Stores and prints reference_time / our_time (> 1: ours is faster), min against min."""
    benchmark.extra_info["reference_s"] = reference_s
    benchmark.extra_info.update(extra)
    stats = getattr(benchmark, "stats", None)
    if stats is None:  # --benchmark-disable: nothing timed
        return None
    ours_s = stats.stats.min
    ratio = reference_s / ours_s
    benchmark.extra_info["ours_s"] = ours_s
    benchmark.extra_info["ratio_reference_over_ours"] = ratio
    details = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in extra.items())
    print(f"\n[{name}] ours {ours_s * 1e3:.2f} ms, reference {reference_s * 1e3:.2f} ms, "
          f"ratio reference/ours = {ratio:.2f} {details}")
    return ratio


@pytest.fixture
def ratio() -> Callable[..., Optional[float]]:
    return report_ratio


@pytest.fixture
def timed_best_of() -> Callable[..., float]:
    return best_of


def random_csr(seed: int, n_users: int, n_items: int, n_pairs: int) -> Tuple[np.ndarray, np.ndarray]:
    """About n_pairs distinct random (user, item) pairs as a CSR, items sorted within each row."""
    rng = np.random.default_rng(seed)
    keys = np.unique(rng.integers(0, n_users * n_items, size=n_pairs, dtype=np.int64))
    users, items = np.divmod(keys, n_items)
    indptr = np.zeros(n_users + 1, np.int64)
    np.cumsum(np.bincount(users, minlength=n_users), out=indptr[1:])
    return indptr, items.astype(np.int64)


@pytest.fixture
def interactions() -> Callable[..., Tuple[np.ndarray, np.ndarray]]:
    return random_csr
