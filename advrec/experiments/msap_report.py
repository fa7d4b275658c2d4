"""The MSAP report: per-seed records of ``msap.run_msap`` aggregated over seeds (mean ± sample
standard deviation) into the paper's Tables 1-3, Figures 1-2 and the issue's acceptance checks;
as terminal text, Markdown, JSON and PNG figures."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from ..report import curves, format_table
from ..report.aggregate import fmt_mean_std, mean_std
from .msap import ATTACKS, CONDITIONS, FAVOURED, MODELS, TABLE1_METRICS, MSAPResult, MSAPSeed
from .report_files import ReportFiles
from .records import Check

GROUPINGS = ("item_pop", "user_gender", "user_activity")
GROUPING_TITLES = {"item_pop": "item popularity", "user_gender": "user gender", "user_activity": "user activity"}
GROUPING_SHORT = {"item_pop": "pop", "user_gender": "gender", "user_activity": "activity"}


def _stack(result: MSAPResult, get: Callable[[MSAPSeed], Any]) -> np.ndarray:
    return np.asarray([get(s) for s in result.seeds], dtype=np.float64)


def _cond_label(cond: str, steps: int) -> str:
    return f"{cond}-{steps}" if cond in ("BIM", "PGD") else cond


def _digits(metric: str) -> int:
    return {"SE": 2, "ICov": 0}.get(metric, 4)


# ----------------------------------------------------------------------------- acceptance

def acceptance(result: MSAPResult) -> List[Check]:
    """The issue's checks on the means over seeds (``passed`` is None when it needs a std over
    one seed)."""
    cfg = result.config
    def ndcg(model: str, cond: str) -> np.ndarray:
        return _stack(result, lambda s: s.models[model].conditions[cond].metrics["nDCG"])
    def at_step(model: str, attack: str, step: int) -> np.ndarray:
        return _stack(result, lambda s: s.models[model].curves[attack].metrics["nDCG"][
            s.models[model].curves[attack].step.index(step)])
    clean = ndcg("BPR-MF", "clean")
    drop = {c: float(np.mean(clean - ndcg("BPR-MF", c))) for c in ("random", "FGSM")}
    for a in ("BIM", "PGD"):
        drop[a] = float(np.mean(clean - at_step("BPR-MF", a, cfg.accept_steps)))
    ratio = drop["FGSM"] / drop["random"] if drop["random"] > 0 else math.inf
    rel = {m: float(np.mean((ndcg(m, "clean") - ndcg(m, "FGSM")) / ndcg(m, "clean"))) for m in MODELS}
    amf_clean, bpr_mean, bpr_std = float(np.mean(ndcg("AMF", "clean"))), float(np.mean(clean)), mean_std(clean)[1]
    checks = [
        Check(f"BPR-MF nDCG@{cfg.k} drop, FGSM / random noise (eps {cfg.eps})", ratio >= 5,
              f"{drop['FGSM']:.4f} / {drop['random']:.4f} = {ratio:.1f}x", ">= 5x"),
    ]
    for a in ("BIM", "PGD"):
        checks.append(Check(f"BPR-MF nDCG@{cfg.k} drop, {a}-{cfg.accept_steps} vs FGSM", drop[a] > drop["FGSM"],
                            f"{drop[a]:.4f} vs {drop['FGSM']:.4f}", "larger"))
    checks.append(Check(f"relative nDCG@{cfg.k} loss under FGSM, AMF vs BPR-MF", rel["AMF"] < 0.5 * rel["BPR-MF"],
                        f"{100 * rel['AMF']:.1f}% vs {100 * rel['BPR-MF']:.1f}%", "AMF < half of BPR-MF"))
    holds = None if math.isnan(float(bpr_std)) else amf_clean >= bpr_mean - float(bpr_std)
    checks.append(Check(f"clean nDCG@{cfg.k}, AMF vs BPR-MF (mean - 1 std over seeds)", holds,
                        f"{amf_clean:.4f} vs {bpr_mean:.4f} - {float(bpr_std):.4f}", "AMF >= BPR-MF - 1 std"))
    return checks


# ----------------------------------------------------------------------------- tables

def table1(result: MSAPResult) -> List[Dict[str, object]]:
    """Rows (model, metric); columns clean, random, FGSM, BIM-L, PGD-L."""
    rows = []
    for model in MODELS:
        for metric in TABLE1_METRICS:
            row: Dict[str, object] = {"model": model, "metric": metric}
            for cond in CONDITIONS:
                vals = _stack(result, lambda s: s.models[model].conditions[cond].metrics[metric])
                row[_cond_label(cond, result.config.steps)] = fmt_mean_std(*map(float, mean_std(vals)), _digits(metric))
            rows.append(row)
    return rows


def table2(result: MSAPResult) -> List[Dict[str, object]]:
    """Rows (model, condition); columns nDCG@k per group (means over seeds)."""
    rows = []
    for model in MODELS:
        for cond in CONDITIONS:
            row: Dict[str, object] = {"model": model, "condition": _cond_label(cond, result.config.steps)}
            for grouping in GROUPINGS:
                if grouping not in result.group_names:
                    continue
                vals = _stack(result, lambda s: s.models[model].conditions[cond].groups[grouping].nDCG)
                for name, v in zip(result.group_names[grouping], mean_std(vals)[0]):
                    row[f"{GROUPING_SHORT[grouping]} {name}"] = float(v)
            rows.append(row)
    return rows


def table3(result: MSAPResult, grouping: str) -> List[Dict[str, object]]:
    """Rows (model, condition); columns GCE f0, f_k..., MADr, MADR for one grouping."""
    cols = ["GCE_f0"] + [f"GCE_f{f + 1}" for f in FAVOURED[grouping]] + ["MADr", "MADR"]
    rows = []
    for model in MODELS:
        for cond in CONDITIONS:
            row: Dict[str, object] = {"model": model, "condition": _cond_label(cond, result.config.steps)}
            for col in cols:
                vals = _stack(result, lambda s: s.models[model].conditions[cond].groups[grouping].fairness[col])
                row[col.replace("GCE_", "GCE ")] = fmt_mean_std(float(mean_std(vals)[0]), math.nan, 3)
            rows.append(row)
    return rows


def sweep_table(result: MSAPResult) -> List[Dict[str, object]]:
    rows = []
    for model in MODELS:
        for attack in ("random", *ATTACKS):
            row: Dict[str, object] = {"model": model, "attack": attack}
            vals = _stack(result, lambda s: s.models[model].sweep[attack]["nDCG"])
            for e, v in zip(result.config.sweep_eps, mean_std(vals)[0]):
                row[f"eps {e:g}"] = float(v)
            rows.append(row)
    return rows


def render_text(result: MSAPResult, markdown: bool = False, checks: Optional[Sequence[Check]] = None) -> str:
    """Every table of the report, as terminal text or Markdown (``checks``: the acceptance to show,
    by default computed from the records)."""
    cfg = result.config
    n = len(result.seeds)
    seeds = f"mean ± std over {n} seeds {list(cfg.seeds)}" if n > 1 else f"seed {cfg.seeds[0]}"
    out = [f"Accuracy and beyond-accuracy @{cfg.k} (Table 1; eps {cfg.eps}, norm {cfg.norm}, "
           f"BIM/PGD {cfg.steps} iterations; {seeds})",
           format_table(table1(result), markdown=markdown), ""]
    rr = {m: float(np.mean(_stack(result, lambda s: s.random_recommender[m]))) for m in ("nDCG", "ICov")}
    out += [f"Random recommender: nDCG@{cfg.k} {rr['nDCG']:.4f}, ICov@{cfg.k} {rr['ICov']:.0f}", ""]
    present = ", ".join(GROUPING_TITLES[g] for g in GROUPINGS if g in result.group_names)
    out += [f"nDCG@{cfg.k} per group (Table 2; {present}; quartiles C1 = least popular / active)",
            format_table(table2(result), digits=3, markdown=markdown), ""]
    for grouping in GROUPINGS:
        if grouping in result.group_names:
            out += [f"Fairness over {GROUPING_TITLES[grouping]} groups {list(result.group_names[grouping])} "
                    f"(Table 3; GCE beta=2 on nDCG@{cfg.k}, 0 = fair, -inf = a favoured group gets nothing; "
                    f"MADr on mean predicted scores, MADR on nDCG@{cfg.k})",
                    format_table(table3(result, grouping), markdown=markdown), ""]
    if cfg.sweep_eps:
        out += [f"nDCG@{cfg.k} against eps, BIM/PGD {cfg.sweep_steps} iterations (Figure 2)",
                format_table(sweep_table(result), markdown=markdown), ""]
    rows = [{**c.to_row(), "holds": c.verdict("n/a (one seed)")}
            for c in (acceptance(result) if checks is None else checks)]
    out += ["Acceptance (means over seeds)", format_table(rows, markdown=markdown), ""]
    train = {}
    for m in MODELS:
        secs = [s.training[m].seconds for s in result.seeds if s.training[m].seconds is not None]
        train[m] = f"{np.mean(secs):.1f} s" if secs else "pretrained"
    attack = float(np.mean(_stack(result, lambda s: sum(s.models[m].attack_seconds for m in MODELS))))
    out.append(f"Time per seed: BPR-MF training {train['BPR-MF']}, AMF training {train['AMF']}, "
               f"all attacks and evaluations {attack:.1f} s; whole run {result.seconds:.0f} s")
    return "\n".join(out)


# ----------------------------------------------------------------------------- files

def figures(result: MSAPResult, out: Path) -> List[Path]:
    """Figure 1 (nDCG and ICov over iterations) and Figure 2 (nDCG over eps) per model."""
    cfg, files = result.config, []
    rr = {m: float(np.mean(_stack(result, lambda s: s.random_recommender[m]))) for m in ("nDCG", "ICov")}
    for model in MODELS:
        for metric in ("nDCG", "ICov"):
            series, fgsm = {}, _stack(result, lambda s: s.models[model].conditions["FGSM"].metrics[metric])
            for attack in ("BIM", "PGD"):
                steps = result.seeds[0].models[model].curves[attack].step
                mean, std = mean_std(_stack(result, lambda s: s.models[model].curves[attack].metrics[metric]))
                series[attack] = (steps, mean, None if len(result.seeds) < 2 else std)
            files.append(curves(out / f"fig1_{model}_{metric}.png", series,
                                hlines={f"FGSM (eps {cfg.eps})": float(np.mean(fgsm)),
                                        "random recommender": rr[metric]},
                                title=f"{model}: {metric}@{cfg.k} under attack (eps {cfg.eps})",
                                xlabel="iterations", ylabel=f"{metric}@{cfg.k}"))
        if not cfg.sweep_eps:
            continue
        series = {}
        for attack in ("random", *ATTACKS):
            mean, std = mean_std(_stack(result, lambda s: s.models[model].sweep[attack]["nDCG"]))
            label = attack if attack in ("random", "FGSM") else f"{attack}-{cfg.sweep_steps}"
            series[label] = (list(cfg.sweep_eps), mean, None if len(result.seeds) < 2 else std)
        files.append(curves(out / f"fig2_{model}_nDCG.png", series, logx=True,
                            hlines={"random recommender": rr["nDCG"]},
                            title=f"{model}: nDCG@{cfg.k} against the budget", xlabel="eps",
                            ylabel=f"nDCG@{cfg.k}"))
    return files


FILES = ReportFiles("msap", "MSAP", MSAPResult, acceptance, render_text, figures, Check.to_row)
report_payload = FILES.payload
report_json = FILES.json
report_markdown = FILES.markdown
write_report = FILES.write
result_from_json = FILES.result_from_json
checks_from_json = FILES.checks_from_json


__all__: Sequence[str] = ("acceptance", "table1", "table2", "table3", "sweep_table", "render_text",
                          "figures", "report_payload", "report_json", "report_markdown", "result_from_json",
                          "checks_from_json", "write_report")
