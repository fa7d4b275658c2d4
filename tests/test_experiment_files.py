"""Experiments as YAML files (advrec.experiments.files, `advrec run FILE.yaml key=value`)."""
import dataclasses
import json

import pytest

from advrec.cli import main
from advrec.experiments import files


def test_shipped_files_are_the_defaults_and_the_quick_settings():
    shipped = {p.name for p in files.shipped()}
    assert len(shipped) == 2 * len(files.KINDS)
    for name, kind in files.KINDS.items():
        cls, _, _ = kind.load()
        assert {f"{kind.module}.yaml", f"{kind.module}-quick.yaml"} <= shipped
        full = files.resolve(files.CONFIG_DIR / f"{kind.module}.yaml")
        quick = files.resolve(files.CONFIG_DIR / f"{kind.module}-quick.yaml")
        assert full.experiment == quick.experiment == name
        assert full.config == cls() and quick.config == cls.quick()   # so the results are unchanged
        assert full.config != quick.config


def test_overrides_are_yaml_values_on_config_fields():
    spec = files.resolve(files.CONFIG_DIR / "gan.yaml", ["seeds=[4, 5]", "config.cfgan_lr=1e-3", "irgan_sampler=gumbel"])
    assert spec.config.seeds == (4, 5) and spec.config.cfgan_lr == 1e-3 and spec.config.irgan_sampler == "gumbel"
    assert isinstance(spec.config.cfgan_lr, float)        # YAML 1.1 reads 1e-3 as a string
    assert files.resolve({"experiment": "gan", "config": {"rhos": [1, "2e-1"]}}).config.rhos == (1.0, 0.2)
    rest = {k: v for k, v in dataclasses.asdict(spec.config).items() if k not in ("seeds", "cfgan_lr", "irgan_sampler")}
    assert rest == {k: v for k, v in dataclasses.asdict(files.resolve(files.CONFIG_DIR / "gan.yaml").config).items()
                    if k in rest}
    # quick=true starts from the quick settings; fields the source sets still win
    spec = files.resolve({"experiment": "gan", "config": {"seeds": [3]}}, ["quick=true"])
    assert spec.quick and spec.config.cfgan_epochs == 4 and spec.config.seeds == (3,)
    text = files.dump(spec)
    assert files.resolve(__import__("yaml").safe_load(text)) == spec


@pytest.mark.parametrize("source, overrides, message", [
    ({"experiment": "nope"}, [], "experiment: must be one of"),
    ({"experiment": "gan", "extra": 1}, [], "unknown top-level keys"),
    ({"experiment": "gan", "quick": "yes"}, [], "quick: must be true or false"),
    ({"experiment": "gan", "config": [1]}, [], "config: must be a mapping"),
    ({"experiment": "gan"}, ["seeds"], "expected key=value"),
    ({"experiment": "gan"}, ["epochs=3"], "GANConfig has no field"),
    ({"experiment": "gan"}, ["seeds=[]"], "seeds"),
    ({"experiment": "gan"}, ["cfgan_lr=fast"], "cfgan_lr: expected a number"),
    ({"experiment": "gan"}, ["rhos=[0.5, big]"], "rhos: expected a number"),
])
def test_bad_files_name_what_is_wrong(source, overrides, message):
    with pytest.raises(ValueError, match=message):
        files.resolve(source, overrides)


def test_unreadable_files(tmp_path):
    with pytest.raises(ValueError, match="no such experiment file"):
        files.resolve(tmp_path / "none.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="a mapping"):
        files.resolve(tmp_path / "list.yaml")


def _numbers(path):
    """The report's JSON without what a re-run cannot repeat: wall times and provenance."""
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in ("seconds", "provenance")}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x
    return strip(json.loads(path.read_text()))


def test_a_file_run_gives_the_flag_run_numbers(tmp_path, capsys):
    assert main(["run", "poison", "--quick", "--no-progress", "--out", str(tmp_path / "flags")]) == 0
    assert main(["run", str(files.CONFIG_DIR / "poison-quick.yaml"), "--no-progress",
                 "--out", str(tmp_path / "file")]) == 0
    assert _numbers(tmp_path / "file" / "poison.json") == _numbers(tmp_path / "flags" / "poison.json")


def test_cli_refuses_flags_and_overrides_in_the_wrong_mode(capsys):
    assert main(["run", str(files.CONFIG_DIR / "gan.yaml"), "--seeds", "0"]) == 2
    assert "--seeds does not apply to an experiment file" in capsys.readouterr().err
    assert main(["run", "gan", "seeds=[0]"]) == 2
    assert "apply to experiment files" in capsys.readouterr().err
    assert main(["run", "gann"]) == 2
    assert "EXPERIMENT must be one of" in capsys.readouterr().err
    assert main(["run", str(files.CONFIG_DIR / "gan.yaml"), "bogus=1"]) == 2
    assert "has no field ['bogus']" in capsys.readouterr().err


def test_rerun_of_a_report_gives_identical_numbers_and_names_a_changed_one(tmp_path, capsys):
    assert main(["run", "poison", "--quick", "--no-progress", "--out", str(tmp_path / "run")]) == 0
    report = tmp_path / "run" / "poison.json"
    capsys.readouterr()
    assert main(["rerun", str(report), "--out", str(tmp_path / "again")]) == 0
    assert "the same numbers" in capsys.readouterr().out
    assert _numbers(tmp_path / "again" / "poison.json") == _numbers(report)
    payload = json.loads(report.read_text())
    cell = payload["seeds"][0]["pools"]["unpopular"]["victims"]["UserKNN"]["cells"][0]
    key = next(k for k, v in cell.items() if isinstance(v, float) and "second" not in k)
    cell[key] += 0.5
    report.write_text(json.dumps(payload))
    assert main(["rerun", str(report)]) == 1
    out = capsys.readouterr().out
    assert "1 value(s) differ" in out and f"/cells[0]/{key}" in out


def test_rerun_of_some_seeds_compares_their_records_only(tmp_path, capsys):
    spec = {"experiment": "poison", "quick": True, "config": {
        "dataset": "synthetic:users=200,items=300,interactions=6000,rated=1,seed=1", "seeds": [0, 1],
        "n_targets": 2, "attacks": ["random"], "target_pools": ["all"]}}
    files.run(spec, out=tmp_path / "run")
    report = tmp_path / "run" / "poison.json"
    assert main(["rerun", str(report), "--seeds", "1"]) == 0
    out = capsys.readouterr().out
    assert "the same numbers as" in out and "for seeds [1]" in out
    payload = json.loads(report.read_text())
    payload["seeds"][0]["n_real_users"] += 1             # seed 0 is not re-run: not compared
    report.write_text(json.dumps(payload))
    assert files.rerun(report, seeds=[1])[1] == []
    payload["seeds"][1]["n_real_users"] += 1
    report.write_text(json.dumps(payload))
    assert files.rerun(report, seeds=[1])[1] == ["/seeds[0]/n_real_users: 201 != 200"]
    for bad in ([2], [1, 1], []):
        with pytest.raises(ValueError, match="seeds: must be distinct seeds of the report"):
            files.rerun(report, seeds=bad)


def test_differences_ignore_wall_times_and_provenance():
    old = {"a": [1.0, {"seconds": 3.0, "b": 2}], "provenance": {"x": 1}, "train_seconds": 5}
    new = {"a": [1.0, {"seconds": 4.0, "b": 2}], "provenance": {"x": 2}, "train_seconds": 6}
    assert files.differences(old, new) == []
    assert files.differences(old, {**new, "a": [1.0, {"b": 3}]}) == ["/a[1]/b: 2 != 3"]
    assert files.differences({"a": [1]}, {"a": [1, 2]}) == ["/a: 1 entries != 2"]
    assert files.differences({"a": 1}, {}) == ["/a: only in the old report"]


def test_rerun_refuses_what_is_not_a_report(tmp_path, capsys):
    assert main(["rerun", str(tmp_path / "none.json")]) == 2
    (tmp_path / "notes.json").write_text("{}")
    assert main(["rerun", str(tmp_path / "notes.json")]) == 2
    assert "named after its experiment" in capsys.readouterr().err
    (tmp_path / "gan.json").write_text("[1]")
    with pytest.raises(ValueError, match="not a report"):
        files.rerun(tmp_path / "gan.json")
