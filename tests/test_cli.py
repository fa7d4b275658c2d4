"""The advrec command: info reports the build, demo runs end to end and writes its results."""
import json

import pytest

from advrec.cli import main


def test_info_prints_the_build(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "compiler" in out and "openmp_threads" in out and "cuda_built" in out


def test_demo_one_epoch_writes_results(tmp_path, capsys):
    assert main(["demo", "--epochs", "1", "--no-progress", "--no-amr", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "BPR-MF" in out and "Pop" in out and "HR@10" in out
    saved = json.loads((tmp_path / "demo.json").read_text())
    models = [r["model"] for r in saved["rows"]]
    assert models == ["Pop", "BPR-MF"]
    for row in saved["rows"]:
        assert 0.0 <= row["HR@10"] <= 1.0 and 0.0 <= row["nDCG@10"] <= row["HR@10"]


def test_demo_amr_part(tmp_path, capsys, monkeypatch):
    """With the content extra the demo trains VBPR and AMR on the text features; without it, it
    says why it skipped them and still succeeds."""
    import advrec.data.content as content

    if content.content_extra_available():
        assert main(["demo", "--epochs", "1", "--no-progress", "--no-attack", "--out", str(tmp_path)]) == 0
        saved = json.loads((tmp_path / "demo.json").read_text())
        assert [r["model"] for r in saved["amr"][:2]] == ["VBPR", "AMR"]
        assert "Relative nDCG@10 drop" in capsys.readouterr().out
    monkeypatch.setattr(content, "content_extra_available", lambda: False)
    assert main(["demo", "--epochs", "1", "--no-progress", "--no-attack", "--out", str(tmp_path)]) == 0
    assert "AMR demo skipped" in capsys.readouterr().out
    assert json.loads((tmp_path / "demo.json").read_text())["amr"] == []


def test_run_amr_rejects_bad_settings(capsys):
    assert main(["run", "amr", "--amr-eps", "-1", "--no-progress"]) == 2
    assert "amr_eps" in capsys.readouterr().err
    assert main(["run", "amr", "--data", "ratings.csv", "--no-progress"]) == 2
    assert "features_path" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "nonsense"])


def test_bad_arguments_exit_nonzero(capsys):
    assert main(["demo", "--epochs", "0"]) == 2
    with pytest.raises(SystemExit):
        main(["nonsense"])
