"""The poisoning experiment (issue 16, "Experiment"): config checks, the records of a tiny run on
ML-100K, the JSON round trip, the report, the poisoned logs and the ``advrec run poison`` command.

One tiny run (UserKNN, two attacks, one size, 3 targets per pool: about a second) is shared by the
tests that read records."""
from __future__ import annotations

import functools
import json
import re

import numpy as np
import pytest

import advrec.data as D
from advrec.cli import main
from advrec.experiments import poison_report as R
import advrec.experiments.poison as P
from advrec.attacks.poisoning import PGAAttack
from advrec.attacks.revadv import RevAdvAttack
from advrec.attacks.shilling import RandomAttack
from advrec.models import WRMF, ExplicitMF
from advrec.experiments.poison import (ALL_ATTACKS, ATTACKS, CONTROL, EXPOSURE, POOLS, PoisonConfig, draw_targets,
                                       fake_profiles, mean_profile_length, run_poison)


@pytest.fixture(scope="module")
def tiny():
    return run_poison(PoisonConfig.quick(attacks=("average", CONTROL), progress=False))


@pytest.fixture(scope="module")
def train():
    return D.ratio_split(D.load("ml-100k").interactions, (0.8, 0.2), order="random", seed=0).train


# ----------------------------------------------------------------------------- config

@pytest.mark.parametrize("overrides, field", [
    (dict(seeds=()), "seeds"), (dict(seeds=(1, 1)), "seeds"), (dict(seeds=(-1,)), "seeds"),
    (dict(n_targets=0), "n_targets"), (dict(n_targets=True), "n_targets"),
    (dict(unpopular_share=0.0), "unpopular_share"), (dict(unpopular_share=float("nan")), "unpopular_share"),
    (dict(attacks=("random", "shuffle")), "attacks"), (dict(attacks=()), "attacks"),
    (dict(attacks=("random", "random")), "attacks"), (dict(target_pools=()), "target_pools"),
    (dict(target_pools=("popular",)), "target_pools"), (dict(target_pools=("all", "all")), "target_pools"),
    (dict(sizes=(0.0,)), "sizes"), (dict(sizes=(1.0,)), "sizes"), (dict(sizes=(0.05, 0.05)), "sizes"),
    (dict(sizes=()), "sizes"), (dict(filler=0), "filler"), (dict(filler=2.5), "filler"),
    (dict(victims=("SVD++",)), "victims"), (dict(victims=()), "victims"),
    (dict(test_share=1.0), "test_share"), (dict(table_size=0.2), "table_size"),
    (dict(data_format="xml"), "data_format"), (dict(progress="yes"), "progress"),
])
def test_config_errors_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=f"^{field} "):
        PoisonConfig(**overrides).validate()


def test_optimised_attacks_are_selectable_but_never_by_default():
    assert ALL_ATTACKS == ATTACKS + ("pga", "sgld", "revadv")
    PoisonConfig(attacks=("random", "pga", "sgld", "revadv")).validate()
    PoisonConfig.quick(attacks=("pga",)).validate()
    assert not {"pga", "sgld", "revadv"} & (set(PoisonConfig().attacks) | set(PoisonConfig.quick().attacks))


def test_optimised_attacks_are_crafted_on_the_experiments_own_victim(train, monkeypatch):
    seen = {}

    def record(**kwargs):
        seen.update(kwargs)
        return RandomAttack(**{k: v for k, v in kwargs.items() if k not in ("victim", "progress")})

    monkeypatch.setitem(P.PUSH_ATTACKS, "pga", record)
    targets, _ = draw_targets(train, 2, 0.2, seed=4)
    fake_profiles("pga", train, targets, 0.01, 10, seed=4)
    assert isinstance(seen["victim"], ExplicitMF) and seen["seed"] == 4
    assert seen["victim"].config() == P.WHITE_BOX["ExplicitMF"](4).config() and seen["victim"].config()["seed"] == 4


def test_defaults_and_quick_are_valid():
    PoisonConfig().validate()
    quick = PoisonConfig.quick()
    quick.validate()
    assert (quick.seeds, quick.n_targets, quick.attacks, quick.sizes, quick.victims) == \
        ((0,), 3, ("random", "average"), (0.05,), ("UserKNN",))
    assert PoisonConfig().attacks == ATTACKS and PoisonConfig().sizes == (0.01, 0.02, 0.03, 0.05, 0.10)
    assert PoisonConfig().target_pools == POOLS == ("unpopular", "all") and quick.target_pools == POOLS


# ----------------------------------------------------------------------------- the steps

def test_targets_come_from_the_least_rated_fifth(train):
    counts = train.item_counts()
    rated = np.flatnonzero(counts > 0)
    targets, pool_max = draw_targets(train, 5, 0.2, seed=3)
    assert len(np.unique(targets)) == 5 and (counts[targets] >= 1).all() and (counts[targets] <= pool_max).all()
    assert (counts[rated] < pool_max).sum() < np.ceil(0.2 * len(rated)) <= (counts[rated] <= pool_max).sum()
    assert np.array_equal(targets, draw_targets(train, 5, 0.2, seed=3)[0])
    with pytest.raises(ValueError, match="^n_targets"):
        draw_targets(train, 10_000, 0.2, seed=0)


def test_the_all_pool_draws_from_every_rated_item(train):
    counts = train.item_counts()
    targets, pool_max = draw_targets(train, 200, 1.0, seed=3)
    assert pool_max == counts.max() and (counts[targets] >= 1).all() and len(np.unique(targets)) == 200
    # drawn uniformly over the rated items, not from the unpopular end: their median count is the pool's
    assert abs(np.median(counts[targets]) - np.median(counts[counts > 0])) < 10


def test_poisoned_logs_keep_the_real_rows_and_the_control_has_no_target(train):
    targets, _ = draw_targets(train, 5, 0.2, seed=0)
    filler = mean_profile_length(train)
    assert filler == 85     # 80,000 training ratings over 943 users
    for attack in ATTACKS:
        fake = fake_profiles(attack, train, targets, 0.03, filler, seed=0)
        log = D.inject(train, fake)
        n = len(train)
        for name in ("user", "item", "rating", "timestamp"):
            assert np.array_equal(getattr(log, name)[:n], getattr(train, name)), (attack, name)
        assert log.n_users == train.n_users + 28 and D.fake_users(log).sum() == 28
        fake_rows = log.subset(np.arange(n, len(log)))
        per_user = np.bincount(fake_rows.user - train.n_users)
        hits = np.isin(fake_rows.item, targets)
        if attack == CONTROL:
            assert not hits.any() and (per_user == filler).all()
        else:
            assert hits.sum() == 28 * 5 and (fake_rows.rating[hits] == 5).all()
            assert (per_user == filler + 5 + (10 if attack == "bandwagon" else 0)).all()
    random = fake_profiles("random", train, targets, 0.03, filler, seed=0)
    control = fake_profiles(CONTROL, train, targets, 0.03, filler, seed=0)
    keep = ~np.isin(random.item, targets)   # the control is the random attack without its target rows
    assert np.array_equal(random.item[keep], control.item) and np.array_equal(random.rating[keep], control.rating)


# ----------------------------------------------------------------------------- records and report

def test_records_have_the_right_structure(tiny):
    cfg = tiny.config
    assert tiny.data.startswith("ml-100k") and tiny.provenance is not None and len(tiny.provenance.data_sha256) == 64
    (seed,) = tiny.seeds
    assert seed.seed == 0 and seed.n_real_users == 943 and seed.filler == 85
    assert list(seed.pools) == ["unpopular", "all"] and EXPOSURE == ("HR@10", "HR@20", "HR@50", "MeanRank")
    unpopular, everything = seed.pools["unpopular"], seed.pools["all"]
    assert max(unpopular.target_counts) <= unpopular.pool_max_count < everything.pool_max_count
    for pool in seed.pools.values():
        assert len(pool.targets) == 3 == len(pool.target_ids) == len(pool.eligible) == len(pool.target_counts)
        assert all(0 < e <= 943 for e in pool.eligible)
        assert all(1 <= c <= pool.pool_max_count for c in pool.target_counts)
        victim = pool.victims["UserKNN"]
        assert victim.settings == {"k": 20, "similarity": "pearson", "min_overlap": 1}
        assert [(c.attack, c.size) for c in victim.cells] == [(a, 0.05) for a in cfg.attacks]
        for rec in [victim.clean] + victim.cells:
            assert list(rec.exposure) == list(EXPOSURE) and all(len(v) == 3 for v in rec.exposure.values())
            assert all(0 <= h <= 1 for h in rec.exposure["HR@10"] + rec.exposure["HR@50"])
            assert all(h10 <= h20 <= h50 for h10, h20, h50 in zip(*(rec.exposure[f"HR@{k}"] for k in (10, 20, 50))))
            assert all(1 <= r <= 1682 for r in rec.exposure["MeanRank"])
            assert 0.5 < rec.rmse < 1.5 and 0.05 < rec.ndcg < 0.6 and rec.seconds > 0
        average, control = victim.cell("average", 0.05), victim.cell(CONTROL, 0.05)
        assert average.n_fake == control.n_fake == 47
        assert min(average.shift) > 0.3            # every fake user rates each target 5
        assert max(abs(s) for s in control.shift) < min(average.shift)
    # one clean fit per seed serves both pools
    assert unpopular.victims["UserKNN"].clean.rmse == everything.victims["UserKNN"].clean.rmse
    assert min(unpopular.victims["UserKNN"].cell("average", 0.05).shift) > 0.5   # the fakes are its main raters


def test_json_round_trip_is_byte_identical(tiny):
    text = R.report_json(tiny)
    again = R.result_from_json(json.loads(text))
    assert R.report_json(again) == text
    assert again.config == tiny.config
    assert [c.to_row() for c in R.checks_from_json(json.loads(text))] == [c.to_row() for c in R.acceptance(tiny)]


def test_markdown_has_the_tables_and_the_provenance_line(tiny):
    md = R.report_markdown(tiny)
    assert md.startswith("# Poisoning on ml-100k")
    for heading in ("## Attack x victim at 5% of the users", "## Target HR@50 against attack size",
                    "## Prediction shift against attack size", "## Clean users' test nDCG@10",
                    "## Clean users' test RMSE",
                    "## Seconds per retraining", "## Acceptance"):
        assert heading in md, heading
    for pool in ("unpopular", "all"):   # pool, victim, attack, fake users
        assert re.search(rf"^\| {pool} +\| +UserKNN +\| +average \| +47 \|", md, re.M), pool
    assert md.rstrip().splitlines()[-1].startswith("Run: advrec ")
    names = [c.name for c in R.acceptance(tiny)]
    assert any("control" in n for n in names) and any("rises with attack size" in n for n in names)
    assert {n.split(" targets, ")[0] for n in names} == {"unpopular", "all"}   # every check per pool


def test_same_seed_same_numbers():
    config = PoisonConfig.quick(n_targets=2, attacks=("random",), sizes=(0.02,), progress=False)
    a, b = run_poison(config), run_poison(config)
    strip = lambda r: [{**v.to_dict(), "clean": {**v.clean.to_dict(), "seconds": 0},  # noqa: E731
                        "cells": [{**c.to_dict(), "seconds": 0} for c in v.cells]}
                       for s in r.seeds for p in s.pools.values() for v in p.victims.values()]
    assert strip(a) == strip(b)
    assert [p.targets for p in a.seeds[0].pools.values()] == [p.targets for p in b.seeds[0].pools.values()]


# ----------------------------------------------------------------------------- the command

def test_cli_run_poison_quick_writes_its_report(tmp_path, capsys):
    assert main(["run", "poison", "--quick", "--sizes", "0.02", "--n-targets", "2", "--attacks", "random",
                 "--target-pools", "all", "--no-progress", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "advrec run poison" in out and "Attack x victim at 2% of the users" in out and "Acceptance" in out
    saved = json.loads((tmp_path / "poison.json").read_text())
    cfg = saved["config"]
    assert (cfg["sizes"], cfg["n_targets"], cfg["attacks"], cfg["victims"], cfg["seeds"], cfg["target_pools"]) == \
        ([0.02], 2, ["random"], ["UserKNN"], [0], ["all"])
    assert list(saved["seeds"][0]["pools"]) == ["all"]
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["hr50_UserKNN_all.png", "shift_UserKNN_all.png"]
    assert saved["provenance"]["data_sha256"] and saved["acceptance"]
    assert (tmp_path / "poison.md").read_text().startswith("# Poisoning on")


@pytest.mark.parametrize("argv, flag", [
    (["--sizes", "0"], "--sizes"), (["--sizes", "nan"], "--sizes"), (["--victims", "SVD++"], "--victims"),
    (["--attacks", "nuke"], "--attacks"), (["--n-targets", "0"], "--n-targets"), (["--seeds", "1", "1"], "--seeds"),
    (["--epochs", "3"], "--epochs"), (["--features", "f.npy"], "--features"),
    (["--target-pools", "popular"], "--target-pools"), (["--target-pools", "all", "all"], "--target-pools"),
])
def test_cli_refuses_bad_poison_flags_in_one_line(argv, flag, capsys):
    assert main(["run", "poison", "--quick", "--no-progress"] + argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("advrec run poison: error: ") and flag in err


def test_cli_poison_flags_belong_to_poison(capsys):
    assert main(["run", "cat", "--sizes", "0.05"]) == 2
    assert "--sizes only applies to `advrec run poison`" in capsys.readouterr().err
    assert main(["run", "amr", "--target-pools", "all"]) == 2
    assert "--target-pools only applies to `advrec run poison`" in capsys.readouterr().err


def test_cli_refuses_what_only_the_data_can_refuse(tmp_path, capsys):
    assert main(["run", "poison", "--quick", "--no-progress", "--n-targets", "100000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len([line for line in err if "error" in line]) == 1 and "--n-targets" in err[-1]
    implicit = tmp_path / "ratings.csv"
    implicit.write_text("".join(f"{u},{i},1\n" for u in range(30) for i in range(20)))
    assert main(["run", "poison", "--quick", "--no-progress", "--data", str(implicit)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "--data" in err[-1] and "explicit ratings" in err[-1]


# ----------------------------------------------------------------------------- optimised attacks

@pytest.fixture(scope="module")
def with_pga():
    """PGA next to the random attack on both victims: 1 seed, unpopular pool, 1%, 2 targets, and
    PGA cut to 1 + 2 steps (the config has no attack knobs; the experiment's 3 + 6 take ~20 s)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(P.PUSH_ATTACKS, "pga", functools.partial(PGAAttack, steps=1, refine_steps=2))
        return run_poison(PoisonConfig(seeds=(0,), n_targets=2, target_pools=("unpopular",),
                                       attacks=("random", "pga"), sizes=(0.01,), victims=("UserKNN", "ExplicitMF"),
                                       progress=False))


def test_pga_run_has_the_transfer_table_and_its_check(with_pga):
    (row,) = R.transfer_table(with_pga)
    assert (row["targets"], row["attack"], row["crafted on"]) == ("unpopular", "pga", "ExplicitMF")
    assert list(row)[3:] == ["HR@50 UserKNN", "HR@50 ExplicitMF", "pred. shift UserKNN", "pred. shift ExplicitMF"]
    victims = with_pga.seeds[0].pools["unpopular"].victims
    assert row["pred. shift ExplicitMF"] == f"{np.mean(victims['ExplicitMF'].cell('pga', 0.01).shift):+.4f}"
    assert row["pred. shift UserKNN"] == f"{np.mean(victims['UserKNN'].cell('pga', 0.01).shift):+.4f}"
    (check,) = [c for c in R.acceptance(with_pga) if "pga's" in c.name]
    assert check.name.startswith("unpopular targets, ExplicitMF at 1%") and "random" in check.detail
    assert check.passed is True       # white box: it beats the random attack on its own victim
    md = R.report_markdown(with_pga)
    assert "## Transfer of the optimised attacks at 1% of the users" in md and "crafted white box" in md
    text = R.report_json(with_pga)
    assert R.report_json(R.result_from_json(json.loads(text))) == text


def test_runs_without_optimised_attacks_have_no_transfer_table(tiny):
    assert R.transfer_table(tiny) == [] and "Transfer" not in R.report_markdown(tiny)
    assert not any("hand-crafted" in c.name for c in R.acceptance(tiny))


@pytest.mark.checkout
@pytest.mark.parametrize("where", ["", "optimised"])
def test_committed_report_round_trips_byte_identical(where):
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "docs" / "results" / "poison" / where
    text = (folder / "poison.json").read_text()
    saved = json.loads(text)
    result = R.result_from_json(saved)
    assert R.report_json(result).rstrip() == text.rstrip()
    assert R.report_markdown(result).rstrip() == (folder / "poison.md").read_text().rstrip()


def test_cli_poison_name_lists_may_be_comma_separated(capsys):
    # parsed, then refused on a later field: --attacks and --victims passed their checks
    assert main(["run", "poison", "--no-progress", "--attacks", "random,pga", "sgld", "--victims",
                 "UserKNN,ExplicitMF", "--sizes", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--sizes" in err and "--attacks" not in err
    assert main(["run", "poison", "--no-progress", "--attacks", "random,nuke"]) == 2
    assert "--attacks" in capsys.readouterr().err


# ----------------------------------------------------------------------------- implicit victims

@pytest.fixture(scope="module")
def implicit_run():
    """RevAdv (cut to 2 outer steps) and the random attack against WRMF, with UserKNN beside it:
    1 seed, unpopular pool, 1%, 2 targets."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(P.PUSH_ATTACKS, "revadv", functools.partial(RevAdvAttack, steps=2))
        return run_poison(PoisonConfig(seeds=(0,), n_targets=2, target_pools=("unpopular",),
                                       attacks=("random", "revadv"), sizes=(0.01,), victims=("UserKNN", "WRMF"),
                                       progress=False))


def test_implicit_victims_take_every_attack_and_explicit_ones_only_rated_profiles(implicit_run):
    victims = implicit_run.seeds[0].pools["unpopular"].victims
    assert [c.attack for c in victims["WRMF"].cells] == ["random", "revadv"]
    assert [c.attack for c in victims["UserKNN"].cells] == ["random"]      # revadv's profiles have no ratings
    wrmf = victims["WRMF"]
    assert wrmf.settings == {k: v for k, v in WRMF(seed=0).config().items() if k not in ("n_users", "n_items")}
    for rec in [wrmf.clean] + wrmf.cells:
        assert np.isnan(rec.rmse) and 0.05 < rec.ndcg < 0.6
    for cell in wrmf.cells:
        assert cell.n_fake == 9 and all(np.isnan(v) for v in cell.shift)
    # the implicit victim is fitted on the same log with every rating a positive: refit it here
    train = D.ratio_split(D.load("ml-100k").interactions, (0.8, 0.2), order="random", seed=0).train
    targets = np.asarray(implicit_run.seeds[0].pools["unpopular"].targets)
    log = D.inject(train, fake_profiles("random", train, targets, 0.01, 85, seed=0))
    model = WRMF(seed=0).fit(P.implicit_log(log), progress=False)
    hr = R.cell_values(implicit_run, "unpopular", "WRMF", "random", 0.01, "HR@50")
    assert hr[0] == pytest.approx(np.mean(P.target_exposure(model, log, targets, k=50,
                                                             real_users=train.n_users).per_target["HR@50"]))


def test_implicit_report_marks_what_was_not_measured(implicit_run):
    (row,) = R.transfer_table(implicit_run)
    assert (row["attack"], row["crafted on"], row["HR@50 UserKNN"], row["pred. shift UserKNN"]) == \
        ("revadv", "WRMF", "—", "—")
    assert "pred. shift WRMF" not in row and row["HR@50 WRMF"] != "—"
    table = {(r["victim"], r["attack"]): r for r in R.attack_table(implicit_run)}
    assert ("UserKNN", "revadv") not in table and table["WRMF", "random"]["pred. shift"] == "—"
    (check,) = [c for c in R.acceptance(implicit_run) if "revadv's" in c.name]
    assert check.name.startswith("unpopular targets, WRMF at 1%: revadv's HR@50") and "random" in check.detail
    names = [c.name for c in R.acceptance(implicit_run)]
    assert not any("WRMF" in n and "pred. shift" in n for n in names)
    md = R.report_markdown(implicit_run)
    assert "## Clean users' test nDCG@10" in md and "implicit victims (WRMF)" in md
    text = R.report_json(implicit_run)
    assert R.report_json(R.result_from_json(json.loads(text))) == text
