"""The typed result records against the committed reports: every ``docs/results/*/*.json`` is
rebuilt into its typed result (``result_from_json``) and written again by the report's own
writers, and the bytes must be the committed ones (JSON, and the Markdown derived from it).
(amr.json/.md were re-rendered from their own numbers once, in issue 14, because their
acceptance block still carried an earlier wording of the same checks and verdicts.)"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from advrec.experiments import amr_report, cat_report, fm_certify_report, msap_report
from advrec.experiments.records import Check, TrainingRecord

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
REPORTS = {"msap": msap_report, "amr": amr_report, "cat": cat_report}


def _committed(name: str, suffix: str) -> str:
    path = RESULTS / name / f"{name}.{suffix}"
    if not path.exists():
        pytest.skip(f"{path} is not in this checkout")
    return path.read_text()


@pytest.mark.parametrize("name", ["msap", "amr", "cat"])
def test_json_and_markdown_round_trip_byte_for_byte(name):
    report, raw = REPORTS[name], _committed(name, "json")
    result = report.result_from_json(json.loads(raw))
    assert report.report_json(result) == raw                     # the checks recomputed from the records
    assert report.report_markdown(result) == _committed(name, "md")


@pytest.mark.parametrize("name", ["msap", "amr", "cat", "fm_certify"])
def test_quick_reports_round_trip_byte_for_byte(name):
    """The committed quick runs (``docs/results/<name>/quick/``, from the shipped ``<name>-quick.yaml``)."""
    report = {**REPORTS, "fm_certify": fm_certify_report}[name]
    folder = RESULTS / name / "quick"
    if not (folder / f"{name}.json").exists():
        pytest.skip(f"{folder} is not in this checkout")
    raw = (folder / f"{name}.json").read_text()
    result = report.result_from_json(json.loads(raw))
    assert report.report_json(result) == raw
    assert report.report_markdown(result) == (folder / f"{name}.md").read_text()
    assert json.loads(raw)["provenance"]["config_sha256"]


def test_recorded_checks_read_back_as_written():
    for name, report in REPORTS.items():
        payload = json.loads(_committed(name, "json"))
        result = report.result_from_json(payload)
        assert report.checks_from_json(payload) == report.acceptance(result), name


def test_fm_certify_round_trip_byte_for_byte():
    raw = _committed("fm_certify", "json")
    result = fm_certify_report.result_from_json(json.loads(raw))
    assert fm_certify_report.report_json(result) == raw
    assert fm_certify_report.report_markdown(result) == _committed("fm_certify", "md")


def test_records_are_frozen_and_typed():
    result = cat_report.result_from_json(json.loads(_committed("cat", "json")))
    seed = result.seeds[0]
    base = seed.models["SASRec"].methods["base"]
    assert base.is_base and base.p_vs_base is None and base.substitution["last"].n_replaced > 0
    with pytest.raises(AttributeError):
        base.epochs = 0  # type: ignore[misc]
    msap = msap_report.result_from_json(json.loads(_committed("msap", "json")))
    assert msap.seeds[0].models["BPR-MF"].conditions["clean"].groups["item_pop"].fairness["MADR"] >= 0
    assert isinstance(msap.seeds[0].training["AMF"], TrainingRecord)
    fm = fm_certify_report.result_from_json(json.loads(_committed("fm_certify", "json")))
    assert fm.table[0].model == "FM" and fm.unknown_share("FM", "paper", 1) == fm.share("FM", "paper", 1).unknown


def test_check_reads_and_writes_both_spellings():
    c = Check("a check", None, "1 vs 2", "a > b")
    assert c.to_row() == {"check": "a check", "measured": "1 vs 2", "target": "a > b", "holds": None}
    assert c.to_dict() == {"name": "a check", "passed": None, "detail": "1 vs 2"}
    assert Check.from_dict(c.to_row()) == c
    assert Check.from_dict(c.to_dict()) == Check("a check", None, "1 vs 2")
    assert (c.verdict(), Check("x", True, "").verdict(), Check("x", False, "").verdict()) == ("n/a", "yes", "NO")


def test_training_record_keeps_only_what_it_knows():
    assert TrainingRecord(pretrained=True).to_dict() == {"pretrained": True}
    assert TrainingRecord(seconds=0.0).to_dict() == {"seconds": 0.0}
    assert TrainingRecord(30, None, 1.5).to_dict() == {"epochs": 30, "seconds": 1.5}
    for d in ({"pretrained": True}, {"seconds": 0.0}, {"epochs": 3, "best_epoch": 2, "seconds": 1.0}):
        assert TrainingRecord.from_dict(d).to_dict() == d
