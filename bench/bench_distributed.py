"""advrec.distributed on a local Ray cluster: instances/s with 1 and 2 worker processes against the
single-process ``FMCertifier`` timed in the same process, and the sizes a run ships.

On the ML-100K test split (10,000 instances, history field perturbable, an FM with k = 64 trained
briefly, as in bench_certify.py), ``best`` at q = 1..4, shards of 1,000 instances, one thread per
task. The reference is ``FMCertifier.certify_budgets`` with one thread (what one worker does), so
``ratio = reference / ours`` is the speed-up the workers give over one process, overheads
included (task submission, object transfer, gathering). Also printed: the per-shard cost, the
model and table bytes, the bytes per shard and the result bytes per instance, the inputs of the
projection in docs/distributed.md.

``test_ml100k_10k_killed_worker_equals_single_process`` (no timing; runs without
``--benchmark-only``) is the acceptance check: the whole test split through ``certify_parquet``
with a worker killed mid-run, equal to the single process instance by instance.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray", reason="needs the distributed extra (ray)")
pytest.importorskip("pyarrow", reason="needs the distributed extra (pyarrow)")

from advrec.certify import FMCertifier  # noqa: E402
from advrec.distributed import (ModelPayload, RunStats, certify_arrays, certify_parquet, connect,  # noqa: E402
                                read_results, write_instances)

QS = (1, 2, 3, 4)
DIM = 64
EPOCHS = 3
SHARD = 1000
FIELDS = ("status", "score", "bound", "flips_indptr", "flips_indices", "nodes")

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the kill hook runs on workers


@dataclass
class Setup:
    fm: object
    history: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    labels: np.ndarray
    note: str


@pytest.fixture(scope="module")
def ml100k() -> Setup:
    """The ML-100K test split and an FM (k = 64) trained briefly (seeded), as bench_certify.py."""
    from advrec.data.fields import ml100k_fm
    from advrec.models import FM
    from advrec.training.classifier import ClassifierTrainer

    torch.manual_seed(0)
    data = ml100k_fm(seed=0)
    fm = FM(data.train.n_features, DIM, seed=0)
    ClassifierTrainer(lr=1e-2, epochs=EPOCHS, batch_size=2048, patience=None, seed=0,
                      progress=False).fit(fm, data.train, data.valid)
    test = data.test
    return Setup(fm, np.asarray(test.feature_ids("history"), np.int64), np.asarray(test.indptr, np.int64),
                 np.asarray(test.indices, np.int64), np.asarray(test.labels),
                 f"ml100k_fm(seed=0) test split ({len(test)} instances), FM k={DIM} trained {EPOCHS} epochs")


def _same(ref, got) -> None:
    for q in ref:
        for f in FIELDS:
            assert np.array_equal(getattr(ref[q], f), getattr(got[q], f), equal_nan=f in ("score", "bound")), (q, f)


def _reference(s: Setup, timed_best_of):
    """The single-process certifier with one thread, built (tables included) before the clock
    starts, as the workers' certifiers are after the warm-up run."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = {}
        cert = FMCertifier.from_model(s.fm, s.history)
        cert.tables(max(QS))

        def run():
            out["r"] = cert.certify_budgets(s.indptr, s.indices, QS, "best")

        seconds = timed_best_of(run, rounds=3)
    finally:
        torch.set_num_threads(previous)
    return out["r"], seconds


@pytest.mark.parametrize("workers", [1, 2])
def test_distributed_instances_per_s(benchmark, ratio, timed_best_of, ml100k, workers, tmp_path):
    s = ml100k
    m = len(s.indptr) - 1
    ref, ref_s = _reference(s, timed_best_of)
    ray.shutdown()
    connect("local", num_cpus=workers, object_store_memory=256 << 20)
    try:
        payload = ModelPayload.from_model(s.fm, s.history)
        certify_arrays(payload, s.indptr, s.indices, QS, "best", shard_size=SHARD)  # workers up, tables built
        stats = RunStats()

        def ours():
            stats.__init__()
            return certify_arrays(payload, s.indptr, s.indices, QS, "best", shard_size=SHARD, stats=stats)

        got = benchmark.pedantic(ours, rounds=3, iterations=1, warmup_rounds=0)
        _same(ref, got)
        # result bytes on disk: the same run through Parquet
        src = write_instances(tmp_path / "in.parquet", s.indptr, s.indices)
        files = certify_parquet(src, tmp_path / "out", payload, QS, "best", shard_size=SHARD)
    finally:
        ray.shutdown()
    tables = FMCertifier.from_model(s.fm, s.history).tables(max(QS))
    table_bytes = sum(np.asarray(a).nbytes for a in tables)
    ours_s = benchmark.stats.stats.min if getattr(benchmark, "stats", None) else float("nan")
    shard_s = float(np.median(stats.shard_seconds))
    info = dict(workers=workers, instances=m, instances_per_s=m / ours_s, reference_instances_per_s=m / ref_s,
                shard_size=SHARD, shard_median_s=shard_s, shard_per_instance_us=1e6 * shard_s / SHARD,
                model_bytes=payload.nbytes, table_bytes=table_bytes, shard_bytes=stats.shard_bytes / stats.shards,
                result_bytes_per_instance=files.result_bytes / m, input_parquet_bytes=src.stat().st_size)
    print(f"\n[distributed best q=1..4, {workers} worker(s)] {s.note}")
    for k, v in info.items():
        print(f"  {k}: {v:.6g}" if isinstance(v, float) else f"  {k}: {v}")
    ratio(benchmark, f"distributed {workers} worker(s) vs single process (1 thread)", ref_s, **info)


class KillOnce:
    """SIGKILLs its worker the first time shard ``target`` starts (a marker file remembers)."""

    def __init__(self, folder: str, target: int):
        self.folder, self.target = folder, target

    def __call__(self, index: int) -> None:
        marker = os.path.join(self.folder, "killed")
        if index == self.target and not os.path.exists(marker):
            Path(marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)


def test_ml100k_10k_killed_worker_equals_single_process(ml100k, tmp_path):
    s = ml100k
    ref = FMCertifier.from_model(s.fm, s.history).certify_budgets(s.indptr, s.indices, QS, "best")
    ray.shutdown()
    connect("local", num_cpus=2, object_store_memory=256 << 20)
    try:
        src = write_instances(tmp_path / "in.parquet", s.indptr, s.indices, labels=s.labels)
        start = time.perf_counter()
        stats = certify_parquet(src, tmp_path / "out", ModelPayload.from_model(s.fm, s.history), QS, "best",
                                label_column="label", shard_size=SHARD, on_shard_start=KillOnce(str(tmp_path), 4))
        seconds = time.perf_counter() - start
    finally:
        ray.shutdown()
    assert (tmp_path / "killed").exists()
    got = read_results(tmp_path / "out" / "results.parquet")
    _same(ref, got)
    print(f"\n[10K killed worker] {s.note}: {stats.computed} shards, a worker killed in shard 4, {seconds:.1f} s; "
          f"equal to the single process at q={QS}: " +
          ", ".join(f"q={q} robust {ref[q].fractions()['robust']:.4f}" for q in QS))
