"""The advrec command checks every argument before any work (issue 15, defect 4): a bad one ends
the command with one line on stderr naming it and exit status 2, never a traceback after the run.

Every test runs the CLI in-process with the experiment runners and the data loaders replaced by
a stub that records the config and stops (``Ran``), or fails the test where no work may start.
No test trains anything."""
from __future__ import annotations

import argparse
from typing import Dict, List, Optional, Tuple

import pytest

import advrec.data as D
import advrec.experiments.amr as amr
import advrec.experiments.baseline as baseline
import advrec.experiments.cat as cat
import advrec.experiments.fm_certify as fm_certify
import advrec.experiments.inputs as inputs
import advrec.experiments.msap as msap
from advrec import cli
from advrec.cli import main

RUNNERS = [(msap, "run_msap"), (amr, "run_amr"), (cat, "run_cat"), (baseline, "run_baseline"),
           (fm_certify, "run_fm_certify")]


class Ran(Exception):
    """A runner was called: every argument passed its check."""


@pytest.fixture
def runners(monkeypatch) -> Dict[str, list]:
    """Replace each experiment runner with a stub that records its config and raises ``Ran``,
    and the data loaders with ones that fail the test (a runner stub never loads data)."""
    calls: Dict[str, list] = {name: [] for _, name in RUNNERS}

    def stub(name):
        def run(config, *a, **k):
            calls[name].append(config)
            raise Ran(name)
        return run

    for module, name in RUNNERS:
        monkeypatch.setattr(module, name, stub(name))

    def no_load(*a, **k):
        pytest.fail("data was loaded")

    for module, name in [(D, "load"), (D, "load_file"), (inputs, "implicit_interactions")]:
        monkeypatch.setattr(module, name, no_load)
    import advrec.data.content as content

    monkeypatch.setattr(content, "content_extra_available", lambda: True)   # run amr's checks, here or not
    return calls


def outcome(argv: List[str], capsys) -> Tuple[Optional[int], str]:
    """(exit status, stderr): main's return value or argparse's SystemExit code; None when a
    runner was reached (``Ran``)."""
    try:
        code: Optional[int] = main(argv)
    except SystemExit as exc:
        code = exc.code
    except Ran:
        code = None
    return code, capsys.readouterr().err


def assert_refused(argv: List[str], capsys, runners, *names: str) -> str:
    """Exit 2 with one line on stderr, led by the command and naming every one of ``names``;
    no runner called."""
    code, err = outcome(argv, capsys)
    assert code == 2, (argv, code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, (argv, err)
    assert "Traceback" not in err
    # argparse's own errors in `advrec run` come before it knows the experiment: "advrec run: error"
    commands = ("advrec run", "advrec run " + argv[1]) if argv[0] == "run" else ("advrec " + argv[0],)
    assert any(lines[0].startswith(f"{c}: error: ") for c in commands), (argv, err)
    for name in names:
        assert name in lines[0], (argv, name, err)
    assert not any(runners.values()), (argv, runners)
    return lines[0]


def reached(argv: List[str], capsys, runners, runner: str):
    """The arguments passed their checks: ``runner`` got the config, which is returned."""
    code, err = outcome(argv, capsys)
    assert code is None, (argv, code, err)
    assert len(runners[runner]) == 1, (argv, runners)
    config = runners[runner].pop()
    return config


QUICK = {"demo": ["demo", "--no-amr", "--no-cat", "--no-attack"], "certify": ["certify", "--quick"],
         "attack": ["attack", "--quick"], "run amr": ["run", "amr", "--quick"], "run cat": ["run", "cat", "--quick"]}


# ----------------------------------------------------------------------------- --out

@pytest.mark.parametrize("command", list(QUICK))
def test_out_that_is_a_file_is_refused_before_the_run(command, tmp_path, capsys, runners):
    afile = tmp_path / "results.txt"
    afile.write_text("not a directory")
    assert_refused(QUICK[command] + ["--out", str(afile)], capsys, runners, "--out", "not a directory")
    assert_refused(QUICK[command] + ["--out", str(afile / "sub")], capsys, runners, "--out", "cannot create")
    assert_refused(QUICK[command] + ["--out", ""], capsys, runners, "--out")
    assert afile.read_text() == "not a directory"


def test_out_that_is_a_new_or_existing_directory_is_accepted(tmp_path, capsys, runners):
    reached(QUICK["certify"] + ["--out", str(tmp_path / "new" / "deeper")], capsys, runners, "run_fm_certify")
    assert not (tmp_path / "new").exists()          # checked, not created, before the run
    reached(QUICK["attack"] + ["--out", str(tmp_path)], capsys, runners, "run_msap")


def test_out_where_a_report_file_would_go_is_a_directory(tmp_path, capsys, runners):
    (tmp_path / "msap.json").mkdir()
    assert_refused(QUICK["attack"] + ["--out", str(tmp_path)], capsys, runners, "--out", "msap.json")


# ----------------------------------------------------------------------------- seeds

@pytest.mark.parametrize("argv, flag", [
    (["demo", "--seed", "-1"], "--seed"), (["certify", "--seed", "-1"], "--seed"),
    (["attack", "--seeds", "0", "-3"], "--seeds"), (["run", "amr", "--seeds", "-1"], "--seeds"),
    (["run", "cat", "--seeds", "-1"], "--seeds"), (["demo", "--seed", str(2**31)], "--seed"),
    (["attack", "--seeds", str(10**30)], "--seeds"), (["run", "cat", "--seeds", "1", "1"], "--seeds"),
])
def test_negative_huge_or_repeated_seeds_are_refused(argv, flag, capsys, runners):
    assert_refused(argv, capsys, runners, flag)


# ----------------------------------------------------------------------------- --data, --features, --format

def test_missing_data_and_features_paths_are_refused(tmp_path, capsys, runners):
    missing = str(tmp_path / "nope.csv")
    feats = tmp_path / "f.npy"
    feats.write_bytes(b"")
    assert_refused(["attack", "--data", missing], capsys, runners, "--data", "no such file")
    assert_refused(["run", "cat", "--data", missing], capsys, runners, "--data", "no such file")
    assert_refused(["run", "amr", "--data", missing, "--features", str(feats)], capsys, runners, "--data")
    data = tmp_path / "ratings.csv"
    data.write_text("1,2,5\n")
    assert_refused(["run", "amr", "--data", str(data), "--features", str(tmp_path / "nope.npy")], capsys, runners,
                   "--features", "no such file")
    assert_refused(["run", "amr", "--features", str(tmp_path / "nope.npz")], capsys, runners, "--features")
    assert_refused(["run", "amr", "--features", str(data)], capsys, runners, "--features", ".npy or .npz")


def test_unknown_or_unguessable_format_is_refused(tmp_path, capsys, runners):
    data = tmp_path / "ratings.csv"
    data.write_text("1,2,5\n")
    assert_refused(["attack", "--data", str(data), "--format", "parquet"], capsys, runners, "--format", "parquet")
    assert_refused(["run", "cat", "--data", str(data), "--format", "xml"], capsys, runners, "--format")
    assert_refused(["attack", "--format", "csv"], capsys, runners, "--format", "--data")
    odd = tmp_path / "interactions.bin"
    odd.write_text("1,2,5\n")
    assert_refused(["attack", "--data", str(odd)], capsys, runners, "--data", "--format")
    assert_refused(["run", "cat", "--data", str(tmp_path)], capsys, runners, "--data", "--format")  # a plain dir
    config = reached(["attack", "--quick", "--data", str(odd), "--format", "csv"], capsys, runners, "run_msap")
    assert (config.data_path, config.data_format) == (str(odd), "csv")


def test_cli_formats_are_the_loaders():
    from advrec.data import FORMATS, guess_format

    assert cli.DATA_FORMATS == FORMATS and "csv" in FORMATS
    with pytest.raises(ValueError, match="cannot tell the format"):
        guess_format("r.txt")
    assert guess_format("ratings.dat.gz") == "ml-1m" and guess_format("a.jsonl") == "amazon"


def test_data_that_does_not_parse_ends_in_one_line(tmp_path, capsys, monkeypatch):
    """A malformed --data is found only when read: one line naming --data, exit 2, nothing trained."""
    monkeypatch.setattr(msap, "Trainer", lambda *a, **k: pytest.fail("training started"))
    data = tmp_path / "ratings.csv"
    data.write_text("hello world\n")
    code, err = outcome(["attack", "--quick", "--no-progress", "--data", str(data)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--data" in err and "separator" in err, err


def test_run_amr_without_features_needs_the_content_extra(capsys, runners, monkeypatch):
    import advrec.data.content as content

    monkeypatch.setattr(content, "content_extra_available", lambda: False)
    assert_refused(["run", "amr", "--quick"], capsys, runners, "--features", "content extra")


# ----------------------------------------------------------------------------- attack --steps

@pytest.mark.parametrize("quick", [[], ["--quick"]])
def test_attack_with_fewer_steps_than_the_acceptance_check_runs(quick, capsys, runners):
    for steps in (1, 10, 24):
        config = reached(["attack", *quick, "--steps", str(steps)], capsys, runners, "run_msap")
        config.validate()
        assert (config.steps, config.accept_steps) == (steps, steps)
    config = reached(["attack", *quick, "--steps", "40"], capsys, runners, "run_msap")
    assert (config.steps, config.accept_steps) == (40, 25)


def test_run_cat_with_a_short_sequence_keeps_the_substitutions_that_fit(capsys, runners):
    config = reached(["run", "cat", "--max-len", "2"], capsys, runners, "run_cat")
    config.validate()
    assert (config.max_len, config.last_k) == (2, (1, 2))
    config = reached(["run", "cat", "--quick", "--max-len", "2"], capsys, runners, "run_cat")
    assert config.last_k == (1,)
    config = reached(["run", "cat", "--quick"], capsys, runners, "run_cat")
    assert config.last_k == cat.CATConfig.quick().last_k


# ----------------------------------------------------------------------------- abbreviations

@pytest.mark.parametrize("argv", [["attack", "--q"], ["certify", "--q"], ["run", "amr", "--q"], ["run", "cat", "--qu"],
                                  ["demo", "--no-p"], ["demo", "--ep", "1"], ["attack", "--st", "3"]])
def test_abbreviated_flags_are_not_taken(argv, capsys, runners):
    assert_refused(argv, capsys, runners, "unrecognized arguments", argv[-1] if argv[-1].startswith("--")
                   else argv[-2])


def test_no_parser_allows_abbreviations():
    parser = cli.build_parser()
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    parsers = [parser, *subs[0].choices.values()]
    assert len(parsers) == 10 and all(not p.allow_abbrev for p in parsers)   # advrec + 9 commands


# ----------------------------------------------------------------------------- every flag, bad values

BAD = [
    # demo
    (["demo", "--epochs", "0"], "--epochs"), (["demo", "--epochs", "-5"], "--epochs"),
    (["demo", "--epochs", "x"], "--epochs"), (["demo", "--epochs", "1.5"], "--epochs"),
    (["demo", "--epochs", str(2**63)], "--epochs"), (["demo", "--seed", "nan"], "--seed"),
    (["demo", "--sampled", "-1"], "--sampled"), (["demo", "--sampled", "100000"], "--sampled"),
    (["demo", "--out"], "--out"),
    # certify
    (["certify", "--epochs", "0"], "--epochs"), (["certify", "--rt-epochs", "0"], "--rt-epochs"),
    (["certify", "--rt-epochs", "-1"], "--rt-epochs"), (["certify", "--node-budget", "0"], "--node-budget"),
    (["certify", "--node-budget", str(10**30)], "--node-budget"), (["certify", "--seed", ""], "--seed"),
    # attack
    (["attack", "--eps", "0"], "--eps"), (["attack", "--eps", "-0.5"], "--eps"), (["attack", "--eps", "nan"], "--eps"),
    (["attack", "--eps", "inf"], "--eps"), (["attack", "--eps", "1e39"], "--eps"), (["attack", "--eps", "x"], "--eps"),
    (["attack", "--steps", "0"], "--steps"), (["attack", "--steps", "-1"], "--steps"),
    (["attack", "--steps", str(2**64)], "--steps"), (["attack", "--norm", "l1"], "--norm"),
    (["attack", "--seeds"], "--seeds"), (["attack", "--seeds", "a"], "--seeds"),
    # run
    (["run", "cat", "--models"], "--models"), (["run", "cat", "--models", "BERT4Rec"], "--models"),
    (["run", "cat", "--models", "SASRec", "SASRec"], "--models"), (["run", "cat", "--max-len", "0"], "--max-len"),
    (["run", "cat", "--max-len", str(2**63)], "--max-len"), (["run", "cat", "--adv-epochs", "-2"], "--adv-epochs"),
    (["run", "cat", "--epochs", "0"], "--epochs"), (["run", "cat", "--eps", "-inf"], "--eps"),
    (["run", "cat", "--lam1", "nan"], "--lam1"), (["run", "cat", "--lam2", "-1"], "--lam2"),
    (["run", "cat", "--lam2", "1e300"], "--lam2"), (["run", "amr", "--amr-eps", "0"], "--amr-eps"),
    (["run", "amr", "--amr-eps", "inf"], "--amr-eps"), (["run", "amr", "--amr-lam", "-1"], "--amr-lam"),
    (["run", "amr", "--cold-share", "1"], "--cold-share"), (["run", "amr", "--cold-share", "nan"], "--cold-share"),
    (["run", "amr", "--seeds", "0", "0"], "--seeds"), (["run", "amr", "--epochs", "3"], "--epochs"),
    (["run", "cat", "--features", "f.npy"], "--features"),
]


@pytest.mark.parametrize("argv, flag", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_every_bad_value_is_one_line_naming_the_flag(argv, flag, capsys, runners):
    assert_refused(argv, capsys, runners, flag)


@pytest.mark.parametrize("argv", [["run"], ["run", "bert"], ["nonsense"], [], ["info", "--x"]])
def test_bad_commands_are_one_line(argv, capsys, runners):
    code, err = outcome(argv, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("advrec"), (argv, err)


def test_good_arguments_reach_the_runner_with_their_values(tmp_path, capsys, runners):
    config = reached(["demo", "--epochs", "3", "--seed", "7", "--sampled", "50", "--no-progress"], capsys, runners,
                     "run_baseline")
    assert (config.epochs, config.seed, config.sampled_negatives, config.progress) == (3, 7, 50, False)
    config = reached(["certify", "--quick", "--epochs", "2", "--rt-epochs", "1", "--node-budget", "9", "--seed",
                      str(2**31 - 1)], capsys, runners, "run_fm_certify")
    assert (config.epochs, config.rt_epochs, config.node_budget, config.seed, config.exact_models) == \
        (2, 1, 9, 2**31 - 1, ("FM",))
    config = reached(["attack", "--seeds", "3", "4", "--eps", "0.25", "--norm", "linf"], capsys, runners, "run_msap")
    assert (config.seeds, config.eps, config.norm, config.steps) == ((3, 4), 0.25, "linf", 150)
    config = reached(["run", "amr", "--seeds", "1", "--amr-eps", "2", "--amr-lam", "0", "--cold-share", "0"], capsys,
                     runners, "run_amr")
    assert (config.seeds, config.amr_eps, config.amr_lam, config.cold_share) == ((1,), 2.0, 0.0, 0.0)
    config = reached(["run", "cat", "--models", "GRU4Rec", "SASRec", "--lam1", "0"], capsys, runners, "run_cat")
    assert (config.models, config.lam1) == (("GRU4Rec", "SASRec"), 0.0)


def test_features_that_do_not_fit_end_in_one_line(tmp_path, capsys, monkeypatch):
    """--features with the wrong number of rows is found when read: one line naming --features."""
    import numpy as np

    monkeypatch.setattr(amr, "_run_seed", lambda *a, **k: pytest.fail("training started"))
    data = tmp_path / "ratings.csv"
    data.write_text("".join(f"{u},{i},5\n" for u in range(4) for i in range(3)))
    feats = tmp_path / "f.npy"
    np.save(feats, np.ones((7, 2), dtype=np.float32))
    code, err = outcome(["run", "amr", "--quick", "--no-progress", "--data", str(data), "--features", str(feats)],
                        capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--features" in err and "rows" in err, err
