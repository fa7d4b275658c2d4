"""The CAT report: per-seed records of ``cat.run_cat`` aggregated over seeds (mean ± sample
standard deviation) into the paper's Tables 3-4, Figures 3-6, the training time and the issue's
acceptance checks; as terminal text, Markdown, JSON and PNG figures.

The metrics keep the library's names everywhere (``nDCG@10``, ``HR@10``; the CAT paper calls them
NDCG@10 and HT@10). Substitution drops are relative,
``(clean - attacked) / clean`` of the same model, so a positive number is accuracy lost.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence

import numpy as np

from ..report import curves, format_table, grouped_bars, line_chart
from ..report.aggregate import fmt_mean_std, mean_std
from ..training.cat import METHODS
from .cat import COMPONENTS, CONTROL, METRICS, POSITIONS, CATResult, CATSeed
from .report_files import ReportFiles
from .records import Check

#: how the report names the record's metrics (the library's names; the paper's are NDCG@10 and HT@10)
DISPLAY = {"nDCG@10": "nDCG@10", "HR@10": "HR@10"}
#: Table 3's row order: the base model, then the adversarial methods as the paper lists them
ROWS = ("base", CONTROL) + tuple(METHODS)
#: Table 4's labels of the cascade ablations
COMPONENT_LABELS = {"adv_cas_1": "adv_cas_1 (same sequence only)", "adv_cas_2": "adv_cas_2 (cross-sequence only)"}
#: the paper's per-epoch cost of CAT: 100 CAT epochs added 78% to 500 base epochs (8.3 / 10.6 min)
PAPER_EPOCH_RATIO = (8.3 / 100) / (10.6 / 500)


def _stack(records: Sequence[CATSeed], get: Callable[[CATSeed], Any]) -> np.ndarray:
    return np.asarray([get(s) for s in records], dtype=np.float64)


def _cell(values: np.ndarray, digits: int = 4) -> str:
    mean, std = mean_std(values)
    return fmt_mean_std(float(mean), float(std), digits)


def _pct(value: float, digits: int = 2) -> str:
    return "nan" if math.isnan(value) else f"{value:.{digits}f}%"


def _rel(new: float, base: float) -> float:
    """Relative change of ``new`` over ``base`` in percent (the paper's "vs. Base")."""
    return 100.0 * (new - base) / base if base > 0 else float("nan")


def _models(result: CATResult) -> List[str]:
    """The configured models every seed ran, in the config's order."""
    return [m for m in result.config.models if all(m in s.models for s in result.seeds)]


def _methods(result: CATResult, model: str) -> List[str]:
    """Base and the adversarial methods every seed ran for ``model``, in Table 3's order."""
    return [m for m in ROWS if all(m in s.models[model].methods for s in result.seeds)]


def _test(result: CATResult, model: str, method: str, metric: str) -> np.ndarray:
    return _stack(result.seeds, lambda s: s.models[model].methods[method].test[metric])


def _ks(result: CATResult) -> List[int]:
    """Figure 6's K: 1 (the last item) and every ``last_k`` the records hold."""
    ks = sorted({1, *(int(k) for k in result.config.last_k)})
    return [k for k in ks if all(f"last_{k}" in rec.methods["base"].substitution
                                 for s in result.seeds for rec in s.models.values())]


def substitution_drop(result: CATResult, model: str, method: str, where: str, metric: str = "nDCG@10") -> np.ndarray:
    """Per-seed relative drop (a fraction) of ``method``'s test ``metric`` under substitution ``where``
    (``first``, ``middle``, ``last`` or ``last_K``)."""
    return _stack(result.seeds, lambda s: s.models[model].methods[method].substitution[where].drop[metric])


# ----------------------------------------------------------------------------- acceptance

def acceptance(result: CATResult) -> List[Check]:
    """The issue's checks on the means over seeds, per model (a check whose method was not run
    is left out): adv_cas >= base on nDCG@10; replacing the last item costs the base model more
    nDCG@10 than replacing the first; under last-item substitution adv_cas loses less than base."""
    checks: List[Check] = []
    for model in _models(result):
        methods = _methods(result, model)
        if "adv_cas" in methods:
            base, cas = (float(_test(result, model, m, "nDCG@10").mean()) for m in ("base", "adv_cas"))
            checks.append(Check(f"{model}: adv_cas nDCG@10 >= base", cas >= base,
                                f"{cas:.4f} vs {base:.4f} ({_pct(_rel(cas, base))})"))
        first, last = (float(substitution_drop(result, model, "base", w).mean()) for w in ("first", "last"))
        checks.append(Check(f"{model}: base loses more nDCG@10 to the last item replaced than to the first",
                            last > first, f"drop {_pct(100 * last, 1)} (last) vs {_pct(100 * first, 1)} (first)"))
        if "adv_cas" in methods:
            cas_drop, base_drop = (float(substitution_drop(result, model, m, "last").mean())
                                   for m in ("adv_cas", "base"))
            checks.append(Check(f"{model}: adv_cas loses less nDCG@10 than base to the last item replaced",
                                cas_drop < base_drop,
                                f"drop {_pct(100 * cas_drop, 1)} (adv_cas) vs {_pct(100 * base_drop, 1)} (base)"))
    return checks


# ----------------------------------------------------------------------------- tables

def _accuracy_row(model: str, label_key: str, label: str, values: Dict[str, np.ndarray],
                  base: Dict[str, np.ndarray], is_base: bool) -> Dict[str, object]:
    row: Dict[str, object] = {"model": model, label_key: label}
    for metric in METRICS:
        row[DISPLAY[metric]] = _cell(values[metric])
        row[f"{DISPLAY[metric]} vs. base"] = "-" if is_base else _pct(_rel(float(values[metric].mean()),
                                                                          float(base[metric].mean())))
    return row


def table3(result: CATResult) -> List[Dict[str, object]]:
    """Per model and method (base first): test nDCG@10 and HR@10 (mean ± std over seeds), the
    relative change of the means against base, and the largest paired t-test p over seeds of the
    method against base (per user, on the same test cases)."""
    rows = []
    for model in _models(result):
        base = {m: _test(result, model, "base", m) for m in METRICS}
        for method in _methods(result, model):
            values = {m: _test(result, model, method, m) for m in METRICS}
            row = _accuracy_row(model, "method", method, values, base, method == "base")
            for metric in METRICS:
                if method == "base":
                    row[f"p vs base ({DISPLAY[metric]})"] = "-"
                    continue
                p = _stack(result.seeds, lambda s: s.models[model].methods[method].p_vs_base[metric])
                row[f"p vs base ({DISPLAY[metric]})"] = "nan" if np.isnan(p).all() else f"{float(np.nanmax(p)):.1e}"
            rows.append(row)
    return rows


def table4(result: CATResult) -> List[Dict[str, object]]:
    """The cascade ablation for the component models: base, adv_cas_1 (same-sequence cascade
    only), adv_cas_2 (cross-sequence only) and adv_cas (both), test nDCG@10 / HR@10."""
    rows = []
    for model in _models(result):
        if not all(s.models[model].components is not None for s in result.seeds):
            continue
        base = {m: _test(result, model, "base", m) for m in METRICS}
        rows.append(_accuracy_row(model, "cascade", "base", base, base, True))
        for label in COMPONENTS:
            if not all(label in s.models[model].components for s in result.seeds):
                continue
            values = {m: _stack(result.seeds, lambda s: s.models[model].components[label].test[m])
                      for m in METRICS}
            rows.append(_accuracy_row(model, "cascade", COMPONENT_LABELS[label], values, base, False))
        if "adv_cas" in _methods(result, model):
            rows.append(_accuracy_row(model, "cascade", "adv_cas (both)",
                                      {m: _test(result, model, "adv_cas", m) for m in METRICS}, base, False))
    return rows


class Sweep(NamedTuple):
    """adv_cas over eps for one model, on the seeds that ran the sweep."""

    seeds: List[int]
    eps: List[float]
    metrics: Dict[str, np.ndarray]   # metric -> [seeds, eps]
    base: Dict[str, np.ndarray]      # metric -> [seeds]


def sweep(result: CATResult, model: str) -> Optional[Sweep]:
    """adv_cas test metrics at the config's eps (from Table 3's run) and at every swept eps,
    on the seeds whose record holds the sweep; ``None`` when no seed ran it for ``model``."""
    records = [s for s in result.seeds if model in s.models and s.models[model].sweep is not None]
    if not records:
        return None
    keys = set.intersection(*(set(s.models[model].sweep) for s in records))
    main = float(result.config.eps)
    has_main = all("adv_cas" in s.models[model].methods for s in records)
    points = {float(k): k for k in keys}
    if has_main:
        points[main] = None           # Table 3's adv_cas run: the same training as a swept main eps
    eps = sorted(points)

    def get(s: CATSeed, e: float, metric: str) -> float:
        rec = s.models[model]
        entry = rec.methods["adv_cas"] if points[e] is None else rec.sweep[points[e]]
        return entry.test[metric]

    metrics = {m: np.asarray([[get(s, e, m) for e in eps] for s in records], dtype=np.float64) for m in METRICS}
    base = {m: _stack(records, lambda s: s.models[model].methods["base"].test[m]) for m in METRICS}
    return Sweep([int(s.seed) for s in records], eps, metrics, base)


def sweep_table(result: CATResult) -> List[Dict[str, object]]:
    """Figure 4 in numbers: adv_cas test nDCG@10 / HR@10 per eps and model (mean ± std over the
    seeds that ran the sweep, named in the row), and nDCG@10 against base on those seeds."""
    rows = []
    main = float(result.config.eps)
    for model in _models(result):
        sw = sweep(result, model)
        if sw is None:
            continue
        for j, e in enumerate(sw.eps):
            row: Dict[str, object] = {"model": model, "eps": f"{e:g}" + (" (Table 3)" if e == main else ""),
                                      "seeds": " ".join(str(s) for s in sw.seeds)}
            for metric in METRICS:
                row[DISPLAY[metric]] = _cell(sw.metrics[metric][:, j])
            row["nDCG@10 vs. base"] = _pct(_rel(float(sw.metrics["nDCG@10"][:, j].mean()),
                                                float(sw.base["nDCG@10"].mean())))
            rows.append(row)
    return rows


def _where_label(where: str) -> str:
    return where.replace("_", " ")


def substitution_table(result: CATResult) -> List[Dict[str, object]]:
    """Figures 5-6 in numbers: per model and method, the relative drop (%) of test nDCG@10 and
    HR@10 (mean over seeds) when the first, middle or last history item, or the last K items,
    are replaced by similar real items chosen adversarially."""
    wheres = list(POSITIONS) + [f"last_{k}" for k in _ks(result) if k != 1]
    rows = []
    for model in _models(result):
        for method in _methods(result, model):
            row: Dict[str, object] = {"model": model, "method": method}
            for where in wheres:
                for metric in METRICS:
                    drop = float(substitution_drop(result, model, method, where, metric).mean())
                    row[f"{_where_label(where)} {DISPLAY[metric]}"] = _pct(100 * drop, 1)
            rows.append(row)
    return rows


def timing_table(result: CATResult) -> List[Dict[str, object]]:
    """Epochs run, best epoch (1-based, counted from the phase's start) and seconds per epoch of
    the base phase and of each adversarial method, and the per-epoch cost against base."""
    rows = []
    for model in _models(result):
        base_spe = float(_stack(result.seeds, lambda s: s.models[model].methods["base"].seconds_per_epoch).mean())
        for method in _methods(result, model):
            get = lambda key: _stack(result.seeds, lambda s: getattr(s.models[model].methods[method], key))  # noqa: E731
            spe = get("seconds_per_epoch")
            rows.append({"model": model, "method": method, "epochs": _cell(get("epochs"), 1),
                         "best epoch": _cell(get("best_epoch") + 1, 1), "s / epoch": _cell(spe, 3),
                         "x base": "-" if method == "base" else f"{float(spe.mean()) / base_spe:.2f}x"})
    return rows


# ----------------------------------------------------------------------------- text

def render_text(result: CATResult, markdown: bool = False, checks: Optional[Sequence[Check]] = None) -> str:
    """Every table of the report as terminal text (or Markdown); ``checks``: the acceptance to
    show, by default computed from the records."""
    cfg = result.config
    head = (lambda t: f"## {t}") if markdown else (lambda t: f"{t}\n{'-' * len(t)}")
    table = lambda rows, columns=None: format_table(rows, columns, markdown=markdown)  # noqa: E731
    parts = [
        f"Data: {result.data}.",
        f"Leave-one-out by time (per user the last item is the test item, the second last the validation "
        f"item); every item ranked, the user's history (train + validation) excluded; T = {cfg.max_len}. "
        f"Mean ± std over {len(result.seeds)} seed(s) {[s.seed for s in result.seeds]}. Base phase: at most "
        f"{cfg.epochs} epochs, early stopping on validation nDCG@10 (checked every {cfg.eval_every}, patience "
        f"{cfg.patience}). Each adversarial method trains on from the base's best checkpoint for "
        f"{cfg.adv_epochs} epochs; its best validation epoch (checked every {cfg.adv_eval_every}) is kept. "
        f"{CONTROL}: the same second phase with the plain loss (the extra epochs without perturbations). "
        f"eps {cfg.eps:g}, lambda1 {cfg.lam1:g}, lambda2 {cfg.lam2:g}; dim {cfg.dim}, dropout {cfg.dropout:g}, "
        f"Adam lr {cfg.lr:g}, batch {cfg.batch_size}, L2 {cfg.l2:g}. Run took {result.seconds / 60:.1f} min.",
        head("Table 3: test accuracy after each adversarial training method"),
        "vs. base: relative change of the seed means; p: the largest p over seeds of a paired t-test "
        "against base over the test users.",
        table(table3(result)),
    ]
    t4 = table4(result)
    if t4:
        parts += [head("Table 4: which cascade effects matter"),
                  "adv_cas_1 re-scales by the same-sequence term 1 + T - t only, adv_cas_2 by the "
                  "cross-sequence term (b/m) D only, adv_cas by both.", table(t4)]
    sw = sweep_table(result)
    if sw:
        parts += [head("Figure 4: adv_cas at other eps"),
                  "On the seeds named in each row; the Table 3 row is the same run as Table 3's adv_cas.",
                  table(sw)]
    subs = substitution_table(result)
    if subs:
        ks = _ks(result)
        columns = ["model", "method"] + [f"{w} {DISPLAY[m]}" for w in POSITIONS for m in METRICS]
        parts += [head("Figure 5: relative drop when one history item is replaced"),
                  f"Mean over seeds; each replacement is a real item among the {cfg.pool_size} most similar "
                  "to the original, chosen along the loss gradient (step "
                  f"{cfg.step:g}). Positive: accuracy lost.", table(subs, columns)]
        if len(ks) > 1:
            wheres = ["last"] + [f"last {k}" for k in ks if k != 1]
            columns = ["model", "method"] + [f"{w} {DISPLAY[m]}" for w in wheres for m in METRICS]
            parts += [head(f"Figure 6: relative drop when the last K items are replaced (K = {', '.join(map(str, ks))})"),
                      table(subs, columns)]
    parts += [head("Training time"),
              f"Seconds per training epoch (mean ± std over seeds). The paper's CAT epoch costs "
              f"{PAPER_EPOCH_RATIO:.1f}x a base epoch (100 CAT epochs added 78% to 500 base epochs).",
              table(timing_table(result)),
              head("Acceptance"),
              table([{"check": c.name, "holds": c.verdict(), "measured": c.detail}
                     for c in (acceptance(result) if checks is None else checks)])]
    return "\n\n".join(parts)


def render_markdown(result: CATResult) -> str:
    return render_text(result, markdown=True)


# ----------------------------------------------------------------------------- figures

def _file_metric(metric: str) -> str:
    return DISPLAY[metric].replace("@", "")


def figures(result: CATResult, out: Path) -> List[Path]:
    """Figure 3 per model (first seed), Figure 4 (all models), Figures 5 and 6 per model and metric."""
    out, files = Path(out), []
    first = result.seeds[0]
    for model in _models(result):
        rec = first.models[model].methods
        base = rec["base"]
        series = {"base": ([e for e, _ in base.curve], [v for _, v in base.curve])}
        start = int(base.best_epoch) + 1   # the epoch whose weights every method starts from
        for method in _methods(result, model)[1:]:
            pts = [(start, float(base.valid))] if _finite(base.valid) else []
            pts += [(start + e, v) for e, v in rec[method].curve]
            series[method] = ([e for e, _ in pts], [v for _, v in pts])
        files.append(curves(out / f"fig3_{model}.png", series,
                            title=f"Figure 3: {model}, seed {first.seed}",
                            xlabel=f"epoch (adversarial phases start from base epoch {start})",
                            ylabel="validation nDCG@10"))
    series, hlines = {}, {}
    for model in _models(result):
        sw = sweep(result, model)
        if sw is None:
            continue
        mean, std = mean_std(sw.metrics["nDCG@10"])
        series[f"{model} adv_cas"] = (sw.eps, mean, std if len(sw.seeds) > 1 else None)
        hlines[f"{model} base"] = (float(sw.base["nDCG@10"].mean()), f"{model} adv_cas")
    if series:
        files.append(curves(out / "fig4_eps.png", series, hlines=hlines, logx=True,
                            title="Figure 4: adv_cas test nDCG@10 against eps", xlabel="eps",
                            ylabel="test nDCG@10"))
    ks = _ks(result)
    for model in _models(result):
        methods = _methods(result, model)
        for metric in METRICS:
            bars = {m: [float(substitution_drop(result, model, m, w, metric).mean()) for w in POSITIONS]
                    for m in methods}
            files.append(grouped_bars(out / f"fig5_{model}_{_file_metric(metric)}.png", list(POSITIONS), bars,
                                      title=f"Figure 5: {model}, one item replaced", xlabel="replaced item",
                                      ylabel=f"{DISPLAY[metric]} drop"))
            if len(ks) > 1:
                lines = {m: [float(substitution_drop(result, model, m, f"last_{k}", metric).mean()) for k in ks]
                         for m in methods}
                files.append(line_chart(out / f"fig6_{model}_{_file_metric(metric)}.png", ks, lines, percent=True,
                                        title=f"Figure 6: {model}, last K items replaced",
                                        xlabel="K", ylabel=f"{DISPLAY[metric]} drop"))
    return files


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# ----------------------------------------------------------------------------- files

FILES = ReportFiles("cat", "CAT", CATResult, acceptance, render_text, figures, Check.to_dict)
report_payload = FILES.payload
report_json = FILES.json
report_markdown = FILES.markdown
write_report = FILES.write
result_from_json = FILES.result_from_json
checks_from_json = FILES.checks_from_json


__all__: Sequence[str] = ("Check", "acceptance", "table3", "table4", "sweep", "sweep_table", "substitution_table",
                          "substitution_drop", "timing_table", "render_text", "render_markdown", "figures",
                          "report_payload", "report_json", "report_markdown", "write_report", "result_from_json",
                          "checks_from_json")
