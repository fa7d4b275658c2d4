"""The detection experiment (issue 17, "Experiment"): config checks, the records of a quick run on
ML-100K, the JSON round trip, the report, the promise that no defence detector saw the profiles
it removes, an unseen optimised attack, and the ``advrec run detect`` command.

One quick run (SVM and PCA-SelectUsers, size and filler 5%, one seed: about 15 s on 2 cores) is
shared by the tests that read records."""
from __future__ import annotations

import functools
import json
import math
import re

import numpy as np
import pytest

import advrec.data as D
import advrec.experiments.detect as X
import advrec.experiments.poison as P
from advrec.attacks.poisoning import PGAAttack
from advrec.cli import main
from advrec.experiments import detect_report as R
from advrec.experiments.detect import (DEFENCES, NO_DEFENCE, DetectConfig, defence_train_seed, fake_profile_set,
                                       run_detect)
from advrec.experiments.poison import HAND_CRAFTED, draw_targets, mean_profile_length
from advrec.report.aggregate import json_text


@pytest.fixture(scope="module")
def tiny():
    return run_detect(DetectConfig.quick(progress=False))


# ----------------------------------------------------------------------------- config

@pytest.mark.parametrize("overrides, field", [
    (dict(seeds=()), "seeds"), (dict(seeds=(1, 1)), "seeds"), (dict(seeds=(-1,)), "seeds"),
    (dict(seeds=(X.MAX_SEED + 1,)), "seeds"), (dict(seeds=(True,)), "seeds"),
    (dict(detectors=()), "detectors"), (dict(detectors=("knn",)), "detectors"),
    (dict(detectors=("svm", "svm")), "detectors"),
    (dict(attacks=("random",)), "attacks"), (dict(attacks=("random", "pga")), "attacks"),
    (dict(attacks=("random", "random")), "attacks"),
    (dict(sizes=(0.0,)), "sizes"), (dict(sizes=(1.0,)), "sizes"), (dict(sizes=(0.05, 0.05)), "sizes"),
    (dict(sizes=()), "sizes"), (dict(sizes=(float("nan"),)), "sizes"),
    (dict(fillers=(0.0,)), "fillers"), (dict(fillers=(85,)), "fillers"), (dict(fillers=()), "fillers"),
    (dict(n_train_seeds=0), "n_train_seeds"), (dict(n_train_seeds=500), "n_train_seeds"),
    (dict(n_targets=0), "n_targets"), (dict(n_targets=True), "n_targets"),
    (dict(test_users=1.0), "test_users"), (dict(test_users=0), "test_users"),
    (dict(table_size=0.2), "table_size"), (dict(table_filler=0.2), "table_filler"),
    (dict(defences=("svm", "nuke")), "defences"), (dict(defences=("svm", "svm")), "defences"),
    (dict(defence_targets=0), "defence_targets"), (dict(unpopular_share=0.0), "unpopular_share"),
    (dict(train_sizes=()), "train_sizes"), (dict(train_sizes=(1.5,)), "train_sizes"),
    (dict(trim=0.5), "trim"), (dict(trim=-0.1), "trim"), (dict(unseen_attacks=("revadv",)), "unseen_attacks"),
    (dict(unseen_attacks=("pga", "pga")), "unseen_attacks"), (dict(test_share=1.0), "test_share"),
    (dict(data_format="xml"), "data_format"), (dict(progress="yes"), "progress"), (dict(dataset=""), "dataset"),
])
def test_config_errors_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=f"^{field} "):
        DetectConfig(**overrides).validate()


def test_defaults_and_quick_are_valid():
    cfg = DetectConfig()
    cfg.validate()
    assert (cfg.seeds, cfg.detectors, cfg.attacks) == ((0, 1, 2), ("svm", "forest", "degreesad", "degreesad-svm",
                                                                  "svm-or-degreesad", "svm-or-degreesad-focus",
                                                                  "forest-or-degreesad-focus", "pca"),
                                                       ("random", "average", "bandwagon"))
    assert (cfg.sizes, cfg.fillers, cfg.train_sizes) == ((0.01, 0.03, 0.05, 0.10), (0.01, 0.03, 0.05),
                                                         (0.03, 0.05, 0.10))
    assert (cfg.defences, cfg.unseen_attacks, cfg.n_targets, cfg.defence_targets) == (("svm", "degreesad-svm", "svm-or-degreesad", "svm-or-degreesad-focus", "forest-or-degreesad-focus", "pca", "trimmed"), (),
                                                                                     1, 5)
    assert (X.table_size(cfg), X.table_filler(cfg)) == (0.05, 0.05)
    assert X.grid_train_seeds(cfg, 2) == (2001, 2002) and X.grid_test_seeds(2) == (2000,)
    quick = DetectConfig.quick()
    quick.validate()
    assert (quick.seeds, quick.sizes, quick.fillers, quick.detectors) == ((0,), (0.05,), (0.05,), ("svm", "pca"))
    assert set(DEFENCES) == {"svm", "forest", "degreesad", "degreesad-svm", "svm-or-degreesad", "svm-or-degreesad-focus",
                             "forest-or-degreesad-focus", "pca", "trimmed"}
    # table size and filler: the largest grid value <= 5%, else the smallest
    assert X.table_size(DetectConfig(sizes=(0.1, 0.2))) == 0.1 and X.table_filler(DetectConfig(fillers=(0.01, 0.1))) \
        == 0.01


# ----------------------------------------------------------------------------- records

def test_records_have_the_right_structure(tiny):
    assert tiny.data.startswith("ml-100k") and tiny.provenance is not None and len(tiny.provenance.data_sha256) == 64
    (seed,) = tiny.seeds
    assert (seed.seed, seed.n_real_users, seed.n_test_users, seed.train_seeds, seed.test_seeds) == (0, 943, 472, [1, 2],
                                                                                                   [0])
    assert list(seed.detection) == ["svm", "pca"]
    for name, run in seed.detection.items():
        assert run.seconds > 0 and run.settings.startswith("SupervisedDetector" if name == "svm" else "PCASelectUsers")
        assert [c.held_out for c in run.cells] == ["random", "average", "bandwagon"]
        for c in run.cells:
            assert c.held_out not in c.trained_on and sorted(c.trained_on + [c.held_out]) == sorted(tiny.config.attacks)
            assert (c.size, c.filler, c.seed, c.n_fake, c.n_users) == (0.05, 0.05, 0, 23, 472 + 23)
            assert len(c.targets) == 1 and 0 <= c.recall <= 1 and 0 <= c.precision <= 1 and 0.5 < c.auc <= 1
            assert math.isclose(c.f1, 2 * c.precision * c.recall / (c.precision + c.recall))
            assert len(c.roc_fpr) == len(c.roc_tpr) >= 2 and c.roc_fpr[-1] == c.roc_tpr[-1] == 1.0   # table cell
        if name == "pca":   # flags its 5% (ties flag too)
            assert all(c.n_flagged >= math.floor(0.05 * c.n_users) for c in run.cells)
    d = seed.defence
    assert len(d.targets) == 5 == len(d.target_ids) == len(d.eligible) == len(d.target_counts) and d.filler == 85
    assert all(900 < e <= 943 for e in d.eligible) and all(1 <= c <= 10 for c in d.target_counts)
    assert [(c.attack, c.size, c.n_fake) for c in d.cells] == [(a, 0.05, 47) for a in tiny.config.attacks]
    for rec in [d.clean] + [f for c in d.cells for f in c.fits.values()]:
        assert len(rec.hr50) == 5 and all(0 <= h <= 1 for h in rec.hr50)
        assert 0.0 < rec.ndcg < 0.2 and 0.85 < rec.rmse < 1.0 and rec.seconds > 0
    for cell in d.cells:
        assert list(cell.fits) == [NO_DEFENCE, "svm", "degreesad-svm", "svm-or-degreesad", "svm-or-degreesad-focus",
                                   "forest-or-degreesad-focus", "pca", "trimmed"]
        none, svm, degsvm, either, focus, forest_focus, pca, trimmed = cell.fits.values()
        assert (none.removed_real, none.removed_fake, trimmed.removed_real + trimmed.removed_fake) == (0, 0, 0)
        profile = 85 + 5 + (10 if cell.attack == "bandwagon" else 0)     # filler, targets, bandwagon's selected
        assert trimmed.rows_real + trimmed.rows_fake == round(0.05 * (80_000 + 47 * profile))
        # the union's members are trained like the two SVMs (same logs, same seeds): it removes
        # exactly the users either of them removes
        assert max(svm.removed_fake, degsvm.removed_fake) <= either.removed_fake <= svm.removed_fake + degsvm.removed_fake
        assert max(svm.removed_real, degsvm.removed_real) <= either.removed_real <= svm.removed_real + degsvm.removed_real
        # the target focus keeps a subset of the union's suspects
        assert focus.removed_fake <= either.removed_fake and focus.removed_real <= either.removed_real
        for f in (svm, degsvm, either, focus, forest_focus, pca):
            assert 0 <= f.removed_fake <= 47 and f.removed_real >= 0 and f.rows_fake == f.removed_fake * profile
        assert np.mean(none.hr50) > np.mean(d.clean.hr50) + 0.2    # the attack works without defence
    assert np.mean(d.cell("random", 0.05).fits["svm"].hr50) < 0.2      # and the SVM removes the random fakes


def test_defence_detectors_never_saw_the_profiles_they_remove(tiny):
    """Each supervised defence detector was trained on the OTHER attack types only, with other
    seeds and targets than the defended log; rebuilt here, none of its training profiles is a
    profile of the defended log."""
    (seed,) = tiny.seeds
    d, cfg = seed.defence, tiny.config
    train = D.ratio_split(D.load("ml-100k").interactions, (0.8, 0.2), order="random", seed=0).train
    assert mean_profile_length(train) == d.filler
    for attack in cfg.attacks:
        svm = d.detector("svm", attack)
        assert attack not in svm.trained_on and sorted(svm.trained_on) == sorted(set(cfg.attacks) - {attack})
        assert svm.seeds == [defence_train_seed(0, i) for i in range(3)] * 2 and 0 not in svm.seeds
        assert svm.sizes == list(cfg.train_sizes) and svm.filler == d.filler and svm.seconds > 0
        for other in ("degreesad-svm", "svm-or-degreesad", "svm-or-degreesad-focus",
                      "forest-or-degreesad-focus"):                  # the same training logs
            o = d.detector(other, attack)
            assert (o.trained_on, o.seeds, o.targets) == (svm.trained_on, svm.seeds, svm.targets)
        assert d.detector("pca", attack).trained_on == []          # unsupervised: no training
        seen = set()
        for t, s, targets in zip([t for t in svm.trained_on for _ in cfg.train_sizes], svm.seeds, svm.targets):
            assert targets == draw_targets(train, 5, 0.2, s)[0].tolist()
            size = cfg.train_sizes[s - defence_train_seed(0, 0)]
            seen |= fake_profile_set(D.inject(train, HAND_CRAFTED[t](targets=targets, n_fake=size, filler=d.filler,
                                                                     seed=s)(train)))
        defended = D.inject(train, HAND_CRAFTED[attack](targets=d.targets, n_fake=0.05, filler=d.filler, seed=0)(train))
        assert len(fake_profile_set(defended)) == 47 and not seen & fake_profile_set(defended)
    with pytest.raises(AssertionError, match="trained on the attack 'average'"):
        X._train_defence_detector(cfg, "svm", "average", ["random", "average"], {}, 85, 0)


def test_json_round_trip_is_byte_identical(tiny):
    text = R.report_json(tiny)
    again = R.result_from_json(json.loads(text))
    assert R.report_json(again) == text
    assert again.config == tiny.config
    assert [c.to_row() for c in R.checks_from_json(json.loads(text))] == [c.to_row() for c in R.acceptance(tiny)]
    with pytest.raises(ValueError, match="detect.json"):
        R.result_from_json({"config": {}})


@pytest.mark.checkout
def test_committed_report_round_trips_byte_identical():
    """docs/results/detect/ holds the full run: its JSON reloads to the same JSON and Markdown, so
    the committed tables are what the committed numbers give."""
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "docs" / "results" / "detect"
    text = (folder / "detect.json").read_text()
    result = R.result_from_json(json.loads(text))
    assert R.report_json(result).rstrip() == text.rstrip()
    assert R.report_markdown(result).rstrip() == (folder / "detect.md").read_text().rstrip()
    assert result.config.seeds == (0, 1, 2) and len(result.seeds) == 3


def test_markdown_has_the_tables_and_the_provenance_line(tiny):
    md = R.report_markdown(tiny)
    assert md.startswith("# Detection and defences on ml-100k")
    for heading in ("## Detection at 5% of the users, filler 5% of the items (leave one attack type out)",
                    "## Recall / precision against attack size and filler", "## Defences: target HR@50",
                    "## Clean users' test nDCG@10 per defence", "## Clean users' test RMSE per defence",
                    "## Users removed by the detectors", "## Seconds", "## Acceptance"):
        assert heading in md, heading
    assert "Optimised attacks" not in md          # none asked for
    for attack in ("random", "average", "bandwagon"):   # held-out attack, detector, trained on, fake users
        assert re.search(rf"^\| {attack} +\| +SVM \| +[a-z, ]+ \| +23 \|", md, re.M), attack
        assert re.search(rf"^\| {attack} +\| +5% \| +47 \| +0\.\d{{4}} \|", md, re.M), attack   # the defence table
    assert md.rstrip().splitlines()[-1].startswith("Run: advrec ")
    checks = R.acceptance(tiny)
    names = [c.name for c in checks]
    assert names[:2] == ["SVM, held-out average: recall and precision >= 0.8 at size and filler >= 3%",
                         "SVM, held-out bandwagon: recall and precision >= 0.8 at size and filler >= 3%"]
    # six detector defences (SVM, DegreeSAD (SVM), their union, its target focus, the forest's, PCA-SelectUsers)
    # x three attacks
    assert len(names) == 2 + 6 * 3 and all("HR@50 back to the clean" in n for n in names[2:])
    assert all(c.passed in (True, False) and "5%" in c.detail for c in checks)
    rows = R.defence_table(tiny)
    assert list(rows[0]) == ["attack", "size", "fake users", "clean", "no defence", "SVM + retrain",
                             "DegreeSAD (SVM) + retrain", "SVM or DegreeSAD (SVM) + retrain",
                             "SVM or DegreeSAD (SVM), target focus + retrain",
                             "forest or DegreeSAD (SVM), target focus + retrain", "PCA-SelectUsers + retrain",
                             "trimmed ALS (5%)"]


def test_same_seed_same_numbers(tiny):
    again = run_detect(tiny.config)
    strip = lambda r: re.sub(r'"seconds": [0-9.e-]+', '"seconds": 0',  # noqa: E731
                             json_text({"seeds": [s.to_dict() for s in r.seeds]}))
    assert strip(again) == strip(tiny)


def test_small_logs_are_refused_naming_the_setting():
    with pytest.raises(ValueError, match="^sizes: 0.001 of the 471"):
        run_detect(DetectConfig.quick(sizes=(0.001,), progress=False))


# ----------------------------------------------------------------------------- unseen optimised attack

def test_an_unseen_optimised_attack_is_scored_by_detectors_trained_on_every_hand_crafted_type():
    with pytest.MonkeyPatch.context() as patch:   # PGA cut to 1 + 2 steps (the experiment's 3 + 6 take ~20 s)
        patch.setitem(P.PUSH_ATTACKS, "pga", functools.partial(PGAAttack, steps=1, refine_steps=2))
        result = run_detect(DetectConfig(seeds=(0,), detectors=("pca",), attacks=("random", "average"), sizes=(0.02,),
                                         fillers=(0.05,), defences=("svm", "pca"), defence_targets=2,
                                         train_sizes=(0.05,), unseen_attacks=("pga",), progress=False))
    (seed,) = result.seeds
    (unseen,) = seed.unseen
    assert (unseen.attack, unseen.size, unseen.filler, unseen.n_fake) == ("pga", 0.02, 85, 18)
    assert list(unseen.detection) == ["svm", "pca"] and unseen.seconds > 0
    for m in unseen.detection.values():
        assert set(m) == {"precision", "recall", "f1", "auc", "n_flagged"} and 0 <= m["auc"] <= 1
    svm = seed.defence.detector("svm", "pga")
    assert svm.trained_on == ["random", "average"] and svm.sizes == [0.05]
    rows = R.unseen_table(result)
    assert [(r["attack"], r["detector"], r["trained on"]) for r in rows] == \
        [("pga", "SVM", "random, average"), ("pga", "PCA-SelectUsers", "— (unsupervised)")]
    md = R.report_markdown(result)
    assert "## Optimised attacks no detector trained on (at 2% of the users)" in md
    # no supervised detector in the grid: the recall check is not run; the defence checks are
    assert [c.name.split(",")[0] for c in R.acceptance(result)] == ["SVM + retrain"] * 2 + \
        ["PCA-SelectUsers + retrain"] * 2
    text = R.report_json(result)
    assert R.report_json(R.result_from_json(json.loads(text))) == text


# ----------------------------------------------------------------------------- the command

def test_cli_run_detect_quick_writes_its_report(tmp_path, capsys):
    assert main(["run", "detect", "--quick", "--detectors", "pca", "--no-progress", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "advrec run detect" in out and "Detection at 5% of the users" in out and "Acceptance" in out
    saved = json.loads((tmp_path / "detect.json").read_text())
    cfg = saved["config"]
    assert (cfg["sizes"], cfg["fillers"], cfg["detectors"], cfg["seeds"]) == ([0.05], [0.05], ["pca"], [0])
    assert list(saved["seeds"][0]["detection"]) == ["pca"]
    assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted(
        [f"roc_{a}.png" for a in ("random", "average", "bandwagon")]
        + [f"hr50_{a}.png" for a in ("random", "average", "bandwagon")])
    assert saved["provenance"]["data_sha256"] and saved["acceptance"]
    assert (tmp_path / "detect.md").read_text().startswith("# Detection and defences on")


@pytest.mark.parametrize("argv, flag", [
    (["--sizes", "0"], "--sizes"), (["--sizes", "nan"], "--sizes"), (["--fillers", "2"], "--fillers"),
    (["--detectors", "knn"], "--detectors"), (["--detectors", "svm,svm"], "--detectors"),
    (["--unseen-attacks", "revadv"], "--unseen-attacks"), (["--seeds", "1", "1"], "--seeds"),
    (["--seeds", str(X.MAX_SEED + 1)], "--seeds"), (["--attacks", "random"], "--attacks"),
    (["--victims", "UserKNN"], "--victims"), (["--n-targets", "3"], "--n-targets"), (["--epochs", "3"], "--epochs"),
])
def test_cli_refuses_bad_detect_flags_in_one_line(argv, flag, capsys):
    assert main(["run", "detect", "--quick", "--no-progress"] + argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("advrec run detect: error: ") and flag in err


def test_cli_detect_flags_belong_to_detect(capsys):
    assert main(["run", "poison", "--detectors", "svm"]) == 2
    assert "--detectors only applies to `advrec run detect`" in capsys.readouterr().err
    assert main(["run", "cat", "--fillers", "0.05", "--unseen-attacks", "pga"]) == 2
    assert "--fillers, --unseen-attacks only apply to `advrec run detect`" in capsys.readouterr().err
    assert main(["run", "amr", "--sizes", "0.05"]) == 2       # a flag of two experiments names both
    assert "--sizes only applies to `advrec run poison` or `advrec run detect`" in capsys.readouterr().err


def test_cli_detect_name_lists_may_be_comma_separated(capsys):
    # parsed, then refused on a later field: --detectors passed its check
    assert main(["run", "detect", "--no-progress", "--detectors", "svm,pca", "forest", "--fillers", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--fillers" in err and "--detectors" not in err


def test_cli_detect_refuses_what_only_the_data_can_refuse(tmp_path, capsys):
    assert main(["run", "detect", "--quick", "--no-progress", "--sizes", "0.0001"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len([line for line in err if "error" in line]) == 1 and "--sizes" in err[-1]
    implicit = tmp_path / "ratings.csv"
    implicit.write_text("".join(f"{u},{i},1\n" for u in range(30) for i in range(20)))
    assert main(["run", "detect", "--quick", "--no-progress", "--data", str(implicit)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "--data" in err[-1] and "explicit ratings" in err[-1]
