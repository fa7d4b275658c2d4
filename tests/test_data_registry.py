"""The dataset registry: entries and their flags, names with options, datasets read from files the
user placed, and the synthetic generator (sizes, skew, floor, determinism, errors)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from advrec import data as D
from advrec.experiments import files
from advrec.experiments.poison import PoisonConfig

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVREC_DATA", str(tmp_path))
    return tmp_path


def test_catalog_flags():
    entries = {e.name: e for e in D.catalog()}
    assert {"ml-100k", "ml-1m", "lastfm", "amazon", "frappe", "synthetic"} <= set(entries)
    assert entries["ml-100k"].fetchable
    for name in ("ml-1m", "lastfm", "amazon", "frappe"):
        assert not entries[name].fetchable and entries[name].files and entries[name].url.startswith("https://")
    assert not entries["synthetic"].files and entries["synthetic"].present()


def test_placed_dataset_missing_says_where(data_dir):
    assert not D.info("ml-1m").present()
    with pytest.raises(RuntimeError, match=r"ml-1m: advrec does not download.*ratings\.dat") as err:
        D.load("ml-1m")
    assert str(data_dir / "ml-1m") in str(err.value)


def test_placed_ml1m_and_lastfm_read_from_the_data_folder(data_dir):
    shutil.copytree(FIXTURES / "ml1m", data_dir / "ml-1m")
    shutil.copytree(FIXTURES / "lastfm", data_dir / "lastfm")
    assert D.info("ml-1m").present() and D.info("lastfm").present()
    ml = D.load("ml-1m")
    ref = D.read_ml1m(FIXTURES / "ml1m")
    assert ml.name == "ml-1m" and len(ml.interactions) == len(ref.interactions)
    np.testing.assert_array_equal(ml.interactions.item_ids, ref.interactions.item_ids)
    assert str(data_dir) not in ml.portable_source()
    lf = D.load("lastfm")
    assert len(lf.interactions) == len(D.read_lastfm(FIXTURES / "lastfm"))


def test_placed_amazon_one_file_or_a_path(data_dir):
    folder = data_dir / "amazon"
    folder.mkdir()
    shutil.copy(FIXTURES / "amazon_5core.json", folder / "Beauty_5.json")
    assert len(D.load("amazon").interactions) == len(D.read_amazon(FIXTURES / "amazon_5core.json"))
    shutil.copy(FIXTURES / "amazon_5core.json", folder / "Toys_5.json")
    with pytest.raises(ValueError, match="2 candidate files"):
        D.load("amazon")
    got = D.load(f"amazon:path={folder / 'Toys_5.json'}")
    assert got.portable_source() == "amazon files given by path"
    with pytest.raises(ValueError, match="does not exist"):
        D.load(f"amazon:path={folder / 'nope.json'}")


def test_placed_frappe_pairs_once(data_dir, reports):
    folder = data_dir / "frappe"
    folder.mkdir()
    rows = ["user\titem\tcnt\tdaytime\tweekday", "0\t5\t3\tmorning\tmonday", "0\t5\t1\tevening\tsunday",
            "1\t7\t2\tnoon\tfriday", "2\t5\t9\tnight\tfriday"]
    (folder / "frappe.csv").write_text("\n".join(rows) + "\n")
    inter = D.load("frappe").interactions
    pairs = sorted(zip(inter.user_ids[inter.user].tolist(), inter.item_ids[inter.item].tolist()))
    assert pairs == [(0, 5), (1, 7), (2, 5)]
    assert any("removed 1 of 4 rows" in r for r in reports)


def test_names_with_options_are_checked():
    assert D.parse_name("synthetic:users=50, skew=1.5,seed=3") == ("synthetic", {"users": 50, "skew": 1.5, "seed": 3})
    with pytest.raises(ValueError, match="dataset 'ml-2m' is unknown"):
        D.parse_name("ml-2m")
    with pytest.raises(ValueError, match="key=value"):
        D.parse_name("synthetic:users")
    with pytest.raises(ValueError, match=r"takes no option \['colour'\]"):
        D.load("synthetic:colour=3")


def test_synthetic_shape_floor_and_no_duplicates():
    ds = D.load("synthetic:users=200,items=150,interactions=6000,skew=1.2,min_per_user=4,seed=1")
    inter = ds.interactions
    assert (inter.n_users, inter.n_items, len(inter)) == (200, 150, 6000)
    keys = inter.user.astype(np.int64) * inter.n_items + inter.item
    assert len(np.unique(keys)) == len(keys)
    assert np.bincount(inter.user, minlength=200).min() >= 4
    assert np.array_equal(inter.timestamp, np.arange(6000))
    assert "seed=1" in ds.portable_source()


def test_synthetic_popularity_follows_the_zipf_law():
    """Sparse enough that keeping each pair once barely bends the law: skew 0 is uniform (chi-square),
    and the slope of log count against log rank between ranks 1 and 10 is the skew."""
    from scipy.stats import chisquare

    def popularity(skew: float) -> np.ndarray:
        inter = D.synthetic(users=20_000, items=100, interactions=40_000, skew=skew, user_skew=0.0,
                            min_per_user=1).interactions
        return np.sort(np.bincount(inter.item, minlength=100))[::-1]
    assert chisquare(popularity(0.0)).pvalue > 0.01
    for skew in (0.5, 1.0):
        pop = popularity(skew)
        assert np.log(pop[0] / pop[9]) / np.log(10) == pytest.approx(skew, rel=0.15)


def test_synthetic_stars_have_ml100k_shares():
    from advrec.data.synthetic import ML100K_STAR_SHARES

    inter = D.synthetic(rated=1).interactions
    shares = np.bincount(inter.rating.astype(int), minlength=6)[1:] / len(inter)
    np.testing.assert_allclose(shares, ML100K_STAR_SHARES, atol=2e-3)
    assert set(np.unique(D.synthetic().interactions.rating)) == {1.0}


def test_synthetic_same_seed_same_log_and_other_seed_another():
    a, b = D.synthetic(seed=7).interactions, D.synthetic(seed=7).interactions
    c = D.synthetic(seed=8).interactions
    assert np.array_equal(a.user, b.user) and np.array_equal(a.item, b.item)
    assert not (np.array_equal(a.user, c.user) and np.array_equal(a.item, c.item))


def test_synthetic_dense_and_skewed_still_exact():
    inter = D.synthetic(users=20, items=20, interactions=200, skew=8.0, user_skew=8.0,
                        min_per_user=6).interactions
    assert len(inter) == 200 and np.bincount(inter.user, minlength=20).min() >= 6


@pytest.mark.parametrize("kw, match", [
    ({"users": 0}, "users must be an int >= 1"),
    ({"items": 2.5}, "items must be an int"),
    ({"skew": -1}, r"skew must be a number in \[0, 10\]"),
    ({"user_skew": float("nan")}, "user_skew must be"),
    ({"interactions": 10, "users": 5, "items": 3, "min_per_user": 1}, "over 50%"),
    ({"users": 100, "items": 100, "interactions": 300, "min_per_user": 4}, "exceeds interactions"),
    ({"items": 3, "users": 100, "interactions": 100, "min_per_user": 4}, "exceeds items"),
    ({"seed": -1}, "seed must be"),
    ({"rated": 2}, "rated must be 0"),
])
def test_synthetic_errors_name_the_argument(kw, match):
    with pytest.raises(ValueError, match=match):
        D.synthetic(**kw)


def test_config_dataset_key_is_checked_before_work():
    with pytest.raises(ValueError, match="dataset 'ml-10k' is unknown"):
        files.resolve({"experiment": "poison", "quick": True, "config": {"dataset": "ml-10k"}})
    spec = files.resolve({"experiment": "poison", "quick": True,
                          "config": {"dataset": "synthetic:users=300,items=400,interactions=9000"}})
    assert isinstance(spec.config, PoisonConfig)


def test_experiment_runs_on_a_synthetic_dataset_through_the_config_key():
    spec = files.resolve({"experiment": "poison", "quick": True, "config": {
        "dataset": "synthetic:users=300,items=400,interactions=9000,rated=1,seed=2", "n_targets": 2,
        "attacks": ["random"], "target_pools": ["all"]}})
    result = files.run(spec)
    assert result.data.startswith("synthetic:users=300") and "advrec synthetic generator" in result.data
    assert result.seeds[0].n_real_users == 300 and result.seeds[0].pools and result.provenance.data_sha256
    again = files.run(spec)
    assert files.differences(result.to_dict(), again.to_dict()) == []


def test_cli_lists_the_datasets_and_where_their_files_go(data_dir, capsys):
    from advrec.cli import main

    (data_dir / "lastfm").mkdir()
    (data_dir / "lastfm" / "user_artists.dat").write_text("userID\tartistID\tweight\n1\t2\t3\n")
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line and not line.startswith(" ")}
    assert "downloaded on first use" in lines["ml-100k"]
    assert "files you place" in lines["ml-1m"] and "not here" in lines["ml-1m"]
    assert " here " in lines["lastfm"] and "not here" not in lines["lastfm"]
    assert "generated" in lines["synthetic"]
    assert f"put ratings.dat in {data_dir / 'ml-1m'}" in out


def test_cli_run_tracks_with_an_override(tmp_path, capsys):
    from advrec.cli import main

    path = tmp_path / "small.yaml"
    path.write_text(files.dump(files.resolve({"experiment": "poison", "quick": True, "config": {
        "dataset": "synthetic:users=200,items=300,interactions=6000,rated=1", "n_targets": 2,
        "attacks": ["random"], "target_pools": ["all"]}})))
    assert main(["run", str(path), "--no-progress", "--out", str(tmp_path / "out"), "track=tensorboard"]) == 0
    assert list((tmp_path / "out" / "tensorboard").glob("poison-*/events.out.tfevents.*"))
    assert main(["run", str(path), "track=wandb"]) == 2
    assert "track: must be one of" in capsys.readouterr().err
