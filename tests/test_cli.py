"""The advrec command: info reports the build, demo runs end to end and writes its results."""
import json

import pytest

from advrec.cli import main


def test_info_prints_the_build(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "compiler" in out and "openmp_threads" in out and "cuda_built" in out


def test_demo_one_epoch_writes_results(tmp_path, capsys):
    assert main(["demo", "--epochs", "1", "--no-progress", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "BPR-MF" in out and "Pop" in out and "HR@10" in out
    saved = json.loads((tmp_path / "demo.json").read_text())
    models = [r["model"] for r in saved["rows"]]
    assert models == ["Pop", "BPR-MF"]
    for row in saved["rows"]:
        assert 0.0 <= row["HR@10"] <= 1.0 and 0.0 <= row["nDCG@10"] <= row["HR@10"]


def test_bad_arguments_exit_nonzero(capsys):
    assert main(["demo", "--epochs", "0"]) == 2
    with pytest.raises(SystemExit):
        main(["nonsense"])
