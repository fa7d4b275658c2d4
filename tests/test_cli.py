"""The advrec command: info reports the build, demo runs end to end and writes its results."""
import json
import re
from pathlib import Path

import pytest

from advrec.cli import main


def test_info_prints_the_build(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "compiler" in out and "openmp_threads" in out and "cuda_built" in out


def test_demo_one_epoch_writes_results(tmp_path, capsys):
    assert main(["demo", "--epochs", "1", "--no-progress", "--no-amr", "--no-cat", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "BPR-MF" in out and "Pop" in out and "HR@10" in out
    saved = json.loads((tmp_path / "demo.json").read_text())
    models = [r["model"] for r in saved["rows"]]
    assert models == ["Pop", "BPR-MF"]
    assert saved["cat"] == [] and "CAT demo" not in out   # --no-cat
    for row in saved["rows"]:
        assert 0.0 <= row["HR@10"] <= 1.0 and 0.0 <= row["nDCG@10"] <= row["HR@10"]


def test_demo_amr_part(tmp_path, capsys, monkeypatch):
    """With the content extra the demo trains VBPR and AMR on the text features; without it, it
    says why it skipped them and still succeeds."""
    import advrec.data.content as content

    if content.content_extra_available():
        assert main(["demo", "--epochs", "1", "--no-progress", "--no-attack", "--no-cat", "--out", str(tmp_path)]) == 0
        saved = json.loads((tmp_path / "demo.json").read_text())
        assert [r["model"] for r in saved["amr"][:2]] == ["VBPR", "AMR"]
        assert "Relative nDCG@10 drop" in capsys.readouterr().out
    monkeypatch.setattr(content, "content_extra_available", lambda: False)
    assert main(["demo", "--epochs", "1", "--no-progress", "--no-attack", "--no-cat", "--out", str(tmp_path)]) == 0
    assert "AMR demo skipped" in capsys.readouterr().out
    assert json.loads((tmp_path / "demo.json").read_text())["amr"] == []


def test_run_amr_rejects_bad_settings(capsys):
    assert main(["run", "amr", "--amr-eps", "-1", "--no-progress"]) == 2
    assert "amr_eps" in capsys.readouterr().err
    assert main(["run", "amr", "--data", "ratings.csv", "--no-progress"]) == 2
    assert "features_path" in capsys.readouterr().err
    assert main(["run", "nonsense"]) == 2          # a name or an experiment file (.yaml)
    assert "EXPERIMENT must be one of" in capsys.readouterr().err


def test_demo_cat_part(tmp_path, capsys):
    """The demo's quick CAT run: SASRec base and adv_cas, clean and with the last item replaced."""
    assert main(["demo", "--epochs", "1", "--no-progress", "--no-attack", "--no-amr", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "CAT demo" in out and "adv_cas" in out
    # issue 15: the total comes last, after every part; the first part reports its own time
    assert out.index("baselines ") < out.index("CAT demo") < out.index("whole demo")
    assert out.count("whole demo") == 1
    assert "nan" not in out and "NDCG" not in out and "HT@" not in out
    assert re.search(r"\d+\.\d%", out.split("CAT demo")[0].split("SASRec on ML-100K")[1])  # drops in %
    saved = json.loads((tmp_path / "demo.json").read_text())
    assert [r["training"] for r in saved["cat"]] == ["base", "adv_cas"]
    for row in saved["cat"]:
        assert 0.0 <= row["nDCG@10"] <= row["HR@10"] <= 1.0
        assert row["nDCG@10 drop %, last item replaced"] <= 100.0 and row["HR@10 drop %, last item replaced"] <= 100.0
    assert "adv_cas" in (tmp_path / "demo.md").read_text()


def test_run_cat_quick_writes_its_report(tmp_path, capsys):
    assert main(["run", "cat", "--quick", "--seeds", "0", "--models", "GRU4Rec", "--epochs", "2", "--adv-epochs",
                 "1", "--max-len", "8", "--eps", "5", "--lam1", "0.5", "--lam2", "2", "--no-progress",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "advrec run cat" in out and "Table 3" in out and "Acceptance" in out
    saved = json.loads((tmp_path / "cat.json").read_text())
    cfg = saved["config"]
    assert (cfg["seeds"], cfg["models"], cfg["epochs"], cfg["adv_epochs"], cfg["max_len"], cfg["eps"]) == \
        ([0], ["GRU4Rec"], 2, 1, 8, 5.0)
    assert (cfg["lam1"], cfg["lam2"]) == (0.5, 2.0)
    assert cfg["methods"] == ["adv_cas"] and cfg["component_models"] == [] and cfg["sweep_eps"] == []  # --quick
    methods = saved["seeds"][0]["models"]["GRU4Rec"]["methods"]
    assert set(methods) == {"base", "adv_cas"} and methods["base"]["epochs"] == 2
    md = (tmp_path / "cat.md").read_text()
    assert md.startswith("# CAT on")
    # issue 15: a report records what produced it and never a local cache path
    prov = saved["provenance"]
    assert prov["advrec"] and prov["python"] and prov["torch"] and prov["cpu"] and prov["cores"] >= 1
    assert len(prov["data_sha256"]) == 64 and prov["finished"].endswith("Z")
    assert md.rstrip().splitlines()[-1].startswith("Run: advrec ")
    assert str(Path.home()) not in md and ".cache" not in json.dumps(saved)


def test_run_rejects_the_other_experiments_flags(capsys):
    for argv, flag, owner in [(["run", "cat", "--amr-eps", "1"], "--amr-eps", "amr"),
                              (["run", "cat", "--features", "f.npy", "--cold-share", "0.1"], "--cold-share", "amr"),
                              (["run", "amr", "--models", "SASRec"], "--models", "cat"),
                              (["run", "amr", "--eps", "1"], "--eps", "cat"),
                              (["run", "amr", "--adv-epochs", "3", "--max-len", "20"], "--max-len", "cat"),
                              (["run", "amr", "--epochs", "3"], "--epochs", "cat"),
                              (["run", "amr", "--lam1", "1"], "--lam1", "cat")]:
        assert main(argv + ["--no-progress"]) == 2, argv
        err = capsys.readouterr().err
        assert flag in err and f"advrec run {owner}" in err, err


def test_run_cat_rejects_bad_settings(capsys):
    for argv, name in [(["--eps", "-1"], "eps"), (["--models", "BERT4Rec"], "models"), (["--max-len", "0"], "max_len"),
                       (["--adv-epochs", "0"], "adv_epochs"), (["--quick", "--eps", "nan"], "eps"),
                       (["--lam1", "-1"], "lam1"), (["--lam2", "inf"], "lam2")]:
        assert main(["run", "cat", "--no-progress"] + argv) == 2, argv
        err = capsys.readouterr().err
        assert "advrec run cat: error" in err and name in err, err
    assert main(["run", "cat", "--epochs", "0"]) == 2
    assert "--epochs must be >= 1" in capsys.readouterr().err


def test_bad_arguments_exit_nonzero(capsys):
    assert main(["demo", "--epochs", "0"]) == 2
    with pytest.raises(SystemExit):
        main(["nonsense"])


def test_demo_poison_part(tmp_path, capsys):
    """The demo's quick poisoning run (issue 16): ExplicitMF, random and average fake profiles at
    5%, 3 unpopular targets; the table, its time, and the rows in demo.json / demo.md."""
    assert main(["demo", "--epochs", "1", "--no-progress", "--no-attack", "--no-amr", "--no-cat",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.index("baselines ") < out.index("poisoning demo") < out.index("whole demo")
    part = out.split("Poisoning ML-100K")[1].split("poisoning demo")[0]
    assert "ExplicitMF" in part and "target HR@50 before → after" in part and "pred. shift" in part
    assert re.search(r"poisoning demo \d+\.\d s", out) and "nan" not in part
    saved = json.loads((tmp_path / "demo.json").read_text())
    assert [(r["victim"], r["attack"], r["fake users"]) for r in saved["poison"]] == \
        [("ExplicitMF", "random", 47), ("ExplicitMF", "average", 47)]
    for row in saved["poison"]:
        assert 0.0 <= row["target HR@50 before"] < row["target HR@50 after"] <= 1.0   # pushed
        assert row["pred. shift"] > 0 and row["refit s"] > 0
    assert "average" in (tmp_path / "demo.md").read_text()


def test_demo_poison_part_is_checked_and_can_be_skipped():
    """Its config is built and validated with the others before any work; --no-poison drops it."""
    from advrec.cli import _check_demo, build_parser

    config = _check_demo(build_parser().parse_args(["demo", "--seed", "7"]))["poison"]
    assert (config.seeds, config.victims, config.attacks, config.sizes, config.n_targets, config.target_pools) == \
        ((7,), ("ExplicitMF",), ("random", "average"), (0.05,), 3, ("unpopular",))
    assert _check_demo(build_parser().parse_args(["demo", "--no-poison"]))["poison"] is None
