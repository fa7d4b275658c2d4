"""Grids of experiment cells (advrec.experiments.grid): expansion, the per-cell cache, resuming
after an interruption, parallel cells with the same numbers, and the CLI."""
import json

import pytest

from advrec.cli import main
from advrec.experiments import files
from advrec.experiments.grid import run_grid

GRID = {"experiment": "poison", "quick": True,
        "grid": {"attacks": [["random"], ["average"]], "sizes": [[0.03], [0.05]]}}


def test_a_grid_expands_to_every_combination_in_file_order():
    spec = files.resolve(GRID)
    cells = spec.cells()
    assert [v for v, _ in cells] == [{"attacks": ("random",), "sizes": (0.03,)}, {"attacks": ("random",), "sizes": (0.05,)},
                                     {"attacks": ("average",), "sizes": (0.03,)}, {"attacks": ("average",), "sizes": (0.05,)}]
    assert all(c.attacks == v["attacks"] and c.sizes == v["sizes"] for v, c in cells)
    assert files.resolve({"experiment": "poison"}).cells()[0][0] == {}       # no grid: one cell
    again = files.resolve(files.dump(spec) and __import__("yaml").safe_load(files.dump(spec)))
    assert again == spec


@pytest.mark.parametrize("grid, message", [
    ({"bogus": [1]}, "grid: PoisonConfig has no field"),
    ({"sizes": []}, "non-empty list"),
    ({"sizes": 0.05}, "non-empty list"),
    ({"sizes": [[0.05], [-1.0]]}, "grid cell"),
])
def test_bad_grids_are_refused_before_any_run(grid, message):
    with pytest.raises(ValueError, match=message):
        files.resolve({**GRID, "grid": grid})
    with pytest.raises(ValueError, match="workers"):
        files.resolve({**GRID, "workers": 0})


def _same_numbers(a, b):
    """Two report JSONs hold the same values (wall times and provenance aside)."""
    return files.differences(json.loads(a.read_text()), json.loads(b.read_text())) == []


def test_cells_are_cached_and_an_interrupted_grid_resumes(tmp_path):
    spec = files.resolve(GRID)
    first = run_grid(spec, tmp_path)
    assert [r["status"] for r in first] == ["computed"] * 4
    reports = {r["folder"]: (tmp_path / r["folder"] / "poison.json") for r in first}
    stamps = {k: p.stat().st_mtime_ns for k, p in reports.items()}
    # a cell's numbers are those of a plain run of its config
    values, config = spec.cells()[1]
    direct = files.run(files.ExperimentFile("poison", False, config), out=tmp_path / "direct")
    assert direct.config == config
    assert _same_numbers(reports[first[1]["folder"]], tmp_path / "direct" / "poison.json")
    # interrupted: one cell lost, another left half-written
    import shutil
    shutil.rmtree(tmp_path / first[2]["folder"])
    (tmp_path / "cells" / "deadbeef0000.partial").mkdir()
    second = run_grid(spec, tmp_path)
    assert [r["status"] for r in second] == ["found", "found", "computed", "found"]
    assert not list((tmp_path / "cells").glob("*.partial"))
    for k in (first[0]["folder"], first[1]["folder"], first[3]["folder"]):
        assert reports[k].stat().st_mtime_ns == stamps[k]                  # not recomputed
    summary = json.loads((tmp_path / "grid.json").read_text())
    assert len(summary["cells"]) == 4 and (tmp_path / "grid.md").read_text().startswith("Grid of `poison`")


def test_parallel_cells_give_the_same_numbers(tmp_path):
    two = {**GRID, "grid": {"attacks": [["random"], ["average"]]}}
    run_grid(files.resolve(two), tmp_path / "one")
    run_grid(files.resolve({**two, "workers": 2}), tmp_path / "two")
    for cell in (tmp_path / "one" / "cells").iterdir():
        assert _same_numbers(cell / "poison.json", tmp_path / "two" / "cells" / cell.name / "poison.json")


def test_cli_grid_needs_out_and_takes_overrides_after_options(tmp_path, capsys):
    path = tmp_path / "grid.yaml"
    path.write_text(files.dump(files.resolve(GRID)))
    assert main(["run", str(path)]) == 2
    assert "a grid needs --out" in capsys.readouterr().err
    assert main(["run", str(path), "--no-progress", "--out", str(tmp_path / "g"), "grid.sizes=[[0.05]]"]) == 0
    out = capsys.readouterr().out
    assert "2 cells, 2 computed" in out


def test_leaderboard_pairs_each_target_clean_and_attacked(tmp_path, capsys):
    import numpy as np

    from advrec.experiments import leaderboard

    spec = files.resolve(GRID)
    records = run_grid(spec, tmp_path)
    rows = leaderboard.poison_rows(tmp_path)
    assert len(rows) == 4 and [r["change"] for r in rows] == sorted((r["change"] for r in rows), reverse=True)
    # by hand for one row, from the cell's own report
    cell = next(r for r in records if r["values"] == {"attacks": ("average",), "sizes": (0.05,)})
    report = json.loads((tmp_path / cell["folder"] / "poison.json").read_text())
    clean, after = [], []
    for pool in report["seeds"][0]["pools"].values():
        rec = pool["victims"]["UserKNN"]
        clean += rec["clean"]["exposure"]["HR@50"]
        after += next(c for c in rec["cells"] if c["attack"] == "average")["exposure"]["HR@50"]
    row = next(r for r in rows if r["attack"] == "average" and r["size"] == 0.05)
    assert row["pairs"] == len(clean) == 6
    assert row["clean"] == pytest.approx(np.mean(clean)) and row["attacked"] == pytest.approx(np.mean(after))
    assert np.isnan(row["p (Wilcoxon)"]) or 0.0 <= row["p (Wilcoxon)"] <= 1.0
    assert main(["report", str(tmp_path)]) == 0
    assert "most successful attacks first" in capsys.readouterr().out
    assert (tmp_path / "leaderboard.md").read_text().startswith("# Leaderboard")


ATTACK_GRID = {"experiment": "attack", "config": {
    "seeds": [0], "epochs": 2, "patience": 2, "amf_epochs": 2, "amf_patience": 2, "steps": 3, "accept_steps": 2,
    "sweep_eps": [], "progress": False}, "grid": {"eps": [0.5, 2.0], "seeds": [[0], [1]]}}


def test_attack_leaderboard_pairs_users_across_seeds(tmp_path, capsys):
    import numpy as np

    from advrec.experiments import leaderboard
    from advrec.metrics.significance import wilcoxon

    records = run_grid(files.resolve(ATTACK_GRID), tmp_path)
    assert len(records) == 4
    rows = leaderboard.attack_rows(tmp_path)
    # 2 models x 4 attacks (random, FGSM, BIM, PGD) x 2 budgets, the seeds pooled
    assert len(rows) == 16 and {r["setting"] for r in rows} == {"-"}
    assert [r["relative drop"] for r in rows] == sorted((r["relative drop"] for r in rows), reverse=True)
    clean, after = [], []
    for rec in records:
        if rec["values"]["eps"] == 2.0:
            seed = json.loads((tmp_path / rec["folder"] / "msap.json").read_text())["seeds"][0]
            conditions = seed["models"]["AMF"]["conditions"]
            clean += conditions["clean"]["user_nDCG"]
            after += conditions["FGSM"]["user_nDCG"]
            assert np.mean(conditions["clean"]["user_nDCG"]) == pytest.approx(conditions["clean"]["metrics"]["nDCG"],
                                                                               abs=1e-6)
    row = next(r for r in rows if (r["model"], r["attack"], r["eps"]) == ("AMF", "FGSM", 2.0))
    assert row["pairs"] == len(clean) == 2 * 943
    assert row["drop"] == pytest.approx(np.mean(clean) - np.mean(after))
    assert row["relative drop"] == pytest.approx(row["drop"] / np.mean(clean))
    assert row["p (Wilcoxon)"] == pytest.approx(wilcoxon(np.array(after), np.array(clean))[1], nan_ok=True)
    strong = next(r for r in rows if (r["model"], r["attack"], r["eps"]) == ("BPR-MF", "PGD", 2.0))
    weak = next(r for r in rows if (r["model"], r["attack"], r["eps"]) == ("BPR-MF", "random", 0.5))
    assert strong["drop"] > weak["drop"]
    assert main(["report", str(tmp_path)]) == 0
    assert "most damaging first" in capsys.readouterr().out
    import re
    board = (tmp_path / "leaderboard.md").read_text()
    assert len(re.findall(r"^\| (AMF|BPR-MF) +\|", board, flags=re.M)) == 16
    with pytest.raises(ValueError, match="metric"):
        leaderboard.attack_rows(tmp_path, "HR@50")


def test_leaderboard_refuses_other_grids(tmp_path, capsys):
    from advrec.experiments import leaderboard

    (tmp_path / "grid.json").write_text(json.dumps({"experiment": "gan", "cells": []}))
    with pytest.raises(ValueError, match="poisoning and embedding-attack grids"):
        leaderboard.rows_of(tmp_path)
    with pytest.raises(ValueError, match="not a poisoning grid"):
        leaderboard.poison_rows(tmp_path)
    with pytest.raises(ValueError, match="not an embedding-attack grid"):
        leaderboard.attack_rows(tmp_path)
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "no grid.json" in capsys.readouterr().err
