"""The CAT experiment's report and runner: every table recomputed here from a hand-built 2-seed
record (the shape ``run_cat`` produces), the acceptance checks both ways, strict JSON that
round-trips, the Markdown and the figures; configuration errors; and tiny end-to-end runs on
ML-100K whose records must have exactly the hand-built record's shape."""
import copy
import dataclasses
import json
import math

import numpy as np
import pytest

from advrec.experiments import cat_report
from advrec.experiments.cat import CATConfig, CATResult, CATSeed, run_cat
from advrec.experiments.records import Check
from advrec.report import have_matplotlib

ALL_METHODS = ("adv_linear", "adv_seq", "adv_global", "adv_cas")
#: the methods trained on from the base: the plain-loss control first, as Table 3 lists them
TRAINED_ON = ("continued",) + ALL_METHODS
KS = (1, 2, 3)
WHERES = ("first", "middle", "last", "last_2", "last_3")


def _subst(clean, rng, scale):
    """One substitution block: attacked metrics, replaced count and the relative drop."""
    out = {}
    for where in WHERES:
        frac = {"first": 0.02, "middle": 0.04, "last": 0.25, "last_2": 0.35, "last_3": 0.45}[where] * scale
        attacked = {m: v * (1 - frac * rng.uniform(0.8, 1.2)) for m, v in clean.items()}
        out[where] = {"metrics": attacked, "n_replaced": 943 * (int(where[-1]) if where[-1].isdigit() else 1),
                      "drop": {m: (clean[m] - attacked[m]) / clean[m] for m in clean}}
    out["last_1"] = out["last"]
    return out


def _fit(rng, epochs, every, start, test, seconds):
    curve = [(e, float(start + 0.001 * e + rng.normal(0, 0.002))) for e in range(every, epochs + 1, every)]
    best = max(range(len(curve)), key=lambda i: curve[i][1])
    return {"epochs": epochs, "best_epoch": curve[best][0] - 1, "valid": curve[best][1], "curve": curve,
            "seconds_per_epoch": seconds * rng.uniform(0.9, 1.1), "test": test}


def build_result() -> CATResult:
    """Two seeds, SASRec and GRU4Rec, every method, Table 4 for SASRec, the eps sweep on seed 0:
    adv_cas beats base and loses least to the last item, as the acceptance wants."""
    cfg = CATConfig(seeds=(0, 1), epochs=40, eval_every=5, adv_epochs=6, adv_eval_every=2,
                    sweep_eps=(1.0, 20.0), eps=10.0, sweep_seeds=(0,), last_k=KS)
    rng = np.random.default_rng(7)
    gain = {"continued": 1.03, "adv_linear": 1.05, "adv_seq": 1.02, "adv_global": 1.06, "adv_cas": 1.10}
    seeds = []
    for seed in cfg.seeds:
        models = {}
        for model in cfg.models:
            base_test = {"nDCG@10": 0.05 + rng.uniform(0, 0.01), "HR@10": 0.1 + rng.uniform(0, 0.02)}
            base = _fit(rng, 35, 5, 0.05, base_test, 0.5)
            base["substitution"] = _subst(base_test, rng, 1.0)
            methods = {"base": base}
            for method in TRAINED_ON:
                test = {m: v * gain[method] * rng.uniform(0.99, 1.01) for m, v in base_test.items()}
                entry = _fit(rng, 6, 2, base["valid"], test, 1.5)
                entry["p_vs_base"] = {m: float(rng.uniform(0, 0.2)) for m in test}
                entry["substitution"] = _subst(test, rng, 0.6 if method == "adv_cas" else 0.9)
                methods[method] = entry
            rec = {"methods": methods}
            if model in cfg.component_models:
                rec["components"] = {label: _fit(rng, 6, 2, base["valid"],
                                                 {m: v * 1.07 * rng.uniform(0.99, 1.01) for m, v in base_test.items()}, 1.5)
                                     for label in ("adv_cas_1", "adv_cas_2")}
            if seed in cfg.sweep_seeds:
                rec["sweep"] = {repr(float(e)): _fit(rng, 6, 2, base["valid"],
                                                     {m: v * (1.03 if e == 1.0 else 0.97) for m, v in base_test.items()},
                                                     1.5) for e in cfg.sweep_eps}
            rec["seconds"] = float(rng.uniform(50, 60))
            models[model] = rec
        seeds.append({"seed": seed, "models": models})
    return CATResult(config=cfg, data="hand-built", seeds=[CATSeed.from_dict(s) for s in seeds], seconds=321.0)


@pytest.fixture
def result():
    return build_result()


def _ms(values, digits=4):
    v = np.asarray(values, dtype=np.float64)
    return f"{v.mean():.{digits}f}" if len(v) == 1 else f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def _get(result, model, method, *path):
    out = []
    for s in result.seeds:
        x = s.models[model].methods[method]
        for key in path:
            x = x[key] if isinstance(x, dict) else getattr(x, key)
        out.append(x)
    return np.asarray(out, dtype=np.float64)


# ----------------------------------------------------------------------------- tables

def test_table3_recomputed(result):
    rows = cat_report.table3(result)
    assert [(r["model"], r["method"]) for r in rows] == [(m, k) for m in ("SASRec", "GRU4Rec")
                                                        for k in ("base",) + TRAINED_ON]
    for row in rows:
        model, method = row["model"], row["method"]
        for key, name in (("nDCG@10", "nDCG@10"), ("HR@10", "HR@10")):
            values = _get(result, model, method, "test", key)
            assert row[name] == _ms(values)
            if method == "base":
                assert row[f"{name} vs. base"] == "-" and row[f"p vs base ({name})"] == "-"
                continue
            base = _get(result, model, "base", "test", key).mean()
            assert row[f"{name} vs. base"] == f"{100 * (values.mean() - base) / base:.2f}%"
            assert row[f"p vs base ({name})"] == f"{max(_get(result, model, method, 'p_vs_base', key)):.1e}"


def test_table3_keeps_only_the_methods_run_and_ignores_an_undefined_p(result):
    for s in result.seeds:
        for rec in s.models.values():
            del rec.methods["adv_seq"], rec.methods["adv_linear"]
    result.seeds[1].models["SASRec"].methods["adv_cas"].p_vs_base["nDCG@10"] = float("nan")
    rows = cat_report.table3(result)
    assert [r["method"] for r in rows] == ["base", "continued", "adv_global", "adv_cas"] * 2
    p0 = result.seeds[0].models["SASRec"].methods["adv_cas"].p_vs_base["nDCG@10"]
    assert rows[3]["p vs base (nDCG@10)"] == f"{p0:.1e}"   # the NaN seed is skipped
    for s in result.seeds:
        s.models["SASRec"].methods["adv_cas"].p_vs_base["nDCG@10"] = float("nan")
    assert cat_report.table3(result)[3]["p vs base (nDCG@10)"] == "nan"


def test_table4_recomputed(result):
    rows = cat_report.table4(result)
    assert [r["model"] for r in rows] == ["SASRec"] * 4   # GRU4Rec ran no ablation
    assert [r["cascade"].split()[0] for r in rows] == ["base", "adv_cas_1", "adv_cas_2", "adv_cas"]
    base = _get(result, "SASRec", "base", "test", "nDCG@10")
    for row, label in zip(rows[1:3], ("adv_cas_1", "adv_cas_2")):
        for key, name in (("nDCG@10", "nDCG@10"), ("HR@10", "HR@10")):
            values = [s.models["SASRec"].components[label].test[key] for s in result.seeds]
            assert row[name] == _ms(values)
        nd = np.mean([s.models["SASRec"].components[label].test["nDCG@10"] for s in result.seeds])
        assert row["nDCG@10 vs. base"] == f"{100 * (nd - base.mean()) / base.mean():.2f}%"
    assert rows[3]["nDCG@10"] == _ms(_get(result, "SASRec", "adv_cas", "test", "nDCG@10"))
    assert rows[0]["nDCG@10"] == _ms(base) and rows[0]["nDCG@10 vs. base"] == "-"


def test_sweep_table_uses_the_sweep_seeds_only(result):
    rows = cat_report.sweep_table(result)
    assert [(r["model"], r["eps"]) for r in rows] == [(m, e) for m in ("SASRec", "GRU4Rec")
                                                      for e in ("1", "10 (Table 3)", "20")]
    assert all(r["seeds"] == "0" for r in rows)
    s0 = result.seeds[0].models
    for row in rows:
        rec = s0[row["model"]]
        entry = {"1": rec.sweep["1.0"], "20": rec.sweep["20.0"]}.get(row["eps"], rec.methods["adv_cas"])
        assert row["nDCG@10"] == f"{entry.test['nDCG@10']:.4f}"   # one seed: no std
        assert row["HR@10"] == f"{entry.test['HR@10']:.4f}"
        base = rec.methods["base"].test["nDCG@10"]        # seed 0's base, not both seeds'
        assert row["nDCG@10 vs. base"] == f"{100 * (entry.test['nDCG@10'] - base) / base:.2f}%"


def test_sweep_table_without_a_sweep_and_with_the_main_eps_swept(result):
    sw = cat_report.sweep(result, "SASRec")
    assert sw.seeds == [0] and sw.eps == [1.0, 10.0, 20.0] and sw.metrics["nDCG@10"].shape == (1, 3)
    result.seeds[0].models["SASRec"].sweep["10.0"] = result.seeds[0].models["SASRec"].sweep["1.0"]
    assert cat_report.sweep(result, "SASRec").eps == [1.0, 10.0, 20.0]   # Table 3's run counts once
    assert cat_report.sweep(result, "SASRec").metrics["nDCG@10"][0, 1] == \
        result.seeds[0].models["SASRec"].methods["adv_cas"].test["nDCG@10"]
    for s in result.seeds:
        for name, rec in s.models.items():
            s.models[name] = dataclasses.replace(rec, sweep=None)
    assert cat_report.sweep(result, "SASRec") is None and cat_report.sweep_table(result) == []


def test_substitution_table_recomputed(result):
    rows = cat_report.substitution_table(result)
    assert len(rows) == 2 * (1 + len(TRAINED_ON))
    for row in rows:
        for where in WHERES:
            for key, name in (("nDCG@10", "nDCG@10"), ("HR@10", "HR@10")):
                drops = _get(result, row["model"], row["method"], "substitution", where, "drop", key)
                assert row[f"{where.replace('_', ' ')} {name}"] == f"{100 * drops.mean():.1f}%"
        # the drop is the relative loss of the same model's clean metric
        clean = _get(result, row["model"], row["method"], "test", "nDCG@10")
        attacked = _get(result, row["model"], row["method"], "substitution", "last", "metrics", "nDCG@10")
        np.testing.assert_allclose(cat_report.substitution_drop(result, row["model"], row["method"], "last"),
                                   (clean - attacked) / clean)


def test_timing_table_recomputed(result):
    rows = cat_report.timing_table(result)
    for row in rows:
        spe = _get(result, row["model"], row["method"], "seconds_per_epoch")
        base = _get(result, row["model"], "base", "seconds_per_epoch")
        assert row["s / epoch"] == _ms(spe, 3)
        assert row["epochs"] == _ms(_get(result, row["model"], row["method"], "epochs"), 1)
        assert row["best epoch"] == _ms(_get(result, row["model"], row["method"], "best_epoch") + 1, 1)
        assert row["x base"] == ("-" if row["method"] == "base" else f"{spe.mean() / base.mean():.2f}x")
    assert {r["x base"] for r in rows if r["method"] != "base"} != {"-"}


# ----------------------------------------------------------------------------- acceptance

def test_acceptance_holds_on_the_fixture(result):
    checks = cat_report.acceptance(result)
    assert len(checks) == 3 * 2
    assert all(isinstance(c, Check) and c.target == "" for c in checks)   # name, passed, detail
    assert all(c.passed is True for c in checks), checks
    cas = _get(result, "SASRec", "adv_cas", "test", "nDCG@10").mean()
    base = _get(result, "SASRec", "base", "test", "nDCG@10").mean()
    assert f"{cas:.4f} vs {base:.4f}" in checks[0].detail


def test_acceptance_fails_each_check_on_its_own(result):
    def names_failed(r):
        return [c.name for c in cat_report.acceptance(r) if not c.passed]

    worse = copy.deepcopy(result)                       # 1: GRU4Rec's adv_cas below base on nDCG@10
    for s in worse.seeds:
        m = s.models["GRU4Rec"].methods
        m["adv_cas"].test["nDCG@10"] = m["base"].test["nDCG@10"] * 0.9
    assert names_failed(worse) == ["GRU4Rec: adv_cas nDCG@10 >= base"]

    first = copy.deepcopy(result)                       # 2: SASRec's base hurt more by the first item
    for s in first.seeds:
        sub = s.models["SASRec"].methods["base"].substitution
        sub["first"].drop["nDCG@10"] = sub["last"].drop["nDCG@10"] + 0.01
    assert names_failed(first) == ["SASRec: base loses more nDCG@10 to the last item replaced than to the first"]

    fragile = copy.deepcopy(result)                     # 3: SASRec's adv_cas loses as much as base
    for s in fragile.seeds:
        m = s.models["SASRec"].methods
        m["adv_cas"].substitution["last"].drop["nDCG@10"] = m["base"].substitution["last"].drop["nDCG@10"]
    assert names_failed(fragile) == ["SASRec: adv_cas loses less nDCG@10 than base to the last item replaced"]

    nan = copy.deepcopy(result)                         # an undefined drop never passes
    for s in nan.seeds:
        s.models["SASRec"].methods["adv_cas"].substitution["last"].drop["nDCG@10"] = float("nan")
    assert names_failed(nan) == ["SASRec: adv_cas loses less nDCG@10 than base to the last item replaced"]


def test_acceptance_without_adv_cas_checks_only_the_base(result):
    for s in result.seeds:
        for rec in s.models.values():
            del rec.methods["adv_cas"]
    checks = cat_report.acceptance(result)
    assert [c.name.split(":")[0] for c in checks] == ["SASRec", "GRU4Rec"]
    assert all("first" in c.name for c in checks)


# ----------------------------------------------------------------------------- files

def test_report_files_strict_json_round_trip(result, tmp_path):
    result.seeds[0].models["GRU4Rec"].methods["adv_seq"].p_vs_base["HR@10"] = float("nan")
    result.seeds[1].models["SASRec"] = dataclasses.replace(result.seeds[1].models["SASRec"], seconds=float("inf"))
    files = cat_report.write_report(result, tmp_path)
    assert tmp_path / "cat.json" in files and tmp_path / "cat.md" in files

    def no_constants(name):
        raise AssertionError(f"non-strict JSON constant {name}")

    payload = json.loads((tmp_path / "cat.json").read_text(), parse_constant=no_constants)
    assert payload["seeds"][0]["models"]["GRU4Rec"]["methods"]["adv_seq"]["p_vs_base"]["HR@10"] is None
    assert payload["config"]["seeds"] == [0, 1] and payload["seconds"] == 321.0
    assert [c["passed"] for c in payload["acceptance"]] == [c.passed for c in cat_report.acceptance(result)]
    assert payload["seeds"][1]["models"]["SASRec"]["seconds"] == "inf"
    back = cat_report.result_from_json(payload)
    assert back.config == result.config and back.seeds[1].models["SASRec"].seconds == float("inf")
    assert math.isnan(back.seeds[0].models["GRU4Rec"].methods["adv_seq"].p_vs_base["HR@10"])
    assert cat_report.render_markdown(back) == cat_report.render_markdown(result)
    with pytest.raises(ValueError, match="payload"):
        cat_report.result_from_json({"seeds": []})


def test_markdown_has_every_table(result, tmp_path):
    cat_report.write_report(result, tmp_path)
    md = (tmp_path / "cat.md").read_text()
    assert md.startswith("# CAT on hand-built")
    for heading in ("## Table 3", "## Table 4", "## Figure 4", "## Figure 5", "## Figure 6:", "## Training time",
                    "## Acceptance"):
        assert heading in md
    for row in cat_report.table3(result):      # every Table 3 cell is in the file
        assert all(str(v) in md for v in row.values())
    text = cat_report.render_text(result)
    assert "Table 3" in text and "## " not in text and "| " not in text


def test_figures_written(result, tmp_path):
    files = cat_report.write_report(result, tmp_path)
    names = {f.name for f in files}
    if not have_matplotlib():
        assert names == {"cat.json", "cat.md"}
        return
    expected = {"fig4_eps.png"} | {f"fig3_{m}.png" for m in ("SASRec", "GRU4Rec")}
    expected |= {f"fig{n}_{m}_{k}.png" for n in (5, 6) for m in ("SASRec", "GRU4Rec") for k in ("nDCG10", "HR10")}
    assert names == expected | {"cat.json", "cat.md"}
    assert all((tmp_path / n).stat().st_size > 1000 for n in expected)


# ----------------------------------------------------------------------------- configuration

@pytest.mark.parametrize("kwargs, name", [
    ({"seeds": ()}, "seeds"), ({"seeds": (0, "1")}, "seeds"), ({"models": ("BERT4Rec",)}, "models"),
    ({"models": ()}, "models"), ({"methods": ("adv_foo",)}, "methods"), ({"eps": 0.0}, "eps"),
    ({"eps": float("nan")}, "eps"), ({"lam1": -1.0}, "lam1"), ({"dropout": 1.0}, "dropout"),
    ({"max_len": 0}, "max_len"), ({"adv_epochs": 0}, "adv_epochs"), ({"last_k": (0,)}, "last_k"),
    ({"max_len": 4, "last_k": (5,)}, "last_k"), ({"sweep_eps": (-1.0,)}, "sweep_eps"),
    ({"component_models": ("X",)}, "component_models"), ({"threads": 0}, "threads"), ({"lr": 0}, "lr"),
    ({"control": 1}, "control"),
])
def test_config_errors_name_the_field(kwargs, name):
    with pytest.raises(ValueError, match=name):
        CATConfig(**kwargs).validate()
    with pytest.raises(ValueError, match=name):
        run_cat(CATConfig(**kwargs))        # before any data is read


def test_default_and_quick_configs_are_valid():
    CATConfig().validate()
    CATConfig.quick().validate()
    assert CATConfig.quick(epochs=3).epochs == 3


# ----------------------------------------------------------------------------- end to end

def _shape(x):
    """The key tree of a record (values dropped), to compare a real record with the fixture."""
    if isinstance(x, dict):
        return {k: _shape(v) for k, v in x.items()}
    return type(x).__name__ if isinstance(x, (list, tuple)) else "number"


def tiny(**overrides):
    base = dict(epochs=3, adv_epochs=2, dim=8, max_len=10, n_blocks=1, eval_every=1, adv_eval_every=1,
                models=("SASRec", "GRU4Rec"), component_models=("SASRec",), sweep_eps=(1.0,),
                sweep_models=("GRU4Rec",), last_k=(1, 2), pool_size=5, control=True, progress=False)
    base.update(overrides)
    return CATConfig.quick(**base)


@pytest.fixture(scope="module")
def tiny_result():
    return run_cat(tiny())


def test_tiny_run_has_the_fixtures_shape(tiny_result):
    real = tiny_result.seeds[0].models
    hand = build_result().seeds[0].models
    assert set(real) == {"SASRec", "GRU4Rec"} and set(real["SASRec"].to_dict()) == {"methods", "components", "seconds"}
    assert set(real["GRU4Rec"].to_dict()) == {"methods", "sweep", "seconds"} and set(real["GRU4Rec"].sweep) == {"1.0"}
    for model in real:
        assert set(real[model].methods) == {"base", "continued", "adv_cas"}
        for method in ("base", "continued", "adv_cas"):
            got, want = real[model].methods[method].to_dict(), hand[model].methods[method].to_dict()
            want = {**want, "substitution": {k: v for k, v in want["substitution"].items() if k != "last_3"}}
            assert _shape(got) == _shape(want), (model, method)
    assert _shape(real["SASRec"].to_dict()["components"]) == _shape(hand["SASRec"].to_dict()["components"])
    assert _shape(real["GRU4Rec"].sweep["1.0"].to_dict()) == _shape(hand["GRU4Rec"].sweep["1.0"].to_dict())


def test_tiny_run_numbers_are_consistent(tiny_result):
    cfg = tiny_result.config
    for model, rec in tiny_result.seeds[0].models.items():
        for method, entry in rec.methods.items():
            test = entry.test
            assert 0 <= test["nDCG@10"] <= test["HR@10"] <= 1
            assert entry.epochs == (cfg.epochs if method == "base" else cfg.adv_epochs)
            assert [e for e, _ in entry.curve] == list(range(1, entry.epochs + 1))   # validated every epoch
            assert entry.valid == max(v for _, v in entry.curve)
            assert entry.curve[entry.best_epoch][1] == entry.valid
            assert entry.seconds_per_epoch > 0
            sub = entry.substitution
            assert sub["last_1"] is sub["last"]
            for where in ("first", "middle", "last", "last_2"):
                assert 0 < sub[where].n_replaced <= 943 * (2 if where == "last_2" else 1)
                for m, v in sub[where].metrics.items():
                    expected = (test[m] - v) / test[m] if test[m] > 0 else float("nan")
                    np.testing.assert_allclose(sub[where].drop[m], expected)
            if method != "base":
                assert all(0 <= p <= 1 for p in entry.p_vs_base.values() if not math.isnan(p))


def test_tiny_run_report(tiny_result, tmp_path):
    text = cat_report.render_text(tiny_result)
    for heading in ("Table 3", "Table 4", "Figure 4", "Figure 5", "Figure 6", "Training time", "Acceptance"):
        assert heading in text
    assert len(cat_report.acceptance(tiny_result)) == 3 * 2
    cat_report.write_report(tiny_result, tmp_path)
    payload = json.loads((tmp_path / "cat.json").read_text())
    assert cat_report.render_markdown(cat_report.result_from_json(payload)) == cat_report.render_markdown(tiny_result)


def test_continued_is_the_base_trained_on_with_the_plain_loss():
    """The control equals a hand-run second phase: the base checkpoint, SequenceTrainer with the
    plain loss, the adversarial phase's epochs, validation and seed (seed + 1)."""
    import torch
    from advrec.evaluation import evaluate
    from advrec.experiments.cat import load_data
    from advrec.models import SASRec
    from advrec.training import SequenceTrainer

    cfg = tiny(models=("SASRec",), component_models=(), sweep_eps=(), last_k=(1,), epochs=2, adv_epochs=2,
               methods=(), threads=1)
    got = run_cat(cfg).seeds[0].models["SASRec"].methods["continued"]
    data = load_data(cfg)

    def valid(model):
        model.set_histories(data.valid_histories)
        return evaluate(model, data.split.valid, exclude=data.split.train, k=(10,), progress=False,
                        auc=False).summary()["nDCG@10"]

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = SASRec(data.inter.n_users, data.inter.n_items, dim=cfg.dim, max_len=cfg.max_len,
                       n_blocks=cfg.n_blocks, dropout=cfg.dropout, seed=0)
        common = dict(batch_size=cfg.batch_size, lr=cfg.lr, l2=cfg.l2, progress=False, threads=1)
        SequenceTrainer(epochs=cfg.epochs, patience=cfg.patience, eval_every=cfg.eval_every, seed=0,
                        **common).fit(model, data.split.train, valid)
        history = SequenceTrainer(epochs=cfg.adv_epochs, eval_every=cfg.adv_eval_every, seed=1,
                                  **common).fit(model, data.split.train, valid)
        model.eval()
        model.set_histories(data.test_histories)
        with torch.no_grad():
            test = evaluate(model, data.split.test, exclude=(data.split.train, data.split.valid), k=(10,),
                            progress=False, auc=False).summary()
    finally:
        torch.set_num_threads(previous)
    assert got.curve == [(i + 1, v) for i, v in enumerate(history.metric)]
    assert got.test == {m: float(test[m]) for m in ("nDCG@10", "HR@10")}
    assert got.p_vs_base is not None and got.substitution is not None


def test_same_seed_same_numbers():
    cfg = dict(models=("SASRec",), component_models=(), sweep_eps=(), last_k=(1,), epochs=2, adv_epochs=1)
    a, b = run_cat(tiny(**cfg)).seeds[0], run_cat(tiny(**cfg)).seeds[0]

    def numbers(rec):
        methods = rec.models["SASRec"].methods
        return json.dumps({m: {k: v for k, v in e.to_dict().items() if k != "seconds_per_epoch"}
                           for m, e in methods.items()},
                          sort_keys=True)

    assert numbers(a) == numbers(b)


def test_figure4_base_line_takes_its_model_colour(tmp_path, monkeypatch):
    """A baseline named after a series is drawn in that series' colour; an unknown series is refused."""
    if not have_matplotlib():
        pytest.skip("matplotlib is not installed")
    from advrec.report import figures
    seen = {}
    real_finish = figures._finish

    def spy(fig, ax, path, *args, **kwargs):
        seen.update({line.get_label(): line.get_color() for line in ax.get_lines()})
        return real_finish(fig, ax, path, *args, **kwargs)

    monkeypatch.setattr(figures, "_finish", spy)
    series = {"A adv_cas": ([0.1, 1.0], [0.1, 0.2]), "B adv_cas": ([0.1, 1.0], [0.3, 0.1])}
    figures.curves(tmp_path / "f.png", series, title="t", xlabel="x", ylabel="y",
                   hlines={"A base": (0.15, "A adv_cas"), "B base": (0.2, "B adv_cas"), "other": 0.1})
    assert seen["A base"] == seen["A adv_cas"] and seen["B base"] == seen["B adv_cas"]
    assert seen["A adv_cas"] != seen["B adv_cas"]
    assert seen["other"] not in (seen["A adv_cas"], seen["B adv_cas"])
    with pytest.raises(ValueError, match="hlines"):
        figures.curves(tmp_path / "g.png", series, title="t", xlabel="x", ylabel="y",
                       hlines={"C base": (0.1, "C adv_cas")})
