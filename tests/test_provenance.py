"""Reports say what produced them (issue 15): versions, commit, hardware and a fingerprint of the
data, and never a path on the machine that ran them."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

import advrec
from advrec.data import Interactions
from advrec.experiments.provenance import Provenance, collect, data_fingerprint, git_commit

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


def _inter(rating_of_first: float = 5.0) -> Interactions:
    return Interactions.from_raw(np.array([1, 1, 2, 3]), np.array([10, 20, 10, 30]),
                                 ratings=np.array([rating_of_first, 3.0, 4.0, 1.0]))


def test_the_fingerprint_follows_the_data_and_nothing_else():
    assert data_fingerprint(_inter()) == data_fingerprint(_inter())
    assert data_fingerprint(_inter()) != data_fingerprint(_inter(4.0))   # one rating changed
    a = _inter()
    no_ratings = Interactions(a.user, a.item, None, None, a.n_users, a.n_items, a.user_ids, a.item_ids)
    assert data_fingerprint(a) != data_fingerprint(no_ratings)


def test_collect_records_versions_hardware_and_the_data():
    p = collect(_inter())
    assert p.advrec == advrec.__version__ and p.numpy == np.__version__ and p.cores >= 1 and p.cpu
    assert p.data_sha256 == data_fingerprint(_inter())
    assert Provenance.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    line = p.line()
    assert line.startswith(f"Run: advrec {p.advrec} ") and p.cpu in line and p.data_sha256[:16] in line


def test_the_commit_is_the_checkouts_head(tmp_path):
    root = Path(advrec.__file__).resolve().parents[1]
    if (root / ".git").exists():
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
        assert git_commit(root).split("+")[0] == head.strip()[:12]
    assert git_commit(tmp_path) is None   # not a checkout: nothing invented


@pytest.mark.checkout
def test_no_committed_report_names_a_local_path():
    for f in sorted(RESULTS.glob("*/*.json")) + sorted(RESULTS.glob("*/*.md")):
        text = f.read_text()
        assert ".cache/advrec" not in text and str(Path.home()) + "/" not in text, f


def test_a_loaded_dataset_names_its_origin_without_a_local_path():
    import advrec.data as D
    from advrec.data.fetch import cache_dir

    ds = D.load("ml-100k")
    assert ds.portable_source() and str(cache_dir()) not in ds.portable_source()
    assert str(cache_dir()) in ds.source or not ds.source.startswith("/")   # the local copy stays known


def test_config_hash_names_the_settings_not_the_display():
    from advrec.experiments.gan import GANConfig
    from advrec.experiments.provenance import config_sha256

    base = config_sha256(GANConfig())
    assert base == config_sha256(GANConfig(progress=False, workers=3))     # same numbers, same hash
    assert base != config_sha256(GANConfig(seeds=(0,)))
    assert base != config_sha256(GANConfig(cfgan_lr=1e-3))
    assert len(base) == 64 and config_sha256({"a": (1, 2)}) == config_sha256({"a": [1, 2]})


def test_collect_records_the_thread_count():
    import torch

    p = collect()
    assert p.torch_threads == torch.get_num_threads()
    assert f"{p.torch_threads} torch thread" in p.line()
    old_dict = {k: v for k, v in p.to_dict().items() if k not in ("torch_threads", "omp_threads", "config_sha256")}
    old = Provenance.from_dict(old_dict)
    assert old.torch_threads is None and "torch thread" not in old.line()   # reports written before
    assert old.to_dict() == old_dict                                        # round-trip unchanged
    from advrec.experiments.gan import GANConfig
    from advrec.experiments.provenance import config_sha256
    q = collect(config=GANConfig())
    assert q.config_sha256 == config_sha256(GANConfig()) and "Config SHA-256 " + q.config_sha256[:16] in q.line()
