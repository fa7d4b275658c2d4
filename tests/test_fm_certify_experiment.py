"""The FM certification experiment end to end on the real ML-100K, scaled down (one epoch each)."""
from __future__ import annotations

import json

import pytest

from advrec.cli import main
from advrec.experiments.fm_certify import FMCertifyConfig, run_fm_certify
from advrec.experiments.fm_certify_report import render_text, write_report


@pytest.fixture(scope="module")
def small_run():
    config = FMCertifyConfig(epochs=1, rt_epochs=1, rt_qs=(2,), eval_qs=(1, 2), attack_qs=(1, 2),
                             exact_models=("FM",), max_q_cap=4, node_budget=2000, progress=False,
                             rfm2_eps1=(1.0, 0.5), rfm2_eps2=(0.1,), rfm2_epochs=1)
    return run_fm_certify(config)


def test_tables_have_every_model_method_and_budget(small_run):
    result, models = small_run
    assert [r.model for r in result.table] == ["FM", "RFM-1", "RFM-2", "FM-RT-2"] == list(models)
    # RFM-2: one trial per (eps1, eps2), the best validation accuracy chosen (the first on a tie)
    trials = result.rfm2_search
    assert [(t["eps1"], t["eps2"]) for t in trials] == [(1.0, 0.1), (0.5, 0.1)]
    best = max(t["valid accuracy"] for t in trials)
    assert [t["chosen"] for t in trials] == [t["valid accuracy"] == best and
                                             all(u["valid accuracy"] < best for u in trials[:i])
                                             for i, t in enumerate(trials)]
    for row in result.table:
        assert 50 < row.accuracy < 100
        assert 0 <= row.avg_max_q["paper"] <= row.avg_max_q["best"] <= 4
    for model in models:
        for method in ("paper", "joint", "best"):
            for q in (1, 2):
                r = next(s for s in result.shares if (s.model, s.method, s.q) == (model, method, q))
                assert r.robust + r.non_robust + r.unknown == pytest.approx(1.0)
    # exact only where configured, and it never leaves more unknowns than best
    assert {s.model for s in result.shares if s.method == "exact"} == {"FM"}
    for q in (1, 2):
        assert result.unknown_share("FM", "exact", q) <= result.unknown_share("FM", "best", q)
        assert result.unknown_share("FM", "best", q) <= result.unknown_share("FM", "paper", q)
    for a in result.attacks:
        assert 0 <= a.random <= 1 and 0 <= a.greedy <= 1


def test_report_files(small_run, tmp_path):
    result, _ = small_run
    files = write_report(result, tmp_path)
    names = {f.name for f in files}
    assert {"fm_certify.json", "fm_certify.md", "fig5_robust.png", "fig2_FM.png"} <= names
    assert json.loads((tmp_path / "fm_certify.json").read_text())["table"][0]["model"] == "FM"
    assert all(f.stat().st_size > 0 for f in files)
    text = render_text(result)
    assert "avg-max q (best)" in text and "Figure 2" in text and "RFM-2 (capped l1 loss" in text


def test_cli_rejects_bad_flags(capsys):
    assert main(["certify", "--rt-epochs", "0"]) == 2
    assert "--rt-epochs" in capsys.readouterr().err
