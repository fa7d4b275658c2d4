"""Registry, cache and source fallback (offline, with stand-in fetchers), and the real ML-100K."""
from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import advrec.data as data
from advrec.data import datasets, fetch

FIX = Path(__file__).parent / "fixtures"
TINY_COUNTS = {"ratings": 4, "users": 3, "items": 3}  # the ml100k_* fixtures


@pytest.fixture
def tiny_cache(tmp_path, monkeypatch):
    """An empty ADVREC_DATA dir, with ML-100K's expected counts swapped for the fixture's."""
    monkeypatch.setenv("ADVREC_DATA", str(tmp_path))
    monkeypatch.setattr(datasets, "ML100K_COUNTS", TINY_COUNTS)
    return tmp_path


def copy_fixture(layout: str):
    def fetcher(dest: Path) -> str:
        dest.mkdir(parents=True, exist_ok=True)
        for f in (FIX / layout).iterdir():
            shutil.copy(f, dest / f.name)
        return f"stand-in {layout}"
    return fetcher


def failing(why: str):
    def fetcher(dest: Path) -> str:
        raise OSError(why)
    return fetcher


# ----------------------------------------------------------------------------- registry

def test_registry():
    assert "ml-100k" in data.available()
    with pytest.raises(ValueError, match=r"dataset 'ml-99k' is unknown.*ml-100k"):
        data.load("ml-99k")


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("ADVREC_DATA", str(tmp_path / "a"))
    assert fetch.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("ADVREC_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert fetch.cache_dir() == tmp_path / "xdg" / "advrec"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert fetch.cache_dir() == Path.home() / ".cache" / "advrec"


# ----------------------------------------------------------------------------- fallback

def test_grouplens_failure_falls_back_to_wheel(tiny_cache, monkeypatch, reports):
    monkeypatch.setattr(fetch, "fetch_grouplens_ml100k", failing("host unreachable"))
    monkeypatch.setattr(fetch, "fetch_recbole_ml100k", copy_fixture("ml100k_recbole"))
    ds = data.load("ml-100k")
    assert ds.source == "stand-in ml100k_recbole"
    assert len(ds.interactions) == 4
    assert ds.item_features["title"][0] == "Toy Soldiers (1995)"
    assert any("GroupLens" in m and "host unreachable" in m for m in reports)
    assert any("stand-in ml100k_recbole" in m for m in reports)
    assert (tiny_cache / "ml-100k" / "ml-100k.npz").is_file()

    # second load: from the normalised cache, identical content, no fetch
    monkeypatch.setattr(fetch, "fetch_recbole_ml100k", failing("must not be called"))
    again = data.load("ml-100k")
    assert "cache of stand-in ml100k_recbole" in again.source
    for name in ("user", "item", "rating", "timestamp", "user_ids", "item_ids"):
        assert np.array_equal(getattr(again.interactions, name), getattr(ds.interactions, name))
    for a, b in ((ds.user_features, again.user_features), (ds.item_features, again.item_features)):
        assert sorted(a) == sorted(b)
        for key in a:
            assert list(a[key]) == list(b[key]), key


def test_grouplens_used_first(tiny_cache, monkeypatch):
    monkeypatch.setattr(fetch, "fetch_grouplens_ml100k", copy_fixture("ml100k_grouplens"))
    monkeypatch.setattr(fetch, "fetch_recbole_ml100k", failing("must not be called"))
    assert data.load("ml-100k").source == "stand-in ml100k_grouplens"


def test_all_sources_fail_one_error(tiny_cache, monkeypatch):
    monkeypatch.setattr(fetch, "fetch_grouplens_ml100k", failing("no route to host"))
    monkeypatch.setattr(fetch, "fetch_recbole_ml100k", failing("pip: no index"))
    with pytest.raises(RuntimeError) as e:
        data.load("ml-100k")
    msg = str(e.value)
    assert str(tiny_cache / "ml-100k") in msg
    assert fetch.GROUPLENS_ML100K_URL in msg and "no route to host" in msg
    assert "recbole==1.2.1" in msg and "pip: no index" in msg


def test_files_already_in_cache_are_used(tiny_cache, monkeypatch):
    monkeypatch.setattr(fetch, "fetch_grouplens_ml100k", failing("must not be called"))
    monkeypatch.setattr(fetch, "fetch_recbole_ml100k", failing("must not be called"))
    copy_fixture("ml100k_grouplens")(tiny_cache / "ml-100k")
    ds = data.load("ml-100k")
    assert ds.source == str(tiny_cache / "ml-100k")


def test_download_false(tiny_cache):
    with pytest.raises(RuntimeError, match="download=False"):
        data.load("ml-100k", download=False)


def test_count_mismatch_raises(tiny_cache, monkeypatch):
    monkeypatch.setattr(datasets, "ML100K_COUNTS", {"ratings": 100_000, "users": 943,
                                                    "items": 1_682})
    copy_fixture("ml100k_grouplens")(tiny_cache / "ml-100k")
    with pytest.raises(ValueError, match=r"expected .*100000.* got .*'ratings': 4"):
        data.load("ml-100k")


def test_corrupt_cache_is_rebuilt(tiny_cache, reports):
    copy_fixture("ml100k_grouplens")(tiny_cache / "ml-100k")
    (tiny_cache / "ml-100k" / "ml-100k.npz").write_bytes(b"not a zip")
    ds = data.load("ml-100k")
    assert len(ds.interactions) == 4
    assert any("unusable" in m for m in reports)
    assert data.load("ml-100k").source.endswith(f"(cache of {tiny_cache / 'ml-100k'})")


def test_data_dir_argument(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "ML100K_COUNTS", TINY_COUNTS)
    copy_fixture("ml100k_recbole")(tmp_path / "ml-100k")
    assert len(data.load("ml-100k", data_dir=tmp_path).interactions) == 4


# ----------------------------------------------------------------------------- fetchers, offline

def test_grouplens_fetch_fails_fast_on_dns_error(tmp_path, monkeypatch):
    def no_dns(*a, **k):
        raise socket.gaierror(-2, "Name or service not known")
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(OSError, match="cannot resolve files.grouplens.org"):
        fetch.fetch_grouplens_ml100k(tmp_path)


def test_grouplens_fetch_bounds_a_hanging_dns(tmp_path, monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: time.sleep(3))
    t0 = time.perf_counter()
    with pytest.raises(TimeoutError):
        fetch.fetch_grouplens_ml100k(tmp_path, timeout=0.2)
    assert time.perf_counter() - t0 < 2


def fake_pip(wheel_members: dict[str, bytes], returncode: int = 0):
    def run(cmd, **kw):
        assert cmd[1:4] == ["-m", "pip", "download"] and "recbole==1.2.1" in cmd
        if returncode == 0:
            dest = Path(cmd[cmd.index("-d") + 1])
            with zipfile.ZipFile(dest / "recbole-1.2.1-py3-none-any.whl", "w") as zf:
                for name, blob in wheel_members.items():
                    zf.writestr(name, blob)
        return subprocess.CompletedProcess(cmd, returncode, "", "ERROR: no matching distribution")
    return run


def test_recbole_fetch_extracts_only_the_data(tmp_path, monkeypatch):
    members = {fetch.RECBOLE_ML100K_DIR + f.name: f.read_bytes()
               for f in (FIX / "ml100k_recbole").iterdir()}
    members["recbole/__init__.py"] = b"raise SystemExit('never imported')"
    monkeypatch.setattr(subprocess, "run", fake_pip(members))
    # the stand-in wheel has its own hash; pin it for this test
    probe = tmp_path / "probe"
    probe.mkdir()
    fake_pip(members)(["py", "-m", "pip", "download", "recbole==1.2.1", "-d", str(probe)])
    digest = hashlib.sha256((probe / "recbole-1.2.1-py3-none-any.whl").read_bytes()).hexdigest()
    monkeypatch.setattr(fetch, "RECBOLE_WHEEL_SHA256", digest)
    out = tmp_path / "ml-100k"
    assert "recbole-1.2.1" in fetch.fetch_recbole_ml100k(out)
    assert sorted(p.name for p in out.iterdir()) == ["ml-100k.inter", "ml-100k.item",
                                                     "ml-100k.user"]


def test_recbole_fetch_rejects_unexpected_wheel(tmp_path, monkeypatch):
    monkeypatch.setattr(subprocess, "run", fake_pip({"x": b"y"}))
    with pytest.raises(ValueError, match="sha256"):
        fetch.fetch_recbole_ml100k(tmp_path / "ml-100k")


def test_recbole_fetch_reports_pip_failure(tmp_path, monkeypatch):
    monkeypatch.setattr(subprocess, "run", fake_pip({}, returncode=1))
    with pytest.raises(RuntimeError, match="exit 1.*no matching distribution"):
        fetch.fetch_recbole_ml100k(tmp_path / "ml-100k")


# ----------------------------------------------------------------------------- the real data

def test_real_ml100k(monkeypatch):
    """Uses the default cache; fetches ~2 MB on first run. Skipped only if every source fails."""
    monkeypatch.delenv("ADVREC_DATA", raising=False)
    try:
        ds = data.load("ml-100k")
    except RuntimeError as e:
        pytest.skip(f"ML-100K not cached and not fetchable here: {e}")
    inter = ds.interactions
    assert (len(inter), inter.n_users, inter.n_items) == (100_000, 943, 1_682)
    assert (inter.user_ids[inter.user[0]], inter.item_ids[inter.item[0]]) == (196, 242)
    assert inter.rating[0] == 3 and inter.timestamp[0] == 881250949
    assert set(np.unique(inter.rating).tolist()) == {1, 2, 3, 4, 5}
    assert inter.user_ids.tolist() == list(range(1, 944))
    assert inter.item_ids.tolist() == list(range(1, 1683))
    uf, itf = ds.user_features, ds.item_features
    assert (uf["age"][0], uf["gender"][0], uf["occupation"][0]) == (24, "M", "technician")
    assert uf["age"].dtype == np.int64
    assert itf["title"][0] == "Toy Story (1995)" and itf["year"][0] == 1995
    assert itf["genres"][0] == ("Animation", "Children's", "Comedy")
    assert itf["year"].dtype == np.int64 and itf["year"][266] == -1  # item 267 'unknown'
    t0 = time.perf_counter()
    again = data.load("ml-100k")
    assert time.perf_counter() - t0 < 0.5
    assert "cache" in again.source and len(again.interactions) == 100_000
