"""FM certification batches on a Ray cluster: shards in, certificates out, in input order.

The driver puts the model (``ModelPayload``) in the object store once, cuts the instances into
contiguous shards, and keeps at most ``max_in_flight`` shard tasks running; each task certifies
one shard on a worker (``model.certify_shard``). A task whose worker dies is re-run by Ray
(``max_retries``); certification is deterministic, so a re-run gives the same certificates.

``certify_parquet`` adds the output directory: each finished shard is written atomically to
``OUTPUT/shards/part-XXXXX.parquet``, a shard whose file is there is not computed again (resume),
and ``OUTPUT/manifest.json`` records what the shards were computed from (input SHA-256, model
SHA-256, budgets, method, node budget, shard size, columns), so a resume with another
configuration is refused instead of mixing results. At the end the shards are concatenated into
``OUTPUT/results.parquet``.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Union

import numpy as np

from .._checks import int_arg, positive_int
from .._logging import report
from ..certify import CertResult
from ..data.fields import check_csr
from . import _deps
from .model import ModelPayload, ShardResult, certify_shard, check_method, check_qs, concat_results
from .parquet import InstanceFile, Shard, concat_files, file_sha256, result_table, write_atomic

PathLike = Union[str, Path]
ShardHook = Callable[[int], None]
MANIFEST = "manifest.json"
RESULTS = "results.parquet"
SHARDS = "shards"


@dataclass
class RunStats:
    """What a run did: shards computed and reused, rows, seconds, shards per node, and the sizes
    shipped (model, shard inputs, result files)."""

    shards: int = 0
    computed: int = 0
    reused: int = 0
    rows: int = 0
    seconds: float = 0.0
    shard_seconds: List[float] = field(default_factory=list)
    nodes: Dict[str, int] = field(default_factory=dict)
    model_bytes: int = 0
    shard_bytes: int = 0
    result_bytes: int = 0

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def connect(address: str = "local", *, num_cpus: Optional[int] = None,
            object_store_memory: Optional[int] = None) -> None:
    """Join a Ray cluster: ``"local"`` starts one on this machine (``num_cpus`` workers),
    ``"auto"`` joins the cluster running here (``ray start``), anything else is a cluster's
    ``host:port`` or ``ray://`` address. A process already connected is left as it is."""
    ray = _deps.ray()
    if not isinstance(address, str) or not address:
        raise ValueError(f"address must be 'local', 'auto' or a cluster address, got {address!r}")
    if num_cpus is not None:
        positive_int(num_cpus, "num_cpus")
    if ray.is_initialized():
        return
    if address != "local" and num_cpus is not None:
        raise ValueError("num_cpus is only for address='local' (a cluster's nodes declare their own)")
    # Ray puts the driver's working directory first on its workers' sys.path: started inside a
    # source checkout, the workers would import that checkout's advrec (perhaps without a built
    # core) instead of the one this driver runs. The directory holding this driver's advrec is
    # made the working directory for the call, so the workers import the same package.
    here = os.getcwd()
    os.chdir(Path(__file__).resolve().parents[2])
    try:
        if address == "local":
            ray.init(num_cpus=num_cpus, object_store_memory=object_store_memory, include_dashboard=False,
                     log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    finally:
        os.chdir(here)


def _task(payload: ModelPayload, index: int, indptr: np.ndarray, indices: np.ndarray, qs: List[int],
          method: str, node_budget: int, threads: int, hook: Optional[ShardHook]) -> ShardResult:
    """The Ray task: the hook (tests use it to kill the worker), then the shard's certificates."""
    if hook is not None:
        hook(index)
    out = certify_shard(payload, index, indptr, indices, qs, method, node_budget, threads)
    out.node = _deps.ray().get_runtime_context().get_node_id()
    return out


def _run(payload: ModelPayload, shards: Iterable[Shard], qs: List[int], method: str, node_budget: int,
         cpus_per_task: int, max_retries: int, max_in_flight: Optional[int], hook: Optional[ShardHook],
         done: Callable[[Shard, ShardResult], None], stats: RunStats) -> None:
    """Run every shard as a Ray task, at most ``max_in_flight`` at a time; ``done`` gets each
    finished shard (in completion order)."""
    ray = _deps.ray()
    if not ray.is_initialized():
        raise RuntimeError("Ray is not running in this process: call advrec.distributed.connect() first")
    if max_in_flight is None:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        max_in_flight = max(2, 2 * cpus // cpus_per_task)
    remote = ray.remote(_task).options(num_cpus=cpus_per_task, max_retries=max_retries)
    model_ref = ray.put(payload)
    stats.model_bytes = payload.nbytes
    running: Dict[Any, Shard] = {}

    def collect(block: int) -> None:
        ready, _ = ray.wait(list(running), num_returns=block)
        for ref in ready:
            shard = running.pop(ref)
            out: ShardResult = ray.get(ref)
            stats.computed += 1
            stats.shard_seconds.append(out.seconds)
            stats.nodes[out.node] = stats.nodes.get(out.node, 0) + 1
            done(shard, out)

    for shard in shards:
        if len(running) >= max_in_flight:
            collect(1)
        stats.shard_bytes += shard.nbytes
        ref = remote.remote(model_ref, shard.index, shard.indptr, shard.indices, qs, method, node_budget,
                            cpus_per_task, hook)
        running[ref] = shard
    while running:
        collect(1)


def _check_options(shard_size: int, node_budget: int, cpus_per_task: int, max_retries: int) -> None:
    positive_int(shard_size, "shard_size")
    positive_int(node_budget, "node_budget")
    positive_int(cpus_per_task, "cpus_per_task")
    int_arg(max_retries, "max_retries", 0)


def certify_arrays(payload: ModelPayload, indptr: Any, indices: Any, qs: Union[int, Sequence[int]],
                   method: str = "best", *, shard_size: int = 1024, node_budget: int = 100_000,
                   cpus_per_task: int = 1, max_retries: int = 3, max_in_flight: Optional[int] = None,
                   on_shard_start: Optional[ShardHook] = None, stats: Optional[RunStats] = None
                   ) -> Dict[int, CertResult]:
    """``FMCertifier.certify_budgets`` on the Ray cluster this process is connected to: same
    arguments, same ``{q: CertResult}``, instances in input order. ``on_shard_start(index)`` runs
    on the worker before each shard (a test hook); ``stats``, if given, is filled in."""
    if not isinstance(payload, ModelPayload):
        raise TypeError(f"payload must be a ModelPayload (ModelPayload.from_model(fm, perturbable)), "
                        f"got {type(payload).__name__}")
    qs = check_qs(qs)
    method = check_method(method)
    _check_options(shard_size, node_budget, cpus_per_task, max_retries)
    indptr, indices = check_csr(indptr, indices, payload.n_features)
    m = len(indptr) - 1
    stats = stats if stats is not None else RunStats()
    stats.rows, stats.shards = m, -(-m // shard_size)

    def shards() -> Iterator[Shard]:
        for i, lo in enumerate(range(0, m, shard_size)):
            hi = min(lo + shard_size, m)
            yield Shard(i, lo, np.ascontiguousarray(indptr[lo:hi + 1] - indptr[lo]), indices[indptr[lo]:indptr[hi]])

    parts: Dict[int, Dict[int, CertResult]] = {}
    start = time.perf_counter()
    _run(payload, shards(), qs, method, node_budget, cpus_per_task, max_retries, max_in_flight, on_shard_start,
         lambda shard, out: parts.__setitem__(shard.index, out.results), stats)
    stats.seconds = time.perf_counter() - start
    order = sorted(parts)
    return {q: concat_results([parts[i][q] for i in order], q, method) for q in qs}


def _manifest(input_sha: str, rows: int, payload: ModelPayload, qs: List[int], method: str, node_budget: int,
              shard_size: int, features_column: str, id_column: Optional[str],
              label_column: Optional[str]) -> Dict[str, Any]:
    return {"format": 1, "input_sha256": input_sha, "input_rows": rows, "model_sha256": payload.sha256,
            "qs": qs, "method": method, "node_budget": node_budget, "shard_size": shard_size,
            "features_column": features_column, "id_column": id_column, "label_column": label_column}


def _shard_path(out: Path, index: int) -> Path:
    return out / SHARDS / f"part-{index:05d}.parquet"


def _prepare_output(out: Path, manifest: Dict[str, Any], resume: bool) -> None:
    """Create ``out``; with an earlier run's manifest, refuse a different configuration (resume)
    or remove that run's files (``resume=False``)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / SHARDS).mkdir(exist_ok=True)
    path = out / MANIFEST
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"output: {path} is not a readable manifest ({err}); remove it or choose "
                             f"another output directory") from None
        if resume:
            differ = sorted(k for k in set(old) | set(manifest) if old.get(k) != manifest.get(k))
            if differ:
                detail = "; ".join(f"{k}: {old.get(k)!r} before, {manifest.get(k)!r} now" for k in differ)
                raise ValueError(f"output: {out} holds results of another configuration ({detail}); "
                                 f"use another output directory or resume=False to start again")
            return
        for part in (out / SHARDS).glob("part-*.parquet"):
            part.unlink()
        (out / RESULTS).unlink(missing_ok=True)
    tmp = path.with_name(f".{MANIFEST}.tmp")
    tmp.write_text(json.dumps(manifest, indent=2))
    tmp.replace(path)


def _shard_done(path: Path, expected_rows: int) -> bool:
    """Whether a shard file from an earlier run is complete (written atomically, so a present
    file is whole; its row count is checked against the manifest's shard all the same)."""
    if not path.exists():
        return False
    pq = _deps.parquet()
    try:
        rows = pq.read_metadata(path).num_rows
    except Exception:
        rows = -1
    if rows != expected_rows:
        report(f"{path}: {rows} rows where {expected_rows} were expected; computing this shard again")
        return False
    return True


def certify_parquet(input: PathLike, output: PathLike, payload: ModelPayload, qs: Union[int, Sequence[int]],
                    method: str = "best", *, features_column: str = "features", id_column: Optional[str] = None,
                    label_column: Optional[str] = None, shard_size: int = 4096, node_budget: int = 100_000,
                    cpus_per_task: int = 1, max_retries: int = 3, max_in_flight: Optional[int] = None,
                    resume: bool = True, on_shard_start: Optional[ShardHook] = None) -> RunStats:
    """Certify every instance of a Parquet file on the connected Ray cluster; write
    ``output/results.parquet`` (one row per instance and q, input order) and return the run's
    statistics. Shards already in ``output/shards`` (same manifest) are not computed again."""
    if not isinstance(payload, ModelPayload):
        raise TypeError(f"payload must be a ModelPayload, got {type(payload).__name__}")
    qs = check_qs(qs)
    method = check_method(method)
    _check_options(shard_size, node_budget, cpus_per_task, max_retries)
    instances = InstanceFile(input, features_column=features_column, id_column=id_column,
                             label_column=label_column)
    if instances.rows == 0:
        raise ValueError(f"input: {instances.path} holds no instances")
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output: {out} exists and is not a directory")
    manifest = _manifest(file_sha256(instances.path), instances.rows, payload, qs, method, node_budget, shard_size,
                         features_column, id_column, label_column)
    _prepare_output(out, manifest, resume)
    stats = RunStats(rows=instances.rows, shards=instances.n_shards(shard_size))
    start = time.perf_counter()

    def todo() -> Iterator[Shard]:
        for shard in instances.shards(shard_size, payload.n_features):
            if _shard_done(_shard_path(out, shard.index), shard.rows * len(qs)):
                stats.reused += 1
                continue
            yield shard

    def done(shard: Shard, result: ShardResult) -> None:
        table = result_table(shard, result.results, id_column, label_column)
        stats.result_bytes += write_atomic(table, _shard_path(out, shard.index))

    _run(payload, todo(), qs, method, node_budget, cpus_per_task, max_retries, max_in_flight, on_shard_start,
         done, stats)
    concat_files([_shard_path(out, i) for i in range(stats.shards)], out / RESULTS)
    stats.seconds = time.perf_counter() - start
    return stats
