"""advrec.distributed on a local Ray cluster: certificates equal to the single-process
``FMCertifier`` instance by instance (random FMs and a trained FM on ML-100K), input order kept,
resume, a killed worker's shard re-run, a two-node cluster started with ``ray start``, bad
inputs, and ``advrec certify-batch`` end to end."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="advrec.distributed needs the distributed extra (ray)")
pa = pytest.importorskip("pyarrow", reason="advrec.distributed needs the distributed extra (pyarrow)")
import pyarrow.parquet as pq  # noqa: E402

from advrec.certify import FMCertifier  # noqa: E402
from advrec.cli import main  # noqa: E402
from advrec.distributed import (ModelPayload, RunStats, certify_arrays, certify_parquet, connect,  # noqa: E402
                                read_results, write_instances)
from advrec.distributed import _deps  # noqa: E402

FIELDS = ("status", "score", "bound", "flips_indptr", "flips_indices", "nodes")

# the hooks below run on Ray workers, which cannot import this test module: ship it by value
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def assert_same(ref, got):
    assert sorted(ref) == sorted(got)
    for q in ref:
        assert len(got[q]) == len(ref[q])
        assert got[q].method == ref[q].method
        for f in FIELDS:
            a, b = getattr(ref[q], f), getattr(got[q], f)
            assert np.array_equal(a, b, equal_nan=f in ("score", "bound")), (q, f)


def random_fm(seed, d=240, k=8, n_pert=120, m=400, max_row=14):
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.3, d).astype(np.float32)
    V = rng.normal(0, 0.3, (d, k)).astype(np.float32)
    P = np.sort(rng.choice(d, n_pert, replace=False))
    rows = [np.sort(rng.choice(d, rng.integers(0, max_row), replace=False)) for _ in range(m)]
    rows[0] = rows[-1] = np.zeros(0, np.int64)  # empty instances at both ends
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    indices = np.concatenate(rows).astype(np.int64)
    return (float(rng.normal(0, 0.1)), w, V, P), indptr, indices


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray cluster of 2 worker CPUs for this module, shut down after it."""
    connect("local", num_cpus=2, object_store_memory=256 << 20)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def ml100k():
    """A trained FM (one epoch) and the first 1,200 of ML-100K's test instances."""
    from advrec.data.fields import ml100k_fm
    from advrec.models import FM
    from advrec.training.classifier import ClassifierTrainer

    data = ml100k_fm(seed=0)
    fm = FM(data.train.n_features, 64, seed=0)
    ClassifierTrainer(lr=1e-3, epochs=1, batch_size=2048, seed=0, threads=1, progress=False).fit(
        fm, data.train, data.valid)
    test = data.test.subset(np.arange(1200))
    return fm, data.test.feature_ids("history"), test


# ---------------------------------------------------------------------------- equality, order
@pytest.mark.parametrize("seed,method,shard_size", [(0, "best", 64), (1, "exact", 37), (2, "greedy", 1000),
                                                     (3, "paper", 1), (4, "joint", 128)])
def test_random_fm_equals_single_process(local_ray, seed, method, shard_size):
    params, indptr, indices = random_fm(seed, m=400 if shard_size > 1 else 40)
    qs = [0, 1, 2, 4]
    ref = FMCertifier(*params).certify_budgets(indptr, indices, qs, method, node_budget=2000)
    stats = RunStats()
    got = certify_arrays(ModelPayload.from_arrays(*params), indptr, indices, qs, method, shard_size=shard_size,
                         node_budget=2000, stats=stats)
    assert_same(ref, got)
    assert stats.computed == stats.shards == -(-(len(indptr) - 1) // shard_size)
    assert any((r.status == -1).any() for r in ref.values())  # the case is not trivial


def test_ml100k_slice_equals_single_process(local_ray, ml100k):
    fm, history, test = ml100k
    ref = FMCertifier.from_model(fm, history).certify_budgets(test.indptr, test.indices, [1, 2, 3, 4], "best")
    got = certify_arrays(ModelPayload.from_model(fm, history), test.indptr, test.indices, [1, 2, 3, 4], "best",
                         shard_size=250)
    assert_same(ref, got)
    shares = ref[4].fractions()
    assert shares["robust"] > 0 and shares["non-robust"] > 0


def _slow_first(index):
    if index == 0:  # the first shard finishes last
        time.sleep(1.0)


def test_parquet_results_in_input_order_with_ids(local_ray, tmp_path):
    params, indptr, indices = random_fm(5)
    m = len(indptr) - 1
    ids = np.array([f"inst-{i:04d}" for i in np.random.default_rng(0).permutation(m)])
    labels = np.where(np.arange(m) % 3 == 0, 1, -1)
    src = write_instances(tmp_path / "in.parquet", indptr, indices, ids=ids, labels=labels, row_group_size=50)
    stats = certify_parquet(src, tmp_path / "out", ModelPayload.from_arrays(*params), [1, 3], "best",
                            id_column="id", label_column="label", shard_size=60, on_shard_start=_slow_first)
    table = pq.read_table(tmp_path / "out" / "results.parquet")
    assert table.column_names == ["row", "id", "label", "q", "method", "status", "certified", "score", "bound",
                                  "nodes", "flips"]
    assert table.column("row").to_pylist() == np.repeat(np.arange(m), 2).tolist()
    assert table.column("q").to_pylist() == [1, 3] * m
    assert table.column("id").to_pylist() == np.repeat(ids, 2).tolist()
    assert table.column("label").to_pylist() == np.repeat(labels, 2).tolist()
    assert table.column("certified").to_pylist() == [s == 1 for s in table.column("status").to_pylist()]
    assert_same(FMCertifier(*params).certify_budgets(indptr, indices, [1, 3], "best"),
                read_results(tmp_path / "out" / "results.parquet"))
    assert stats.computed == stats.shards == 7 and stats.reused == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["qs"] == [1, 3] and manifest["shard_size"] == 60 and manifest["input_rows"] == m


# ---------------------------------------------------------------------------- resume
def test_resume_computes_only_missing_shards(local_ray, tmp_path):
    params, indptr, indices = random_fm(6)
    payload = ModelPayload.from_arrays(*params)
    src = write_instances(tmp_path / "in.parquet", indptr, indices)
    out = tmp_path / "out"
    first = certify_parquet(src, out, payload, [1, 2], shard_size=50)
    assert first.computed == 8
    before = (out / "results.parquet").read_bytes()
    for i in (2, 5):
        (out / "shards" / f"part-{i:05d}.parquet").unlink()
    again = certify_parquet(src, out, payload, [1, 2], shard_size=50)
    assert (again.computed, again.reused) == (2, 6)
    assert pq.read_table(out / "results.parquet").equals(pq.read_table(pa.BufferReader(before)))
    done = certify_parquet(src, out, payload, [1, 2], shard_size=50)
    assert (done.computed, done.reused) == (0, 8)
    # a shard file with the wrong row count is computed again
    pq.write_table(pq.read_table(out / "shards" / "part-00003.parquet").slice(0, 10),
                   out / "shards" / "part-00003.parquet")
    fixed = certify_parquet(src, out, payload, [1, 2], shard_size=50)
    assert fixed.computed == 1
    assert_same(FMCertifier(*params).certify_budgets(indptr, indices, [1, 2]), read_results(out / "results.parquet"))


def test_resume_refuses_another_configuration(local_ray, tmp_path):
    params, indptr, indices = random_fm(7, m=120)
    payload = ModelPayload.from_arrays(*params)
    src = write_instances(tmp_path / "in.parquet", indptr, indices)
    out = tmp_path / "out"
    certify_parquet(src, out, payload, [1, 2], shard_size=50)
    with pytest.raises(ValueError, match="qs"):
        certify_parquet(src, out, payload, [1, 3], shard_size=50)
    with pytest.raises(ValueError, match="shard_size"):
        certify_parquet(src, out, payload, [1, 2], shard_size=40)
    other = ModelPayload.from_arrays(params[0] + 0.5, *params[1:])
    with pytest.raises(ValueError, match="model_sha256"):
        certify_parquet(src, out, other, [1, 2], shard_size=50)
    src2 = write_instances(tmp_path / "in2.parquet", indptr[:51], indices[:indptr[50]])
    with pytest.raises(ValueError, match="input_sha256"):
        certify_parquet(src2, out, payload, [1, 2], shard_size=50)
    fresh = certify_parquet(src, out, other, [1, 3], shard_size=40, resume=False)
    assert (fresh.computed, fresh.reused) == (3, 0)
    assert sorted(p.name for p in (out / "shards").iterdir()) == [f"part-{i:05d}.parquet" for i in range(3)]
    assert_same(FMCertifier(*other_params(params)).certify_budgets(indptr, indices, [1, 3]),
                read_results(out / "results.parquet"))


def other_params(params):
    return (params[0] + 0.5, *params[1:])


# ---------------------------------------------------------------------------- a killed worker
class KillOnce:
    """Kills its worker process (SIGKILL) the first time shard ``target`` starts, and logs every
    attempt, so the test sees the shard run twice."""

    def __init__(self, folder: str, target: int):
        self.folder, self.target = folder, target

    def __call__(self, index: int) -> None:
        with open(os.path.join(self.folder, f"attempt-{index}-{os.getpid()}"), "w"):
            pass
        marker = os.path.join(self.folder, "killed")
        if index == self.target and not os.path.exists(marker):
            with open(marker, "w") as f:
                f.write(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)


def test_killed_worker_shard_is_rerun_with_identical_results(local_ray, tmp_path, ml100k):
    fm, history, test = ml100k
    payload = ModelPayload.from_model(fm, history)
    src = write_instances(tmp_path / "in.parquet", test.indptr, test.indices, labels=test.labels)
    stats = certify_parquet(src, tmp_path / "out", payload, [1, 2, 3, 4], "best", label_column="label",
                            shard_size=200, on_shard_start=KillOnce(str(tmp_path), 2))
    assert (tmp_path / "killed").exists()
    attempts = [p.name for p in tmp_path.glob("attempt-2-*")]
    assert len(attempts) == 2 and len({a.rsplit("-", 1)[1] for a in attempts}) == 2  # two processes
    assert stats.computed == stats.shards == 6
    ref = FMCertifier.from_model(fm, history).certify_budgets(test.indptr, test.indices, [1, 2, 3, 4], "best")
    assert_same(ref, read_results(tmp_path / "out" / "results.parquet"))


def test_without_retries_a_killed_worker_fails_the_run(local_ray, tmp_path):
    params, indptr, indices = random_fm(8, m=120)
    with pytest.raises(ray.exceptions.RayError):
        certify_arrays(ModelPayload.from_arrays(*params), indptr, indices, [1], shard_size=50, max_retries=0,
                       on_shard_start=KillOnce(str(tmp_path), 1))


# ---------------------------------------------------------------------------- two nodes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_start(args, env):
    ray_bin = Path(sys.executable).with_name("ray")
    return subprocess.Popen([str(ray_bin), "start", "--block", "--num-cpus", "1", "--disable-usage-stats",
                             "--object-store-memory", str(128 << 20), *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _stop(proc):
    """Stop one ``ray start --block`` process; it takes its own Ray processes down with it (never
    ``ray stop``, which would stop every Ray on the machine)."""
    if proc.poll() is None:
        proc.terminate()  # the node drains and stops its processes (a few seconds)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _cluster_env():
    """The environment of the cluster's processes and of its driver: the advrec this test imports
    (the checkout with a built core, or the installed package) first on their path, and Ray's
    token authentication on in all of them (each reads the mode when it starts)."""
    import advrec

    here = str(Path(advrec.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, PYTHONPATH=path, RAY_AUTH_MODE="token")


@pytest.fixture
def two_nodes():
    """A head and a second node started with ``ray start`` on this machine, one CPU each, in their
    own temp dir; yields the head's address."""
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="advrec-ray-")  # short: Ray's socket paths must fit in 107 bytes
    env = _cluster_env()
    procs = [_ray_start(["--head", f"--port={port}", "--node-ip-address=127.0.0.1", f"--temp-dir={temp}",
                         "--include-dashboard=false"], env)]
    try:
        deadline = time.time() + 60
        while True:
            if procs[0].poll() is not None:
                pytest.fail("ray start --head exited")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    pytest.fail("the head node did not come up within 60 s")
                time.sleep(0.5)
        procs.append(_ray_start([f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1"], env))
        yield f"127.0.0.1:{port}"
    finally:
        for proc in reversed(procs):
            _stop(proc)
        shutil.rmtree(temp, ignore_errors=True)


def test_two_node_cluster_cli_equals_single_process(two_nodes, tmp_path, ml100k):
    """``advrec certify-batch --address HOST:PORT`` from another process (the driver), on a head
    and a worker node: both nodes certify shards, and the results equal the single process's."""
    from advrec.training import save_checkpoint

    fm, history, test = ml100k
    save_checkpoint(fm, tmp_path / "fm")
    src = write_instances(tmp_path / "in.parquet", test.indptr, test.indices)
    argv = [sys.executable, "-m", "advrec", "certify-batch", str(src), str(tmp_path / "out"),
            "--model", str(tmp_path / "fm.pt"), "--perturbable", f"{history[0]}:{history[-1] + 1}",
            "--q", "1", "2", "3", "--shard-size", "60", "--address", two_nodes]
    wait = ("import ray, sys, time; ray.init(address=sys.argv[1]); t = time.time() + 60\n"
            "while len([n for n in ray.nodes() if n['Alive']]) < 2 and time.time() < t: time.sleep(0.3)\n"
            "sys.exit(len([n for n in ray.nodes() if n['Alive']]) != 2)")
    # run outside the checkout (as a user would): `python -m` puts the working directory first on
    # sys.path, and a checkout without a built core must not shadow the installed package
    joined = subprocess.run([sys.executable, "-c", wait, two_nodes], env=_cluster_env(), capture_output=True,
                            timeout=120, cwd=tmp_path)
    assert joined.returncode == 0, "the second node did not join within 60 s"
    run = subprocess.run(argv, env=_cluster_env(), capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "1200 instances x 3 budgets in 20 shards (20 computed, 0 already done) on 2 node(s)" in run.stdout
    ref = FMCertifier.from_model(fm, history).certify_budgets(test.indptr, test.indices, [1, 2, 3], "best")
    assert_same(ref, read_results(tmp_path / "out" / "results.parquet"))


# ---------------------------------------------------------------------------- bad input
def test_bad_arguments_are_named(local_ray, tmp_path):
    params, indptr, indices = random_fm(10, m=50)
    payload = ModelPayload.from_arrays(*params)
    with pytest.raises(ValueError, match="q must be an int >= 0"):
        certify_arrays(payload, indptr, indices, [1, -1])
    with pytest.raises(ValueError, match="at least one budget"):
        certify_arrays(payload, indptr, indices, [])
    with pytest.raises(ValueError, match="method must be one of"):
        certify_arrays(payload, indptr, indices, [1], "fastest")
    with pytest.raises(ValueError, match="shard_size"):
        certify_arrays(payload, indptr, indices, [1], shard_size=0)
    with pytest.raises(ValueError, match="max_retries"):
        certify_arrays(payload, indptr, indices, [1], max_retries=-1)
    with pytest.raises(TypeError, match="payload must be a ModelPayload"):
        certify_arrays(params, indptr, indices, [1])
    with pytest.raises(IndexError, match="indices must lie in"):
        certify_arrays(payload, indptr, np.where(indices == indices.max(), 10_000, indices), [1])
    with pytest.raises(ValueError, match="V contains NaN"):
        ModelPayload.from_arrays(params[0], params[1], np.full_like(params[2], np.nan), params[3])
    with pytest.raises(IndexError, match="perturbable ids"):
        ModelPayload.from_arrays(params[0], params[1], params[2], np.array([0, 10_000]))


def test_bad_parquet_inputs_are_named(local_ray, tmp_path):
    params, indptr, indices = random_fm(11, m=50)
    payload = ModelPayload.from_arrays(*params)
    feats = pa.LargeListArray.from_arrays(pa.array(indptr), pa.array(indices))

    def run(table, **kw):
        path = tmp_path / "bad.parquet"
        pq.write_table(table, path)
        return certify_parquet(path, tmp_path / "out", payload, [1], resume=False, **kw)

    with pytest.raises(ValueError, match="features_column: column 'features' is not in"):
        run(pa.table({"x": feats}))
    with pytest.raises(ValueError, match="id_column: column 'uid' is not in"):
        run(pa.table({"features": feats}), id_column="uid")
    with pytest.raises(TypeError, match="must be a list of integers"):
        run(pa.table({"features": pa.array([[0.5]] * 3)}))
    with pytest.raises(TypeError, match="label_column: column 'label' must hold integers"):
        run(pa.table({"features": feats, "label": pa.array(["a"] * 50)}), label_column="label")
    with pytest.raises(ValueError, match="row 1 is null"):
        run(pa.table({"features": pa.array([[1, 2], None, [3]], pa.list_(pa.int64()))}))
    with pytest.raises(ValueError, match="null feature id"):
        run(pa.table({"features": pa.array([[1, None]], pa.list_(pa.int64()))}))
    with pytest.raises(IndexError, match="row 2 has feature id 240 outside"):
        run(pa.table({"features": pa.array([[1], [2], [3, 240]], pa.list_(pa.int64()))}))
    with pytest.raises(IndexError, match="row 0 has feature id -1"):
        run(pa.table({"features": pa.array([[-1]], pa.list_(pa.int32()))}))
    with pytest.raises(ValueError, match="strictly increasing"):
        run(pa.table({"features": pa.array([[1], [5, 3]], pa.list_(pa.int64()))}))
    with pytest.raises(ValueError, match="holds no instances"):
        run(pa.table({"features": pa.array([], pa.list_(pa.int64()))}))
    (tmp_path / "text.parquet").write_text("not parquet")
    with pytest.raises(ValueError, match="not a readable Parquet file"):
        certify_parquet(tmp_path / "text.parquet", tmp_path / "out", payload, [1])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        certify_parquet(tmp_path / "missing.parquet", tmp_path / "out", payload, [1])
    with pytest.raises(ValueError, match="output: .* not a directory"):
        pq.write_table(pa.table({"features": feats}), tmp_path / "ok.parquet")
        certify_parquet(tmp_path / "ok.parquet", tmp_path / "ok.parquet", payload, [1])


def test_missing_extra_names_it():
    with pytest.raises(ImportError, match=r"advrec\[distributed\]"):
        _deps._need("advrec_no_such_module", "Ray")


def test_payload_hash_names_the_model():
    params, _, _ = random_fm(12, m=2)
    a, b = ModelPayload.from_arrays(*params), ModelPayload.from_arrays(*params)
    assert a.sha256 == b.sha256
    V = params[2].copy()
    V[3, 1] = np.nextafter(V[3, 1], np.float32(1))
    assert ModelPayload.from_arrays(params[0], params[1], V, params[3]).sha256 != a.sha256
    assert a.nbytes == params[1].nbytes + V.nbytes + params[3].astype(np.int64).nbytes + 8


# ---------------------------------------------------------------------------- the command
def test_cli_certify_batch_end_to_end(local_ray, tmp_path, ml100k, capsys):
    from advrec.training import save_checkpoint

    fm, history, test = ml100k
    sub = test.subset(np.arange(300))
    save_checkpoint(fm, tmp_path / "fm")
    src = write_instances(tmp_path / "in.parquet", sub.indptr, sub.indices, ids=np.arange(300) + 1000)
    lo, hi = int(history[0]), int(history[-1]) + 1
    argv = ["certify-batch", str(src), str(tmp_path / "out"), "--model", str(tmp_path / "fm.pt"),
            "--perturbable", f"{lo}:{hi}", "--q", "1", "2", "--id-column", "id", "--shard-size", "100"]
    assert main(argv) == 0
    assert "300 instances x 2 budgets in 3 shards (3 computed, 0 already done)" in capsys.readouterr().out
    ref = FMCertifier.from_model(fm, history).certify_budgets(sub.indptr, sub.indices, [1, 2], "best")
    assert_same(ref, read_results(tmp_path / "out" / "results.parquet"))
    assert main(argv) == 0
    assert "(0 computed, 3 already done)" in capsys.readouterr().out

    def refused(args, flag):
        assert main(args) == 2
        assert flag in capsys.readouterr().err

    refused(argv[:-4] + ["--q", "-1"], "--q: qs: each q must be an int >= 0")
    refused(argv + ["--method", "fast"], "--method: method must be one of")
    refused(argv + ["--id-column", "uid"], "--id-column: id_column: column 'uid' is not in")
    refused(argv + ["--address", "auto", "--num-cpus", "2"], "--num-cpus: only with --address local")
    refused(argv + ["--shard-size", "0"], "--shard-size")
    refused([a if a != f"{lo}:{hi}" else "0:99999" for a in argv], "--perturbable: perturbable ids must be in")
    refused([a if a != str(tmp_path / "fm.pt") else str(tmp_path / "none.pt") for a in argv], "--model:")
    refused([a if a != str(src) else str(tmp_path / "none.parquet") for a in argv], "INPUT:")
